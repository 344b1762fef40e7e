"""Lays a model's weights out in one flat float32 block and describes the layer chain to C.

The block is the single home of the weights while the model is in use: each layer's kernel and
bias become views into it ("adoption"), so C updates them in place and `layer.kernel` always shows
the current values. A layer reused in another model is adopted by that model when it runs; its
values travel with it.
"""
import numpy as np

from mnistc import activations

# Each weight starts on a 64-byte boundary (16 floats): the kernels read weight rows with 32- and
# 64-byte vector loads, and a load that straddles two cache lines costs two (a 784x128 kernel at a
# 16-byte boundary made the first layer's zero-skipping product ~1.4x slower on AMD Zen 3).
ALIGN = 16


def aligned_zeros(n):
    """float32 zeros of length n starting on a 64-byte boundary (NumPy only promises 16)."""
    buf = np.zeros(n + ALIGN, np.float32)
    start = (-(buf.ctypes.data // 4)) % ALIGN
    return buf[start:start + n]


class Plan:
    """The C description of one model structure: the flat `params` / `grads` blocks, the layer
    table `layers` int64 (L, 8) and `lfloats` float64 (L, 2). `tables(flags)` gives the table and the
    trainable `segments` (int64 (S, 2) [offset, length]) for a set of per-layer trainable flags."""

    def __init__(self, model_layers):
        self.model_layers = list(model_layers)
        offsets, P = [], 0
        for layer in self.model_layers:
            offs = []
            for w in layer._weights:
                P += -P % ALIGN
                offs.append(P)
                P += w.size
            offsets.append(offs)
        self.offsets = offsets
        self.P = P
        rows, floats, owners = [], [], []
        for li, (layer, offs) in enumerate(zip(self.model_layers, offsets)):
            for kind, n_in, n_out, act, wi, bi, f0, f1 in layer._c_rows():
                w_off = offs[wi] if wi >= 0 else -1
                b_off = offs[bi] if bi >= 0 else -1
                rows.append((kind, n_in, n_out, act, 1, w_off, b_off, 0))
                floats.append((f0, f1))
                owners.append(li)
        self.layers = np.array(rows, np.int64).reshape(-1, 8)
        self.lfloats = np.array(floats, np.float64).reshape(-1, 2)
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
                table[:, 4] = np.array(flags, np.int64)[self._owners]
            segs = []
            for layer, offs, flag in zip(self.model_layers, self.offsets, flags):
                if not flag:
                    continue
                for off, w in zip(offs, layer._weights):
                    if segs and segs[-1][0] + segs[-1][1] == off:
                        segs[-1][1] += w.size
                    else:
                        segs.append([off, w.size])
            cached = (table, np.array(segs, np.int64).reshape(-1, 2))
            self._tables[flags] = cached
        return cached

    @property
    def last_activation(self):
        """Activation name of the last C layer that has one (None when the chain is empty)."""
        for row in self.layers[::-1]:
            if row[0] in (0, 1):
                return activations._NAMES[int(row[3])]
        return None

    def adopt(self):
        """Make every layer weight a view into self.params (copying current values in) if it is not."""
        if self.params is not None:
            for layer, i, view in self._bound:  # a loop, not all(...): this runs on every call
                if layer._weights[i] is not view:
                    break
            else:
                return
        params = aligned_zeros(self.P)  # the gaps between weights stay zero
        bound = []
        for layer, offs in zip(self.model_layers, self.offsets):
            for i, (off, w) in enumerate(zip(offs, layer._weights)):
                view = params[off:off + w.size].reshape(w.shape)
                view[...] = w
                layer._weights[i] = view
                bound.append((layer, i, view))
        self.params = params
        self.grads = aligned_zeros(self.P)
        self._bound = bound
