"""Checks and one-time conversions of user arrays before they cross into C.

Nothing here modifies the caller's arrays; a conversion (float64 -> float32, Fortran order, byte
order) makes one copy per call, never one per batch. uint8 images go to C as they are.
"""
import math
import warnings

import numpy as np

from mnistc import _C, losses


def _as_array(a, what):
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{what}: masked arrays are not supported; fill the masked values first "
                        "(a.filled(...))")
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{what}: expected a NumPy array or nested lists of numbers, got "
                            f"{type(a).__name__} ({e})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be a real numeric array, got dtype {a.dtype}")
    return np.asarray(a)


def adapt_input(x, input_shape, what="x"):
    """x as an (N, d) C-contiguous float32 or uint8 array, checked against the model's input shape.
    The values are not looked at here: `scan_input` does that, once per call.

    Keras's rank adaptation applies: a trailing extra dim of size 1 is squeezed, and a missing
    trailing dim is added when the input's last dim is 1.
    """
    want = tuple(input_shape)
    if (type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 2 and x.shape[1:] == want
            and x.shape[0] and x.flags.c_contiguous and x.flags.aligned):
        # already what C takes (the usual (N, 784) float32 batch): skip the general path's copies
        # and checks, a third of a one-image predict's time in Python
        return x
    x = _as_array(x, what)
    if x.dtype.kind == "b":
        raise TypeError(f"{what} must be a real numeric array, got dtype bool")
    got = x.shape[1:]
    if x.ndim == len(want) + 2 and x.shape[-1] == 1 and got[:-1] == want:
        x = x.reshape(x.shape[:-1])
    elif x.ndim == len(want) and want[-1] == 1 and got == want[:-1]:
        x = x.reshape(x.shape + (1,))
    if x.ndim == 0 or x.shape[1:] != want:
        shown = (None, *x.shape[1:]) if x.ndim else ()
        raise ValueError(f"Invalid input shape for {what}: expected shape {(None, *want)}, but input has "
                         f"incompatible shape {shown}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} contains 0 samples; expected at least 1 of shape {want}")
    d = math.prod(want)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x).reshape(x.shape[0], d)
    return np.require(x, np.float32, ["C", "A"]).reshape(x.shape[0], d)  # copies only if needed


def scan_input(x, what="x", scale=False):
    """The one pass over an adapted x's values: ValueError naming the NaN and Inf counts unless x is
    all finite. With `scale`, returns whether x looks like raw intensities (non-negative with values
    above 1: 0..255 pixels, say; standardised data, with negative values, does not count); else
    False. uint8 x is always finite, so it is read only for `scale`."""
    if x.dtype == np.uint8 and not scale:
        return False
    n_nan, n_inf, lo, hi = _C.scan_floats(x)
    if n_nan or n_inf:
        raise ValueError(f"{what} contains {n_nan} NaN and {n_inf} infinite value(s); clean or impute them "
                         "before passing the data (np.isfinite(x).all() must hold)")
    return bool(scale and lo >= 0 and hi > 1)


def check_cardinality(x, y):
    if len(x) != len(y):
        raise ValueError("Data cardinality is ambiguous. Make sure all arrays contain the same number of "
                         f"samples.'x' sizes: {len(x)}\n'y' sizes: {len(y)}\n")


def adapt_target(y, loss, out_units, what="y"):
    """Targets in the form the C loss wants: int32 (N,) class ids for SCCE, float32 (N, units) otherwise."""
    y = _as_array(y, what)
    if y.ndim == 0:
        raise ValueError(f"{what} must be an array with one entry per sample, got a scalar")
    if loss.kind == losses.SCCE:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.ndim != 1:
            hint = ""
            if y.ndim == 2 and y.shape[1] == out_units:
                hint = (" These look like one-hot targets: use loss='categorical_crossentropy', or pass "
                        "integer labels (np.argmax(y, axis=1)).")
            raise ValueError(f"SparseCategoricalCrossentropy expects integer class ids of shape (samples,), "
                             f"got {what} of shape {y.shape}.{hint}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.floor(y)):
                raise ValueError(f"{what}: SparseCategoricalCrossentropy expects integer class ids, got "
                                 f"non-integer values of dtype {y.dtype}")
        if len(y):
            lo, hi = y.min(), y.max()
            if lo < 0 or hi >= out_units:
                bad = int(np.flatnonzero((y < 0) | (y >= out_units))[0])
                raise ValueError(f"{what}: labels must be in [0, {out_units}) for a model with {out_units} "
                                 f"outputs, found {y[bad].item()!r} at index {bad}")
        return np.require(y, np.int32, ["C", "A"])
    if loss.kind == losses.CCE:
        if out_units > 1 and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
            raise ValueError(
                f"Arguments `target` and `output` must have the same shape. Received: "
                f"target.shape={(None, *y.shape[1:])}, output.shape={(None, out_units)}. "
                f"CategoricalCrossentropy expects one-hot targets of shape (samples, {out_units}): "
                f"use loss='sparse_categorical_crossentropy' (SparseCategoricalCrossentropy) for integer "
                f"labels, or one-hot encode them with mnistc.utils.to_categorical(y, {out_units}).")
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != out_units:
        raise ValueError(f"Arguments `target` and `output` must have the same shape. Received: "
                         f"target.shape={(None, *y.shape[1:])}, output.shape={(None, out_units)}")
    y = np.require(y, np.float32, ["C", "A"])
    n_nan, n_inf, lo, hi = _C.scan_floats(y) if y.size else (0, 0, 0.0, 0.0)
    if n_nan or n_inf:
        raise ValueError(f"{what} contains {n_nan} NaN and {n_inf} infinite value(s)")
    if loss.kind == losses.BCE and (lo < 0 or hi > 1):
        raise ValueError(f"{what}: binary_crossentropy targets must be in [0, 1], found values in "
                         f"[{lo:g}, {hi:g}]. For several classes use sparse_categorical_crossentropy with "
                         f"Dense(n_classes, activation='softmax').")
    return y


def adapt_sample_weight(sample_weight, n, what="sample_weight"):
    """sample_weight as C takes it: float32 (n,) finite weights of the per-sample losses; (n, 1) is
    squeezed."""
    w = _as_array(sample_weight, what)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w.reshape(-1)
    if w.ndim != 1:
        raise ValueError(f"`{what}` must hold one weight per sample, shape ({n},), got shape {w.shape}")
    if len(w) != n:
        raise ValueError("Data cardinality is ambiguous. Make sure all arrays contain the same number of "
                         f"samples.'x' sizes: {n}\n'{what}' sizes: {len(w)}\n")
    w = np.require(w, np.float32, ["C", "A"])
    n_nan, n_inf, _, _ = _C.scan_floats(w) if w.size else (0, 0, 0.0, 0.0)
    if n_nan or n_inf:
        raise ValueError(f"`{what}` contains {n_nan} NaN and {n_inf} infinite value(s); expected finite weights")
    return w


def class_weight_to_sample_weights(y, class_weight, out_units):
    """Keras's conversion of class_weight ({class id: weight}) into one weight per sample of y: the
    class of a row is argmax(y) for one-hot rows, else round(y); classes not in the dict weigh 1."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"`class_weight` must be a dict mapping class ids to weights, e.g. {{0: 1.0, 1: 5.0}}; "
                        f"got {type(class_weight).__name__}")
    n_classes = max(out_units, 2)
    table = np.ones(n_classes, np.float64)
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n_classes:
            raise ValueError(f"`class_weight` keys must be class ids in [0, {n_classes}) for a model with "
                             f"{out_units} output(s), got key {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise ValueError(f"`class_weight` values must be finite numbers, got {v!r} for class {k}")
        table[k] = v
    y = np.asarray(y)
    if y.ndim > 1:
        y = y.argmax(axis=-1) if y.shape[-1] != 1 else y.reshape(-1)
    ids = np.round(y).astype(np.int64)
    weights = np.ones(len(ids), np.float32)
    known = (ids >= 0) & (ids < n_classes)
    weights[known] = table[ids[known]]
    return weights


def check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def warn_once(owner, key, message):
    done = owner.__dict__.setdefault("_warned", set())
    if key not in done:
        done.add(key)
        warnings.warn(message, UserWarning, stacklevel=4)
