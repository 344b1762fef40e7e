"""C ops against the float64 reference (rtol=1e-4, atol=1e-5), and finite-difference gradient checks:
central differences in float64 on the reference, and directional derivatives on the float32 C results
through _C.loss_and_grad. Every layer kind, every activation and every loss variant."""
import numpy as np
import pytest

import reference as R
from mnistc import _C

RTOL, ATOL = 1e-4, 1e-5
B, N_IN, N_OUT = 3, 4, 5
SPEC_MSE = (R.MSE, 0, 0.0)


def c_loss_and_grad(layers, lfloats, params, x, y, spec, seed=0, training=False, fill=0.0):
    grads = np.full(len(params), fill, np.float32)
    loss, dx = _C.loss_and_grad(layers, lfloats, params, grads, x, y, spec, seed, training)
    return loss, grads, dx


def c_predict(layers, lfloats, params, x, batch_size=None):
    out = np.empty((len(x), int(layers[-1][R.OUT_C])), np.float32)
    _C.predict(layers, lfloats, params, x, out, batch_size or len(x))
    return out


def away_from_zero(rng, shape, lo=0.1, hi=2.0):
    """Values with |v| in [lo, hi]: finite differences never cross a kink at 0."""
    return (rng.choice([-1.0, 1.0], size=shape) * rng.uniform(lo, hi, size=shape)).astype(np.float32)


def check_directional(loss_of, point, grad, rng, eps=1e-2, n_dirs=4, rtol=2e-2, atol=2e-5):
    """(L(p + eps v) - L(p - eps v)) vs grad . (2 eps v) for random directions v, in float32 inputs."""
    for _ in range(n_dirs):
        v = rng.standard_normal(point.shape)
        v /= np.abs(v).max()
        plus = (point + eps * v).astype(np.float32)
        minus = (point - eps * v).astype(np.float32)
        fd = loss_of(plus) - loss_of(minus)
        an = float((grad.astype(np.float64) * (plus.astype(np.float64) - minus)).sum())
        assert abs(fd - an) <= atol + rtol * abs(an), (fd, an)


def check_reference_grad(f, x, analytic, rtol=1e-6, atol=1e-8):
    np.testing.assert_allclose(R.numeric_grad(f, x), analytic, rtol=rtol, atol=atol)


# --- activations ---

ALL_ACTS = list(R.ACTS)


def act_input(name, rng):
    x = away_from_zero(rng, (B, N_OUT), 0.1, 2.5)
    return x


@pytest.mark.parametrize("name", ALL_ACTS)
def test_activation_forward_matches_reference(name):
    rng = np.random.default_rng(1)
    layers, lfloats, params = R.build_table([("act", name)], N_OUT, rng)
    x = act_input(name, rng)
    np.testing.assert_allclose(c_predict(layers, lfloats, params, x), R.act_forward(R.ACT[name], x),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["sigmoid", "softmax", "softplus", "tanh", "silu", "elu", "selu", "gelu",
                                  "softsign"])
def test_activation_is_finite_for_large_inputs(name):
    rng = np.random.default_rng(2)
    layers, lfloats, params = R.build_table([("act", name)], 4, rng)
    x = np.array([[-200.0, -88.0, 88.0, 200.0], [1e4, -1e4, 0.0, 30.0]], np.float32)
    out = c_predict(layers, lfloats, params, x)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, R.act_forward(R.ACT[name], x), rtol=RTOL, atol=ATOL)
    y = np.zeros_like(x)
    _, _, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    assert np.isfinite(dx).all()


@pytest.mark.parametrize("name", ALL_ACTS)
def test_activation_backward_matches_reference(name):
    rng = np.random.default_rng(3)
    layers, lfloats, params = R.build_table([("act", name)], N_OUT, rng)
    x = act_input(name, rng)
    y = rng.uniform(-1, 1, size=(B, N_OUT)).astype(np.float32)
    loss, _, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    out = R.act_forward(R.ACT[name], x)
    per, g = R.mse(out, y)
    np.testing.assert_allclose(loss, per.mean(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, R.act_backward(R.ACT[name], x, g), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ALL_ACTS)
def test_reference_activation_gradcheck(name):
    rng = np.random.default_rng(4)
    x = act_input(name, rng).astype(np.float64)
    r = rng.standard_normal(x.shape)
    code = R.ACT[name]
    check_reference_grad(lambda z: float((R.act_forward(code, z) * r).sum()), x, R.act_backward(code, x, r))


@pytest.mark.parametrize("name", ALL_ACTS)
def test_c_activation_gradcheck(name):
    rng = np.random.default_rng(5)
    layers, lfloats, params = R.build_table([("act", name)], N_OUT, rng)
    x = act_input(name, rng)
    y = rng.uniform(-1, 1, size=(B, N_OUT)).astype(np.float32)
    _, _, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    check_directional(lambda xx: c_loss_and_grad(layers, lfloats, params, xx, y, SPEC_MSE)[0], x, dx, rng,
                      eps=2e-3)


def test_relu_and_leaky_relu_derivative_at_zero_follow_the_frameworks():
    rng = np.random.default_rng(6)
    x = np.array([[0.0, -1.0, 1.0]], np.float32)
    y = np.zeros_like(x)
    for name, want in (("relu", [0.0, 0.0, 2 / 3]), ("leaky_relu", [0.0, 0.2 * (2 * -0.2 / 3), 2 / 3])):
        layers, lfloats, params = R.build_table([("act", name)], 3, rng)
        _, _, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
        np.testing.assert_allclose(dx[0], want, rtol=RTOL, atol=ATOL)


# --- dense ---

@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_forward_backward_match_reference(use_bias):
    rng = np.random.default_rng(7)
    layers, lfloats, params = R.build_table([("dense", N_OUT, "linear")], N_IN, rng, use_bias=use_bias)
    x = rng.standard_normal((B, N_IN)).astype(np.float32)
    y = rng.standard_normal((B, N_OUT)).astype(np.float32)
    w = params[:N_IN * N_OUT].reshape(N_IN, N_OUT)
    b = params[N_IN * N_OUT:] if use_bias else None
    out = R.dense_forward(x, w, b)
    np.testing.assert_allclose(c_predict(layers, lfloats, params, x), out, rtol=RTOL, atol=ATOL)
    loss, grads, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    per, g = R.mse(out, y)
    rdx, rdw, rdb = R.dense_backward(g, x, w)
    np.testing.assert_allclose(loss, per.mean(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, rdx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grads[:N_IN * N_OUT].reshape(N_IN, N_OUT), rdw, rtol=RTOL, atol=ATOL)
    if use_bias:
        np.testing.assert_allclose(grads[N_IN * N_OUT:], rdb, rtol=RTOL, atol=ATOL)
    assert len(params) == N_IN * N_OUT + (N_OUT if use_bias else 0)


def test_reference_dense_gradcheck():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, N_IN))
    w = rng.standard_normal((N_IN, N_OUT))
    b = rng.standard_normal(N_OUT)
    r = rng.standard_normal((B, N_OUT))
    dx, dw, db = R.dense_backward(r, x, w)
    check_reference_grad(lambda xx: float((R.dense_forward(xx, w, b) * r).sum()), x, dx)
    check_reference_grad(lambda ww: float((R.dense_forward(x, ww, b) * r).sum()), w, dw)
    check_reference_grad(lambda bb: float((R.dense_forward(x, w, bb) * r).sum()), b, db)


@pytest.mark.parametrize("act", ["linear", "tanh", "sigmoid", "gelu", "softplus", "elu", "silu"])
def test_c_dense_gradcheck_params_and_input(act):
    rng = np.random.default_rng(9)
    layers, lfloats, params = R.build_table([("dense", N_OUT, act)], N_IN, rng)
    x = rng.standard_normal((B, N_IN)).astype(np.float32)
    y = rng.standard_normal((B, N_OUT)).astype(np.float32)
    _, grads, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    r_loss, r_grads, r_dx, _ = R.model_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    np.testing.assert_allclose(grads, r_grads, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=ATOL)
    check_directional(lambda xx: c_loss_and_grad(layers, lfloats, params, xx, y, SPEC_MSE)[0], x, dx, rng)
    check_directional(lambda pp: c_loss_and_grad(layers, lfloats, pp, x, y, SPEC_MSE)[0], params, grads, rng)


def test_dense_with_relu_matches_reference():
    rng = np.random.default_rng(10)
    layers, lfloats, params = R.build_table([("dense", N_OUT, "relu")], N_IN, rng)
    x = rng.standard_normal((B, N_IN)).astype(np.float32)
    y = rng.standard_normal((B, N_OUT)).astype(np.float32)
    loss, grads, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    r_loss, r_grads, r_dx, _ = R.model_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grads, r_grads, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("act", ALL_ACTS)
@pytest.mark.parametrize("use_bias", [True, False])
def test_fused_dense_activation_equals_dense_then_activation_layer_bit_for_bit(act, use_bias):
    """Dense(act) runs bias + activation row by row right after the product (relu in place, without a
    pre-activation buffer) and the activation derivative together with the bias gradient; a linear
    Dense followed by an Activation layer runs the unfused passes. Same bits, forward and backward,
    with a second dense layer above so the fused backward feeds a product."""
    rng = np.random.default_rng(21)
    fused_spec = [("dense", 7, act), ("dense", N_OUT, "linear")]
    plain_spec = [("dense", 7, "linear"), ("act", act), ("dense", N_OUT, "linear")]
    lf, ff, pf = R.build_table(fused_spec, N_IN, np.random.default_rng(1), use_bias=use_bias)
    lp, fp, pp = R.build_table(plain_spec, N_IN, np.random.default_rng(1), use_bias=use_bias)
    assert np.array_equal(pf, pp)
    x = rng.standard_normal((9, N_IN)).astype(np.float32)
    y = rng.standard_normal((9, N_OUT)).astype(np.float32)
    assert np.array_equal(c_predict(lf, ff, pf, x), c_predict(lp, fp, pp, x))
    loss_f, grads_f, dx_f = c_loss_and_grad(lf, ff, pf, x, y, SPEC_MSE)
    loss_p, grads_p, dx_p = c_loss_and_grad(lp, fp, pp, x, y, SPEC_MSE)
    assert loss_f == loss_p
    assert np.array_equal(grads_f, grads_p) and np.array_equal(dx_f, dx_p)
    assert np.any(grads_f != 0)


def test_frozen_dense_leaves_its_gradient_range_untouched_but_passes_dx():
    rng = np.random.default_rng(11)
    spec = [("dense", N_OUT, "tanh"), ("dense", 2, "linear")]
    layers, lfloats, params = R.build_table(spec, N_IN, rng, trainable=[0, 1])
    x = rng.standard_normal((B, N_IN)).astype(np.float32)
    y = rng.standard_normal((B, 2)).astype(np.float32)
    _, grads, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE, fill=7.0)
    first = N_IN * N_OUT + N_OUT
    assert (grads[:first] == 7.0).all()
    _, r_grads, r_dx, _ = R.model_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    np.testing.assert_allclose(grads[first:], r_grads[first:], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=ATOL)


# --- dropout and rescaling ---

def test_dropout_training_uses_the_counter_based_mask():
    rng = np.random.default_rng(12)
    layers, lfloats, params = R.build_table([("dense", N_OUT, "tanh"), ("dropout", 0.4),
                                             ("dense", 3, "linear")], N_IN, rng)
    x = rng.standard_normal((B, N_IN)).astype(np.float32)
    y = rng.standard_normal((B, 3)).astype(np.float32)
    seed = 123456789
    loss, grads, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE, seed=seed, training=True)
    r_loss, r_grads, r_dx, _ = R.model_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE, True, seed, 0)
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grads, r_grads, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=ATOL)
    # the same seed gives the same mask; the mask is fixed, so finite differences hold
    again = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE, seed=seed, training=True)
    assert again[0] == loss and np.array_equal(again[1], grads)
    check_directional(lambda pp: c_loss_and_grad(layers, lfloats, pp, x, y, SPEC_MSE, seed, True)[0], params,
                      grads, rng)


def test_dropout_inference_is_identity_and_training_scales_kept_units():
    rng = np.random.default_rng(13)
    n = 4000
    layers, lfloats, params = R.build_table([("dropout", 0.25)], n, rng)
    x = np.ones((2, n), np.float32)
    np.testing.assert_array_equal(c_predict(layers, lfloats, params, x), x)
    # dx of mean((x*mask - 0)^2)/... is 2 * x * mask^2 / (n B): recover the mask from it
    _, _, dx = c_loss_and_grad(layers, lfloats, params, x, np.zeros_like(x), SPEC_MSE, seed=5, training=True)
    mask_sq = dx * (n * 2) / 2
    kept = mask_sq > 0
    assert 0.72 < kept.mean() < 0.78
    np.testing.assert_allclose(mask_sq[kept], (1 / 0.75) ** 2, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(mask_sq), R.dropout_mask(5, 0, 0, 2 * n, 0.25).reshape(2, n), rtol=1e-6)


def test_dropout_rate_one_drops_everything_and_rate_zero_nothing():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((B, N_IN)).astype(np.float32)
    y = np.ones((B, N_IN), np.float32)
    for rate, want_loss in ((1.0, 1.0), (0.0, float(((x.astype(np.float64) - 1) ** 2).mean()))):
        layers, lfloats, params = R.build_table([("dropout", rate)], N_IN, rng)
        loss, _, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE, seed=1, training=True)
        np.testing.assert_allclose(loss, want_loss, rtol=RTOL)
        if rate == 1.0:
            assert (dx == 0).all()


def test_rescaling_forward_backward():
    rng = np.random.default_rng(15)
    layers, lfloats, params = R.build_table([("rescale", 1 / 255, -0.5), ("dense", N_OUT, "tanh")], N_IN, rng)
    x = rng.integers(0, 256, size=(B, N_IN)).astype(np.float32)
    y = rng.standard_normal((B, N_OUT)).astype(np.float32)
    loss, grads, dx = c_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    r_loss, r_grads, r_dx, r_out = R.model_loss_and_grad(layers, lfloats, params, x, y, SPEC_MSE)
    np.testing.assert_allclose(c_predict(layers, lfloats, params, x), r_out, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grads, r_grads, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=1e-7)
    check_directional(lambda xx: c_loss_and_grad(layers, lfloats, params, xx, y, SPEC_MSE)[0], x, dx, rng, eps=1.0)


# --- losses ---

def loss_case(name, rng):
    """(table spec, loss spec, x, y) for one loss variant; x feeds the loss through the spec's layer."""
    n = N_OUT
    logits = rng.normal(0, 1.5, size=(B, n)).astype(np.float32)
    probs = rng.uniform(0.05, 0.95, size=(B, n)).astype(np.float32)
    onehot = np.eye(n, dtype=np.float32)[rng.integers(0, n, B)]
    soft = rng.dirichlet(np.ones(n), size=B).astype(np.float32)
    labels = rng.integers(0, n, B).astype(np.int32)
    bits = rng.integers(0, 2, size=(B, n)).astype(np.float32)
    lin, soft_l, sig_l = [("act", "linear")], [("act", "softmax")], [("act", "sigmoid")]
    cases = {
        "mse": (lin, (R.MSE, 0, 0.0), logits, rng.standard_normal((B, n)).astype(np.float32)),
        "mae": (lin, (R.MAE, 0, 0.0), logits, rng.standard_normal((B, n)).astype(np.float32)),
        "bce_logits": (lin, (R.BCE, 1, 0.0), logits, bits),
        "bce_logits_ls": (lin, (R.BCE, 1, 0.2), logits, bits),
        "bce_fused": (sig_l, (R.BCE, 0, 0.0), logits, bits),
        "bce_fused_ls": (sig_l, (R.BCE, 0, 0.1), logits, bits),
        "bce_probs": (lin, (R.BCE, 0, 0.0), probs, bits),
        "bce_probs_ls": (lin, (R.BCE, 0, 0.2), probs, bits),
        "cce_logits": (lin, (R.CCE, 1, 0.0), logits, onehot),
        "cce_logits_soft_targets": (lin, (R.CCE, 1, 0.0), logits, soft),
        "cce_logits_ls": (lin, (R.CCE, 1, 0.1), logits, onehot),
        "cce_fused": (soft_l, (R.CCE, 0, 0.0), logits, onehot),
        "cce_fused_ls": (soft_l, (R.CCE, 0, 0.2), logits, onehot),
        "cce_probs": (lin, (R.CCE, 0, 0.0), probs, onehot),
        "cce_probs_ls": (lin, (R.CCE, 0, 0.1), probs, soft),
        "cce_probs_after_relu": ([("act", "relu")], (R.CCE, 0, 0.0), probs, onehot),
        "scce_logits": (lin, (R.SCCE, 1, 0.0), logits, labels),
        "scce_fused": (soft_l, (R.SCCE, 0, 0.0), logits, labels),
        "scce_probs": (lin, (R.SCCE, 0, 0.0), probs, labels),
        "scce_logits_on_softmax_output": (soft_l, (R.SCCE, 1, 0.0), logits, labels),
    }
    return cases[name]


LOSS_CASES = ["mse", "mae", "bce_logits", "bce_logits_ls", "bce_fused", "bce_fused_ls", "bce_probs",
              "bce_probs_ls", "cce_logits", "cce_logits_soft_targets", "cce_logits_ls", "cce_fused",
              "cce_fused_ls", "cce_probs", "cce_probs_ls", "cce_probs_after_relu", "scce_logits", "scce_fused",
              "scce_probs", "scce_logits_on_softmax_output"]


@pytest.mark.parametrize("name", LOSS_CASES)
def test_loss_and_gradient_match_reference(name):
    rng = np.random.default_rng(16)
    tspec, spec, x, y = loss_case(name, rng)
    layers, lfloats, params = R.build_table(tspec, N_OUT, rng)
    loss, _, dx = c_loss_and_grad(layers, lfloats, params, x, y, spec)
    r_loss, _, r_dx, _ = R.model_loss_and_grad(layers, lfloats, params, x, y, spec)
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", LOSS_CASES)
def test_reference_loss_gradcheck(name):
    rng = np.random.default_rng(17)
    tspec, spec, x, y = loss_case(name, rng)
    layers, lfloats, params = R.build_table(tspec, N_OUT, rng)
    x64 = x.astype(np.float64)
    _, _, r_dx, _ = R.model_loss_and_grad(layers, lfloats, params, x64, y, spec)
    check_reference_grad(lambda xx: R.model_loss_and_grad(layers, lfloats, params, xx, y, spec)[0], x64, r_dx,
                         rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", LOSS_CASES)
def test_c_loss_gradcheck(name):
    rng = np.random.default_rng(18)
    tspec, spec, x, y = loss_case(name, rng)
    layers, lfloats, params = R.build_table(tspec, N_OUT, rng)
    _, _, dx = c_loss_and_grad(layers, lfloats, params, x, y, spec)
    eps = 1e-3 if spec[0] == R.MAE else 1e-2
    check_directional(lambda xx: c_loss_and_grad(layers, lfloats, params, xx, y, spec)[0], x, dx, rng, eps=eps)


def test_fused_loss_matches_the_logits_loss_on_the_pre_activation():
    rng = np.random.default_rng(19)
    z = rng.normal(0, 3, size=(B, N_OUT)).astype(np.float32)
    labels = rng.integers(0, N_OUT, B).astype(np.int32)
    fused = R.build_table([("act", "softmax")], N_OUT, rng)
    raw = R.build_table([("act", "linear")], N_OUT, rng)
    a = c_loss_and_grad(*fused, z, labels, (R.SCCE, 0, 0.0))
    b = c_loss_and_grad(*raw, z, labels, (R.SCCE, 1, 0.0))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_allclose(a[2], b[2], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", [10, 3, 64])
def test_class_id_cross_entropy_equals_the_one_hot_form_bit_for_bit(n):
    """SCCE with class ids (its own loop, no per-element targets) and CCE with the one-hot targets
    (the general loop) from logits: the same loss and gradient bits."""
    rng = np.random.default_rng(23)
    z = rng.normal(0, 4, size=(33, n)).astype(np.float32)
    labels = rng.integers(0, n, 33).astype(np.int32)
    onehot = np.eye(n, dtype=np.float32)[labels]
    table = R.build_table([("act", "linear")], n, rng)
    a = c_loss_and_grad(*table, z, labels, (R.SCCE, 1, 0.0))
    b = c_loss_and_grad(*table, z, onehot, (R.CCE, 1, 0.0))
    assert a[0] == b[0]
    assert np.array_equal(a[2].view(np.uint32), b[2].view(np.uint32))


def test_fused_loss_is_not_clipped_for_confident_wrong_predictions():
    rng = np.random.default_rng(20)
    z = np.array([[40.0, 0.0, 0.0]], np.float32)
    layers, lfloats, params = R.build_table([("act", "softmax")], 3, rng)
    loss, _, dx = c_loss_and_grad(layers, lfloats, params, z, np.array([1], np.int32), (R.SCCE, 0, 0.0))
    np.testing.assert_allclose(loss, 40.0, rtol=1e-6)  # the clipped path would cap it at -log(1e-7) = 16.1
    np.testing.assert_allclose(dx, [[1.0, -1.0, 0.0]], atol=1e-6)


def test_clipped_probabilities_get_zero_gradient():
    rng = np.random.default_rng(21)
    layers, lfloats, params = R.build_table([("act", "linear")], 3, rng)
    p = np.array([[0.0, 0.5, 1.0], [2e-8, 0.3, 1 - 2.0 ** -24]], np.float32)  # 1 - 2^-24 > 1 - 1e-7
    y = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], np.float32)
    loss, _, dx = c_loss_and_grad(layers, lfloats, params, p, y, (R.BCE, 0, 0.0))
    r_loss, _, r_dx, _ = R.model_loss_and_grad(layers, lfloats, params, p, y, (R.BCE, 0, 0.0))
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL)
    np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=ATOL)
    assert dx[0, 0] == 0 and dx[0, 2] == 0 and dx[1, 0] == 0 and dx[1, 2] == 0
    assert np.isfinite(loss)
    # categorical: a zero probability for the true class is clipped, its gradient is zero
    q = np.array([[0.0, 0.6, 0.4]], np.float32)
    loss, _, dx = c_loss_and_grad(layers, lfloats, params, q, np.array([[1.0, 0.0, 0.0]], np.float32),
                                  (R.CCE, 0, 0.0))
    np.testing.assert_allclose(loss, -np.log(1e-7), rtol=1e-6)
    np.testing.assert_allclose(dx, 0.0, atol=1e-7)


def test_partial_sums_mean_over_the_batch():
    """The loss of a batch is the mean of the per-sample losses (sum_over_batch_size)."""
    rng = np.random.default_rng(22)
    layers, lfloats, params = R.build_table([("dense", N_OUT, "softmax")], N_IN, rng)
    x = rng.standard_normal((7, N_IN)).astype(np.float32)
    labels = rng.integers(0, N_OUT, 7).astype(np.int32)
    whole = c_loss_and_grad(layers, lfloats, params, x, labels, (R.SCCE, 0, 0.0))[0]
    parts = [c_loss_and_grad(layers, lfloats, params, x[i:i + 1], labels[i:i + 1], (R.SCCE, 0, 0.0))[0]
             for i in range(7)]
    np.testing.assert_allclose(whole, np.mean(parts), rtol=1e-6)


# --- metrics (through evaluate) ---

def c_evaluate(layers, lfloats, params, x, y, spec, metric, batch_size=2):
    return _C.evaluate(layers, lfloats, params, x, y, batch_size, spec, metric, None)


def test_metrics_match_reference():
    rng = np.random.default_rng(23)
    layers, lfloats, params = R.build_table([("act", "linear")], 4, rng)
    x = rng.standard_normal((9, 4)).astype(np.float32)
    x[0] = [1.0, 1.0, 0.0, 0.0]  # a tie: the first max wins
    labels = rng.integers(0, 4, 9).astype(np.int32)
    labels[0] = 0
    _, s, n = c_evaluate(layers, lfloats, params, x, labels, (R.SCCE, 1, 0.0), R.M_SPARSE)
    assert n == 9 and s == R.metric_sum(R.M_SPARSE, x, labels, True)
    onehot = np.eye(4, dtype=np.float32)[labels]
    _, s, _ = c_evaluate(layers, lfloats, params, x, onehot, (R.CCE, 1, 0.0), R.M_CAT)
    assert s == R.metric_sum(R.M_CAT, x, onehot, False)
    probs = rng.uniform(0, 1, size=(9, 4)).astype(np.float32)
    bits = rng.integers(0, 2, size=(9, 4)).astype(np.float32)
    _, s, _ = c_evaluate(layers, lfloats, params, probs, bits, (R.BCE, 0, 0.0), R.M_BIN)
    np.testing.assert_allclose(s, R.metric_sum(R.M_BIN, probs, bits, False), rtol=1e-12)
    # categorical accuracy with class ids compares against the id
    _, s, _ = c_evaluate(layers, lfloats, params, x, labels, (R.SCCE, 1, 0.0), R.M_CAT)
    assert s == R.metric_sum(R.M_SPARSE, x, labels, True)


def test_binary_accuracy_of_a_fused_sigmoid_thresholds_the_probability():
    rng = np.random.default_rng(24)
    layers, lfloats, params = R.build_table([("act", "sigmoid")], 1, rng)
    z = np.array([[-2.0], [0.5], [3.0], [-0.1]], np.float32)
    y = np.array([[0.0], [1.0], [0.0], [1.0]], np.float32)
    loss_sum, s, n = c_evaluate(layers, lfloats, params, z, y, (R.BCE, 0, 0.0), R.M_BIN)
    assert (s, n) == (2.0, 4)
    per, _ = R.bce_logits(z, y)
    np.testing.assert_allclose(loss_sum, per.sum(), rtol=1e-6)


# --- whole model ---

def test_whole_model_forward_backward_matches_reference():
    rng = np.random.default_rng(25)
    spec = [("rescale", 0.5, 0.1), ("dense", 6, "gelu"), ("dropout", 0.3), ("dense", 5, "tanh"),
            ("act", "softplus"), ("dense", 4, "softmax")]
    layers, lfloats, params = R.build_table(spec, N_IN, rng)
    x = rng.standard_normal((B, N_IN)).astype(np.float32)
    labels = rng.integers(0, 4, B).astype(np.int32)
    lspec = (R.SCCE, 0, 0.0)
    for training in (False, True):
        loss, grads, dx = c_loss_and_grad(layers, lfloats, params, x, labels, lspec, seed=99, training=training)
        r_loss, r_grads, r_dx, r_out = R.model_loss_and_grad(layers, lfloats, params, x, labels, lspec,
                                                             training, 99, 0)
        np.testing.assert_allclose(loss, r_loss, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(grads, r_grads, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=ATOL)
        check_directional(lambda pp: c_loss_and_grad(layers, lfloats, pp, x, labels, lspec, 99, training)[0],
                          params, grads, rng)
        check_directional(lambda xx: c_loss_and_grad(layers, lfloats, params, xx, labels, lspec, 99, training)[0],
                          x, dx, rng)
    np.testing.assert_allclose(c_predict(layers, lfloats, params, x, batch_size=2),
                               R.model_forward(layers, lfloats, params, x)[0], rtol=RTOL, atol=ATOL)


def test_reference_whole_model_gradcheck():
    rng = np.random.default_rng(26)
    spec = [("dense", 6, "selu"), ("dropout", 0.5), ("dense", 5, "silu"), ("dense", 3, "sigmoid")]
    layers, lfloats, params = R.build_table(spec, N_IN, rng)
    x = rng.standard_normal((B, N_IN))
    y = rng.integers(0, 2, size=(B, 3)).astype(np.float64)
    lspec = (R.BCE, 0, 0.1)
    p64 = params.astype(np.float64)
    _, r_grads, r_dx, _ = R.model_loss_and_grad(layers, lfloats, p64, x, y, lspec, True, 7, 3)
    check_reference_grad(lambda pp: R.model_loss_and_grad(layers, lfloats, pp, x, y, lspec, True, 7, 3)[0], p64,
                         r_grads, rtol=1e-5, atol=1e-8)
    check_reference_grad(lambda xx: R.model_loss_and_grad(layers, lfloats, p64, xx, y, lspec, True, 7, 3)[0], x,
                         r_dx, rtol=1e-5, atol=1e-8)


# --- gemm and the scans ---

@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_gemm_all_transposes(ta, tb):
    rng = np.random.default_rng(27)
    M, N, K = 5, 7, 3
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    Bm = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C = rng.standard_normal((M, N)).astype(np.float32)
    want = 0.5 * (A.T if ta else A).astype(np.float64) @ (Bm.T if tb else Bm) + 2.0 * C
    _C.gemm(ta, tb, 0.5, A, Bm, 2.0, C)
    np.testing.assert_allclose(C, want, rtol=RTOL, atol=ATOL)


def test_gemm_rejects_mismatched_shapes_and_read_only_output():
    A = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"op\(A\) is \(2, 3\) and op\(B\) is \(4, 2\)"):
        _C.gemm(False, False, 1.0, A, np.ones((4, 2), np.float32), 0.0, np.zeros((2, 2), np.float32))
    C = np.zeros((2, 2), np.float32)
    C.flags.writeable = False
    with pytest.raises(ValueError, match="C: expected a writeable float32 array"):
        _C.gemm(False, False, 1.0, A, np.ones((3, 2), np.float32), 0.0, C)


def test_scan_floats_and_first_bad_label():
    x = np.array([1.0, np.nan, -np.inf, 3.0, np.inf], np.float32)
    assert _C.scan_floats(x) == (1, 2, -np.inf, np.inf)
    assert _C.scan_floats(np.array([[0.5, -2.0]])) == (0, 0, -2.0, 0.5)
    assert _C.scan_floats(np.array([3, 255, 0], np.uint8)) == (0, 0, 0.0, 255.0)
    n_nan, n_inf, lo, hi = _C.scan_floats(np.zeros(0, np.float32))
    assert (n_nan, n_inf) == (0, 0) and np.isnan(lo) and np.isnan(hi)
    with pytest.raises(TypeError, match="x: expected float32 or float64 array, got int64"):
        _C.scan_floats(np.zeros(3, np.int64))
    y = np.array([0, 2, 5, -1], np.int32)
    assert _C.first_bad_label(y, 5) == 2
    assert _C.first_bad_label(y[:2], 5) == -1
    assert _C.first_bad_label(y, 6) == 3


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_scan_floats_large_arrays_match_numpy(threads, dtype):
    """Arrays long enough to be cut into pieces for the thread pool (2^16 elements each), with
    NaN/Inf planted in the first piece, the vectorised middle, a piece boundary and the ragged tail."""
    rng = np.random.default_rng(3)
    n = 5 * 65536 + 37
    if dtype == np.uint8:
        x = rng.integers(3, 250, n, dtype=np.uint8)
        x[[65535, n - 1]] = [1, 254]
    else:
        x = (rng.random(n) * 200 - 50).astype(dtype)
        x[[0, 70000, 131072, n - 1]] = [np.nan, np.inf, -np.inf, np.nan]
        x[[5, 200000]] = [-1e30, 1e30]
    want = (int(np.isnan(x).sum()), int(np.isinf(x).sum()), float(np.nanmin(x)), float(np.nanmax(x)))
    saved = _C.get_num_threads()
    try:
        _C.set_num_threads(threads)
        assert _C.scan_floats(x) == want
        if dtype != np.uint8:
            n_nan, n_inf, lo, hi = _C.scan_floats(np.full(n, np.nan, dtype))
            assert (n_nan, n_inf) == (n, 0) and np.isnan(lo) and np.isnan(hi)
    finally:
        _C.set_num_threads(saved)
