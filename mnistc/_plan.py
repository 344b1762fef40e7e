"""Lays a model's weights out in one flat float32 block and describes the layer chain to C.

The block is the single home of the weights while the model is in use: each layer's kernel and
bias become views into it ("adoption"), so C updates them in place and `layer.kernel` always shows
the current values. A layer reused in another model is adopted by that model when it runs; its
values travel with it.
"""
import math
from typing import NamedTuple

import numpy as np

from mnistc import _C

# Each weight starts on a 64-byte boundary (16 floats): the kernels read weight rows with 32- and
# 64-byte vector loads, and a load that straddles two cache lines costs two (bench/RESULTS.md,
# "Design measurements").
ALIGN = 16


def aligned_zeros(n):
    """float32 zeros of length n starting on a 64-byte boundary (NumPy only promises 16)."""
    buf = np.zeros(n + ALIGN, np.float32)
    start = (-(buf.ctypes.data // 4)) % ALIGN
    return buf[start:start + n]


def hwc(shape):
    """A per-sample shape as the C table's (h, w, c): channels last, leading axes folded into h, w."""
    shape = tuple(shape)
    if len(shape) == 1:
        return (1, 1, shape[0])
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    return (math.prod(shape[:-2]), shape[-2], shape[-1])


class CRow(NamedTuple):
    """One row of the C layer table as a layer describes it (layer.h): `weights` lists, per weight
    slot of the kind, the index into the layer's own weights or -1 for an absent one."""
    kind: int
    in_shape: tuple
    out_shape: tuple
    activation: int = 0
    weights: tuple = ()
    kernel: tuple = (0, 0)
    strides: tuple = (0, 0)
    padding: tuple = (0, 0)     # zeros added before the first row and the first column
    floats: tuple = (0.0, 0.0)


def _laid_out(layer):
    """The arrays of a layer the block holds, in order: its weights, then its constants (arrays C
    reads that are not Keras weights, such as Normalization's mean and variance given to its
    constructor). A CRow's `weights` index this list."""
    return layer._weights + layer._constants


def table_row(row, offsets):
    """The int64 table row and float64 constants of `row`; `offsets` are the layer's weights' offsets."""
    r = np.zeros(_C.TABLE_COLS, np.int64)
    r[_C.COL_KIND] = row.kind
    r[_C.COL_ACTIVATION] = row.activation
    r[_C.COL_TRAINABLE] = 1
    r[_C.COL_IN_H:_C.COL_IN_H + 3] = hwc(row.in_shape)
    r[_C.COL_OUT_H:_C.COL_OUT_H + 3] = hwc(row.out_shape)
    r[_C.COL_KERNEL_H:_C.COL_KERNEL_H + 2] = row.kernel
    r[_C.COL_STRIDE_H:_C.COL_STRIDE_H + 2] = row.strides
    r[_C.COL_PAD_TOP:_C.COL_PAD_TOP + 2] = row.padding
    w = r[_C.COL_WEIGHT0:_C.COL_WEIGHT0 + _C.MAX_WEIGHTS]
    w[:] = -1
    for slot, index in enumerate(row.weights):
        if index >= 0:
            w[slot] = offsets[index]
    f = np.zeros(_C.FTABLE_COLS, np.float64)
    f[:len(row.floats)] = row.floats
    return r, f


class Plan:
    """The C description of one model structure: the flat `params` / `grads` blocks, the layer
    table `layers` int64 (L, _C.TABLE_COLS) and `lfloats` float64 (L, _C.FTABLE_COLS).
    `tables(flags)` gives the table and the trainable `segments` (int64 (S, 2) [offset, length])
    for a set of per-layer trainable flags."""

    def __init__(self, model_layers):
        self.model_layers = list(model_layers)
        offsets, P = [], 0
        for layer in self.model_layers:
            offs = []
            for w in _laid_out(layer):
                P += -P % ALIGN
                offs.append(P)
                P += w.size
            offsets.append(offs)
        self.offsets = offsets
        self.P = P
        rows, floats, owners = [], [], []
        for li, (layer, offs) in enumerate(zip(self.model_layers, offsets)):
            for row in layer._c_rows():
                r, f = table_row(row, offs)
                rows.append(r)
                floats.append(f)
                owners.append(li)
        self.layers = np.array(rows, np.int64).reshape(-1, _C.TABLE_COLS)
        self.lfloats = np.array(floats, np.float64).reshape(-1, _C.FTABLE_COLS)
        self._owners = np.array(owners, np.int64)
        self._tables = {}
        self.params = None
        self.grads = None
        self._bound = []

    def tables(self, flags):
        """(layers table with the trainable column from `flags`, segments) for per-layer flags."""
        flags = tuple(bool(f) for f in flags)
        cached = self._tables.get(flags)
        if cached is None:
            table = self.layers.copy()
            if len(table):
                table[:, _C.COL_TRAINABLE] = np.array(flags, np.int64)[self._owners]
            # the optimizer's ranges as C derives them from the table's trainable column
            segments = (_C.segments(table, self.lfloats, self.params if self.params is not None else
                                    np.zeros(self.P, np.float32)) if len(table) else np.zeros((0, 2), np.int64))
            cached = (table, segments)
            self._tables[flags] = cached
        return cached

    @property
    def last_activation(self):
        """Activation name of the last layer that sends C rows and has an activation, or is an
        activation layer of its own (ReLU, LeakyReLU); None if none."""
        for layer in reversed(self.model_layers):
            act = getattr(layer, "activation", None) or getattr(layer, "_acts_as", None)
            if act is not None and layer._c_rows():
                return act
        return None

    def adopt(self):
        """Make every layer weight a view into self.params (copying current values in) if it is not."""
        if self.params is not None:
            for arrays, i, view in self._bound:  # a loop, not all(...): this runs on every call
                if arrays[i] is not view:
                    break
            else:
                return
        params = aligned_zeros(self.P)  # the gaps between weights stay zero
        bound = []
        for layer, offs in zip(self.model_layers, self.offsets):
            slots = [(arrays, i) for arrays in (layer._weights, layer._constants) for i in range(len(arrays))]
            for off, (arrays, i) in zip(offs, slots):
                w = arrays[i]
                view = params[off:off + w.size].reshape(w.shape)
                view[...] = w
                arrays[i] = view
                bound.append((arrays, i, view))
        self.params = params
        self.grads = aligned_zeros(self.P)
        self._bound = bound
