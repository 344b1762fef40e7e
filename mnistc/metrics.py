"""Accuracy metrics (counted in C) and Keras's rules for resolving "accuracy" from shapes."""
from mnistc import _public

__getattr__, __dir__ = _public.hooks(__name__)

NONE, SPARSE_CATEGORICAL, CATEGORICAL, BINARY = 0, 1, 2, 3


class Metric:
    """An accuracy metric; `name` is the key in logs and History."""

    code = NONE

    def __init__(self, name=None):
        self.name = name or self.default_name

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


class SparseCategoricalAccuracy(Metric):
    code, default_name = SPARSE_CATEGORICAL, "sparse_categorical_accuracy"


class CategoricalAccuracy(Metric):
    code, default_name = CATEGORICAL, "categorical_accuracy"


class BinaryAccuracy(Metric):
    code, default_name = BINARY, "binary_accuracy"

    def __init__(self, name=None, threshold=0.5):
        if threshold != 0.5:
            raise ValueError(f"BinaryAccuracy: only threshold=0.5 is supported, got {threshold}")
        super().__init__(name)


class _Auto(Metric):
    """'accuracy'/'acc': resolved against the shapes of the targets and the output."""

    default_name = "accuracy"


_BY_NAME = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
}
_BY_CLASS = {c.__name__: c for c in _BY_NAME.values()}
SUPPORTED = ("accuracy", "acc", *_BY_NAME)


def get(identifier):
    """A Metric from a name or an instance.

    Raises:
        ValueError: a metric mnistc does not compute.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and identifier in _BY_CLASS.values():
        return identifier()
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return _Auto(identifier)
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return _BY_CLASS[identifier["class_name"]](**identifier.get("config", {}))
    raise ValueError(f"Unsupported metric {identifier!r}: mnistc computes {', '.join(SUPPORTED)} "
                     "(the loss is always reported as 'loss').")


def resolve(metric, y_ndim, y_last, out_units):
    """C code for `metric` given the targets' rank and last dim and the output's units (Keras rules)."""
    if not isinstance(metric, _Auto):
        return metric.code
    if out_units == 1:
        return BINARY
    if y_ndim < 2 or (y_last == 1 and out_units > 1):
        return SPARSE_CATEGORICAL
    return CATEGORICAL


def serialize(metric):
    if isinstance(metric, _Auto):
        return metric.name
    return {"class_name": type(metric).__name__, "config": metric.get_config()}
