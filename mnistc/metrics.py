"""Metrics with Keras 3 names: standalone objects (`update_state`, `result`, `reset_state`, and a call
that does both), their function forms, and the metrics compile() has computed in C.

Standalone metrics run in NumPy (float64 accumulators, results as float32 like Keras's variables).
Inside fit and evaluate, C sums the metrics that are means of per-sample values (the accuracies,
top-k accuracies, mean squared and absolute error; up to MAX_METRICS of them per model) along with
the loss; "accuracy" is resolved by Keras's shape rules.

Example:
    train_loss = mnistc.metrics.Mean(name="train_loss")
    train_loss(loss)                      # update with a batch's loss, return the running mean
    print(f"{train_loss.result():.4f}"); train_loss.reset_state()
"""
import numpy as np

from mnistc import _C, _public
from mnistc._tensor import as_tensor

__getattr__, __dir__ = _public.hooks(__name__)

# C codes of the metrics compile() runs inside the batch loops
NONE, SPARSE_CATEGORICAL, CATEGORICAL, BINARY = (_C.METRIC_NONE, _C.METRIC_SPARSE_CATEGORICAL,
                                                 _C.METRIC_CATEGORICAL, _C.METRIC_BINARY)
SPARSE_TOP_K, TOP_K, MSE_CODE, MAE_CODE = _C.METRIC_SPARSE_TOP_K, _C.METRIC_TOP_K, _C.METRIC_MSE, _C.METRIC_MAE
MAX_METRICS = _C.MAX_METRICS
NEG_INF = -1e10  # keras/src/metrics/metrics_utils.py: the "below every threshold" value of top_k


def _array(x, name):
    a = np.asarray(x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{name}: expected numbers (an array, a list or a scalar), got {type(x).__name__}")
    return a.astype(np.float64)


def _same_rank(x1, x2, expand_rank_1=True):
    """Keras's squeeze_or_expand_to_same_rank: reconcile ranks that differ by a trailing 1."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    elif x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def _float32(a):
    return as_tensor(np.asarray(a, np.float64).astype(np.float32))


# --- function forms: per-sample values, float32 ---

def accuracy(y_true, y_pred):
    """1.0 where y_true == y_pred (elementwise), else 0.0."""
    y_true, y_pred = _same_rank(_array(y_true, "y_true"), _array(y_pred, "y_pred"))
    return _float32(y_true == y_pred)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where (y_pred > threshold) equals y_true, elementwise."""
    y_true, y_pred = _same_rank(_array(y_true, "y_true"), _array(y_pred, "y_pred"))
    return _float32(y_true == (y_pred > threshold))


def categorical_accuracy(y_true, y_pred):
    """1.0 per sample where argmax(y_true) == argmax(y_pred) (one-hot targets)."""
    y_true, y_pred = _array(y_true, "y_true"), _array(y_pred, "y_pred")
    return _float32(np.argmax(y_true, -1) == np.argmax(y_pred, -1))


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 per sample where the integer label y_true == argmax(y_pred); a trailing 1 in y_true is squeezed."""
    y_true, y_pred = _array(y_true, "y_true"), _array(y_pred, "y_pred")
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    matches = y_true == np.argmax(y_pred, -1)
    if matches.ndim > 1 and matches.shape[-1] == 1:
        matches = matches[..., 0]
    return _float32(matches)


def _in_top_k(labels, y_pred, k):
    # as Keras's in_top_k: the label's score is at least the k-th largest (ties count as inside)
    y_pred = y_pred.reshape(-1, y_pred.shape[-1])
    labels = labels.reshape(-1).astype(np.int64)
    if np.any((labels < 0) | (labels >= y_pred.shape[-1])):
        raise ValueError(f"labels must be in [0, {y_pred.shape[-1]}), got {labels.min()}..{labels.max()}")
    kth = -np.sort(-y_pred, axis=-1)[:, min(k, y_pred.shape[-1]) - 1]
    return y_pred[np.arange(len(labels)), labels] >= kth


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 per sample where argmax(y_true) is among the k highest scores of y_pred."""
    y_true, y_pred = _array(y_true, "y_true"), _array(y_pred, "y_pred")
    labels = np.argmax(y_true, -1)
    return _float32(_in_top_k(labels, y_pred, k).reshape(labels.shape))


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 per sample where the integer label y_true is among the k highest scores of y_pred."""
    y_true, y_pred = _array(y_true, "y_true"), _array(y_pred, "y_pred")
    return _float32(_in_top_k(y_true, y_pred, k).reshape(y_true.shape if y_true.ndim > 1 else -1))


def mean_squared_error(y_true, y_pred):
    """mean((y_true - y_pred)^2) over the last axis."""
    y_true, y_pred = _same_rank(_array(y_true, "y_true"), _array(y_pred, "y_pred"))
    return _float32(np.mean(np.square(y_true - y_pred), axis=-1))


def mean_absolute_error(y_true, y_pred):
    """mean(|y_true - y_pred|) over the last axis."""
    y_true, y_pred = _same_rank(_array(y_true, "y_true"), _array(y_pred, "y_pred"))
    return _float32(np.mean(np.abs(y_true - y_pred), axis=-1))


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


# --- metric objects ---

class Metric:
    """Base class: state, `update_state(...)`, `result()`, `reset_state()`; calling the metric
    updates it and returns the result. `name` is the key in logs and History. `code` is the C metric
    compile() runs inside fit (NONE for metrics computed only standalone)."""

    code = NONE
    default_name = None

    def __init__(self, name=None, dtype=None):
        self.name = name or self.default_name
        self.dtype = dtype or "float32"
        self.reset_state()

    def reset_state(self):
        pass

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


def _samplewise(values, sample_weight, reduce):
    """Keras's reduce_to_samplewise_values: weighted values reduced to one per sample, and the weights."""
    if sample_weight is not None:
        sample_weight = _array(sample_weight, "sample_weight")
        values, sample_weight = _same_rank(values, sample_weight)
        if values.ndim > sample_weight.ndim:
            values = reduce(values, axis=tuple(range(sample_weight.ndim, values.ndim)))
        try:
            sample_weight = np.broadcast_to(sample_weight, values.shape)
        except ValueError:
            raise ValueError(f"sample_weight of shape {sample_weight.shape} does not broadcast to the values' "
                             f"shape {values.shape}") from None
        values = values * sample_weight
        if sample_weight.ndim > 1:
            sample_weight = reduce(sample_weight, axis=tuple(range(1, sample_weight.ndim)))
    if values.ndim > 1:
        values = reduce(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


class Sum(Metric):
    """The (weighted) sum of every value seen."""

    default_name = "sum"

    def reset_state(self):
        self.total = 0.0

    def update_state(self, values, sample_weight=None):
        values, _ = _samplewise(_array(values, "values"), sample_weight, np.sum)
        self.total += float(np.sum(values))

    def result(self):
        return _float32(self.total)


class Mean(Metric):
    """The (weighted) mean of every value seen: total / count, 0 before any update.

    Example:
        m = mnistc.metrics.Mean(name="train_loss")
        m([1, 3, 5, 7]); m.result()   # 4.0
    """

    default_name = "mean"

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None):
        values, sample_weight = _samplewise(_array(values, "values"), sample_weight, np.mean)
        self.total += float(np.sum(values))
        if sample_weight is not None:
            self.count += float(np.sum(sample_weight))
        else:
            self.count += values.shape[0] if values.ndim >= 1 else 1

    def result(self):
        return _float32(self.total / self.count if self.count else 0.0)


class MeanMetricWrapper(Mean):
    """The mean of `fn(y_true, y_pred, **kwargs)` over every sample seen."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        self._fn, self._fn_kwargs = fn, kwargs
        super().__init__(name=name or getattr(fn, "__name__", None), dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = np.asarray(self._fn(y_true, y_pred, **self._fn_kwargs), np.float64)
        super().update_state(values, sample_weight=sample_weight)


class Accuracy(MeanMetricWrapper):
    """How often y_pred equals y_true exactly (elementwise; y_pred holds labels, not scores)."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name, dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_pred) equals the integer label y_true."""

    code = SPARSE_CATEGORICAL

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name, dtype)


class CategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_pred) equals argmax(y_true) (one-hot targets)."""

    code = CATEGORICAL

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name, dtype)


class BinaryAccuracy(MeanMetricWrapper):
    """How often (y_pred > threshold) equals the 0/1 target. compile() computes it at threshold 0.5."""

    code = BINARY

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
                or not 0 <= threshold <= 1:
            raise ValueError(f"BinaryAccuracy: `threshold` must be a number in [0, 1]. "
                             f"Received: threshold={threshold!r}")
        super().__init__(binary_accuracy, name, dtype, threshold=float(threshold))
        self.threshold = float(threshold)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often argmax(y_true) is among the k highest scores (one-hot targets)."""

    code = TOP_K

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(top_k_categorical_accuracy, name, dtype, k=_positive_k(k))
        self.k = k

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """How often the integer label y_true is among the k highest scores."""

    code = SPARSE_TOP_K

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
        MeanMetricWrapper.__init__(self, sparse_top_k_categorical_accuracy, name, dtype, k=_positive_k(k))
        self.k = k


def _positive_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive integer. Received: k={k!r}")
    return int(k)


class MeanSquaredError(MeanMetricWrapper):
    """The mean over samples of mean((y_true - y_pred)^2) over the last axis."""

    code = MSE_CODE

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name, dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    """The mean over samples of mean(|y_true - y_pred|) over the last axis."""

    code = MAE_CODE

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name, dtype)


class _Confusion(Metric):
    """Weighted true/false positive/negative counts at one or more thresholds (Keras's
    update_confusion_matrix_variables): every element of y_pred is one decision, positive when above
    the threshold; with top_k only each row's k highest scores can be positive; with class_id only
    that column counts."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        cls = type(self).__name__
        if top_k is not None:
            top_k = _positive_k(top_k)
        default = 0.5 if top_k is None else NEG_INF
        self.init_thresholds = thresholds
        self.thresholds = [default] if thresholds is None else \
            [float(t) for t in (thresholds if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds])]
        if thresholds is not None and not all(0 <= t <= 1 for t in self.thresholds):
            raise ValueError(f"{cls}: threshold values must be in [0, 1]. Received: thresholds={thresholds!r}")
        self.top_k, self.class_id = top_k, class_id
        super().__init__(name, dtype)

    def reset_state(self):
        n = len(self.thresholds)
        self.true_positives, self.false_positives, self.false_negatives = (np.zeros(n) for _ in range(3))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _array(y_true, "y_true"), _array(y_pred, "y_pred")
        y_pred, y_true = _same_rank(y_pred, y_true)
        if sample_weight is not None:
            _, sample_weight = _same_rank(y_true, _array(sample_weight, "sample_weight")[..., None],
                                          expand_rank_1=False)
        if self.top_k is not None:
            order = np.argsort(-y_pred, axis=-1, kind="stable")[..., :self.top_k]
            keep = np.zeros(y_pred.shape, bool)
            np.put_along_axis(keep, order, True, axis=-1)
            y_pred = np.where(keep, y_pred, NEG_INF)
        if self.class_id is not None:
            if y_pred.ndim == 1:
                raise ValueError("When class_id is provided, y_pred must be a 2D array with shape (num_samples, "
                                 f"num_classes), found shape: {y_pred.shape}")
            y_true, y_pred = y_true[..., self.class_id, None], y_pred[..., self.class_id, None]
        if y_true.size != y_pred.size:
            raise ValueError(f"{type(self).__name__}: y_true of shape {y_true.shape} does not match y_pred of "
                             f"shape {y_pred.shape}")
        label = y_true.reshape(1, -1).astype(bool)
        pred = y_pred.reshape(1, -1) > np.asarray(self.thresholds)[:, None]
        w = 1.0 if sample_weight is None else np.broadcast_to(sample_weight, y_pred.shape).reshape(1, -1)
        self.true_positives += np.sum((label & pred) * w, axis=1)
        self.false_positives += np.sum((~label & pred) * w, axis=1)
        self.false_negatives += np.sum((label & ~pred) * w, axis=1)

    def _ratio(self, den):
        r = np.divide(self.true_positives, den, out=np.zeros_like(den), where=den != 0)
        return _float32(r[0] if len(self.thresholds) == 1 else r)

    def get_config(self):
        return {"thresholds": self.init_thresholds, "top_k": self.top_k, "class_id": self.class_id,
                **super().get_config()}


class Precision(_Confusion):
    """true_positives / (true_positives + false_positives), 0 when nothing was predicted positive."""

    default_name = "precision"

    def result(self):
        return self._ratio(self.true_positives + self.false_positives)


class Recall(_Confusion):
    """true_positives / (true_positives + false_negatives), 0 when there was no positive target."""

    default_name = "recall"

    def result(self):
        return self._ratio(self.true_positives + self.false_negatives)


class _Auto(Metric):
    """'accuracy'/'acc' in compile(): resolved against the shapes of the targets and the output."""

    default_name = "accuracy"


_BY_NAME = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
}
_BY_CLASS = {c.__name__: c for c in _BY_NAME.values()}
_BY_FUNCTION = {sparse_categorical_accuracy: SparseCategoricalAccuracy, categorical_accuracy: CategoricalAccuracy,
                binary_accuracy: BinaryAccuracy, sparse_top_k_categorical_accuracy: SparseTopKCategoricalAccuracy,
                top_k_categorical_accuracy: TopKCategoricalAccuracy, mean_squared_error: MeanSquaredError,
                mean_absolute_error: MeanAbsoluteError}
SUPPORTED = ("accuracy", "acc", *_BY_NAME)


def _unsupported(identifier):
    return ValueError(f"Unsupported metric {identifier!r}: compile() computes {', '.join(SUPPORTED)} inside fit "
                      "(as names, functions, classes or objects; the loss is always reported as 'loss'). Other "
                      "metrics (Mean, Precision, Recall, ...) work standalone: update_state(y_true, y_pred), then "
                      "result().")


def get(identifier):
    """A metric compile() can compute, from a name, a function, a class, a config dict or an instance.
    A metric given by name or function is named as Keras names it: 'mse' logs as 'mse', the function
    mean_squared_error as 'mean_squared_error'.

    Raises:
        ValueError: a metric mnistc does not compute inside fit.
    """
    if isinstance(identifier, Metric):
        if identifier.code == NONE and not isinstance(identifier, _Auto):
            raise _unsupported(identifier)
        if isinstance(identifier, BinaryAccuracy) and identifier.threshold != 0.5:
            raise ValueError(f"compile() computes binary accuracy at threshold 0.5; received "
                             f"BinaryAccuracy(threshold={identifier.threshold}). Use the metric standalone "
                             "(update_state on model.predict's output) for another threshold.")
        return identifier
    if isinstance(identifier, type) and identifier in _BY_CLASS.values():
        return identifier()
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return _Auto(identifier)
        cls = _BY_NAME.get(identifier) or _BY_CLASS.get(identifier)
        if cls is not None:
            metric = cls()
            metric.name = identifier
            return metric
    if callable(identifier):
        cls = next((c for fn, c in _BY_FUNCTION.items() if fn is identifier), None)
        if cls is not None:
            metric = cls()
            metric.name = identifier.__name__
            return metric
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        return get(_BY_CLASS[identifier["class_name"]](**identifier.get("config", {})))
    raise _unsupported(identifier)


def resolve(metric, y_ndim, y_last, out_units):
    """(C code, k) for `metric` given the targets' rank and last dim and the output's units (Keras
    rules for "accuracy"); k is the top-k metrics' k, else 0."""
    if not isinstance(metric, _Auto):
        return metric.code, getattr(metric, "k", 0)
    if out_units == 1:
        return BINARY, 0
    if y_ndim < 2 or (y_last == 1 and out_units > 1):
        return SPARSE_CATEGORICAL, 0
    return CATEGORICAL, 0


def serialize(metric):
    if isinstance(metric, _Auto):
        return metric.name
    return {"class_name": type(metric).__name__, "config": metric.get_config()}
