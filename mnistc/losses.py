"""Loss classes and functions with Keras names, defaults and reduction ("sum_over_batch_size").

Training computes losses in C; each class carries its C code. Calling a loss object on arrays
computes the same value in NumPy, for inspection.
"""
import numpy as np

from mnistc import _public
from mnistc._tensor import as_tensor

__getattr__, __dir__ = _public.hooks(__name__)

MSE, MAE, BCE, CCE, SCCE = 0, 1, 2, 3, 4
_EPS = 1e-7


class Loss:
    """Base class. `loss(y_true, y_pred)` returns the batch-mean loss."""

    kind = None

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        if reduction not in ("sum_over_batch_size", "mean", "auto"):
            raise ValueError(
                f"{type(self).__name__}: reduction={reduction!r} is not supported; "
                "mnistc reduces with 'sum_over_batch_size' (the Keras default)")
        self.name = name or _snake(type(self).__name__)
        self.reduction = "sum_over_batch_size"
        self.from_logits = False
        self.label_smoothing = 0.0

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        obj = cls.__new__(cls)
        Loss.__init__(obj, config.pop("name", None))
        obj.from_logits = bool(config.get("from_logits", False))
        obj.label_smoothing = float(config.get("label_smoothing", 0.0))
        return obj

    def c_spec(self):
        """(kind, from_logits, label_smoothing) for the C core."""
        return (self.kind, int(self.from_logits), float(self.label_smoothing))

    def __call__(self, y_true, y_pred):
        y_pred = np.asarray(y_pred, np.float64)
        per_sample = self._per_sample(np.asarray(y_true), y_pred)
        return as_tensor(np.float32(per_sample.mean() if per_sample.size else 0.0))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} from_logits={self.from_logits}>"


def _snake(name):
    out = [name[0].lower()]
    for ch in name[1:]:
        out.append("_" + ch.lower() if ch.isupper() else ch)
    return "".join(out)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class MeanSquaredError(Loss):
    kind = MSE

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(name, reduction)

    def _per_sample(self, y, p):
        y = y.astype(np.float64).reshape(p.shape)
        return ((y - p) ** 2).mean(axis=-1)


class MeanAbsoluteError(Loss):
    kind = MAE

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(name, reduction)

    def _per_sample(self, y, p):
        y = y.astype(np.float64).reshape(p.shape)
        return np.abs(y - p).mean(axis=-1)


class BinaryCrossentropy(Loss):
    kind = BCE

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy"):
        super().__init__(name, reduction)
        _check_axis(self, axis)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(self, label_smoothing)

    def _per_sample(self, y, p):
        y = y.astype(np.float64).reshape(p.shape)
        y = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            return (np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))).mean(axis=-1)
        p = np.clip(p, _EPS, 1 - _EPS)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=-1)


class CategoricalCrossentropy(Loss):
    kind = CCE

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy"):
        super().__init__(name, reduction)
        _check_axis(self, axis)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(self, label_smoothing)

    def _per_sample(self, y, p):
        y = y.astype(np.float64)
        if y.shape != p.shape:
            raise ValueError(
                f"CategoricalCrossentropy expects one-hot targets of the output's shape {p.shape}, "
                f"got {y.shape}; use to_categorical() or SparseCategoricalCrossentropy")
        y = y * (1 - self.label_smoothing) + self.label_smoothing / p.shape[-1]
        if self.from_logits:
            return -(y * _log_softmax(p)).sum(axis=-1)
        p = np.clip(p / p.sum(axis=-1, keepdims=True), _EPS, 1 - _EPS)
        return -(y * np.log(p)).sum(axis=-1)


class SparseCategoricalCrossentropy(Loss):
    kind = SCCE

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name="sparse_categorical_crossentropy"):
        super().__init__(name, reduction)
        _check_axis(self, axis)
        if ignore_class is not None:
            raise ValueError("SparseCategoricalCrossentropy: ignore_class is not supported by mnistc")
        self.from_logits = bool(from_logits)

    def _per_sample(self, y, p):
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if self.from_logits:
            logp = _log_softmax(p)
        else:
            logp = np.log(np.clip(p / p.sum(axis=-1, keepdims=True), _EPS, 1 - _EPS))
        return -logp[np.arange(len(y)), y]


def _check_axis(loss, axis):
    if axis != -1:
        raise ValueError(f"{type(loss).__name__}: only axis=-1 is supported, got axis={axis}")


def _check_smoothing(loss, ls):
    ls = float(ls)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"{type(loss).__name__}: label_smoothing must be in [0, 1], got {ls}")
    return ls


def mean_squared_error(y_true, y_pred):
    return MeanSquaredError()(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return MeanAbsoluteError()(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False):
    return BinaryCrossentropy(from_logits=from_logits)(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    return CategoricalCrossentropy(from_logits=from_logits)(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    return SparseCategoricalCrossentropy(from_logits=from_logits)(y_true, y_pred)


mse = MSE_FN = mean_squared_error
mae = mean_absolute_error

_BY_NAME = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_BY_CLASS = {c.__name__: c for c in _BY_NAME.values()}
_BY_FUNCTION = {mean_squared_error: "mse", mean_absolute_error: "mae",
                binary_crossentropy: "binary_crossentropy",
                categorical_crossentropy: "categorical_crossentropy",
                sparse_categorical_crossentropy: "sparse_categorical_crossentropy"}


def get(identifier):
    """A Loss from a string ("sparse_categorical_crossentropy"), a function, a class, config or instance.

    Raises:
        ValueError: unknown identifier.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss) and identifier is not Loss:
        return identifier()
    if callable(identifier) and identifier in _BY_FUNCTION:
        identifier = _BY_FUNCTION[identifier]
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower()) or _BY_CLASS.get(identifier)
        if cls:
            loss = cls()
            loss.name = identifier if identifier in _BY_NAME else loss.name
            return loss
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return _BY_CLASS[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}. "
                     f"Expected one of: {', '.join(sorted(_BY_NAME))}, or a mnistc.losses.Loss.")


def serialize(loss):
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
