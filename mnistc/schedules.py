"""Learning-rate schedules with Keras 3 names, defaults and formulas (also reachable as
`mnistc.optimizers.schedules`).

A schedule passed as an optimizer's `learning_rate` is evaluated by the C optimizer at every step,
from the optimizer's iteration count before the step's increment (as Keras does), so the rate
changes batch by batch inside an epoch. Calling a schedule (`schedule(step)`) gives the same value
in Python. Only the built-in schedules can run inside the C training loop: for a rule of your own,
use `mnistc.callbacks.LearningRateScheduler`, which sets the rate once per epoch.

Example:
    lr = mnistc.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=1000, decay_rate=0.9)
    model.compile(optimizer=mnistc.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy")
"""
import math

import numpy as np

# schedule codes of the C optimizer (csrc/optim.h, mc_sched_kind)
CONSTANT, EXPONENTIAL, PIECEWISE, POLYNOMIAL, INVERSE_TIME, COSINE = range(6)


def _number(cls, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ValueError(f"{cls}: argument `{name}` must be a finite number. Received: {name}={value!r}")
    return value


def _decay_steps(cls, value):
    _number(cls, "decay_steps", value)
    if value <= 0:
        raise ValueError(f"Argument `decay_steps` must be > 0. Received: decay_steps={value}")
    return value


class LearningRateSchedule:
    """Base class of the schedules: `schedule(step)` is the learning rate at optimizer step `step`.

    Subclasses set `c_kind` and `c_params()` (what the C optimizer evaluates per step).
    """

    c_kind = None

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`__call__(self, step)`.")

    def c_params(self):
        """The schedule's parameters in the order csrc/optim.h lists them, as float64."""
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  "`get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """`initial_learning_rate * decay_rate ** (step / decay_steps)`; with staircase the exponent is
    floored, so the rate drops every `decay_steps` steps."""

    c_kind = EXPONENTIAL

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        cls = type(self).__name__
        self.initial_learning_rate = _number(cls, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _decay_steps(cls, decay_steps)
        self.decay_rate = _number(cls, "decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step):
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def c_params(self):
        return [self.initial_learning_rate, self.decay_steps, self.decay_rate, float(self.staircase)]

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(ExponentialDecay):
    """`initial_learning_rate / (1 + decay_rate * step / decay_steps)` (floored ratio with staircase)."""

    c_kind = INVERSE_TIME

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1 + self.decay_rate * p)


class PolynomialDecay(LearningRateSchedule):
    """From `initial_learning_rate` to `end_learning_rate` over `decay_steps` steps along
    `(1 - step / decay_steps) ** power`; with cycle the decay restarts at each multiple of decay_steps."""

    c_kind = POLYNOMIAL

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        cls = type(self).__name__
        self.initial_learning_rate = _number(cls, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _decay_steps(cls, decay_steps)
        self.end_learning_rate = _number(cls, "end_learning_rate", end_learning_rate)
        self.power = _number(cls, "power", power)
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step):
        s, decay_steps = float(step), float(self.decay_steps)
        if self.cycle:
            decay_steps *= 1.0 if s == 0 else math.ceil(s / decay_steps)
        else:
            s = min(s, decay_steps)
        return (self.initial_learning_rate - self.end_learning_rate) * (1 - s / decay_steps) ** self.power \
            + self.end_learning_rate

    def c_params(self):
        return [self.initial_learning_rate, self.decay_steps, self.end_learning_rate, self.power,
                float(self.cycle)]

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from the initial rate (or `warmup_target` after a linear warmup of `warmup_steps`
    steps) to `alpha` times it over `decay_steps` steps, then constant (Loshchilov & Hutter's SGDR
    without restarts)."""

    c_kind = COSINE

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        cls = type(self).__name__
        self.initial_learning_rate = _number(cls, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _decay_steps(cls, decay_steps)
        self.alpha = _number(cls, "alpha", alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else _number(cls, "warmup_target", warmup_target)
        self.warmup_steps = _number(cls, "warmup_steps", warmup_steps)
        if warmup_steps < 0:
            raise ValueError(f"{cls}: argument `warmup_steps` must be >= 0. Received: warmup_steps={warmup_steps}")

    def _target_and_warmup(self):
        # without a warmup target Keras decays from the initial rate and ignores warmup_steps
        if self.warmup_target is None:
            return float(self.initial_learning_rate), 0.0
        return float(self.warmup_target), float(self.warmup_steps)

    def __call__(self, step):
        target, warmup = self._target_and_warmup()
        s = min(float(step), self.decay_steps + warmup)
        if s < warmup:
            return (target - self.initial_learning_rate) * (s / warmup) + self.initial_learning_rate
        cosine = 0.5 * (1 + math.cos(math.pi * (s - warmup) / self.decay_steps))
        return target * ((1 - self.alpha) * cosine + self.alpha)

    def c_params(self):
        target, warmup = self._target_and_warmup()
        return [self.initial_learning_rate, self.decay_steps, self.alpha, target, warmup]

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """`values[0]` while step <= boundaries[0], `values[i]` while step <= boundaries[i], then
    `values[-1]`."""

    c_kind = PIECEWISE

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        cls = type(self).__name__
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError("The length of boundaries should be 1 less than the length of values. Received: "
                             f"boundaries={boundaries} of length {len(boundaries)}, and values={values} of "
                             f"length {len(values)}.")
        for b in boundaries:
            _number(cls, "boundaries", b)
        for v in values:
            _number(cls, "values", v)
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"{cls}: `boundaries` must be strictly increasing. Received: boundaries={boundaries}")
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def c_params(self):
        return [len(self.boundaries), *self.boundaries, *self.values]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


_BY_CLASS = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay, PolynomialDecay, CosineDecay,
                                      PiecewiseConstantDecay)}


def serialize(learning_rate_schedule):
    """A JSON-compatible dict, shaped as Keras writes it."""
    return {"module": "keras.optimizers.schedules", "class_name": type(learning_rate_schedule).__name__,
            "config": learning_rate_schedule.get_config(), "registered_name": None}


def deserialize(config, custom_objects=None):
    """A schedule from `serialize`'s dict (Keras's own form included).

    Raises:
        ValueError: an unknown class name or a malformed config.
    """
    if isinstance(config, LearningRateSchedule):
        return config
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"Could not interpret learning rate schedule: {config!r}. Expected a dict "
                         "{'class_name': ..., 'config': {...}}.")
    name = config.get("class_name")
    cls = (custom_objects or {}).get(name) or _BY_CLASS.get(name)
    if cls is None:
        raise ValueError(f"Unknown learning rate schedule: {name!r}. Expected one of: "
                         f"{', '.join(sorted(_BY_CLASS))}.")
    try:
        return cls.from_config(config.get("config", {}))
    except TypeError as e:
        raise ValueError(f"{name}: bad config {config.get('config')!r}: {e}") from None
