"""Optimizers with Keras 3 names, defaults and exact update rules (the updates run in C).

An optimizer keeps its state (slots such as Adam's m and v) for the trainable weights only, as flat
float32 arrays laid out segment after segment, plus `iterations` (and Nadam one optimizer-wide
value). It is built on the model's trainable weights at the first fit after compile. `learning_rate`
is a float or one of `schedules` (evaluated by C at every step).
"""
import math
import sys

import numpy as np

from mnistc import _public, schedules

__getattr__, __dir__ = _public.hooks(__name__)

# `from mnistc.optimizers.schedules import ExponentialDecay` works as it does with Keras
sys.modules[__name__ + ".schedules"] = schedules

SGD_KIND, ADAM_KIND, RMSPROP_KIND, ADAGRAD_KIND, ADAMAX_KIND, NADAM_KIND = range(6)


def _lr(cls, value):
    # Keras refuses ints here (Adam(1) is almost always a typo for Adam(1e-...)).
    if not isinstance(value, (float, np.floating)):
        raise ValueError(f"{cls}: argument `learning_rate` should be a float. "
                         f"Received: learning_rate={value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{cls}: learning_rate must be a finite number > 0. Received: learning_rate={value}")
    return value


def _unit(cls, name, value, closed=False):
    if isinstance(value, bool) or not isinstance(value, (float, int, np.floating, np.integer)):
        raise ValueError(f"{cls}: `{name}` must be a float. Received: {name}={value!r}")
    value = float(value)
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if not ok:
        rng = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{cls}: `{name}` must be in {rng}. Received: {name}={value}")
    return value


def _eps(cls, value):
    if isinstance(value, bool) or not isinstance(value, (float, int, np.floating, np.integer)):
        raise ValueError(f"{cls}: `epsilon` must be a float. Received: epsilon={value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{cls}: `epsilon` must be a finite number > 0. Received: epsilon={value}")
    return value


def _schedule(cls, value):
    # C evaluates the built-in formulas: a subclass with a __call__ of its own would not be followed
    if value.c_kind is None or type(value).__call__ not in {c.__call__ for c in schedules._BY_CLASS.values()}:
        raise ValueError(f"{cls}: the learning-rate schedule {type(value).__name__} cannot run inside mnistc's "
                         "C training loop, which evaluates the rate at every step. Use one of the built-in "
                         f"schedules ({', '.join(sorted(schedules._BY_CLASS))}), or "
                         "mnistc.callbacks.LearningRateScheduler to set the rate once per epoch.")
    return value


def _rate(cls, value):
    """A learning rate as an optimizer holds it: a float or a built-in schedule."""
    if isinstance(value, schedules.LearningRateSchedule):
        return _schedule(cls, value)
    if callable(value) and not isinstance(value, (float, np.floating)):
        raise ValueError(f"{cls}: a callable `learning_rate` cannot run inside mnistc's C training loop. "
                         "Pass a float, a schedule from mnistc.optimizers.schedules, or use "
                         "mnistc.callbacks.LearningRateScheduler to set the rate once per epoch.")
    return _lr(cls, value)


class LearningRate(float):
    """An optimizer's current learning rate: a float that also answers the calls Keras code makes
    on the learning-rate variable (`assign`, `numpy`)."""

    __slots__ = ("_optimizer",)

    def __new__(cls, value, optimizer):
        obj = super().__new__(cls, value)
        obj._optimizer = optimizer
        return obj

    def assign(self, value):
        """Set the optimizer's learning rate (as `optimizer.learning_rate = value`)."""
        self._optimizer.learning_rate = value

    def numpy(self):
        return np.float32(self)


class Optimizer:
    """Base class. Subclasses set `kind`, `_hyper()` and `_n_slots()` (and `_new_slots()` when a slot
    does not start at zeros)."""

    kind = None

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        cls = type(self).__name__
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        for arg, val in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                         ("global_clipnorm", global_clipnorm)):
            if val is not None:
                raise ValueError(f"{cls}: gradient clipping ({arg}) is not supported by mnistc")
        self._learning_rate = _rate(cls, learning_rate)
        if weight_decay is not None:
            weight_decay = float(weight_decay)
            if not math.isfinite(weight_decay) or weight_decay < 0:
                raise ValueError(f"{cls}: weight_decay must be a finite number >= 0. "
                                 f"Received: weight_decay={weight_decay}")
        self.weight_decay = weight_decay
        self.name = name or cls.lower()
        self._iterations = np.zeros(1, np.int64)
        self._slots = ()
        self._segments = None  # int64 (S, 2) [offset, length] the state was built for

    @property
    def learning_rate(self):
        """The learning rate of the next step: the float, or the schedule's value at `iterations`."""
        lr = self._learning_rate
        value = lr(self.iterations) if isinstance(lr, schedules.LearningRateSchedule) else lr
        return LearningRate(value, self)

    @learning_rate.setter
    def learning_rate(self, value):
        cls = type(self).__name__
        if isinstance(value, schedules.LearningRateSchedule):
            self._learning_rate = _schedule(cls, value)
            return
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                            "`learning_rate` constructor argument, hence its learning rate is not settable. If "
                            "you need the learning rate to be settable, you should instantiate the optimizer "
                            "with a float `learning_rate` argument.")
        self._learning_rate = _lr(cls, value)

    @property
    def iterations(self):
        """Number of optimizer steps taken (one per batch)."""
        return int(self._iterations[0])

    @property
    def variables(self):
        """The state as arrays: [iterations, learning_rate (unless a schedule gives it), *slots]."""
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            return [self._iterations, *self._slots]
        return [self._iterations, np.float32(self._learning_rate), *self._slots]

    def _n_slots(self):
        raise NotImplementedError

    def _hyper(self):
        raise NotImplementedError

    def _new_slots(self, n):
        return tuple(np.zeros(n, np.float32) for _ in range(self._n_slots()))

    def c_hyper(self):
        """float64 hyperparameter vector for the C core: 8 fixed entries (csrc/optim.h), then the
        schedule's parameters."""
        h = np.zeros(8, np.float64)
        h[0] = self.learning_rate
        h[1:7] = self._hyper()
        h[6] = self.weight_decay or 0.0
        lr = self._learning_rate
        if not isinstance(lr, schedules.LearningRateSchedule):
            return h
        h[7] = lr.c_kind
        return np.concatenate([h, np.asarray(lr.c_params(), np.float64)])

    def build(self, segments):
        """Create zeroed state for the trainable ranges `segments` (int64 (S, 2)).

        If the optimizer was built before on the same ranges its state is kept; on other ranges (the
        set of trainable weights changed and compile was called again with this instance) the state
        starts afresh.
        """
        segments = np.ascontiguousarray(segments, np.int64).reshape(-1, 2)
        if self._segments is not None and np.array_equal(self._segments, segments):
            return
        n = int(segments[:, 1].sum()) if len(segments) else 0
        self._slots = self._new_slots(n)
        self._segments = segments
        self._iterations[0] = 0

    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = schedules.serialize(lr)
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} learning_rate={self._learning_rate}>"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum. Keras defaults: lr 0.01."""

    kind = SGD_KIND

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 name="SGD", **kwargs):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (float, np.floating)) \
                or not 0.0 <= float(momentum) <= 1.0:
            raise ValueError("`momentum` must be a float between [0, 1]. "
                             f"Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _n_slots(self):
        return 1 if self.momentum > 0 else 0

    def _hyper(self):
        return [self.momentum, 0.0, 0.0, 0.0, float(self.nesterov), 0.0]

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with Keras's update (epsilon added to sqrt(v) without bias correction).

    Example:
        opt = mnistc.optimizers.Adam(learning_rate=1e-3)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    """

    kind = ADAM_KIND

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, name="adam", **kwargs):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        cls = type(self).__name__
        self.beta_1 = _unit(cls, "beta_1", beta_1)
        self.beta_2 = _unit(cls, "beta_2", beta_2)
        self.epsilon = _eps(cls, epsilon)
        self.amsgrad = bool(amsgrad)

    def _n_slots(self):
        return 3 if self.amsgrad else 2

    def _hyper(self):
        return [self.beta_1, self.beta_2, self.epsilon, 0.0, float(self.amsgrad), 0.0]

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras default weight_decay=0.004)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, name="adamw", **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay,
                         name=name, **kwargs)


class RMSprop(Optimizer):
    """RMSprop as in Keras 3 (rho=0.9, momentum=0, epsilon=1e-7, centered=False)."""

    kind = RMSPROP_KIND

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, name="rmsprop", **kwargs):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        cls = type(self).__name__
        self.rho = _unit(cls, "rho", rho)
        self.momentum = _unit(cls, "momentum", momentum)
        self.epsilon = _eps(cls, epsilon)
        self.centered = bool(centered)

    def _n_slots(self):
        return 1 + (self.momentum > 0) + self.centered

    def _hyper(self):
        return [self.rho, 0.0, self.epsilon, self.momentum, float(self.centered), 0.0]

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad as in Keras 3: accumulator += g^2; w -= lr * g / sqrt(accumulator + epsilon).

    Example:
        opt = mnistc.optimizers.Adagrad(learning_rate=0.01)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    """

    kind = ADAGRAD_KIND

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 name="adagrad", **kwargs):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        cls = type(self).__name__
        value = initial_accumulator_value
        if isinstance(value, bool) or not isinstance(value, (float, int, np.floating, np.integer)) \
                or not math.isfinite(float(value)) or value < 0:
            raise ValueError(f"{cls}: `initial_accumulator_value` must be a finite number >= 0. "
                             f"Received: initial_accumulator_value={value!r}")
        self.initial_accumulator_value = float(value)
        self.epsilon = _eps(cls, epsilon)

    def _n_slots(self):
        return 1

    def _new_slots(self, n):
        return (np.full(n, self.initial_accumulator_value, np.float32),)

    def _hyper(self):
        return [0.0, 0.0, self.epsilon, 0.0, 0.0, 0.0]

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm) as in Keras 3: m += (g - m)(1 - beta_1);
    u = max(beta_2 u, |g|); w -= lr m / ((1 - beta_1^t)(u + epsilon))."""

    kind = ADAMAX_KIND

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 name="adamax", **kwargs):
        super().__init__(learning_rate, weight_decay, name=name, **kwargs)
        cls = type(self).__name__
        self.beta_1 = _unit(cls, "beta_1", beta_1)
        self.beta_2 = _unit(cls, "beta_2", beta_2, closed=True)
        self.epsilon = _eps(cls, epsilon)

    def _n_slots(self):
        return 2

    def _hyper(self):
        return [self.beta_1, self.beta_2, self.epsilon, 0.0, 0.0, 0.0]

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Nadam(Adamax):
    """Nadam (Adam with Nesterov momentum) with Keras 3's momentum schedule
    u_t = beta_1 (1 - 0.5 * 0.96^t). Its state: m, v per weight and the running product of the u_t
    (one value; saved with the rest)."""

    kind = NADAM_KIND

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 name="nadam", **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, name=name, **kwargs)
        self.beta_2 = _unit(type(self).__name__, "beta_2", beta_2)

    def _n_slots(self):
        return 3

    def _new_slots(self, n):
        return (np.zeros(n, np.float32), np.zeros(n, np.float32), np.ones(1, np.float32))


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
            "adamax": Adamax, "nadam": Nadam}
_BY_CLASS = {c.__name__: c for c in _BY_NAME.values()}


def get(identifier):
    """An Optimizer from a name ("adam"), a config dict or an instance.

    Raises:
        ValueError: "Could not interpret optimizer identifier".
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return _BY_CLASS[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}. "
                     f"Expected one of: {', '.join(sorted(_BY_NAME))}, or a mnistc.optimizers.Optimizer.")


def serialize(opt):
    return {"class_name": type(opt).__name__, "config": opt.get_config()}
