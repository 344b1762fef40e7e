"""Weight regularizers with Keras 3's names, defaults and configs: L1, L2, L1L2.

A layer's `kernel_regularizer` / `bias_regularizer` (Dense, Conv2D) or `gamma_regularizer` /
`beta_regularizer` (BatchNormalization) adds l1 * sum(|w|) + l2 * sum(w^2) of that weight to the
loss fit minimises and reports, and to evaluate's loss, while the weight is trainable. The C core
computes the penalties and their gradients; here they are only described (the factors) and, for
`model.losses`, evaluated. Keras's OrthogonalRegularizer, custom regularizer functions and
`activity_regularizer` are not supported (a clear error says so).

Example:
    layers.Dense(128, activation="relu", kernel_regularizer=regularizers.l2(1e-4))
"""
import math

import numpy as np

from mnistc import _public

_SUPPORTED = ("L1, L2 and L1L2 (regularizers.l1(0.01), regularizers.l2(0.01), regularizers.L1L2(l1=..., l2=...), "
              "or the strings 'l1', 'l2', 'l1l2')")


def _factor(value, name, default):
    """Keras's validate_float_arg: a finite number >= 0 (None takes the default)."""
    if value is None:
        value = default
    ok = isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"Invalid value for argument {name}: expected a non-negative float. "
                         f"Received: {name}={value!r}")
    return float(value)


class Regularizer:
    """Base class of the regularizers; on its own it adds nothing (a penalty of 0).

    Example:
        reg = mnistc.regularizers.L2(0.01)
        reg(np.ones((5, 5), np.float32))   # 0.25
    """

    l1 = 0.0
    l2 = 0.0

    def __call__(self, x):
        """The penalty of array x as a float32 scalar: l1 * sum(|x|) + l2 * sum(x^2) (sums in float64)."""
        x = np.asarray(x, np.float64)
        total = 0.0
        if self.l1:
            total += self.l1 * float(np.sum(np.abs(x)))
        if self.l2:
            total += self.l2 * float(np.sum(np.square(x)))
        return np.float32(total)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """Both penalties: l1 * sum(|w|) + l2 * sum(w^2). Defaults 0.0 (Keras: `L1L2(l2=0.1)` has no l1 part).

    Example:
        layers.Dense(64, kernel_regularizer=mnistc.regularizers.L1L2(l1=1e-5, l2=1e-4))
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1", 0.0)
        self.l2 = _factor(l2, "l2", 0.0)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """l1 * sum(|w|); `'l1'` as a string means L1(0.01).

    Example:
        layers.Dense(64, kernel_regularizer=mnistc.regularizers.l1(1e-5))
    """

    def __init__(self, l1=0.01):
        self.l1 = _factor(l1, "l1", 0.01)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(w^2); `'l2'` as a string means L2(0.01). Its gradient is 2 * l2 * w.

    Example:
        layers.Dense(64, kernel_regularizer=mnistc.regularizers.l2(1e-4))
    """

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2", 0.01)

    def get_config(self):
        return {"l2": self.l2}


# Keras 3 exports the classes under their lower-case names too (so l1_l2() defaults to 0.0, 0.0).
l1, l2, l1_l2 = L1, L2, L1L2

_CLASSES = (Regularizer, L1, L2, L1L2)
_BY_NAME = {"regularizer": Regularizer, "l1": L1, "l2": L2, "l1l2": L1L2,
            **{cls.__name__: cls for cls in _CLASSES}}


def _unsupported(identifier, why=""):
    return ValueError(f"Could not interpret regularizer identifier: {identifier!r}{why}. mnistc computes weight "
                      f"penalties in its C core and supports {_SUPPORTED}.")


def get(identifier):
    """A Regularizer from None (None), a name ('l2'), a config dict, a class or an instance, as Keras's
    `regularizers.get`.

    Raises:
        ValueError: an unknown name, Keras's OrthogonalRegularizer, or a regularizer mnistc cannot
        compute in C (a custom function or subclass).
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier == "l1_l2":   # Keras 3 does not take this string either; the class does
            raise _unsupported(identifier, " (use regularizers.L1L2(l1=0.01, l2=0.01))")
        if identifier in ("orthogonal_regularizer", "OrthogonalRegularizer"):
            raise _unsupported(identifier, " (OrthogonalRegularizer is not supported)")
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise _unsupported(identifier)
        return cls()
    if isinstance(identifier, type) and identifier in _CLASSES:
        return identifier()
    if type(identifier) in _CLASSES:
        return identifier
    raise _unsupported(identifier, " (custom regularizers cannot run in the C core)")


def serialize(regularizer):
    """{'class_name': ..., 'config': ...} of a regularizer; None for None."""
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


def deserialize(config, custom_objects=None):
    """The regularizer of a serialize() dict (Keras's, with 'module' and 'registered_name', too).

    Raises:
        ValueError: a class mnistc does not have, or a bad config.
    """
    name = config.get("class_name") if isinstance(config, dict) else None
    cls = {c.__name__: c for c in _CLASSES}.get(name)
    inner = config.get("config", {}) if isinstance(config, dict) else None
    if cls is None or not isinstance(inner, dict):
        raise _unsupported(config)
    try:
        return cls.from_config(inner)
    except TypeError as e:
        raise ValueError(f"Bad {name} config {inner!r}: {e}") from None


def _c_factors(regularizer):
    """(l1, l2) as the C core reads them: float32 values, as Keras casts the factors to the weights'
    dtype; (0.0, 0.0) for None."""
    if regularizer is None:
        return 0.0, 0.0
    return float(np.float32(regularizer.l1)), float(np.float32(regularizer.l2))


__getattr__, __dir__ = _public.hooks(__name__)
