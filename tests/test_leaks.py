"""No leaks: the C heap (glibc mallinfo2), the Python heap (tracemalloc) and the reference counts of the
arguments stay flat over repeated calls, on success and on every error path (RELIABILITY.md H5).

Each case runs WARMUP calls (caches fill), then N calls measured; growth is reported per 1000 calls.
A leak of one 100-byte C buffer per call shows as ~112 KB per 1000 calls, one leaked small Python
object as ~56 KB, a leaked batch arena far more; the bounds below sit well under those and well above
the noise measured on a clean build (see measure()'s docstring for the figures).
"""
import ctypes
import ctypes.util
import gc
import os
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import mnistc
from mnistc import _C, layers
from mnistc.datasets import idx

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
# Bounds per 1000 calls. Measured on a clean build: C heap 0 B for every case, Python heap <= 700 B.
# The smallest C leak (one 8-byte malloc per call, a 32-byte chunk) is 32 KiB per 1000 calls.
C_HEAP_BOUND = 8 * 1024
PY_HEAP_BOUND = 8 * 1024


def _mallinfo2():
    """glibc's heap-in-use figure (uordblks + mmapped chunks), or None (not glibc, or ASan's allocator)."""
    if UNDER_ASAN:
        return None
    name = ctypes.util.find_library("c")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    if not hasattr(lib, "mallinfo2"):
        return None

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
    lib.mallinfo2.restype = Mallinfo2

    def in_use():
        m = lib.mallinfo2()
        return m.uordblks + m.hblkhd
    return in_use


C_HEAP = _mallinfo2()


def measure(fn, watch=(), warmup=150, n=1000):
    """Call fn() warmup times, then n times twice; returns growth per 1000 calls and refcount drift:
    {"c_heap": bytes or None, "py_heap": bytes, "refcounts": [drift per watched object]}.

    Pass 1 (tracemalloc off): C-heap growth is the mallinfo2 in-use delta (None where unavailable),
    the smaller over two windows of n calls: a cache filled once, late, grows one window, a leak
    both (a pool worker allocates its GEMM scratch the first time it takes an inference block, which
    may come after the warmup when the caller usually runs the blocks first); and the refcount drift
    of each watched object. Pass 2: Python-heap growth is the traced memory still allocated after n
    more calls (tracemalloc's own tables live on the C heap, hence two passes). Clean figures on
    this machine: 0 B C heap for every case in this file, 0-700 B Python heap per 1000 calls.
    """
    for _ in range(warmup):
        fn()
    gc.collect()
    refs = [sys.getrefcount(o) for o in watch]
    growth = []
    for _ in range(2):
        c0 = C_HEAP() if C_HEAP else None
        for _ in range(n):
            fn()
        gc.collect()
        c1 = C_HEAP() if C_HEAP else None
        growth.append(None if c0 is None else c1 - c0)
    drift = [sys.getrefcount(o) for o in watch]
    drift = [after - before for after, before in zip(drift, refs)]
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        for _ in range(min(warmup, 50)):
            fn()
        gc.collect()
        py0 = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            fn()
        gc.collect()
        py1 = tracemalloc.get_traced_memory()[0]
    finally:
        if started:
            tracemalloc.stop()
    scale = 1000 / n
    return {"c_heap": None if growth[0] is None else min(growth) * scale, "py_heap": (py1 - py0) * scale,
            "refcounts": drift}


def make_model(seed=0):
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input((8,)), layers.Dense(16, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile(mnistc.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_convnet(seed=0):
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input((10, 10, 1)), layers.Conv2D(4, 3, activation="relu"),
                               layers.BatchNormalization(), layers.MaxPooling2D(2),
                               layers.Conv2D(6, 2, padding="same"), layers.AveragePooling2D(2),
                               layers.Flatten(), layers.Dropout(0.5), layers.Dense(3, activation="softmax")])
    model.compile(mnistc.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def failing_alloc(k, fn, *args, **kwargs):
    """A call whose (k+1)-th C allocation fails: it must raise MemoryError."""
    def call():
        _C.testing.fail_alloc_after(k)
        try:
            fn(*args, **kwargs)
        except MemoryError:
            return
        finally:
            _C.testing.fail_alloc_after(-1)
        raise AssertionError(f"{fn.__name__}: no MemoryError")
    return call


def swallow(exc, fn, *args, **kwargs):
    """A call that must raise exc (anything else, or no error, fails the test)."""
    def call():
        try:
            fn(*args, **kwargs)
        except exc:
            return
        raise AssertionError(f"{fn.__name__} did not raise {exc.__name__}")
    return call


class Raise(mnistc.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            raise ValueError("stop here")


def cases(tmp_path):
    """name -> (callable, objects whose refcounts must not drift, calls to measure)."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 8), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    x16, y16 = x[:16].copy(), y[:16].copy()
    x_nan = x.copy()
    x_nan[5, 5] = np.nan
    model = make_model()
    tiny = rng.integers(0, 256, (4, 5, 5), dtype=np.uint8)
    gz_path = str(tmp_path / "tiny.gz")
    raw_path = str(tmp_path / "tiny.idx")
    idx.save(gz_path, tiny)
    idx.save(raw_path, tiny)
    blob = Path(gz_path).read_bytes()
    bad_gz = str(tmp_path / "bad.gz")
    with open(bad_gz, "wb") as f:
        f.write(blob[:-8] + bytes([blob[-8] ^ 0xFF]) + blob[-7:])  # CRC mismatch: fails at the end
    missing = str(tmp_path / "missing.gz")
    wpath = str(tmp_path / "m.weights.npz")
    model.save_weights(wpath)
    bad_w = str(tmp_path / "bad.weights.npz")
    with open(bad_w, "wb") as f:
        f.write(Path(wpath).read_bytes()[:-30])

    def failing_predict():
        _C.testing.fail_alloc_after(1)
        try:
            model.predict_on_batch(x16)
        except MemoryError:
            return
        finally:
            _C.testing.fail_alloc_after(-1)
        raise AssertionError("no MemoryError")

    def failing_idx_load():
        _C.testing.fail_alloc_after(2)
        try:
            idx.load(gz_path)
        except MemoryError:
            return
        finally:
            _C.testing.fail_alloc_after(-1)
        raise AssertionError("no MemoryError")

    def save_load():
        model.save_weights(wpath)
        model.load_weights(wpath)

    cnn = make_convnet()
    xi = rng.random((32, 10, 10, 1), dtype=np.float32)
    yi = rng.integers(0, 3, 32)
    xi16, yi16 = xi[:16].copy(), yi[:16].copy()
    xi_nan = xi.copy()
    xi_nan[3, 4, 5, 0] = np.nan
    xi_rgb = np.zeros((16, 10, 10, 3), np.float32)

    return {
        "predict_on_batch": (lambda: model.predict_on_batch(x16), (x16, model), 1000),
        "predict": (lambda: model.predict(x, batch_size=16, verbose=0), (x, model), 1000),
        "train_on_batch": (lambda: model.train_on_batch(x16, y16), (x16, y16, model), 1000),
        "evaluate": (lambda: model.evaluate(x, y, batch_size=16, verbose=0), (x, y, model), 1000),
        "fit 1 epoch": (lambda: model.fit(x, y, epochs=1, batch_size=16, verbose=0), (x, y, model), 300),
        "idx.load gz": (lambda: idx.load(gz_path), (gz_path,), 1000),
        "idx.load raw": (lambda: idx.load(raw_path), (raw_path,), 1000),
        "read_idx_bytes": (lambda: _C.read_idx_bytes(blob), (blob,), 1000),
        "idx.load bad CRC": (swallow(mnistc.FormatError, idx.load, bad_gz), (bad_gz,), 1000),
        "idx.load missing": (swallow(FileNotFoundError, idx.load, missing), (missing,), 1000),
        "read_idx_bytes truncated": (swallow(mnistc.FormatError, _C.read_idx_bytes, blob[:-1]), (blob,), 1000),
        "predict MemoryError": (failing_predict, (x16, model), 1000),
        "idx.load MemoryError": (failing_idx_load, (gz_path,), 1000),
        "fit NaN ValueError": (swallow(ValueError, model.fit, x_nan, y, verbose=0), (x_nan, y, model), 1000),
        "fit callback raises": (swallow(ValueError, model.fit, x, y, batch_size=16, verbose=0, callbacks=[Raise()]),
                                (x, y, model), 300),
        "load_weights truncated": (swallow(mnistc.FormatError, model.load_weights, bad_w), (bad_w, model), 300),
        "save_weights + load_weights": (save_load, (wpath, model), 150),
        "convnet predict_on_batch": (lambda: cnn.predict_on_batch(xi16), (xi16, cnn), 1000),
        "convnet predict": (lambda: cnn.predict(xi, batch_size=16, verbose=0), (xi, cnn), 1000),
        "convnet train_on_batch": (lambda: cnn.train_on_batch(xi16, yi16), (xi16, yi16, cnn), 1000),
        "convnet evaluate": (lambda: cnn.evaluate(xi, yi, batch_size=16, verbose=0), (xi, yi, cnn), 1000),
        "convnet fit 1 epoch": (lambda: cnn.fit(xi, yi, epochs=1, batch_size=16, verbose=0), (xi, yi, cnn), 300),
        "convnet predict MemoryError": (failing_alloc(1, cnn.predict_on_batch, xi16), (xi16, cnn), 1000),
        "convnet fit MemoryError": (failing_alloc(1, cnn.fit, xi, yi, batch_size=16, verbose=0), (xi, yi, cnn), 300),
        "convnet fit NaN ValueError": (swallow(ValueError, cnn.fit, xi_nan, yi, verbose=0), (xi_nan, yi, cnn), 1000),
        "convnet wrong channels ValueError": (swallow(ValueError, cnn.predict, xi_rgb, verbose=0), (xi_rgb, cnn), 1000),
    }


CASE_NAMES = ["predict_on_batch", "predict", "train_on_batch", "evaluate", "fit 1 epoch", "idx.load gz",
              "idx.load raw", "read_idx_bytes", "idx.load bad CRC", "idx.load missing", "read_idx_bytes truncated",
              "predict MemoryError", "idx.load MemoryError", "fit NaN ValueError", "fit callback raises",
              "load_weights truncated", "save_weights + load_weights", "convnet predict_on_batch", "convnet predict",
              "convnet train_on_batch", "convnet evaluate", "convnet fit 1 epoch", "convnet predict MemoryError",
              "convnet fit MemoryError", "convnet fit NaN ValueError", "convnet wrong channels ValueError"]


def test_case_list_is_complete(tmp_path):
    assert list(cases(tmp_path)) == CASE_NAMES


@pytest.fixture
def fast_tmp(tmp_path):
    """A folder on tmpfs when there is one (fsync is free there: the save case measures leaks, not disks)."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="mnistc-leaks-", dir="/dev/shm")
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_repeated_calls_do_not_leak(fast_tmp, name):
    fn, watch, n = cases(fast_tmp)[name]
    if UNDER_ASAN:  # everything is several times slower; the sanitizer checks memory errors itself
        n = max(100, n // 5)
    r = measure(fn, watch, warmup=min(150, n), n=n)
    assert r["refcounts"] == [0] * len(watch), f"{name}: refcount drift {r['refcounts']}"
    assert r["py_heap"] < PY_HEAP_BOUND, f"{name}: Python heap grew {r['py_heap']:.0f} B per 1000 calls"
    if r["c_heap"] is not None:
        assert r["c_heap"] < C_HEAP_BOUND, f"{name}: C heap grew {r['c_heap']:.0f} B per 1000 calls"


def test_a_cache_filled_once_after_the_warmup_is_not_a_leak():
    """One allocation kept for good in the first measured window (a thread's lazily made scratch) is
    not counted: only growth in both windows is."""
    if C_HEAP is None:
        pytest.skip("no glibc mallinfo2")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    kept, calls = [], [0]

    def fill_once():
        calls[0] += 1
        if calls[0] == 200:
            kept.append(libc.malloc(1 << 16))

    r = measure(fill_once, warmup=10, n=1000)
    for p in kept:
        libc.free(p)
    assert len(kept) == 1 and r["c_heap"] < C_HEAP_BOUND


def test_the_probe_sees_a_leak():
    """The measurement is sensitive: a deliberate 100-byte C leak and a leaked Python list per call
    are far above the bounds."""
    keep = []
    r = measure(lambda: keep.append([0] * 4), warmup=10, n=1000)
    assert r["py_heap"] > PY_HEAP_BOUND
    if C_HEAP is not None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        leaked = []
        r = measure(lambda: leaked.append(libc.malloc(100)), warmup=10, n=1000)
        for p in leaked:
            libc.free(p)
        assert r["c_heap"] > 100_000
