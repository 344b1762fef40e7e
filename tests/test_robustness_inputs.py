"""Hostile inputs to the Keras API: arrays, hyperparameters, weight and model files.

RELIABILITY.md section 1 rows 27-50, adapted to the Keras facade (Keras wins where they disagree:
predict returns float32 outputs; there is no `out=` argument, so row 30 has no counterpart).
Every rejected input asserts the exception class, the substance of the message, and that the
model (weights, optimizer state) and the caller's arrays are unchanged. Every accepted layout gives
results bit-identical to the canonical float32 C-contiguous input. Loading a file never executes
code from it and never leaves a model half-updated. Cases already in test_errors.py and
test_saving.py are not repeated here.
"""
import hashlib
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import mnistc
from mnistc import _C, layers

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


# --- helpers ---

def make_model(seed=0, n_in=8):
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input((n_in,)), layers.Dense(5, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile(mnistc.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_data(n=40, n_in=8, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in), dtype=np.float32), rng.integers(0, 3, n)


def digest(a):
    """Content + layout fingerprint of an array (or any object, by repr)."""
    if isinstance(a, np.ndarray):
        if a.size and 0 in a.strides:  # huge zero-stride views: hash what they view
            return ("strided", a.shape, a.strides, digest(np.asarray(a.base)) if a.base is not None else None)
        h = hashlib.sha256(np.ascontiguousarray(a).view(np.uint8).tobytes() if a.dtype != object
                           else repr(a.tolist()).encode()).hexdigest()
        return (h, a.shape, a.strides, a.dtype.str, a.flags.writeable)
    return repr(a)


class Unchanged:
    """Snapshot of a model (weights, optimizer iterations and slots) and of the caller's arrays."""

    def __init__(self, model, *arrays):
        self.model = model
        self.weights = [w.copy() for w in model.get_weights()]
        opt = model.optimizer
        self.iterations = opt.iterations if opt is not None else None
        self.slots = [s.copy() for s in opt._slots] if opt is not None else []
        self.arrays = [(a, digest(a)) for a in arrays]

    def check(self):
        now = self.model.get_weights()
        assert len(now) == len(self.weights)
        for a, b in zip(now, self.weights):
            assert a.tobytes() == b.tobytes(), "model weights changed"
        opt = self.model.optimizer
        if opt is not None:
            assert opt.iterations == self.iterations, "optimizer iterations changed"
            assert all(np.array_equal(a, b) for a, b in zip(opt._slots, self.slots)), "optimizer slots changed"
        for a, d in self.arrays:
            assert digest(a) == d, "the caller's array changed"


def rejects(model, exc, match, fn, *arrays):
    keep = Unchanged(model, *arrays)
    with pytest.raises(exc, match=match or None) as info:
        fn()
    keep.check()
    return info.value


# --- row 27: non-numeric dtypes, for fit, evaluate and predict ---

def _bad_dtype_arrays(x):
    return {
        "complex64": (x.astype(np.complex64), "complex64"),
        "complex128": (x.astype(np.complex128), "complex128"),
        "object": (x.astype(object), "object"),
        "str": (x.astype(str), "<U"),
        "bytes": (x.astype("S4"), "S4"),
        "bool": (x > 0.5, "bool"),
        "datetime64": (np.zeros(x.shape, "datetime64[s]"), "datetime64"),
        "timedelta64": (np.zeros(x.shape, "timedelta64[s]"), "timedelta64"),
        "structured": (np.zeros(x.shape, [("a", "f4"), ("b", "f4")]), "dtype"),
    }


@pytest.mark.parametrize("kind", list(_bad_dtype_arrays(np.zeros((2, 2), np.float32))))
def test_non_numeric_x_is_a_type_error_everywhere(kind):
    model = make_model()
    x, y = make_data()
    bad, word = _bad_dtype_arrays(x)[kind]
    calls = {"fit": lambda: model.fit(bad, y, verbose=0), "evaluate": lambda: model.evaluate(bad, y, verbose=0),
             "predict": lambda: model.predict(bad, verbose=0), "train_on_batch": lambda: model.train_on_batch(bad, y),
             "predict_on_batch": lambda: model.predict_on_batch(bad)}
    for name, call in calls.items():
        err = rejects(model, TypeError, "real numeric array|numeric", call, bad, y)
        assert word in str(err), (name, str(err))


def test_masked_array_is_refused_and_matrix_and_lists_are_accepted():
    model = make_model()
    x, y = make_data()
    masked = np.ma.masked_array(x, mask=x > 0.9)
    rejects(model, TypeError, "masked arrays are not supported", lambda: model.fit(masked, y, verbose=0), x, y)
    rejects(model, TypeError, "masked arrays are not supported", lambda: model.predict(masked, verbose=0), x)
    ref = model.predict(x, verbose=0)
    with pytest.warns(PendingDeprecationWarning):
        mat = np.matrix(x)
    assert model.predict(mat, verbose=0).tobytes() == ref.tobytes()
    assert model.predict(x.tolist(), verbose=0).tobytes() == ref.tobytes()
    assert model.predict(tuple(map(tuple, x.tolist())), verbose=0).tobytes() == ref.tobytes()


def test_ragged_lists_are_refused():
    model = make_model()
    ragged = [[0.0] * 8, [0.0] * 7]
    with pytest.raises((TypeError, ValueError), match="NumPy array|inhomogeneous|shape"):
        model.predict(ragged, verbose=0)


# --- row 28/29: accepted layouts, bit-identical to the canonical float32 C-contiguous input ---

def _misaligned(x):
    buf = bytearray(x.nbytes + 1)
    buf[1:] = x.tobytes()
    m = np.frombuffer(buf, dtype=x.dtype, offset=1).reshape(x.shape)
    assert not m.flags.aligned
    return m


def _layouts(x, tmp_path):
    ro = x.copy()
    ro.setflags(write=False)
    mm_path = tmp_path / "x.f32"
    x.tofile(mm_path)
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), np.float32)
    wide[:, ::2] = x
    tall = np.zeros((2 * x.shape[0], x.shape[1]), np.float32)
    tall[::2] = x
    return {
        "float64": x.astype(np.float64),
        "float16-exact": x.astype(np.float16),  # canonical is its float32 conversion
        "int64": (x * 100).astype(np.int64),
        "uint8": (x * 255).astype(np.uint8),
        "int16-big-endian": (x * 100).astype(">i2"),
        "big-endian-f4": x.astype(">f4"),
        "big-endian-f8": x.astype(">f8"),
        "fortran": np.asfortranarray(x),
        "reversed-rows": x[::-1],
        "reversed-cols": x[:, ::-1],
        "row-strided": tall[::2],
        "col-strided": wide[:, ::2],
        "misaligned-f8": _misaligned(x.astype(np.float64)),
        "misaligned-big-endian-f4": _misaligned(x.astype(">f4")),
        "read-only": ro,
        "frombuffer-bytes": np.frombuffer(x.tobytes(), np.float32).reshape(x.shape),
        "read-only-memmap": np.memmap(mm_path, np.float32, mode="r", shape=x.shape),
        "broadcast-zero-stride": np.broadcast_to(x[3], x.shape),
    }


def test_accepted_layouts_predict_bit_identically(tmp_path):
    model = make_model()
    x, _ = make_data()
    for name, v in _layouts(x, tmp_path).items():
        before = digest(v)
        canonical = np.ascontiguousarray(v, dtype=np.float32)
        expect = model.predict(canonical, verbose=0)
        got = model.predict(v, verbose=0)
        assert got.dtype == np.float32 and got.shape == (len(x), 3), name
        assert got.tobytes() == expect.tobytes(), name
        assert model.predict_on_batch(v).tobytes() == model.predict_on_batch(canonical).tobytes(), name
        assert digest(v) == before, f"{name}: input modified"


def test_accepted_layouts_evaluate_and_fit_bit_identically(tmp_path):
    """Each layout of x (float inputs) and of y trains exactly as its canonical copy does."""
    x, y = make_data()
    float_layouts = {k: v for k, v in _layouts(x, tmp_path).items()
                     if k not in ("int64", "uint8", "int16-big-endian")}
    y_layouts = {"int32": y.astype(np.int32), "uint8": y.astype(np.uint8), "big-endian-i8": y.astype(">i8"),
                 "float64-integral": y.astype(np.float64), "strided": np.repeat(y, 2)[::2], "list": y.tolist(),
                 "column": y.reshape(-1, 1), "reversed": y[::-1]}
    cases = [(f"x:{k}", v, y) for k, v in float_layouts.items()] + [(f"y:{k}", x, v) for k, v in y_layouts.items()]
    for name, xv, yv in cases:
        before = (digest(xv), digest(yv))
        xc = np.ascontiguousarray(xv, dtype=np.float32)
        yc = np.ascontiguousarray(np.asarray(yv).reshape(-1), dtype=np.int32)
        ref = make_model(seed=3)
        ref_eval = ref.evaluate(xc, yc, verbose=0)
        ref.fit(xc, yc, epochs=2, batch_size=8, shuffle=False, verbose=0)
        model = make_model(seed=3)
        assert model.evaluate(xv, yv, verbose=0) == ref_eval, name
        model.fit(xv, yv, epochs=2, batch_size=8, shuffle=False, verbose=0)
        assert [w.tobytes() for w in model.get_weights()] == [w.tobytes() for w in ref.get_weights()], name
        assert (digest(xv), digest(yv)) == before, f"{name}: input modified"


def test_misaligned_native_arrays_are_accepted():
    x, y = make_data()
    xm, ym = _misaligned(x), _misaligned(y.astype(np.int32))
    before = (digest(xm), digest(ym))
    ref = make_model(seed=3)
    model = make_model(seed=3)
    assert model.predict(xm, verbose=0).tobytes() == ref.predict(x, verbose=0).tobytes()
    assert model.evaluate(xm, ym, verbose=0) == ref.evaluate(x, y, verbose=0)
    ref.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    model.fit(xm, ym, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert [w.tobytes() for w in model.get_weights()] == [w.tobytes() for w in ref.get_weights()]
    assert (digest(xm), digest(ym)) == before


def test_reversed_rows_give_reversed_predictions():
    model = make_model()
    x, _ = make_data()
    assert model.predict(x[::-1], verbose=0).tobytes() == model.predict(x, verbose=0)[::-1].tobytes()


# --- rows 31-34: NaN/Inf, empty, rank, feature count ---

@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, ">f4"])
def test_non_finite_x_is_refused_by_every_entry_point(value, word, dtype):
    model = make_model()
    x, y = make_data()
    x = x.astype(dtype)
    x[-1, -1] = value  # the very last element: the scan must cover everything
    xv = np.concatenate([x, x]), np.concatenate([y, y])
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y, verbose=0),
                 lambda: model.predict(x, verbose=0), lambda: model.train_on_batch(x, y),
                 lambda: model.test_on_batch(x, y), lambda: model.predict_on_batch(x),
                 lambda: make_data()[0] is None or model.fit(make_data()[0], y, validation_data=xv, verbose=0)):
        rejects(model, ValueError, word, call, x, y)


def test_predict_checks_every_batch_and_reports_counts_over_all_of_x():
    """predict checks float rows batch by batch in C as it reaches them; the error still counts
    every NaN and Inf in x, wherever the first one sits."""
    model = make_model()
    x, _ = make_data()
    x[5, 0], x[30, 3], x[31, 1] = np.nan, np.inf, -np.inf
    for bs in (1, 8, 40):
        with pytest.raises(ValueError, match=r"x contains 1 NaN and 2 infinite value\(s\)"):
            model.predict(x, batch_size=bs, verbose=0)
    x[5, 0] = 0.0
    with pytest.raises(ValueError, match=r"x contains 0 NaN and 2 infinite value\(s\)"):
        model.predict(x, batch_size=8, verbose=0)


@pytest.mark.parametrize("first", ["dense_relu", "dense_softmax", "dense_linear", "activation"])
def test_predict_finds_nan_and_inf_in_x_whatever_the_first_layer(first):
    """A dense first layer checks its products instead of predict scanning x first; the error is
    the same, also where ReLU turns the NaN products into 0 and with a softmax (whole-row) first
    layer. Another first layer gets x scanned first."""
    mnistc.utils.set_random_seed(0)
    head = {"dense_relu": [layers.Dense(5, activation="relu")],
            "dense_softmax": [layers.Dense(3, activation="softmax")],
            "dense_linear": [layers.Dense(5, use_bias=False)],
            "activation": [layers.Activation("relu"), layers.Dense(5)]}[first]
    model = mnistc.Sequential([mnistc.Input((8,)), *head, layers.Dense(3, activation="softmax")])
    x, _ = make_data()
    x[17, 2] = -np.inf  # a ReLU layer's products in this row are all -inf or NaN, its outputs 0 or NaN
    x[33, 7] = np.nan
    for bs in (1, 16, 40):
        with pytest.raises(ValueError, match=r"x contains 1 NaN and 1 infinite value\(s\)"):
            model.predict(x, batch_size=bs, verbose=0)


def test_predict_does_not_blame_x_for_non_finite_weights():
    """Infinite weights make the first layer's products non-finite while x is clean: predict then
    scans x, finds nothing and returns what the model computes."""
    model = make_model()
    w, b = model.layers[0].get_weights()
    w[3, 1] = np.inf
    model.layers[0].set_weights([w, b])
    x, _ = make_data()
    out = model.predict(x, batch_size=16, verbose=0)
    assert out.shape == (40, 3) and np.isnan(out).any()


def test_non_finite_regression_targets_are_refused():
    mnistc.utils.set_random_seed(0)
    model = mnistc.Sequential([mnistc.Input((8,)), layers.Dense(2)])
    model.compile("sgd", "mse")
    x, _ = make_data()
    t = np.zeros((40, 2), np.float32)
    t[7, 1] = np.nan
    rejects(model, ValueError, "y contains 1 NaN", lambda: model.fit(x, t, verbose=0), x, t)


@pytest.mark.parametrize("shape", [(0, 8), (0,), (0, 0)])
def test_empty_inputs_are_refused(shape):
    model = make_model()
    x = np.zeros(shape, np.float32)
    y = np.zeros(shape[0], np.int64)
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y, verbose=0),
                 lambda: model.predict(x, verbose=0), lambda: model.train_on_batch(x, y)):
        rejects(model, ValueError, "0 samples|incompatible shape", call, x, y)


@pytest.mark.parametrize("shape", [(8,), (40,), (40, 2, 4), (2, 20, 2, 4), (40, 7), (40, 9), (40, 0), (40, 8, 2)])
def test_wrong_rank_or_feature_count_names_expected_and_found(shape):
    model = make_model()
    x = np.ones(shape, np.float32)
    y = np.zeros(shape[0] if shape else 1, np.int64)
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y, verbose=0),
                 lambda: model.predict(x, verbose=0), lambda: model.predict_on_batch(x)):
        err = rejects(model, ValueError, r"expected shape \(None, 8\)", call, x, y)
        assert str((None, *shape[1:])) in str(err), str(err)


def test_scalar_x_to_fit_and_evaluate():
    model = make_model()
    x, y = np.float32(1.0), np.zeros(1, np.int64)
    for call in (lambda: model.fit(np.array(x), y, verbose=0), lambda: model.evaluate(np.array(x), y, verbose=0)):
        rejects(model, ValueError, r"expected shape \(None, 8\)", call, y)


@pytest.mark.parametrize("call", ["predict", "predict_on_batch"])
def test_scalar_x_to_predict_names_the_expected_shape(call):
    model = make_model()
    fn = (lambda: model.predict(np.array(1.0, np.float32), verbose=1)) if call == "predict" else \
        (lambda: model.predict_on_batch(np.array(1.0, np.float32)))
    rejects(model, ValueError, r"expected shape \(None, 8\)", fn)


def test_trailing_unit_axis_is_squeezed_like_keras():
    model = make_model()
    x, _ = make_data()
    assert model.predict(x[..., None], verbose=0).tobytes() == model.predict(x, verbose=0).tobytes()


# --- row 37: huge zero-stride views must fail cleanly, never crash or half-allocate ---

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("rows", [2**33, 2**40])
def test_huge_zero_stride_views_raise_memory_or_value_error(dtype, rows):
    model = make_model()
    y = np.zeros(4, np.int64)
    base = np.zeros(1, dtype)
    huge = np.lib.stride_tricks.as_strided(base, shape=(rows, 8), strides=(0, 0))
    huge_y = np.lib.stride_tricks.as_strided(np.zeros(1, np.int64), shape=(rows,), strides=(0,))
    for call in (lambda: model.predict(huge, verbose=0), lambda: model.predict_on_batch(huge),
                 lambda: model.evaluate(huge, huge_y, verbose=0), lambda: model.fit(huge, huge_y, verbose=0)):
        rejects(model, (MemoryError, ValueError), "", call, base, y)
    # Nothing was half-allocated or left behind: the model still works.
    x, yy = make_data()
    model.fit(x, yy, epochs=1, verbose=0)
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


# --- rows 39-43: hyperparameters ---

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(epochs=-1), ValueError, "`epochs` must be >= 0, got -1"),
    (dict(epochs=1.5), TypeError, "`epochs` must be an integer"),
    (dict(epochs="3"), TypeError, "`epochs` must be an integer"),
    (dict(epochs=None), TypeError, "`epochs` must be an integer"),
    (dict(epochs=np.float64(2)), TypeError, "`epochs` must be an integer"),
    (dict(batch_size=-3), ValueError, "`batch_size` must be >= 1, got -3"),
    (dict(batch_size=np.int64(0)), ValueError, "`batch_size` must be >= 1"),
    (dict(batch_size=True), TypeError, "`batch_size` must be an integer"),
    (dict(batch_size=8.0), TypeError, "`batch_size` must be an integer"),
    (dict(initial_epoch=-1), ValueError, "`initial_epoch` must be >= 0"),
    (dict(validation_split=-0.1), ValueError, "validation_split"),
    (dict(validation_split=float("nan")), ValueError, "validation_split"),
    (dict(validation_freq=0), ValueError, "`validation_freq` must be >= 1"),
    (dict(shuffle="batch"), ValueError, "`shuffle` must be True or False"),
    (dict(verbose=-1), ValueError, "`verbose` must be"),
    (dict(callbacks=[object()]), TypeError, "callbacks must be mnistc.callbacks.Callback"),
])
def test_bad_fit_hyperparameters(kwargs, exc, match):
    model = make_model()
    x, y = make_data()
    rejects(model, exc, match, lambda: model.fit(x, y, **{"verbose": 0, **kwargs}), x, y)


@pytest.mark.parametrize("batch_size", [2**31, 2**40, 2**62])
def test_batch_size_beyond_the_data_is_one_batch(batch_size):
    """Keras clamps a batch larger than the data to the data; no arena is sized by the argument."""
    x, y = make_data()
    ref = make_model(seed=4)
    ref.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    model = make_model(seed=4)
    model.fit(x, y, epochs=1, batch_size=batch_size, shuffle=False, verbose=0)
    assert [w.tobytes() for w in model.get_weights()] == [w.tobytes() for w in ref.get_weights()]
    assert model.predict(x, batch_size=batch_size, verbose=0).tobytes() == model.predict(x, verbose=0).tobytes()
    assert model.evaluate(x, y, batch_size=batch_size, verbose=0) == model.evaluate(x, y, batch_size=len(x),
                                                                                   verbose=0)


@pytest.mark.parametrize("batch_size", [2**63, 2**64])
def test_batch_size_beyond_int64_is_refused_or_clamped(batch_size):
    model = make_model()
    x, y = make_data()
    keep = Unchanged(model, x, y)
    try:
        model.predict(x, batch_size=batch_size, verbose=0)
    except (OverflowError, ValueError) as e:
        assert "batch_size" in str(e) or "int" in str(e)
        keep.check()
    else:
        keep.check()


OPTIMIZERS = [mnistc.optimizers.SGD, mnistc.optimizers.Adam, mnistc.optimizers.AdamW, mnistc.optimizers.RMSprop]


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -float("inf"), 0.0, -1e-3, np.float32("nan"), "0.01",
                                None, True, 1 + 0j])
def test_bad_learning_rates_for_every_optimizer(opt, lr):
    with pytest.raises(ValueError, match="learning_rate"):
        opt(learning_rate=lr)


@pytest.mark.parametrize("make, match", [
    (lambda: mnistc.optimizers.Adam(beta_1=-0.1), r"`beta_1` must be in \[0, 1\)"),
    (lambda: mnistc.optimizers.Adam(beta_1=float("nan")), r"`beta_1` must be in \[0, 1\)"),
    (lambda: mnistc.optimizers.Adam(beta_2=1.0), r"`beta_2` must be in \[0, 1\)"),
    (lambda: mnistc.optimizers.Adam(beta_2=1.5), r"`beta_2` must be in \[0, 1\)"),
    (lambda: mnistc.optimizers.Adam(epsilon=-1e-7), "`epsilon` must be a finite number > 0"),
    (lambda: mnistc.optimizers.Adam(epsilon=float("nan")), "`epsilon` must be a finite number > 0"),
    (lambda: mnistc.optimizers.Adam(epsilon=float("inf")), "`epsilon` must be a finite number > 0"),
    (lambda: mnistc.optimizers.AdamW(weight_decay=-0.1), "weight_decay must be a finite number >= 0"),
    (lambda: mnistc.optimizers.AdamW(weight_decay=float("nan")), "weight_decay must be a finite number >= 0"),
    (lambda: mnistc.optimizers.RMSprop(rho=1.0), r"`rho` must be in \[0, 1\)"),
    (lambda: mnistc.optimizers.RMSprop(rho=float("nan")), r"`rho` must be in \[0, 1\)"),
    (lambda: mnistc.optimizers.RMSprop(epsilon=0), "`epsilon` must be a finite number > 0"),
    (lambda: mnistc.optimizers.SGD(momentum=-0.5), "momentum` must be a float between"),
    (lambda: mnistc.optimizers.SGD(momentum=float("nan")), "momentum` must be a float between"),
    (lambda: mnistc.optimizers.SGD(momentum=1.5), "momentum` must be a float between"),
])
def test_bad_optimizer_hyperparameters_beyond_the_basic_ones(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("lr", [float("nan"), 0.0, -1.0, float("inf")])
def test_setting_a_bad_learning_rate_on_a_compiled_model_keeps_training_possible(lr):
    model = make_model()
    x, y = make_data()
    with pytest.raises(ValueError, match="learning_rate"):
        model.optimizer.learning_rate = lr
    assert model.optimizer.learning_rate == 0.01
    model.fit(x, y, epochs=1, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.parametrize("units, exc", [(-5, ValueError), (1.5, ValueError), ("3", ValueError), (None, ValueError),
                                        (True, ValueError)])
def test_bad_layer_sizes(units, exc):
    with pytest.raises(exc, match="units"):
        layers.Dense(units)


def test_absurd_layer_size_fails_cleanly():
    with pytest.raises((MemoryError, ValueError)):
        mnistc.Sequential([mnistc.Input((8,)), layers.Dense(2**40)])


@pytest.mark.parametrize("seed, exc", [(-1, ValueError), ("x", ValueError), (1.5, ValueError), (None, ValueError)])
def test_bad_random_seeds(seed, exc):
    with pytest.raises(exc, match="seed"):
        mnistc.utils.set_random_seed(seed)


def test_large_seeds_are_accepted_and_deterministic():
    for seed in (2**32, 2**63, 2**64):
        a = make_model(seed=seed).get_weights()
        b = make_model(seed=seed).get_weights()
        assert all(u.tobytes() == v.tobytes() for u, v in zip(a, b))


# --- rows 44-50: hostile weight and model files ---

def built_model(seed=0):
    """An uncompiled, built model with distinctive weights (no training needed)."""
    model = mnistc.Sequential([mnistc.Input((6,)), layers.Dense(5, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.weights])
    return model


@pytest.fixture
def saved(tmp_path):
    model = built_model()
    w = tmp_path / "good.weights.npz"
    k = tmp_path / "good.keras"
    model.save_weights(w)
    model.save(k)
    return model, w.read_bytes(), k.read_bytes()


def rezip(blob, mod=None, add=(), compression=zipfile.ZIP_STORED):
    """Copy a zip, passing each (name, data) through mod (None drops it), then adding `add`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for info in src.infolist():
            name, data = (mod or (lambda n, d: (n, d)))(info.filename, src.read(info))
            if name is not None:
                dst.writestr(name, data)
        for name, data in add:
            dst.writestr(name, data)
    return out.getvalue()


def npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npy_header(d, tail=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue() + tail


def replace(key, data):
    return lambda n, d: (n, data) if n == key else (n, d)


def edit_config(fn):
    def mod(n, d):
        if n == "config.json":
            c = json.loads(d)
            fn(c)
            return n, json.dumps(c).encode()
        return n, d
    return mod


K0, B0, K1, B1 = ("layers/dense/vars/0.npy", "layers/dense/vars/1.npy", "layers/dense_1/vars/0.npy",
                  "layers/dense_1/vars/1.npy")


def load_weights_rejects(model, path, blob, exc=mnistc.FormatError, match=""):
    path.write_bytes(blob)
    keep = Unchanged(model)
    with pytest.raises(exc, match=match or None) as info:
        model.load_weights(path)
    keep.check()
    assert not [f for f in os.listdir(path.parent) if f.startswith(".tmp-")]
    return info.value


def load_model_rejects(path, blob, exc=mnistc.FormatError, match=""):
    path.write_bytes(blob)
    with pytest.raises(exc, match=match or None) as info:
        mnistc.load_model(path)
    return info.value


def _cut_offsets(n, count=32):
    return sorted(set(int(i) for i in np.linspace(0, n - 1, count)) | {1, 4, 21, 22, n - 22, n - 1})


def test_weights_truncated_at_many_offsets(saved, tmp_path):
    model, w, _ = saved
    for cut in _cut_offsets(len(w)):
        load_weights_rejects(model, tmp_path / "cut.weights.npz", w[:cut], mnistc.FormatError,
                             "not a mnistc weights file|damaged|truncated|do not match")


def test_models_truncated_at_many_offsets(saved, tmp_path):
    _, _, k = saved
    for cut in _cut_offsets(len(k)):
        load_model_rejects(tmp_path / "cut.keras", k[:cut], mnistc.FormatError,
                           "not a mnistc model file|damaged|not a mnistc weights file")


@pytest.mark.parametrize("name, blob", [
    ("idx", bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])),
    ("npy", npy(np.zeros((6, 5), np.float32))),
    ("gzip", b"\x1f\x8b\x08\x00" + bytes(20)),
    ("html", b"<!DOCTYPE html><html><body>Not Found</body></html>"),
    ("elf", b"\x7fELF\x02\x01\x01" + bytes(57)),
    ("json", b'{"class_name": "Sequential"}'),
    ("zip-magic-only", b"PK\x03\x04" + bytes(26)),
    ("empty-zip", b"PK\x05\x06" + bytes(18)),
])
def test_other_formats_are_not_weights(saved, tmp_path, name, blob):
    model, _, _ = saved
    load_weights_rejects(model, tmp_path / "x.weights.npz", blob, mnistc.FormatError,
                         "not a mnistc weights file|do not match")
    load_model_rejects(tmp_path / "x.keras", blob, mnistc.FormatError, "not a mnistc model file")


def test_wrong_local_header_magic(saved, tmp_path):
    model, w, k = saved
    load_weights_rejects(model, tmp_path / "m.weights.npz", b"MNST" + w[4:], mnistc.FormatError, "damaged")
    for name, start, _ in _payload_ranges(k):
        if name in ("config.json", "model.weights.npz"):  # the members load_model reads
            with zipfile.ZipFile(io.BytesIO(k)) as zf:
                off = zf.getinfo(name).header_offset
            load_model_rejects(tmp_path / "m.keras", k[:off] + b"MNST" + k[off + 4:], mnistc.FormatError,
                               "damaged|not a mnistc")


def _payload_ranges(blob):
    """(name, start, end) of each member's stored bytes."""
    out = []
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for info in zf.infolist():
            name_len, extra_len = struct.unpack("<HH", blob[info.header_offset + 26:info.header_offset + 30])
            start = info.header_offset + 30 + name_len + extra_len
            out.append((info.filename, start, start + info.compress_size))
    return out


def test_every_flipped_payload_bit_is_caught_by_the_crc(saved, tmp_path):
    """.weights.npz members are stored: any flipped data bit fails the CRC. In a .keras file the members
    are deflated: a flip either fails (CRC, invalid stream) or hits a bit that does not change the
    content (the final-block flag, padding after the end code), and then the same weights load."""
    model, w, k = saved
    for name, start, end in _payload_ranges(w):
        for pos in sorted({start, (start + end) // 2, end - 1}):
            for bit in (0x01, 0x80):
                b = bytearray(w)
                b[pos] ^= bit
                load_weights_rejects(model, tmp_path / "f.weights.npz", bytes(b), mnistc.FormatError,
                                     "CRC|damaged")


def test_every_flipped_bit_of_a_model_file_is_refused_or_harmless(saved, tmp_path):
    model, _, k = saved
    refused = 0
    for name, start, end in _payload_ranges(k):
        if name == "metadata.json":  # informational; load_model does not read it
            continue
        for pos in range(start, end, max(1, (end - start) // 16)):
            for bit in (0x01, 0x10, 0x80):
                b = bytearray(k)
                b[pos] ^= bit
                p = tmp_path / "f.keras"
                p.write_bytes(bytes(b))
                try:
                    loaded = mnistc.load_model(p)
                except mnistc.FormatError:
                    refused += 1
                else:
                    assert all(a.tobytes() == c.tobytes() for a, c in zip(loaded.get_weights(),
                                                                          model.get_weights())), (name, pos)
    assert refused > 50


def test_trailing_bytes_never_change_what_loads(saved, tmp_path):
    """zip (like Keras's loader) treats bytes after the archive as a comment: the file either loads
    exactly the saved weights or is refused; it never yields other values."""
    model, w, k = saved
    other = built_model(seed=9)
    for extra in (b"\x00", b"GARBAGE!", bytes(4096)):
        p = tmp_path / "t.weights.npz"
        p.write_bytes(w + extra)
        keep = Unchanged(other)
        try:
            other.load_weights(p)
        except mnistc.FormatError:
            keep.check()
        else:
            assert all(a.tobytes() == b.tobytes() for a, b in zip(other.get_weights(), model.get_weights()))
            other.set_weights(keep.weights)
        p = tmp_path / "t.keras"
        p.write_bytes(k + extra)
        try:
            loaded = mnistc.load_model(p)
        except mnistc.FormatError:
            pass
        else:
            assert all(a.tobytes() == b.tobytes() for a, b in zip(loaded.get_weights(), model.get_weights()))


@pytest.mark.parametrize("key, arr, exc, match", [
    (B0, np.zeros(6, np.float32), ValueError, r"file shape \(6,\) vs model shape \(5,\)"),
    (K0, np.zeros((5, 6), np.float32), ValueError, r"file shape \(5, 6\) vs model shape \(6, 5\)"),
    (K1, np.zeros((5, 3, 1), np.float32), ValueError, r"file shape \(5, 3, 1\) vs model shape \(5, 3\)"),
    (K1, np.zeros((), np.float32), ValueError, r"file shape \(\) vs model shape \(5, 3\)"),
    (K0, np.zeros((6, 5), np.int32), mnistc.FormatError, "dtype int32, expected float32"),
    (K0, np.zeros((6, 5), np.complex64), mnistc.FormatError, "dtype complex64, expected float32"),
    (K0, np.zeros((6, 5), bool), mnistc.FormatError, "dtype bool, expected float32"),
    (K0, np.zeros((6, 5), "U3"), mnistc.FormatError, "dtype <U3, expected float32"),
    (B1, np.array([0, 0, np.inf], np.float32), mnistc.FormatError, "non-finite value in layers/dense_1/vars/1"),
    (B1, np.array([0, -np.inf, 0], np.float32), mnistc.FormatError, "non-finite value in layers/dense_1/vars/1"),
    (K1, np.full((5, 3), np.nan, np.float64), mnistc.FormatError, "non-finite value in layers/dense_1/vars/0"),
])
def test_bad_entries_leave_the_model_untouched(saved, tmp_path, key, arr, exc, match):
    # The bad entry is the last or a middle one: the entries before it are valid and must not be applied.
    model, w, k = saved
    blob = rezip(w, replace(key, npy(arr)))
    load_weights_rejects(model, tmp_path / "b.weights.npz", blob, exc, match)
    kblob = rezip(k, replace("model.weights.npz", blob))
    load_model_rejects(tmp_path / "b.keras", kblob, exc, match)


def test_float64_and_big_endian_fortran_entries_load_exactly(saved, tmp_path):
    model, w, _ = saved
    other = built_model(seed=5)
    vals = [np.asfortranarray(v.astype(">f4")) if i % 2 == 0 else v.astype(np.float64)
            for i, v in enumerate(model.get_weights())]
    blob = rezip(w, lambda n, d: (n, npy(vals[[K0, B0, K1, B1].index(n)])))
    p = tmp_path / "e.weights.npz"
    p.write_bytes(blob)
    other.load_weights(p)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(other.get_weights(), model.get_weights()))
    assert all(w.dtype == np.float32 and w.flags.c_contiguous for w in other.weights)


def test_entries_for_a_different_architecture(saved, tmp_path):
    model, w, _ = saved
    bigger = mnistc.Sequential([mnistc.Input((6,)), layers.Dense(5), layers.Dense(4), layers.Dense(3)])
    p = tmp_path / "big.weights.npz"
    bigger.save_weights(p)
    load_weights_rejects(model, p, p.read_bytes(), mnistc.FormatError,
                         r"unexpected \['layers/dense_2/vars/0'.*the model has 4 weight arrays, the file 6")
    no_bias = mnistc.Sequential([mnistc.Input((6,)), layers.Dense(5, use_bias=False), layers.Dense(3)])
    no_bias.save_weights(p)
    load_weights_rejects(model, p, p.read_bytes(), mnistc.FormatError, r"missing \['layers/dense/vars/1'\]")


def test_a_planted_pickle_never_runs(saved, tmp_path):
    """Pickles under every name the loaders read: as the weights file, as an object-dtype entry in
    place of a kernel, as the model's weights archive, and as an extra member of a .keras file."""
    model, w, k = saved
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = pickle.dumps(Evil())
    evil_entry = npy_header({"descr": "|O", "fortran_order": False, "shape": (6, 5)}, evil)
    evil_npy_obj = npy(np.array([Evil()] * 30, dtype=object).reshape(6, 5))
    for blob in (evil, rezip(w, replace(K0, evil_entry)), rezip(w, replace(K0, evil_npy_obj))):
        load_weights_rejects(model, tmp_path / "e.weights.npz", blob, mnistc.FormatError, "")
        assert not marker.exists()
    for blob in (evil, rezip(k, replace("model.weights.npz", evil)),
                 rezip(k, replace("model.weights.npz", rezip(w, replace(K0, evil_npy_obj)))),
                 rezip(k, replace("config.json", evil))):
        load_model_rejects(tmp_path / "e.keras", blob, mnistc.FormatError, "")
        assert not marker.exists()
    # Extra members are never read, pickles included.
    p = tmp_path / "extra.keras"
    p.write_bytes(rezip(k, add=[("model.pkl", evil), ("__init__.py", b"open(%r, 'w')" % str(marker))]))
    loaded = mnistc.load_model(p)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(loaded.get_weights(), model.get_weights()))
    assert not marker.exists()


@pytest.mark.parametrize("edit, exc, match", [
    (lambda c: c["config"].update(layers=[{}] * 20000), mnistc.FormatError, "at most 10000 layer"),
    (lambda c: c["config"].update(layers="Dense"), mnistc.FormatError, "must be a list"),
    (lambda c: c.update(class_name="Subclassed"), mnistc.FormatError, "unknown model class 'Subclassed'"),
    (lambda c: c["config"]["layers"][0].update(class_name="Lambda", config={"function": "os.system"}), ValueError,
     "Unknown layer class 'Lambda'"),
    (lambda c: c["config"]["layers"][0]["config"].update(units=-3), ValueError, "units"),
    (lambda c: c["config"]["layers"][0]["config"].update(units=7), ValueError,
     r"file shape \(6, 5\) vs model shape \(6, 7\)"),
    (lambda c: c["config"].update(input_shape=[7]), ValueError, r"file shape \(6, 5\) vs model shape \(7, 5\)"),
    (lambda c: c["config"].update(input_shape=[-1]), mnistc.FormatError, r"bad input_shape \[-1\]"),
    (lambda c: c["config"]["layers"][0]["config"].update(activation="__import__('os')"), ValueError,
     "Could not interpret activation"),
])
def test_bad_model_configs(saved, tmp_path, edit, exc, match):
    _, _, k = saved
    load_model_rejects(tmp_path / "c.keras", rezip(k, edit_config(edit)), exc, match)


# --- regressions: each of these failed before the loading hardening (5a26d94) ---

def test_members_claiming_another_known_compression_are_format_errors(saved, tmp_path):
    model, w, k = saved
    for method in (8, 12, 14):  # deflate, bzip2, lzma: zipfile knows them, the bytes are not that
        load_weights_rejects(model, tmp_path / "z.weights.npz", _zip_patch(w, method=method), mnistc.FormatError,
                             "damaged")


def _zip_patch(blob, method=None, flag=None):
    b = bytearray(blob)
    i = b.find(b"PK\x01\x02")
    while i >= 0:
        if method is not None:
            b[i + 10:i + 12] = struct.pack("<H", method)
        if flag is not None:
            b[i + 8] |= flag
        i = b.find(b"PK\x01\x02", i + 4)
    return bytes(b)



@pytest.mark.parametrize("patch", [dict(method=99), dict(method=1), dict(flag=1)],
                         ids=["method-99", "method-shrunk", "encrypted"])
def test_unsupported_zip_members_are_format_errors(saved, tmp_path, patch):
    model, w, k = saved
    load_weights_rejects(model, tmp_path / "z.weights.npz", _zip_patch(w, **patch), mnistc.FormatError, "")
    load_model_rejects(tmp_path / "z.keras", _zip_patch(k, **patch), mnistc.FormatError, "")


def test_malformed_npy_header_is_a_format_error(saved, tmp_path):
    model, w, _ = saved
    blob = rezip(w, replace(K0, b"\x93NUMPY\x01\x00\x10\x00{'descr': __import__('os')}"))
    load_weights_rejects(model, tmp_path / "h.weights.npz", blob, mnistc.FormatError, "damaged")


def test_npy_header_declaring_a_huge_shape_is_refused_before_allocating(saved, tmp_path):
    model, w, _ = saved
    blob = rezip(w, replace(K0, npy_header({"descr": "<f4", "fortran_order": False, "shape": (2**40,)},
                                           bytes(64))))
    load_weights_rejects(model, tmp_path / "s.weights.npz", blob, (mnistc.FormatError, ValueError), "shape")


def test_deeply_nested_config_is_a_format_error(saved, tmp_path):
    _, _, k = saved
    blob = rezip(k, replace("config.json", b"[" * 100000 + b"]" * 100000), compression=zipfile.ZIP_DEFLATED)
    load_model_rejects(tmp_path / "d.keras", blob, mnistc.FormatError, "config")


def test_compile_config_of_the_wrong_type_is_a_format_error(saved, tmp_path):
    _, _, k = saved
    load_model_rejects(tmp_path / "cc.keras", rezip(k, edit_config(lambda c: c.update(compile_config="adam"))),
                       mnistc.FormatError, "compile")


def test_a_compiled_model_loads_back(tmp_path):
    model = built_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "c.keras")
    loaded = mnistc.load_model(tmp_path / "c.keras")
    assert loaded.compiled and type(loaded.loss).__name__ == "SparseCategoricalCrossentropy"
    assert all(a.tobytes() == b.tobytes() for a, b in zip(loaded.get_weights(), model.get_weights()))


RSS_CHILD = textwrap.dedent("""
    import resource, sys, time, zipfile
    import mnistc
    path, kind = sys.argv[1], sys.argv[2]
    if kind == "bomb":  # stream a .keras whose model.weights.npz inflates to 96 MiB of zeros
        src = zipfile.ZipFile(sys.argv[3])
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename != "model.weights.npz":
                    dst.writestr(info.filename, src.read(info))
            with dst.open("model.weights.npz", "w", force_zip64=True) as f:
                zeros = bytes(1 << 20)
                for _ in range(96):
                    f.write(zeros)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        mnistc.load_model(path)
        outcome = "loaded"
    except Exception as e:
        outcome = type(e).__name__
    dt = time.perf_counter() - t0
    print(outcome, round(dt, 3), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
""")


def run_rss_child(*args):
    r = subprocess.run([sys.executable, "-c", RSS_CHILD, *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    outcome, seconds, growth_kib = r.stdout.split()
    return outcome, float(seconds), int(growth_kib)


def test_absurd_dims_in_config_are_refused_before_allocating(saved, tmp_path):
    _, _, k = saved

    def edit(c):
        c["config"]["input_shape"] = [2000]
        c["config"]["layers"][0]["config"]["units"] = 8000
    p = tmp_path / "dims.keras"
    p.write_bytes(rezip(k, edit_config(edit)))
    outcome, seconds, growth = run_rss_child(p, "plain")
    assert outcome == "FormatError", outcome
    assert growth < 32 * 1024, f"peak RSS grew {growth} KiB in {seconds} s"


def test_zip_bomb_in_a_model_file_is_refused_before_inflating(saved, tmp_path):
    _, _, k = saved
    src = tmp_path / "good.keras"
    outcome, seconds, growth = run_rss_child(tmp_path / "bomb.keras", "bomb", src)
    assert outcome == "FormatError", outcome
    assert growth < 32 * 1024, f"peak RSS grew {growth} KiB in {seconds} s"


# --- convolutional models: shapes, window geometry, sizes, non-finite values, channels_first ---

def make_convnet(seed=0, batch_norm=False, hw=8):
    """A small convnet of every convolutional kind the Keras MNIST example uses (and BatchNormalization)."""
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input((hw, hw, 1)), layers.Conv2D(4, 3, activation="relu"),
                               *([layers.BatchNormalization()] if batch_norm else []), layers.MaxPooling2D(2),
                               layers.Flatten(), layers.Dropout(0.5), layers.Dense(3, activation="softmax")])
    model.compile(mnistc.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_images(n=12, hw=8, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, hw, hw, 1), dtype=np.float32), rng.integers(0, 3, n)


def conv_calls(model, x, y):
    return {"fit": lambda: model.fit(x, y, batch_size=4, verbose=0),
            "evaluate": lambda: model.evaluate(x, y, verbose=0), "predict": lambda: model.predict(x, verbose=0),
            "train_on_batch": lambda: model.train_on_batch(x, y), "test_on_batch": lambda: model.test_on_batch(x, y),
            "predict_on_batch": lambda: model.predict_on_batch(x)}


@pytest.mark.parametrize("shape, found", [
    ((12, 64), r"\(None, 64\)"),                     # rank-2 data (flattened images)
    ((12, 8, 8, 3), r"\(None, 8, 8, 3\)"),           # RGB into a grayscale model
    ((12, 8, 8, 2), r"\(None, 8, 8, 2\)"),
    ((12, 1, 8, 8), r"\(None, 1, 8, 8\)"),           # channels_first data
    ((12, 0, 0, 1), r"\(None, 0, 0, 1\)"),           # 0-sized images
    ((12, 8, 0, 1), r"\(None, 8, 0, 1\)"),
    ((12, 8, 8, 0), r"\(None, 8, 8, 0\)"),
    ((12, 6, 6, 1), r"\(None, 6, 6, 1\)"),
    ((12, 8, 8, 1, 2), r"\(None, 8, 8, 1, 2\)"),
])
def test_convnet_refuses_wrong_image_shapes_everywhere(shape, found):
    model = make_convnet()
    _, y = make_images()
    bad = np.zeros(shape, np.float32)
    for name, call in conv_calls(model, bad, y).items():
        err = rejects(model, ValueError, r"expected shape \(None, 8, 8, 1\)", call, bad, y)
        assert re.search(found, str(err)), (name, str(err))


@pytest.mark.parametrize("shape", [(0, 8, 8, 1), (0, 64)])
def test_convnet_refuses_zero_images(shape):
    model = make_convnet()
    bad, y = np.zeros(shape, np.float32), np.zeros(0, np.int64)
    for call in conv_calls(model, bad, y).values():
        rejects(model, ValueError, r"0 samples|expected shape \(None, 8, 8, 1\)", call, bad, y)


@pytest.mark.parametrize("shape", [(0, 8, 1), (8, 0, 1), (8, 8, 0), (0, 0, 0)])
def test_zero_sized_image_inputs_are_refused_when_declared(shape):
    with pytest.raises(ValueError, match=r"positive dimensions, got \(" + ", ".join(map(str, shape))):
        mnistc.Sequential([mnistc.Input(shape), layers.Conv2D(2, 1)])


def test_convnet_adapts_a_missing_channel_axis_like_keras():
    """(N, 8, 8) feeds Input((8, 8, 1)) (Keras's rank adaptation), bit-identically."""
    model = make_convnet()
    x, _ = make_images()
    assert model.predict(x[..., 0], verbose=0).tobytes() == model.predict(x, verbose=0).tobytes()


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Conv2D(2, 0), r"Conv2D: `kernel_size` must be a positive int.*got \(0, 0\)"),
    (lambda: layers.Conv2D(2, -3), r"`kernel_size` must be a positive int.*got \(-3, -3\)"),
    (lambda: layers.Conv2D(2, (3,)), r"`kernel_size` must be a positive int or a tuple of 2"),
    (lambda: layers.Conv2D(2, (3, 3, 3)), r"`kernel_size` must be a positive int or a tuple of 2"),
    (lambda: layers.Conv2D(2, 2.5), r"`kernel_size`.*got 2.5"),
    (lambda: layers.Conv2D(2, "3"), r"`kernel_size`.*got '3'"),
    (lambda: layers.Conv2D(2, None), r"`kernel_size`.*got None"),
    (lambda: layers.Conv2D(2, (True, 3)), r"`kernel_size`.*got \(True, 3\)"),
    (lambda: layers.Conv2D(2, float("nan")), r"`kernel_size`.*got nan"),
    (lambda: layers.Conv2D(2, 3, strides=0), r"Conv2D: `strides` must be a positive int.*got \(0, 0\)"),
    (lambda: layers.Conv2D(2, 3, strides=-1), r"`strides`.*got \(-1, -1\)"),
    (lambda: layers.Conv2D(2, 3, strides=(1, 0)), r"`strides`.*got \(1, 0\)"),
    (lambda: layers.Conv2D(2, 3, padding="full"), r"`padding` must be 'valid' or 'same', got 'full'"),
    (lambda: layers.Conv2D(2, 3, dilation_rate=2), r"dilation_rate and groups other than 1"),
    (lambda: layers.MaxPooling2D(0), r"MaxPooling2D: `pool_size` must be a positive int.*got \(0, 0\)"),
    (lambda: layers.MaxPooling2D(2, strides=0), r"MaxPooling2D: `strides`.*got \(0, 0\)"),
    (lambda: layers.AveragePooling2D(-2), r"AveragePooling2D: `pool_size`.*got \(-2, -2\)"),
    (lambda: layers.AveragePooling2D(2, strides=-2), r"AveragePooling2D: `strides`.*got \(-2, -2\)"),
    (lambda: layers.Conv2D(0, 3), r"`filters`. Expected a strictly positive value. Received filters=0"),
    (lambda: layers.Conv2D(-1, 3), r"Received filters=-1"),
    (lambda: layers.Conv2D(2.0, 3), r"Received filters=2.0"),
    (lambda: layers.Conv2D(True, 3), r"Received filters=True"),
])
def test_bad_window_arguments_name_the_argument_and_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _conv_body(seed=0):
    """A compiled model ending in feature maps (so that any convolutional layer can be added to it)."""
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input((8, 8, 1)), layers.Conv2D(3, 3, activation="relu")])
    model.compile("adam", "mse")
    return model


@pytest.mark.parametrize("make, exc, match", [
    (lambda: layers.Conv2D(2, 7), ValueError, r"window \(7, 7\) is larger than the input's height 6.*padding='same'"),
    (lambda: layers.Conv2D(2, 10**6), ValueError, r"window \(1000000, 1000000\) is larger than the input"),
    (lambda: layers.Conv2D(2, (1, 7)), ValueError, r"window \(1, 7\) is larger than the input's width 6"),
    (lambda: layers.MaxPooling2D(10**6), ValueError, r"MaxPooling2D layer .* window \(1000000, 1000000\) is larger"),
    (lambda: layers.AveragePooling2D(7), ValueError, r"AveragePooling2D layer .* window \(7, 7\) is larger"),
    # huge weights: refused by the allocator, never a crash or a half-added layer
    (lambda: layers.Conv2D(2**40, 3), (MemoryError, ValueError), r"1099511627776"),
    (lambda: layers.Conv2D(2**62, 3), (MemoryError, ValueError), r"too big|allocate"),
    (lambda: layers.Conv2D(2, 10**6, padding="same"), (MemoryError, ValueError), r"1000000"),
    (lambda: layers.Conv2D(2, 2**40, padding="same"), (MemoryError, ValueError), r"`kernel_size` must be at most 16777216"),
])
def test_bad_geometry_and_huge_layers_leave_the_model_as_it_was(make, exc, match):
    model = _conv_body()
    x = make_images(n=4)[0]
    before = model.predict(x, verbose=0)
    keep = Unchanged(model, x)
    names = [layer.name for layer in model.layers]
    with pytest.raises(exc, match=match):
        model.add(make())
    keep.check()
    assert [layer.name for layer in model.layers] == names
    assert model.predict(x, verbose=0).tobytes() == before.tobytes()
    model.fit(x, np.zeros((4, 6 * 6 * 3), np.float32), verbose=0)     # still trains


C_LIMIT_CASES = [
    (lambda: layers.MaxPooling2D(2**40, padding="same"),
     r"MaxPooling2D kernel height and stride height must be in \[1, 16777216\], found 1099511627776"),
    (lambda: layers.AveragePooling2D(2, strides=2**62, padding="same"),
     r"AveragePooling2D kernel height and stride height must be in \[1, 16777216\], found 2 and 4611686018427387904"),
    (lambda: layers.Conv2D(2, 3, strides=2**63 - 1),
     r"Conv2D kernel height and stride height must be in \[1, 16777216\], found 3 and 9223372036854775807"),
]


@pytest.mark.parametrize("make, match", C_LIMIT_CASES)
def test_windows_beyond_the_c_limit_are_refused_when_added(make, match):
    model = _conv_body()
    with pytest.raises(ValueError, match="16777216"):
        model.add(make())


def test_huge_channel_count_in_the_input_fails_cleanly():
    with pytest.raises((MemoryError, ValueError), match="1099511627776"):
        mnistc.Sequential([mnistc.Input((8, 8, 2**40)), layers.Conv2D(2, 3)])


@pytest.mark.parametrize("pool", [layers.MaxPooling2D, layers.AveragePooling2D])
def test_a_window_of_a_million_with_same_padding_covers_the_image(pool):
    """Keras accepts it: one output cell per channel, the max or mean of the whole image."""
    mnistc.utils.set_random_seed(0)
    model = mnistc.Sequential([mnistc.Input((8, 8, 2)), pool(10**6, padding="same")])
    x = np.random.default_rng(0).random((3, 8, 8, 2), dtype=np.float32)
    out = model.predict(x, verbose=0)
    want = x.max(axis=(1, 2)) if pool is layers.MaxPooling2D else x.mean(axis=(1, 2), dtype=np.float64)
    np.testing.assert_allclose(out.reshape(3, 2), want, rtol=1e-6)


def test_strides_larger_than_the_image_keep_the_first_window():
    mnistc.utils.set_random_seed(0)
    model = mnistc.Sequential([mnistc.Input((8, 8, 1)), layers.Conv2D(2, 3, strides=10**6, use_bias=False)])
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    out = model.predict(x, verbose=0)
    assert out.shape == (3, 1, 1, 2)
    k = model.layers[0].kernel
    np.testing.assert_allclose(out[:, 0, 0], np.einsum("nij,ijo->no", x[:, :3, :3, 0], k[:, :, 0]), rtol=1e-5)


def test_an_infinite_kernel_size_names_the_argument():
    with pytest.raises(ValueError, match=r"`kernel_size` must be a positive int"):
        layers.Conv2D(2, (float("inf"), 3))


def test_strides_beyond_int64_name_the_layer_and_the_limit():
    model = _conv_body()
    with pytest.raises(ValueError, match=r"stride"):
        model.add(layers.Conv2D(2, 3, strides=2**64))


@pytest.mark.parametrize("kwargs, match", [
    (dict(momentum=-0.1), r"`momentum` must be in \[0, 1\], got -0.1"),
    (dict(momentum=1.5), r"`momentum` must be in \[0, 1\], got 1.5"),
    (dict(momentum=float("nan")), r"`momentum` must be in \[0, 1\], got nan"),
    (dict(momentum=float("inf")), r"`momentum` must be in \[0, 1\], got inf"),
    (dict(epsilon=0.0), r"`epsilon` must be a positive number, got 0.0"),
    (dict(epsilon=-1e-3), r"`epsilon` must be a positive number, got -0.001"),
    (dict(epsilon=float("nan")), r"`epsilon` must be a positive number, got nan"),
    (dict(epsilon=float("inf")), r"`epsilon` must be a positive number, got inf"),
    (dict(axis=1), r"normalises the last axis \(axis=-1, channels_last\), got axis=1"),
    (dict(axis=[1, 2]), r"got axis=\[1, 2\]"),
])
def test_batch_normalization_hyperparameters_out_of_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.BatchNormalization(**kwargs)


@pytest.mark.parametrize("kwargs, word", [(dict(momentum=None), "momentum"), (dict(epsilon="x"), "epsilon")])
def test_batch_normalization_non_numbers_name_the_argument(kwargs, word):
    try:
        layers.BatchNormalization(**kwargs)
    except (TypeError, ValueError) as e:
        if word in str(e):
            return
        raise
    raise AssertionError("accepted")


@pytest.mark.parametrize("make", [lambda: layers.Conv2D(8, 3, data_format="channels_first"),
                                  lambda: layers.MaxPooling2D(data_format="channels_first"),
                                  lambda: layers.AveragePooling2D(data_format="channels_first"),
                                  lambda: layers.GlobalAveragePooling2D(data_format="channels_first"),
                                  lambda: layers.Conv2D(8, 3, data_format="NCHW")])
def test_channels_first_is_refused_naming_the_transpose(make):
    with pytest.raises(ValueError, match=r"channels_last only.*got data_format='(channels_first|NCHW)'.*"
                                         r"np\.transpose\(x, \(0, 2, 3, 1\)\)"):
        make()


def test_flatten_channels_first_matches_keras_or_is_refused():
    x = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    try:
        model = mnistc.Sequential([mnistc.Input((2, 3, 4)), layers.Flatten(data_format="channels_first")])
    except ValueError as e:
        assert "channels_last" in str(e)
        return
    keras_order = np.transpose(x, (0, 2, 3, 1)).reshape(2, -1)
    assert model.predict(x, verbose=0).tobytes() == keras_order.tobytes()


@pytest.mark.parametrize("value, word", [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite"),
                                         (-np.inf, "0 NaN and 1 infinite")])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_non_finite_images_are_refused_by_every_entry_point(value, word, batch_norm):
    model = make_convnet(batch_norm=batch_norm)
    x, y = make_images()
    x[7, 2, 5, 0] = value
    for name, call in conv_calls(model, x, y).items():
        rejects(model, ValueError, f"x contains {word} value", call, x, y)


@pytest.mark.parametrize("where", ["conv kernel", "conv bias", "dense kernel", "batch norm gamma"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_show_in_predictions_and_fit_refuses_them(where, value):
    """predict and evaluate compute with the weights they have (NaN outputs, NaN loss: Keras does the
    same) and do not blame x; fit refuses to start, naming the weight, and changes nothing."""
    model = make_convnet(batch_norm=True)
    x, y = make_images()
    conv, bn, dense = model.layers[0], model.layers[1], model.layers[-1]
    name, target = {"conv kernel": (f"{conv.name}/kernel", conv.kernel), "conv bias": (f"{conv.name}/bias", conv.bias),
                    "dense kernel": (f"{dense.name}/kernel", dense.kernel),
                    "batch norm gamma": (f"{bn.name}/gamma", bn.gamma)}[where]
    target.flat[0] = value
    keep = Unchanged(model, x, y)
    out = model.predict(x, verbose=0)
    assert out.shape == (12, 3) and np.isnan(out).any()
    assert np.isnan(model.evaluate(x, y, verbose=0)[0])
    keep.check()
    counts = "1 NaN and 0 infinite" if np.isnan(value) else "0 NaN and 1 infinite"
    for call in (lambda: model.fit(x, y, batch_size=4, verbose=0), lambda: model.train_on_batch(x, y)):
        rejects(model, ValueError, rf"Cannot train: the weights \['{name}'\] hold {counts}", call, x, y)


def test_huge_zero_stride_image_views_fail_cleanly():
    model = make_convnet()
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(2**33, 8, 8, 1), strides=(0, 0, 0, 0))
    keep = Unchanged(model)
    with pytest.raises((MemoryError, ValueError)):
        model.predict(huge, verbose=0)
    keep.check()
