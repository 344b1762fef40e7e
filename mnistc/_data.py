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


def check_single(a, what, role):
    """ValueError when `a` is a dict, or a list or tuple of arrays (each one sample per row but not
    one per sample of the list): the inputs or targets of a multi-input or multi-output model."""
    many = isinstance(a, dict)
    if isinstance(a, (list, tuple)) and len(a) > 1 and all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in a):
        many = len({len(v) for v in a}) == 1 and len(a[0]) != len(a)
    if many:
        n = len(a)
        raise ValueError(f"{what}: got a {type(a).__name__} of {n} arrays, as for a model with {n} {role}s; mnistc "
                         f"models have one {role}: pass a single array. Multi-input and multi-output models are "
                         "not supported.")


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


# --- batch streams: generators, iterators and PyDataset ---

class PyDataset:
    """Keras's `utils.PyDataset` (Keras 2: `utils.Sequence`): batches by index.

    Subclasses define `__len__` (batches per epoch) and `__getitem__(index)` returning an
    (x, y) or (x, y, sample_weight) batch of arrays (x alone for predict); `on_epoch_end` runs after
    each epoch (to reshuffle, say). fit visits the batches in a new random order each epoch when
    shuffle=True (the default), as Keras does. `workers`, `use_multiprocessing` and
    `max_queue_size` are accepted for Keras code and recorded; batches are read on the calling
    thread, one at a time.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) returning a batch")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__() (the number of batches)")

    @property
    def num_batches(self):
        return len(self)

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass


def is_batch_stream(x):
    """Whether x yields batches (a PyDataset, a generator or another iterator) rather than being
    an array of samples."""
    return isinstance(x, PyDataset) or (hasattr(x, "__next__") and not isinstance(x, np.ndarray))


class BatchStream:
    """The batches of a generator, iterator or PyDataset, epoch by epoch (Keras's EpochIterator).

    steps None: a PyDataset gives len() batches per epoch; an iterator runs until it is exhausted,
    which only a first pass can do (a generator is consumed once). With steps, an iterator goes on
    where the previous epoch stopped, and running out of data ends training with Keras's warning.
    """

    def __init__(self, source, steps, what):
        self.what = what
        self.dataset = source if isinstance(source, PyDataset) else None
        self.iterator = None if self.dataset is not None else source
        self.steps = None if steps is None else check_int(steps, what, 1)
        self.exhausted = False
        if self.dataset is not None:
            n = len(self.dataset)
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"{type(self.dataset).__name__}.__len__() must return the number of batches "
                                 f"(an int >= 1), got {n!r}")

    @property
    def known_steps(self):
        """Batches per epoch if known before the epoch runs, else None."""
        if self.steps is not None:
            return self.steps
        return len(self.dataset) if self.dataset is not None else None

    def check_repeatable(self, passes, steps_arg):
        """ValueError when a one-shot iterator without `steps_arg` would have to be read `passes` > 1
        times: a finite one would be empty from the second pass on, an infinite one never end its
        first."""
        if self.dataset is None and self.steps is None and passes > 1:
            raise ValueError(
                f"A generator (or iterator) passed without `{steps_arg}` is read until it is exhausted, "
                f"and it can be read only once, but it would be needed {passes} times. Pass "
                f"`{steps_arg}=<batches per epoch>` with a generator that loops forever (`while True:` around "
                "its body), or use a mnistc.utils.PyDataset, which is indexed anew every epoch.")

    def epoch(self, order_seed=None):
        """Yields (index, batch) for one epoch; order_seed (PyDataset only): shuffle the batch order."""
        if self.dataset is not None:
            n = len(self.dataset)
            steps = n if self.steps is None else min(self.steps, n)
            order = np.arange(n) if order_seed is None else np.random.default_rng(order_seed).permutation(n)
            self.dataset.on_epoch_begin()
            for k in range(steps):
                yield k, self.dataset[int(order[k])]
            if self.steps is not None and self.steps > n:
                self.exhausted = True
            self.dataset.on_epoch_end()
            return
        k = 0
        while self.steps is None or k < self.steps:
            try:
                batch = next(self.iterator)
            except StopIteration:
                if self.steps is not None:
                    self.exhausted = True
                return
            yield k, batch
            k += 1

    def warn_exhausted(self):
        warnings.warn("Your input ran out of data; interrupting training. Make sure that your dataset or "
                      "generator can generate at least `steps_per_epoch * epochs` batches.", UserWarning,
                      stacklevel=4)


def unpack_batch(batch, k, what, need_y=True):
    """(x, y, sample_weight) of batch number k from a stream: a tuple (x, y) or (x, y, sample_weight),
    or x alone when need_y is False."""
    if isinstance(batch, dict):
        raise ValueError(f"{what}: batch {k} is a dict ({sorted(batch)}); mnistc models have one input and "
                         "one output: yield (x, y) tuples")
    if isinstance(batch, list) and len(batch) in (2, 3) and all(isinstance(b, np.ndarray) for b in batch):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        if need_y:
            raise ValueError(f"{what}: batch {k} is a {type(batch).__name__}, expected a tuple (x, y) or "
                             "(x, y, sample_weight)")
        return batch, None, None
    if len(batch) == 1 and not need_y:
        return batch[0], None, None
    if len(batch) not in (2, 3):
        raise ValueError(f"{what}: batch {k} is a tuple of {len(batch)} items, expected (x, y) or "
                         "(x, y, sample_weight)")
    x, y = batch[0], batch[1]
    sw = batch[2] if len(batch) == 3 else None
    return x, y, sw
