"""The part of TensorFlow's tf.nn that tutorial code applies to model outputs: softmax and
log_softmax on arrays, returning mnistc's tensor type (`.numpy()` works as in TensorFlow).

    import mnistc as tf
    tf.nn.softmax(model(x[:1])).numpy()     # probabilities from logits
"""
import numpy as np

from mnistc import _public
from mnistc._tensor import as_tensor

__getattr__, __dir__ = _public.hooks(__name__)


def _logits(logits, axis, fn):
    a = np.asarray(logits.numpy() if hasattr(logits, "numpy") and not isinstance(logits, np.ndarray) else logits)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{fn}: expected floating-point logits (float16, float32 or float64), got {a.dtype}; "
                        "convert with .astype('float32')")
    if a.ndim == 0:
        raise ValueError(f"{fn}: expected logits with at least one axis, got a scalar")
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"{fn}: axis {axis} is out of range for logits of shape {a.shape}")
    return a


def log_softmax(logits, axis=-1):
    """logits - logsumexp(logits) along `axis`, computed in float64 with the maximum subtracted,
    returned in the logits' dtype."""
    a = _logits(logits, axis, "log_softmax")
    z = a.astype(np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    return as_tensor((z - np.log(np.exp(z).sum(axis=axis, keepdims=True))).astype(a.dtype))


def softmax(logits, axis=-1):
    """exp(logits) / sum(exp(logits)) along `axis` (each slice sums to 1), computed in float64 with the
    maximum subtracted (no overflow for large logits), returned in the logits' dtype."""
    a = _logits(logits, axis, "softmax")
    z = a.astype(np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return as_tensor((e / e.sum(axis=axis, keepdims=True)).astype(a.dtype))
