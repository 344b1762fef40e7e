"""Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, BatchNormalization and Dense on N-D
samples, each as the one layer of a small model, against the float64 reference (reference.py, written
from Keras's semantics): forward through model.predict, the C loss and its gradients (dx and every
trained weight) from _C.loss_and_grad with an MSE loss against float64 central differences of the
reference loss, and a directional finite-difference check on the C loss itself. BatchNormalization
also in training mode (batch statistics, the moving statistics it writes into params) and frozen.

Tolerances: C computes in float32 with float64 reductions where it matters; forward values agree
to rtol 1e-5 (atol 1e-6 of the output's scale for sums that cancel); gradients to rtol 1e-4 (atol 1e-5
of the gradient's scale), the float64 central differences themselves being exact to ~1e-8."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mnistc
import reference as R
from mnistc import _C
from test_ops import check_directional

L = mnistc.layers
SPEC_MSE = (R.MSE, 0, 0.0)
UNTOUCHED = 7.0  # what the gradient block holds before a call: ranges C must not write keep it


# --- helpers ---

def one_layer_model(layer, in_shape, seed=0):
    """Sequential([Input(in_shape), layer]) with every weight random (biases, BN statistics too),
    so that no term of the forward is a trivial zero or one."""
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input(in_shape), layer])
    rng = np.random.default_rng(seed + 100)
    new = []
    for name, w in zip(layer._weight_names, layer.get_weights()):
        if name in ("moving_variance", "variance"):
            new.append(rng.uniform(0.5, 2.0, w.shape))
        elif name == "gamma":
            new.append(rng.uniform(0.5, 1.5, w.shape) * rng.choice([-1, 1], w.shape))
        elif name == "kernel":
            new.append(w)  # glorot_uniform from the seed
        else:
            new.append(rng.uniform(-0.5, 0.5, w.shape))
    layer.set_weights(new)
    return model


def batch(rng, B, shape):
    return rng.standard_normal((B, *shape)).astype(np.float32)


def c_loss_and_grad(model, x, y, training, trainable=True):
    """(loss, dx shaped like x, per-weight gradients of the first layer, params after the call) from
    one _C.loss_and_grad on a copy of the model's parameter block (the model is left as it was)."""
    plan = model._get_plan()
    table, _ = plan.tables([trainable] * len(model.layers))
    params = plan.params.copy()
    grads = np.full_like(params, UNTOUCHED)
    loss, dx = _C.loss_and_grad(table, plan.lfloats, params, grads, x.reshape(len(x), -1),
                                y.reshape(len(y), -1), SPEC_MSE, 0, training)
    layer = model.layers[0]
    per_weight = [grads[off:off + w.size].reshape(w.shape) for off, w in zip(plan.offsets[0], layer._weights)]
    after = [params[off:off + w.size].reshape(w.shape) for off, w in zip(plan.offsets[0], layer._weights)]
    return loss, np.asarray(dx).reshape(x.shape), per_weight, after


def c_loss(model, x, y, training, weights=None, trainable=True):
    """The C loss with the first layer's weights replaced by `weights` (float32), on a copy of params."""
    plan = model._get_plan()
    table, _ = plan.tables([trainable] * len(model.layers))
    params = plan.params.copy()
    if weights is not None:
        for off, w in zip(plan.offsets[0], weights):
            params[off:off + w.size] = np.asarray(w, np.float32).ravel()
    grads = np.zeros_like(params)
    loss, _ = _C.loss_and_grad(table, plan.lfloats, params, grads, x.reshape(len(x), -1),
                               y.reshape(len(y), -1), SPEC_MSE, 0, training)
    return loss


def ref_loss(layer, x, weights, y, training):
    out, _ = R.keras_layer_forward(layer, x, weights, training)
    return float(R.mse(out.reshape(len(x), -1), np.asarray(y, np.float64).reshape(len(y), -1))[0].mean())


def assert_close_scaled(actual, desired, rtol, scale_tol, what):
    """assert_allclose with atol = scale_tol * max|desired| (sums that cancel lose float32 digits)."""
    desired = np.asarray(desired, np.float64)
    atol = scale_tol * max(float(np.abs(desired).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=what)


def check_layer(layer, in_shape, B, training=False, trainable=True, seed=0, fd_eps=1e-3, forward_tol=1e-6):
    """Forward (inference) against the reference (atol forward_tol * its largest value); the C loss,
    dx and every trained weight's gradient against central differences of the reference loss;
    directional differences of the C loss. Returns (model, x, y, the layer's weights after C's
    training call)."""
    model = one_layer_model(layer, in_shape, seed)
    layer.trainable = trainable
    rng = np.random.default_rng(seed)
    x = batch(rng, B, in_shape)
    weights = layer.get_weights()

    want, _ = R.keras_layer_forward(layer, x, weights, training=False)
    got = model.predict(x, verbose=0)
    assert got.shape == (B, *layer.output_shape)
    assert_close_scaled(got, want, 1e-5, forward_tol, "forward")

    out_ref, _ = R.keras_layer_forward(layer, x, weights, training)
    y = (out_ref + rng.standard_normal(out_ref.shape)).astype(np.float32)
    loss, dx, grads, after = c_loss_and_grad(model, x, y, training, trainable)
    np.testing.assert_allclose(loss, ref_loss(layer, x, weights, y, training), rtol=1e-5)

    x64 = x.astype(np.float64)
    fd_dx = R.numeric_grad(lambda xx: ref_loss(layer, xx, weights, y, training), x64)
    assert_close_scaled(dx, fd_dx, 1e-4, 1e-5, "dx")
    trained = [i for i, t in enumerate(layer._weight_trained) if t and trainable]
    for i, name in enumerate(layer._weight_names):
        if i not in trained:
            assert (grads[i] == UNTOUCHED).all(), f"{name}: not trained, its gradient range stays untouched"
            continue

        def loss_of(wi, i=i):
            ws = list(weights)
            ws[i] = wi
            return ref_loss(layer, x, ws, y, training)
        fd = R.numeric_grad(loss_of, weights[i].astype(np.float64))
        assert_close_scaled(grads[i], fd, 1e-4, 1e-5, name)

    check_directional(lambda xx: c_loss(model, xx, y, training, trainable=trainable), x, dx, rng, eps=fd_eps)
    for i in trained:
        def c_loss_of(wi, i=i):
            ws = list(weights)
            ws[i] = wi
            return c_loss(model, x, y, training, ws, trainable)
        check_directional(c_loss_of, weights[i], grads[i], rng, eps=fd_eps)
    # the model's own weights are untouched by these calls
    for w, w0 in zip(layer.get_weights(), weights):
        assert np.array_equal(w, w0)
    return model, x, y, after


# --- the reference's geometry: Keras / TF facts, by hand ---

def test_reference_same_padding_splits_as_tensorflow_and_average_counts_cells_inside():
    assert R.window_geometry(5, 2, 1, "same") == (5, 0, 1)     # the odd pixel of padding goes after
    assert R.window_geometry(5, 4, 1, "same") == (5, 1, 2)
    assert R.window_geometry(6, 3, 2, "same") == (3, 0, 1)
    assert R.window_geometry(8, 2, 3, "same") == (3, 0, 0)
    assert R.window_geometry(11, 2, 2, "valid") == (5, 0, 0)   # valid floors: 11 -> 5
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(R.avg_pool2d(x, (2, 2), None, "same")[0, :, :, 0], [[2.0, 3.5], [6.5, 8.0]])
    np.testing.assert_array_equal(R.max_pool2d(x, (2, 2), None, "same")[0, :, :, 0], [[4.0, 5.0], [7.0, 8.0]])
    # a 3x3 kernel of ones with 'same' padding sums each 3x3 neighbourhood, zeros outside
    k = np.ones((3, 3, 1, 1))
    np.testing.assert_array_equal(R.conv2d(x, k, None, (1, 1), "same")[0, :, :, 0],
                                  [[8, 15, 12], [21, 36, 27], [20, 33, 24]])


def test_reference_conv2d_is_the_direct_sum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3))
    k = rng.standard_normal((3, 2, 3, 4))
    b = rng.standard_normal(4)
    out = R.conv2d(x, k, b, (2, 3), "same")
    oh, top, _ = R.window_geometry(5, 3, 2, "same")
    ow, left, _ = R.window_geometry(6, 2, 3, "same")
    want = np.zeros((2, oh, ow, 4))
    for bi in range(2):
        for i in range(oh):
            for j in range(ow):
                for u in range(3):
                    for v in range(2):
                        r, c = i * 2 + u - top, j * 3 + v - left
                        if 0 <= r < 5 and 0 <= c < 6:
                            want[bi, i, j] += x[bi, r, c] @ k[u, v]
    np.testing.assert_allclose(out, want + b, rtol=1e-12)


def test_reference_batch_norm_moments_and_moving_update():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2, 5)) * 3 + 1
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    mm, mv = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    out, nm, nv = R.batch_norm(x, gamma, beta, mm, mv, 1e-3, 0.9, training=True)
    flat = x.reshape(-1, 5)
    np.testing.assert_allclose(nm, 0.9 * mm + 0.1 * flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(nv, 0.9 * mv + 0.1 * ((flat - flat.mean(0)) ** 2).mean(0), rtol=1e-12)
    normed = (out - beta) / gamma
    np.testing.assert_allclose(normed.reshape(-1, 5).mean(0), 0, atol=1e-12)
    out, nm2, nv2 = R.batch_norm(x, gamma, beta, mm, mv, 1e-3, 0.9, training=False)
    assert nm2 is mm or np.array_equal(nm2, mm)
    np.testing.assert_allclose(out, (x - mm) / np.sqrt(mv + 1e-3) * gamma + beta, rtol=1e-12)


# --- Conv2D ---

CONV_CASES = [
    # in_shape, filters, kernel, strides, padding, use_bias, activation, batch
    ((7, 7, 1), 3, 3, 1, "valid", True, "relu", 5),
    ((7, 6, 3), 4, 3, 2, "same", True, "tanh", 1),
    ((7, 6, 3), 8, 5, 3, "same", False, "sigmoid", 5),
    ((3, 4, 8), 2, 1, 1, "valid", True, "linear", 5),
    ((6, 7, 3), 3, 2, 2, "valid", False, "relu", 1),
    ((5, 7, 1), 2, (2, 3), (1, 2), "same", True, "linear", 5),
    ((4, 4, 3), 2, 5, 1, "same", True, "tanh", 5),     # window larger than the input, 'same' pads 2 + 2
    ((11, 11, 1), 8, 3, 3, "same", True, "relu", 1),   # pad 0 before, 1 after
    ((8, 5, 3), 3, 2, 3, "same", True, "sigmoid", 5),  # 'same' that needs no padding
    ((9, 5, 8), 3, (5, 1), (2, 1), "valid", True, "linear", 1),
    ((9, 8, 1), 4, 5, 1, "same", True, "relu", 3),     # one channel, 5 wide: inner and border windows
    # receptive fields of at most 32 elements take the direct kernels: channel counts past one and
    # two vectors, 'same' borders, strides, and K = 32 exactly
    ((13, 12, 1), 40, 3, 1, "same", True, "relu", 3),
    ((10, 9, 2), 17, 4, 2, "valid", True, "linear", 2),
    ((9, 10, 3), 33, 3, (2, 1), "same", False, "tanh", 2),
    # 3x3 stride-1 kernels with at least 16 channels in and out take Winograd: F(2x2, 3x3) for
    # outputs of 5 and 6, F(4x4, 3x3) for larger ones and 4x4; outputs that are not a multiple of
    # the tile (edge tiles cut), 'same' borders, channel counts that are not a vector's multiple
    ((7, 7, 16), 16, 3, 1, "valid", True, "relu", 2),
    ((6, 5, 20), 17, 3, 1, "same", False, "tanh", 2),
    ((4, 4, 16), 24, 3, 1, "same", True, "linear", 1),
    ((9, 9, 16), 16, 3, 1, "valid", True, "relu", 2),
    ((13, 11, 17), 20, 3, 1, "same", False, "tanh", 1),
]
# F(4x4, 3x3)'s transforms scale by up to 100 before the products and 8 after (conv_winograd.h):
# its outputs are within a few times 1e-6 of the largest, not 1e-6
WINOGRAD_FORWARD_TOL = 2e-5


@pytest.mark.parametrize("in_shape,filters,kernel,strides,padding,use_bias,act,B", CONV_CASES)
def test_conv2d_matches_reference_and_central_differences(in_shape, filters, kernel, strides, padding, use_bias,
                                                          act, B):
    layer = L.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias, activation=act)
    case = (in_shape, filters, kernel, strides, padding, use_bias, act, B)
    winograd = kernel == 3 and strides == 1 and min(in_shape[2], filters) >= 16
    check_layer(layer, in_shape, B, seed=CONV_CASES.index(case),
                forward_tol=WINOGRAD_FORWARD_TOL if winograd else 1e-6)


DIRECT_FORWARD_CHILD = """
import sys, numpy as np, mnistc
L = mnistc.layers
rng = np.random.default_rng(5)
def pair(in_shape, filters, kernel, strides, padding, act, k, b):
    # the conv on in_shape, and the same conv with 3 zero channels after each channel: K beyond the
    # direct kernels' 32 (im2col and the GEMM) but within one K chunk, the same chain plus zero terms
    c = in_shape[2]
    kw = np.zeros((*k.shape[:2], 4 * c, filters), np.float32)
    kw[:, :, ::4] = k
    models = []
    for shape, kernel_w in ((in_shape, k), ((*in_shape[:2], 4 * c), kw)):
        m = mnistc.Sequential([mnistc.Input(shape), L.Conv2D(filters, kernel, strides=strides, padding=padding,
                                                             activation=act)])
        m.layers[0].set_weights([kernel_w, b])
        models.append(m)
    return models
for in_shape, filters, kernel, strides, padding in [((28, 28, 1), 32, 3, 1, "valid"), ((15, 14, 1), 40, 3, 1, "same"),
                                                    ((12, 11, 2), 7, (2, 3), 2, "same"), ((9, 9, 3), 16, 3, 1, "valid")]:
    x = rng.standard_normal((9, *in_shape)).astype(np.float32)
    xw = np.zeros((*x.shape[:3], 4 * in_shape[2]), np.float32)
    xw[..., ::4] = x
    kh, kw_ = (kernel, kernel) if isinstance(kernel, int) else kernel
    k = rng.standard_normal((kh, kw_, in_shape[2], filters)).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    for act in ("linear", "relu", "tanh"):
        small, wide = pair(in_shape, filters, kernel, strides, padding, act, k, b)
        a, w = small.predict(x, verbose=0), wide.predict(xw, verbose=0)
        assert a.tobytes() == w.tobytes(), (in_shape, filters, act, np.abs(a - w).max())
print("ok")
"""


@pytest.mark.parametrize("variant", ["avx2", "avx512"])
def test_small_receptive_field_forward_keeps_the_im2col_bits(variant):
    """A receptive field of at most 32 elements (a first layer's) runs the direct kernels; a wider
    one im2col and the GEMM. The same sums with zero terms added give the same bits: each output
    is one fused multiply-add chain from zero in both, then the bias and the activation."""
    if variant not in _C.testing.kernel_info()["supported"]:
        pytest.skip(f"this CPU has no {variant}")
    env = dict(os.environ, MNISTC_KERNEL=variant)
    out = subprocess.run([sys.executable, "-c", DIRECT_FORWARD_CHILD], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("act,padding,use_bias", [("relu", "valid", True), ("relu", "same", True),
                                                  ("linear", "same", True), ("relu", "valid", False),
                                                  ("tanh", "valid", True)])
def test_first_conv_layer_training_step_uses_the_gradient_of_loss_and_grad(act, padding, use_bias):
    """A first layer needs no input gradient, so a small receptive field takes relu's derivative and
    the bias gradient in the weight-gradient pass itself; loss_and_grad (which asks for dx) takes
    them in a pass of their own. An SGD step of rate 1 must subtract the very same gradient."""
    layer = L.Conv2D(40, 3, padding=padding, activation=act, use_bias=use_bias)
    one_layer_model(layer, (9, 8, 1), seed=11)
    model = mnistc.Sequential([mnistc.Input((9, 8, 1)), layer, L.Flatten()])
    rng = np.random.default_rng(11)
    x = batch(rng, 19, (9, 8, 1))
    y = rng.standard_normal((19, int(np.prod(layer.output_shape)))).astype(np.float32)
    assert_sgd_step_subtracts_the_gradient_of_loss_and_grad(model, layer, x, y)


def assert_sgd_step_subtracts_the_gradient_of_loss_and_grad(model, layer, x, y):
    """train_on_batch with SGD of rate 1 must change the first layer's weights by exactly the
    gradient loss_and_grad gives (which asks for dx, so every layer runs its own backward)."""
    weights = layer.get_weights()
    _, _, grads, _ = c_loss_and_grad(model, x, y, training=True)
    model.compile(mnistc.optimizers.SGD(1.0), "mse")
    model.train_on_batch(x, y)
    for name, w0, g, w1 in zip(layer._weight_names, weights, grads, layer.get_weights()):
        assert (g != 0).any(), name
        np.testing.assert_array_equal(w1, w0 - g, err_msg=name)


@pytest.mark.parametrize("in_shape,filters,kernel,padding,act,use_bias,pool", [
    ((12, 12, 1), 32, 3, "valid", "relu", True, 2),      # a convnet's first block, even conv output
    ((11, 13, 1), 40, 3, "valid", "relu", True, 2),      # odd rows and columns in no window; 32 + 8 channels
    ((10, 9, 3), 8, 3, "same", "linear", True, 3),       # pool 3, a column in no window, 27 window elements
    ((9, 14, 2), 70, (2, 3), "valid", "relu", False, (2, 3)),  # rectangular pool, three channel blocks
    ((4, 131, 1), 8, 3, "valid", "relu", True, 2),       # too wide to fuse: the layers' own backward
])
def test_first_conv_layer_under_max_pooling_gets_the_unfused_gradient(in_shape, filters, kernel, padding, act,
                                                                      use_bias, pool):
    """Under a max pooling whose windows tile its output, a first layer's weight gradient takes the
    pooling's input gradient as it routes it, never written out. Pixels in flat runs give ties of
    positive outputs (the first maximum takes the gradient) and relu's zeros ties of zeros: an SGD
    step of rate 1 must subtract the very gradient loss_and_grad gives, which asks for dx and so
    runs each layer's own backward."""
    conv = L.Conv2D(filters, kernel, padding=padding, activation=act, use_bias=use_bias)
    one_layer_model(conv, in_shape, seed=5)
    model = mnistc.Sequential([mnistc.Input(in_shape), conv, L.MaxPooling2D(pool), L.Flatten()])
    rng = np.random.default_rng(5)
    B = 37   # several weight-gradient groups
    x = rng.integers(0, 3, (B, *in_shape)).astype(np.float32) / 2
    x[:, : in_shape[0] // 2] = 0.5
    if use_bias:
        conv.set_weights([w if w.ndim > 1 else np.abs(w) for w in conv.get_weights()])
    y = rng.standard_normal((B, int(np.prod(model.output_shape[1:])))).astype(np.float32)
    assert_sgd_step_subtracts_the_gradient_of_loss_and_grad(model, conv, x, y)


def loss_and_grad_skipping_and_dense(model, x, y):
    """c_loss_and_grad in training mode with the products' zero skipping on, then off."""
    skipping = c_loss_and_grad(model, x, y, training=True)
    previous = _C.testing.set_sparse(False)
    try:
        return skipping, c_loss_and_grad(model, x, y, training=True)
    finally:
        _C.testing.set_sparse(previous)


@pytest.mark.parametrize("kernel,strides,padding,filters", [(3, 1, "valid", 24), (3, 1, "same", 17),
                                                        (1, 1, "valid", 33), (2, 2, "valid", 8)])
def test_conv2d_matches_the_dense_products_under_max_pooling_skipping_zeros(kernel, strides, padding, filters):
    """Under a 2x2 max pooling at most a quarter of a conv's output gradient is nonzero, so its input
    gradient's product (with the kernel transposed once per batch, for 16 samples and more) skips
    them, and the weight gradient is summed transposed so that its product does too. Both must
    give the values the dense products give (_C.testing.set_sparse(False)), zero signs aside, and
    agree with central differences of the loss."""
    conv = L.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu")
    model = mnistc.Sequential([mnistc.Input((10, 12, 5)), conv, L.MaxPooling2D(2), L.Flatten()])
    one_layer_model(conv, (10, 12, 5), seed=7)
    rng = np.random.default_rng(7)
    x = batch(rng, 37, (10, 12, 5))
    y = rng.standard_normal((37, int(np.prod(model.output_shape[1:])))).astype(np.float32)
    (loss, dx, grads, _), (loss_dense, dx_dense, grads_dense, _) = loss_and_grad_skipping_and_dense(model, x, y)
    assert loss == loss_dense and (dx != 0).mean() > 0.1
    assert np.array_equal(dx, dx_dense)
    for g, gd in zip(grads, grads_dense):
        assert np.array_equal(g, gd)
    check_directional(lambda xx: c_loss(model, xx, y, True), x, dx, rng, eps=1e-3)
    weights = conv.get_weights()
    for i, g in enumerate(grads):
        def c_loss_of(wi, i=i):
            return c_loss(model, x, y, True, weights[:i] + [wi] + weights[i + 1:])
        check_directional(c_loss_of, weights[i], g, rng, eps=1e-3)


def test_conv2d_skipping_zeros_keeps_the_nan_that_an_infinite_input_gives():
    """A zero of dpre times an infinite input is NaN in the dense weight-gradient product; skipping
    that zero must not lose it. The group whose input holds the infinity checks col itself."""
    conv = L.Conv2D(24, 3, activation="relu")
    model = mnistc.Sequential([mnistc.Input((10, 12, 5)), conv, L.MaxPooling2D(2), L.Flatten()])
    one_layer_model(conv, (10, 12, 5), seed=8)
    rng = np.random.default_rng(8)
    x = batch(rng, 37, (10, 12, 5))
    x[30, 9, 11, 2] = np.inf   # one sample of the last group, a pixel in few windows
    y = rng.standard_normal((37, int(np.prod(model.output_shape[1:])))).astype(np.float32)
    (_, _, grads, _), (_, _, grads_dense, _) = loss_and_grad_skipping_and_dense(model, x, y)
    assert np.isnan(grads_dense[0]).any() and not np.isnan(grads_dense[0]).all()
    for g, gd in zip(grads, grads_dense):
        assert np.array_equal(g, gd, equal_nan=True)


def c_predict(model, x, batch_size):
    """_C.predict of the model on x (NaN welcome: no scan of x), rows in batches of batch_size."""
    plan = model._get_plan()
    out = np.empty((len(x), int(np.prod(model.output_shape[1:]))), np.float32)
    _C.predict(plan.layers, plan.lfloats, plan.params, np.ascontiguousarray(x).reshape(len(x), -1), out, batch_size)
    return out


@pytest.mark.parametrize("in_shape,filters,kernel,strides,padding,act,pool", [
    ((28, 28, 1), 32, 3, 1, "valid", "relu", 2),        # the convnet's first block
    ((11, 13, 1), 40, 3, 1, "valid", "relu", 2),        # rows and columns in no window; 32 + 8 channels
    ((9, 8, 2), 20, 3, 1, "valid", "linear", 2),        # no relu: negative maxima; 16 + 4 channels
    ((13, 12, 1), 16, 3, 2, "valid", "relu", 2),        # strided conv
    ((10, 9, 3), 8, 3, 1, "same", "linear", 3),
    ((12, 14, 2), 70, (2, 3), 2, "valid", "relu", (2, 3)),
    ((6, 132, 1), 32, 3, 1, "valid", "relu", 2),        # a band too wide to fuse: the layers one by one
])
def test_first_conv_layer_and_max_pooling_predict_as_two_models_do(in_shape, filters, kernel, strides, padding,
                                                                     act, pool):
    """Inference runs a first conv layer of direct kernels and the max pooling that tiles its output
    in one pass, pooling the conv's rows band by band (2x2 windows in registers). The outputs must
    have the bits of the conv and the rest of the model run as two models, the conv's output written
    out between them: ties (flat runs of pixels, relu's zeros), -0, a NaN and +-inf pixels, and sums
    whose window's total overflows included."""
    conv = L.Conv2D(filters, kernel, strides=strides, padding=padding, activation=act)
    one_layer_model(conv, in_shape, seed=9)
    model = mnistc.Sequential([mnistc.Input(in_shape), conv, L.MaxPooling2D(pool), L.Flatten(), L.Dense(5)])
    rng = np.random.default_rng(9)
    x = rng.integers(-1, 2, (29, *in_shape)).astype(np.float32) / 2
    x[:, : in_shape[0] // 2] = 0.5
    x[3, 1, 2, 0] = -0.0
    x[4, 2, 3, 0] = np.nan
    x[6, -3, -2, 0], x[7, 4, 1, 0] = np.inf, -np.inf
    x[8] *= 3e38
    conv_only = mnistc.Sequential([mnistc.Input(in_shape), conv])
    conv_shape = conv_only.output_shape[1:]
    head = mnistc.Sequential([mnistc.Input(conv_shape), L.MaxPooling2D(pool), L.Flatten(), L.Dense(5)])
    head.layers[-1].set_weights(model.layers[-1].get_weights())
    for batch_size in (29, 7):
        want = c_predict(head, c_predict(conv_only, x, batch_size).reshape(-1, *conv_shape), batch_size)
        got = c_predict(model, x, batch_size)
        assert np.isnan(got[4]).all() and not np.isnan(got[5]).any()
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("in_shape,filters,padding,act,use_bias", [
    ((13, 13, 32), 64, "valid", "relu", True),   # the convnet's second block: F(4x4), 11x11 pooled to 5x5
    ((8, 8, 16), 17, "valid", "linear", True),   # F(2x2): a window per tile; 16 + 1 channels
    ((9, 10, 20), 16, "same", "relu", False),    # F(4x4) with 'same' borders, cut tiles, 9x10 pooled to 4x5
])
def test_winograd_conv_and_max_pooling_predict_as_two_models_do(in_shape, filters, padding, act, use_bias):
    """Inference takes a 2x2 max pooling on a Winograd conv's output in its output transform (the
    maximum first, then the bias and relu). The pooled outputs must have the bits of the conv and the
    pooling run as two models: ties (flat runs of pixels, relu's zeros), -0, a NaN pixel (its tiles'
    outputs all NaN) and infinite ones (their tiles' outputs infinite, or NaN where inf - inf, the
    first NaN of a window not always its first element) included."""
    conv = L.Conv2D(filters, 3, padding=padding, activation=act, use_bias=use_bias)
    one_layer_model(conv, in_shape, seed=4)
    rng = np.random.default_rng(4)
    if use_bias:
        conv.set_weights([conv.get_weights()[0], rng.standard_normal(filters).astype(np.float32) / 4])
    # the pooling must not be the last layer to be taken in the conv's pass
    model = mnistc.Sequential([mnistc.Input(in_shape), conv, L.MaxPooling2D(2), L.Flatten(), L.Activation("linear")])
    x = rng.integers(-1, 2, (29, *in_shape)).astype(np.float32) / 2
    x[:, : in_shape[0] // 2] = 0.5
    x[3, 1, 2, 0] = -0.0
    x[4, 2, 3, 0] = np.nan
    x[6, 4, 4, 0], x[6, 4, 5, 1] = np.inf, -np.inf
    x[7, 5, 6, 0], x[7, 5, 7, 1] = np.inf, -np.inf
    conv_only = mnistc.Sequential([mnistc.Input(in_shape), conv])
    conv_shape = conv_only.output_shape[1:]
    head = mnistc.Sequential([mnistc.Input(conv_shape), L.MaxPooling2D(2), L.Flatten(), L.Activation("linear")])
    for batch_size in (29, 7):
        want = c_predict(head, c_predict(conv_only, x, batch_size).reshape(-1, *conv_shape), batch_size)
        got = c_predict(model, x, batch_size)
        assert np.isnan(got[4]).any() and not np.isnan(got[4]).all() and not np.isnan(got[5]).any()
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_conv2d_checks_pass_on_the_avx2_kernels():
    """The conv checks above run on the kernel variant this CPU picks; the AVX2 direct kernels (a
    different vector width and tile) get the same checks in a child process."""
    info = _C.testing.kernel_info()
    if "avx2" not in info["supported"] or info["variant"] == "avx2":
        pytest.skip("no AVX2, or AVX2 is already the variant these tests ran on")
    env = dict(os.environ, MNISTC_KERNEL="avx2")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.abspath(__file__),
                          "-k", "conv2d_matches or first_conv_layer or winograd_conv"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout


def test_frozen_conv2d_passes_dx_and_leaves_its_gradients_untouched():
    check_layer(L.Conv2D(4, 3, padding="same", activation="tanh"), (6, 5, 3), 5, training=True, trainable=False)


# --- pooling ---

POOL_CASES = [
    # in_shape, pool_size, strides, padding, batch
    ((6, 6, 1), 2, None, "valid", 5),
    ((7, 7, 3), 2, None, "valid", 1),        # the odd row and column are dropped
    ((7, 5, 3), 3, 2, "same", 5),
    ((3, 5, 8), 2, 1, "same", 5),
    ((9, 7, 3), (3, 2), (3, 1), "valid", 1),
    ((5, 6, 1), 3, 3, "same", 5),
    ((4, 4, 3), 5, 2, "same", 5),            # window larger than the input
    ((4, 5, 20), 2, None, "valid", 3),       # channels beyond one group of 16, and a part group
    ((5, 4, 33), 3, 2, "same", 2),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("in_shape,pool,strides,padding,B", POOL_CASES)
def test_pooling_matches_reference_and_central_differences(kind, in_shape, pool, strides, padding, B):
    cls = L.MaxPooling2D if kind == "max" else L.AveragePooling2D
    # max: the float64 differences step 1e-6, the C ones 1e-3, far below the gaps between distinct
    # standard-normal values of a window, so no argmax changes within a step
    check_layer(cls(pool, strides=strides, padding=padding), in_shape, B, fd_eps=1e-4)


def test_average_pooling_same_divides_by_the_cells_inside_the_input():
    model = mnistc.Sequential([mnistc.Input((3, 3, 1)), L.AveragePooling2D(2, padding="same")])
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(model.predict(x, verbose=0)[0, :, :, 0], [[2.0, 3.5], [6.5, 8.0]])


def test_max_pooling_propagates_nan():
    model = mnistc.Sequential([mnistc.Input((4, 4, 2)), L.MaxPooling2D()])
    plan = model._get_plan()
    x = np.zeros((1, 4, 4, 2), np.float32)
    x[0, 1, 1, 0] = np.nan
    out = np.empty((1, 8), np.float32)
    _C.predict(plan.layers, plan.lfloats, plan.params, x.reshape(1, -1), out, 1)
    out = out.reshape(2, 2, 2)
    assert np.isnan(out[0, 0, 0]) and np.isnan(out).sum() == 1


def test_max_pooling_gradient_goes_to_the_first_maximum_or_the_first_nan():
    """Ties and NaN: the element forward took gets the whole output gradient (rows, then columns)."""
    model = mnistc.Sequential([mnistc.Input((2, 2, 18)), L.MaxPooling2D()])
    x = np.zeros((1, 2, 2, 18), np.float32)
    x[0, 0, 1, 3] = x[0, 1, 0, 3] = 2.0                # a tie: (0, 1) comes first
    x[0, 1, 0, 17] = x[0, 1, 1, 17] = np.nan           # two NaN: (1, 0) comes first
    x[0, 0, 0, 17] = 5.0
    y = np.ones((1, 1, 1, 18), np.float32)
    _, dx, _, _ = c_loss_and_grad(model, x, y, training=False)
    taken = np.zeros((2, 2, 18), bool)
    taken[0, 0, :] = True                               # all zeros: the first element
    taken[:, :, 3] = False
    taken[0, 1, 3] = True
    taken[:, :, 17] = False
    taken[1, 0, 17] = True
    assert (dx[0][~taken] == 0).all()
    assert (dx[0][taken][:17] != 0).all() and np.isnan(dx[0, 1, 0, 17])


# Windows that tile the input (stride == pool size, no padding) take a backward of their own: each
# element of dx is written once, in one pass, and the elements in no window get 0.
TILING_CASES = [
    # in_shape, pool_size, batch
    ((5, 5, 1), 2, 3),        # the last row and column lie in no window
    ((5, 5, 3), 2, 3),
    ((5, 5, 17), 2, 2),       # a group of 16 channels and a part group
    ((5, 5, 32), 2, 2),
    ((5, 5, 64), 2, 2),
    ((7, 8, 17), 3, 2),       # 3x3 windows, stride 3: a row and two columns in none
    ((6, 9, 3), (2, 3), 2),
    ((4, 4, 5), 1, 2),
]


@pytest.mark.parametrize("in_shape,pool,B", TILING_CASES)
def test_max_pooling_tiling_windows_match_reference_and_central_differences(in_shape, pool, B):
    check_layer(L.MaxPooling2D(pool), in_shape, B, seed=TILING_CASES.index((in_shape, pool, B)), fd_eps=1e-4)


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.mark.parametrize("C", [1, 3, 17, 32, 64])
@pytest.mark.parametrize("pool", [2, 3])
def test_max_pooling_tiling_gradient_goes_to_the_element_forward_took(pool, C):
    """Windows that tile a (2 pool + 1)-square input, its last row and column in no window. Each window
    and channel holds one of: a tie (the first of two maxima is taken), a number then two NaN of
    different bits (the first NaN: forward keeps its bits, backward gives it the gradient), all -0.0
    with target 0 (output -0.0, output gradient -0.0, and dx +0.0, what a sum into a cleared dx gives),
    or distinct values. Every element not taken gets +0.0 exactly."""
    n, B = 2 * pool + 1, 2
    rng = np.random.default_rng(10 * C + pool)
    x = -rng.uniform(1.0, 2.0, (B, n, n, C)).astype(np.float32)   # distinct, below the planted values
    x[:, -1, :, :] = 50.0                                         # in no window: never taken
    x[:, :, -1, :] = np.nan
    other_nan = np.array([0xFFC00001], np.uint32).view(np.float32)[0]
    want_out = np.empty((B, 2, 2, C), np.float32)
    zero_window = np.zeros(want_out.shape, bool)
    picks = []   # (index in x, index in out) of each element forward takes
    for b in range(B):
        for oy in range(2):
            for ox in range(2):
                cells = [(oy * pool + i, ox * pool + j) for i in range(pool) for j in range(pool)]  # in order
                for c in range(C):
                    kind = (b + 2 * oy + ox + c) % 4
                    first, second, third = sorted(rng.choice(len(cells), 3, replace=False))
                    if kind == 0:                       # a tie
                        x[(b, *cells[first], c)] = x[(b, *cells[second], c)] = 5.0
                        pick = cells[first]
                    elif kind == 1:                     # a number, then two NaN
                        x[(b, *cells[first], c)] = 9.0
                        x[(b, *cells[second], c)] = np.nan
                        x[(b, *cells[third], c)] = other_nan
                        pick = cells[second]
                    elif kind == 2:                     # all -0.0
                        for cell in cells:
                            x[(b, *cell, c)] = -0.0
                        pick = cells[0]
                        zero_window[b, oy, ox, c] = True
                    else:                               # distinct values
                        pick = cells[int(np.argmax([x[(b, *cell, c)] for cell in cells]))]
                    picks.append(((b, *pick, c), (b, oy, ox, c)))
                    want_out[b, oy, ox, c] = x[(b, *pick, c)]

    model = mnistc.Sequential([mnistc.Input((n, n, C)), L.MaxPooling2D(pool)])
    plan = model._get_plan()
    out = np.empty((B, 4 * C), np.float32)
    _C.predict(plan.layers, plan.lfloats, plan.params, x.reshape(B, -1), out, B)
    assert np.array_equal(bits(out), bits(want_out.reshape(B, -1)))

    y = np.where(zero_window, 0.0, rng.uniform(-1.0, 1.0, want_out.shape)).astype(np.float32)
    _, dx, _, _ = c_loss_and_grad(model, x, y, training=False)
    _, dout = R.mse(out, y.reshape(B, -1))
    dout = dout.reshape(want_out.shape)
    assert np.signbit(dout[zero_window]).all()                 # the all -0.0 windows: gradient -0.0
    taken = np.zeros(x.shape, bool)
    want_dx = np.zeros(x.shape)
    for xi, oi in picks:
        taken[xi] = True
        want_dx[xi] = dout[oi]
    assert np.array_equal(bits(dx[~taken]), np.zeros((~taken).sum(), np.uint32))   # +0.0, never -0.0
    np.testing.assert_allclose(dx[taken], want_dx[taken], rtol=1e-6)                # NaN where dout is
    got_zero = [dx[xi] for xi, oi in picks if zero_window[oi]]
    assert len(got_zero) > 0 and np.array_equal(bits(got_zero), np.zeros(len(got_zero), np.uint32))


@pytest.mark.parametrize("in_shape,pool", [((5, 5, 3), 2), ((7, 8, 17), 3)])
def test_max_pooling_tiling_gives_zero_to_the_elements_in_no_window(in_shape, pool):
    """The pooling's input gradient is written over the buffer that held the loss gradient of the last
    layer (wider than the pooling's input here), so an element backward left unwritten would keep a
    value of it: the first layer's dx of the rows and columns in no window must be exactly 0."""
    n_in = int(np.prod(in_shape))
    model = mnistc.Sequential([mnistc.Input(in_shape), L.Dense(in_shape[-1]), L.MaxPooling2D(pool), L.Dense(n_in)])
    rng = np.random.default_rng(pool)
    x = batch(rng, 3, in_shape)
    y = rng.standard_normal((3, *model.output_shape[1:])).astype(np.float32)
    plan = model._get_plan()
    table, _ = plan.tables([True] * len(model.layers))
    _, dx = _C.loss_and_grad(table, plan.lfloats, plan.params.copy(), np.zeros_like(plan.params), x.reshape(3, -1),
                             y.reshape(3, -1), SPEC_MSE, 0, False)
    dx = np.asarray(dx).reshape(x.shape)
    covered_h, covered_w = in_shape[0] // pool * pool, in_shape[1] // pool * pool
    assert covered_h < in_shape[0] and covered_w < in_shape[1]
    assert (dx[:, covered_h:] == 0).all() and (dx[:, :, covered_w:] == 0).all()
    assert (dx[:, :covered_h, :covered_w] != 0).any()


@pytest.mark.parametrize("in_shape,B,keepdims", [((5, 7, 3), 5, False), ((1, 1, 8), 1, False),
                                                 ((4, 3, 1), 5, True), ((6, 2, 8), 1, True)])
def test_global_average_pooling_matches_reference_and_central_differences(in_shape, B, keepdims):
    check_layer(L.GlobalAveragePooling2D(keepdims=keepdims), in_shape, B)


# --- BatchNormalization ---

BN_CASES = [
    # in_shape, batch, center, scale, momentum, epsilon
    ((5, 4, 3), 5, True, True, 0.99, 1e-3),
    ((5, 4, 3), 5, False, True, 0.9, 1e-3),
    ((3, 8), 5, True, False, 0.5, 1e-2),
    ((6,), 5, False, False, 0.99, 1e-3),
    ((2, 3, 8), 1, True, True, 0.8, 1e-3),
    ((4, 4, 1), 5, True, True, 0.0, 1e-5),
]


@pytest.mark.parametrize("mode", ["inference", "training", "frozen"])
@pytest.mark.parametrize("in_shape,B,center,scale,momentum,epsilon", BN_CASES)
def test_batch_norm_matches_reference_and_central_differences(mode, in_shape, B, center, scale, momentum, epsilon):
    layer = L.BatchNormalization(center=center, scale=scale, momentum=momentum, epsilon=epsilon)
    training = mode != "inference"
    model, x, y, after = check_layer(layer, in_shape, B, training=training, trainable=mode != "frozen")
    weights = layer.get_weights()
    _, moved = R.keras_layer_forward(layer, x, weights, training)  # frozen: inference mode
    for name, got, want, before in zip(layer._weight_names, after, moved, weights):
        if mode == "training" and name.startswith("moving_"):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=name)
            assert not np.array_equal(got, before)
        else:
            assert np.array_equal(got, before), f"{name} must not change in {mode} mode"


def test_frozen_batch_norm_uses_the_moving_statistics_in_training():
    """Keras 3: trainable=False runs BatchNormalization in inference mode even while training."""
    layer = L.BatchNormalization()
    model = one_layer_model(layer, (3, 4), seed=4)
    rng = np.random.default_rng(4)
    x = batch(rng, 6, (3, 4)) * 2 + 1
    y = np.zeros((6, 3, 4), np.float32)
    weights = layer.get_weights()
    trained = c_loss(model, x, y, True)
    frozen = c_loss(model, x, y, True, trainable=False)
    inference = c_loss(model, x, y, False)
    assert frozen == inference and trained != frozen
    np.testing.assert_allclose(frozen, ref_loss(layer, x, weights, y, False), rtol=1e-5)
    np.testing.assert_allclose(trained, ref_loss(layer, x, weights, y, True), rtol=1e-5)


# --- Dense on N-D samples: the last axis ---

@pytest.mark.parametrize("in_shape,units,use_bias,act,B", [
    ((4, 3, 5), 6, True, "relu", 5),
    ((7, 4), 3, True, "tanh", 1),
    ((7, 4), 5, False, "sigmoid", 5),
    ((2, 3, 1), 4, True, "linear", 1),
])
def test_dense_on_nd_samples_applies_to_the_last_axis(in_shape, units, use_bias, act, B):
    layer = L.Dense(units, activation=act, use_bias=use_bias)
    model, *_ = check_layer(layer, in_shape, B)
    assert layer.kernel.shape == (in_shape[-1], units)
    assert model.output_shape == (None, *in_shape[:-1], units)
