"""The products' zero-skipping path (gemm.h): on mostly-zero inputs such as MNIST's images, the
first layer's forward product (X @ W) and its weight gradient (X^T @ dY) run over the nonzero
pixels only. It must give the dense kernels' bits, on each variant that has it (avx512, avx2) and
for any thread count, keep NaN and infinities where the dense path has them, and leave training
bit-for-bit unchanged; MNISTC_SPARSE=0 or _C.testing.set_sparse(False) turn it off."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mnistc
from mnistc import _C

# the variants with zero-skipping kernels that this CPU runs
VARIANTS = [v for v in ("avx512", "avx2") if v in _C.testing.kernel_info()["supported"]]
pytestmark = pytest.mark.skipif(not VARIANTS, reason="the zero skipping needs AVX2 or AVX-512")
in_use = pytest.mark.skipif(_C.testing.kernel_info()["variant"] not in VARIANTS,
                            reason="the kernel variant in use has no zero skipping")


@pytest.fixture(scope="module")
def images(mnist_dir):
    (x, _), _ = mnistc.datasets.mnist.load_data(mnist_dir)
    return (x[:3000].reshape(-1, 784) / np.float32(255)).astype(np.float32)


def product(ta, alpha, A, B, beta, C0, sparse, variant):
    """C = alpha*op(A)@B + beta*C0 with a kernel variant, zero skipping on or off."""
    previous = _C.testing.set_sparse(sparse)
    try:
        C = C0.copy()
        _C.testing.gemm_variant(ta, False, alpha, A, B, beta, C, variant)
        return C
    finally:
        _C.testing.set_sparse(previous)


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ta, rows", [(False, 5), (False, 96), (False, 128), (False, 1000),
                                      (True, 5), (True, 96), (True, 128), (True, 300)])
@pytest.mark.parametrize("units", [10, 128, 130, 200])
def test_a_first_layers_products_on_images_have_the_dense_bits(images, ta, rows, units, variant):
    """The forward product X @ W (ta False) and the weight gradient X^T @ dY (ta True) on MNIST
    rows: zero skipping on and off give the same bits under several alpha/beta, and the dense
    result is the float64 product to float32 accuracy."""
    rng = np.random.default_rng(rows * 1000 + units)
    X = images[rng.permutation(len(images))[:rows]]
    assert (X == 0).mean() > 0.7
    B = (rng.standard_normal((rows, units)) * 0.01 if ta else rng.standard_normal((784, units)) * 0.05)
    B = B.astype(np.float32)
    C0 = rng.standard_normal((784 if ta else rows, units)).astype(np.float32)
    opx = X.T if ta else X
    for alpha, beta in ((1.0, 0.0), (0.5, 1.0), (-1.25, 0.75)):
        dense = product(ta, alpha, X, B, beta, C0, False, variant)
        assert same_bits(product(ta, alpha, X, B, beta, C0, True, variant), dense)
        ref = alpha * (opx.astype(np.float64) @ B.astype(np.float64)) + beta * C0
        np.testing.assert_allclose(dense, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ta", [False, True])
def test_nan_and_infinities_land_where_the_dense_path_puts_them(images, ta, variant):
    """0 * inf is NaN: a weight that overflowed must poison the outputs even where the pixel is 0,
    so a chunk of B holding one runs every term; NaN and inf in the input are never skipped."""
    rng = np.random.default_rng(7)
    X = images[:128].copy()
    X[3, 400], X[70, 5] = np.nan, np.inf
    units = 128
    B = (rng.standard_normal((128 if ta else 784, units)) * 0.05).astype(np.float32)
    B[10, 3], B[100, 64] = np.inf, np.nan
    C0 = np.zeros((784 if ta else 128, units), np.float32)
    dense = product(ta, 1.0, X, B, 0.0, C0, False, variant)
    sparse = product(ta, 1.0, X, B, 0.0, C0, True, variant)
    assert same_bits(sparse, dense)
    assert np.isnan(dense).sum() > units  # the infinity in B reached rows whose input was 0 there


@pytest.mark.parametrize("variant", VARIANTS)
def test_negative_zeros_in_the_input_are_skipped_like_zeros(images, variant):
    X = images[:200].copy()
    X[X == 0] = -0.0
    W = (np.random.default_rng(3).standard_normal((784, 128)) * 0.05).astype(np.float32)
    C0 = np.zeros((200, 128), np.float32)
    assert same_bits(product(False, 1.0, X, W, 0.0, C0, True, variant),
                     product(False, 1.0, X, W, 0.0, C0, False, variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_thread_count_does_not_change_the_bits(images, variant):
    rng = np.random.default_rng(11)
    W = (rng.standard_normal((784, 128)) * 0.05).astype(np.float32)
    dY = (rng.standard_normal((128, 128)) * 0.01).astype(np.float32)
    X = images[:1000]
    before = mnistc.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            mnistc.set_num_threads(t)
            outs.append((product(False, 1.0, X, W, 0.0, np.zeros((1000, 128), np.float32), True, variant),
                         product(True, 1.0, X[:128], dY, 0.0, np.zeros((784, 128), np.float32), True, variant)))
    finally:
        mnistc.set_num_threads(before)
    for fwd, grad in outs[1:]:
        assert same_bits(fwd, outs[0][0]) and same_bits(grad, outs[0][1])


def train_weights(x, y):
    mnistc.utils.set_random_seed(5)
    model = mnistc.Sequential([mnistc.Input((784,)), mnistc.layers.Dense(64, activation="relu"),
                               mnistc.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=128, epochs=2, verbose=0)
    return (model.get_weights(), history.history["loss"], model.predict(x[:500], verbose=0),
            model.predict(x[:1000], batch_size=1000, verbose=0))  # batches the forward packs B for


@in_use
def test_training_and_predict_are_bit_for_bit_the_same_without_it(mnist_dir):
    (x, y), _ = mnistc.datasets.mnist.load_data(mnist_dir)
    x = (x[:4096].reshape(-1, 784) / np.float32(255)).astype(np.float32)
    y = y[:4096]
    previous = _C.testing.set_sparse(True)
    try:
        w_sparse, loss_sparse, *p_sparse = train_weights(x, y)
        _C.testing.set_sparse(False)
        w_dense, loss_dense, *p_dense = train_weights(x, y)
    finally:
        _C.testing.set_sparse(previous)
    assert loss_sparse == loss_dense and loss_sparse[-1] < loss_sparse[0]
    assert all(same_bits(a, b) for a, b in zip(w_sparse, w_dense))
    assert all(same_bits(a, b) for a, b in zip(p_sparse, p_dense))


def test_set_sparse_returns_the_previous_setting_and_the_environment_turns_it_off():
    previous = _C.testing.set_sparse(False)
    try:
        assert _C.testing.kernel_info()["sparse"] is False
        assert _C.testing.set_sparse(True) is False
        assert _C.testing.kernel_info()["sparse"] is True
    finally:
        _C.testing.set_sparse(previous)
    code = "import json; from mnistc import _C; print(json.dumps(_C.testing.kernel_info()['sparse']))"
    for value, expected in (("0", False), ("1", True), (None, True)):
        env = {k: v for k, v in os.environ.items() if k != "MNISTC_SPARSE"}
        if value is not None:
            env["MNISTC_SPARSE"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=120, check=True)
        assert json.loads(out.stdout.strip()) is expected
