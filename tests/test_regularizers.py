"""Weight regularizers (mnistc.regularizers, Keras 3's L1, L2, L1L2): the C penalty and its gradient
against the float64 reference and by central differences (Dense, Conv2D, BatchNormalization), the
loss fit reports for one batch and one epoch against a float64 replay, evaluate's loss as data loss
+ penalty, frozen layers counting nothing, zero factors giving the same bits as no regularizer,
Keras's defaults and identifiers, every error, configs and save/load, PyTorch with the penalty
written into its loss (when torch is installed), and Keras 3 itself (when keras and jax are)."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import mnistc
import reference as R
from mnistc import _C, layers, regularizers
from test_conv_layers import SPEC_MSE, one_layer_model
from test_ops import ATOL, RTOL, check_directional

L1, L2, L1L2 = regularizers.L1, regularizers.L2, regularizers.L1L2
SCCE = "sparse_categorical_crossentropy"


def penalty64(model):
    """The float64 sum of the penalties of the model's trainable regularized weights."""
    return sum(R.weight_penalty(w, reg.l1, reg.l2)[0] for layer in model.layers if layer.trainable
               for w, t, reg in zip(layer._weights, layer._weight_trained, layer._weight_regularizers)
               if t and reg is not None)


def mlp(kernel=None, bias=None, head=None, seed=0, n_in=20):
    mnistc.utils.set_random_seed(seed)
    return mnistc.Sequential([
        mnistc.Input((n_in,)),
        layers.Dense(16, activation="relu", kernel_regularizer=kernel, bias_regularizer=bias),
        layers.Dense(4, activation="softmax", kernel_regularizer=head),
    ])


def data(n=50, n_in=20, classes=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n_in)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def with_biases(model, seed=2):
    """Random nonzero biases, so that the bias penalties are not trivially 0."""
    rng = np.random.default_rng(seed)
    model.set_weights([w if w.ndim > 1 else rng.uniform(-0.3, 0.3, w.shape) for w in model.get_weights()])
    return model


# --- the C core: penalty and gradient ---

PENALTIES = {0: (0.01, 0.05, 0.02, 0.0), 2: (0.0, 0.03, 0.01, 0.02)}


@pytest.mark.parametrize("trainable", [(1, 1, 1), (0, 1, 1), (1, 1, 0)])
def test_c_loss_and_gradient_match_the_float64_reference(trainable):
    rng = np.random.default_rng(10)
    spec = [("dense", 6, "tanh"), ("act", "relu"), ("dense", 3, "softmax")]
    table, lf, params = R.build_table(spec, 5, rng, trainable=trainable, penalties=PENALTIES)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = rng.integers(0, 3, 4).astype(np.int32)
    loss_spec = (R.SCCE, 0, 0.0)
    grads = np.zeros_like(params)
    loss, _ = _C.loss_and_grad(table, lf, params, grads, x, y, loss_spec)
    r_loss, r_grads, _, _ = R.model_loss_and_grad(table, lf, params, x, y, loss_spec)
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grads, r_grads, rtol=RTOL, atol=ATOL)
    # the penalties are a real part of both (the check could fail): without them the loss moves
    plain, _, _, _ = R.model_loss_and_grad(table, np.zeros_like(lf), params, x, y, loss_spec)
    assert abs(r_loss - plain) > 1e3 * ATOL
    if not trainable[0]:  # a frozen layer: no penalty, no gradient written
        assert np.all(grads[:5 * 6 + 6] == 0)


def test_c_gradient_matches_central_differences():
    rng = np.random.default_rng(11)
    spec = [("dense", 6, "tanh"), ("dense", 3, "linear")]
    table, lf, params = R.build_table(spec, 5, rng, penalties={0: (0.05, 0.1, 0.05, 0.1), 1: (0.02, 0.3, 0, 0)})
    params = np.where(np.abs(params) < 0.05, 0.05, params).astype(np.float32)  # away from |w|'s kink
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = rng.standard_normal((4, 3)).astype(np.float32)

    def loss_of(p):
        return _C.loss_and_grad(table, lf, p, np.zeros_like(p), x, y, SPEC_MSE)[0]

    grads = np.zeros_like(params)
    _C.loss_and_grad(table, lf, params, grads, x, y, SPEC_MSE)
    check_directional(loss_of, params, grads, rng, eps=1e-2, n_dirs=6)


def test_l1_gradient_at_zero_is_zero_and_l2_is_twice_the_factor():
    """g(reg) - g(no reg) = l1 * sign(w) + 2 * l2 * w, with sign(0) = 0, weight by weight."""
    rng = np.random.default_rng(12)
    spec = [("dense", 4, "linear")]
    table, lf, params = R.build_table(spec, 3, rng, penalties={0: (0.25, 0.5, 0.125, 0.0)})
    params[[0, 5, 12]] = 0.0   # two kernel entries and one bias entry exactly 0
    x = rng.standard_normal((2, 3)).astype(np.float32)
    y = rng.standard_normal((2, 4)).astype(np.float32)
    with_reg, without = np.zeros_like(params), np.zeros_like(params)
    _C.loss_and_grad(table, lf, params, with_reg, x, y, SPEC_MSE)
    _C.loss_and_grad(table, np.zeros_like(lf), params, without, x, y, SPEC_MSE)
    w = params.astype(np.float64)
    expected = np.concatenate([0.25 * np.sign(w[:12]) + 1.0 * w[:12], 0.125 * np.sign(w[12:])])
    np.testing.assert_allclose(with_reg - without, expected, rtol=1e-6, atol=1e-6)
    assert with_reg[0] == without[0] and with_reg[5] == without[5] and with_reg[12] == without[12]


def regularized_layer(kind, regularized=True):
    """A Conv2D or BatchNormalization layer with both its weights regularized (or none), its input shape."""
    if kind == "conv":
        regs = (L1L2(l1=0.02, l2=0.1), L1(0.05)) if regularized else (None, None)
        return layers.Conv2D(3, 2, kernel_regularizer=regs[0], bias_regularizer=regs[1]), (5, 5, 2)
    regs = (L1L2(l1=0.03, l2=0.2), L2(0.3)) if regularized else (None, None)
    return layers.BatchNormalization(gamma_regularizer=regs[0], beta_regularizer=regs[1]), (3, 3, 2)


def c_call(model, x, y, trainable=True, lfloats=None, params=None):
    """(loss, grads) of one _C.loss_and_grad on a copy of the model's parameters (training mode)."""
    plan = model._get_plan()
    table, _ = plan.tables([trainable])
    p = (plan.params if params is None else params).copy()
    grads = np.zeros_like(p)
    loss, _ = _C.loss_and_grad(table, plan.lfloats if lfloats is None else lfloats, p, grads,
                               x.reshape(len(x), -1), y.reshape(len(y), -1), SPEC_MSE, 0, True)
    return loss, grads


@pytest.mark.parametrize("kind", ["conv", "batchnorm"])
def test_conv_and_batchnorm_penalties_in_c(kind):
    layer, shape = regularized_layer(kind)
    model = one_layer_model(layer, shape, seed=3)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    y = rng.standard_normal((4, *model.output_shape[1:])).astype(np.float32)
    plan = model._get_plan()
    loss, grads = c_call(model, x, y)
    plain_loss, plain = c_call(model, x, y, lfloats=plan.lfloats * (np.arange(_C.FTABLE_COLS) < 2))
    # the loss: data loss + the float64 penalties of the two regularized weights
    np.testing.assert_allclose(loss - plain_loss, penalty64(model), rtol=1e-5)
    # the gradient: data gradient + l1 * sign(w) + 2 * l2 * w on exactly the regularized ranges
    expected = np.zeros(plan.P)
    for off, w, reg in zip(plan.offsets[0], layer._weights, layer._weight_regularizers):
        if reg is not None:
            expected[off:off + w.size] = R.weight_penalty(w.ravel(), reg.l1, reg.l2)[1]
    np.testing.assert_allclose(grads - plain, expected, rtol=1e-5, atol=1e-6)
    assert np.any(expected != 0)
    # and by central differences of the C loss along random directions of the weights
    params = plan.params.copy()
    params = np.where(np.abs(params) < 0.05, 0.05, params).astype(np.float32)  # off |w|'s kink
    _, at = c_call(model, x, y, params=params)
    check_directional(lambda p: c_call(model, x, y, params=p)[0], params, at, rng, eps=1e-2, n_dirs=4)
    # frozen: neither the penalty nor any gradient (a frozen BatchNormalization runs in inference mode)
    frozen_loss, frozen = c_call(model, x, y, trainable=False)
    frozen_plain, _ = c_call(model, x, y, trainable=False, lfloats=plan.lfloats * (np.arange(_C.FTABLE_COLS) < 2))
    assert frozen_loss == frozen_plain and not np.any(frozen)


# --- fit, evaluate, model.losses ---

def reg_mlp(seed=0):
    return with_biases(mlp(kernel=L2(0.01), bias=L1(0.02), head=L1L2(l1=0.001, l2=0.02), seed=seed))


def test_model_losses_are_the_current_penalties_as_float32():
    model = reg_mlp()
    losses = model.losses
    assert len(losses) == 3 and all(isinstance(v, np.float32) for v in losses)
    d0, d1 = model.layers
    expected = [R.weight_penalty(d0.kernel, 0, 0.01)[0], R.weight_penalty(d0.bias, 0.02, 0)[0],
                R.weight_penalty(d1.kernel, 0.001, 0.02)[0]]
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    assert d1.losses == losses[2:]
    d0.trainable = False
    assert model.losses == losses[2:]
    # Keras's documented examples: L1(0.01) on a 5x5 kernel of ones is 0.25; L2(2.) of ones((5, 5)) is 50
    dense = mnistc.Sequential([mnistc.Input((5,)),
                               layers.Dense(5, kernel_initializer="ones", kernel_regularizer=L1(0.01))])
    np.testing.assert_allclose(dense.losses, [0.25], rtol=1e-6)
    assert L2(2.0)(np.ones((5, 5))) == 50.0 and regularizers.Regularizer()(np.ones(3)) == 0.0


def test_train_on_batch_reports_data_loss_plus_penalty_before_the_update():
    model = reg_mlp()
    model.compile(optimizer=mnistc.optimizers.SGD(0.1), loss=SCCE)
    x, y = data(16)
    plan = model._get_plan()
    table, segments = plan.tables([True, True])
    before = plan.params.astype(np.float64)
    r_loss, r_grads, _, _ = R.model_loss_and_grad(table, plan.lfloats, before, x, y, model.loss.c_spec())
    reported = model.train_on_batch(x, y)
    np.testing.assert_allclose(reported, r_loss, rtol=RTOL)
    assert reported - model.loss(y, model.predict(x, verbose=0)) > 0.1  # the penalty is in it (~0.6)
    R.optimizer_step(R.SGD, model.optimizer.c_hyper(), before, r_grads, segments, [], 0)
    np.testing.assert_allclose(plan.params, before, rtol=RTOL, atol=ATOL)


def test_fit_epoch_loss_matches_a_float64_replay():
    """Four steps (16, 16, 16, 2 rows): each batch's loss at the weights of its step, penalty included,
    averaged with the batch sizes as weights."""
    model = reg_mlp()
    opt = mnistc.optimizers.Adam(0.01)
    model.compile(optimizer=opt, loss=SCCE)
    x, y = data(50)
    plan = model._get_plan()
    table, segments = plan.tables([True, True])
    params = plan.params.astype(np.float64)
    slots = [np.zeros(int(segments[:, 1].sum())) for _ in range(R.n_slots(R.ADAM, opt.c_hyper()))]
    total = 0.0
    for step, start in enumerate(range(0, 50, 16)):
        xb, yb = x[start:start + 16], y[start:start + 16]
        loss, grads, _, _ = R.model_loss_and_grad(table, plan.lfloats, params, xb, yb, model.loss.c_spec())
        total += loss * len(xb)
        R.optimizer_step(R.ADAM, opt.c_hyper(), params, grads, segments, slots, step)
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], total / 50, rtol=RTOL)
    np.testing.assert_allclose(plan.params, params, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("kind", ["dense", "conv", "batchnorm"])
def test_evaluate_reports_data_loss_plus_penalty(kind):
    rng = np.random.default_rng(14)
    if kind == "dense":
        (x, y), model, plain, loss = data(40), reg_mlp(), mlp(), SCCE
    else:
        layer, shape = regularized_layer(kind)
        model = one_layer_model(layer, shape, seed=4)
        plain = mnistc.Sequential([mnistc.Input(shape), regularized_layer(kind, regularized=False)[0]])
        x = rng.standard_normal((40, *shape)).astype(np.float32)
        y = rng.standard_normal((40, math.prod(model.output_shape[1:]))).astype(np.float32)
        loss = "mse"
    plain.set_weights(model.get_weights())
    model.compile(loss=loss)
    plain.compile(loss=loss)
    with_penalty = model.evaluate(x, y, batch_size=16, verbose=0)
    without = plain.evaluate(x, y, batch_size=16, verbose=0)
    np.testing.assert_allclose(with_penalty - without, penalty64(model), rtol=1e-6)
    assert penalty64(model) > 0.05
    np.testing.assert_allclose(model.test_on_batch(x, y), plain.test_on_batch(x, y) + penalty64(model), rtol=1e-6)


def test_a_frozen_layer_contributes_nothing():
    """A frozen regularized layer trains exactly as one without a regularizer (same bits), and
    evaluate leaves its penalty out; the trainable head's penalty still counts."""
    x, y = data(48)
    runs = []
    for kernel in (L2(0.5), None):
        model = mlp(kernel=kernel, bias=L1(0.5) if kernel else None, head=L2(0.01), seed=6)
        model.layers[0].trainable = False
        model.compile(optimizer="adam", loss=SCCE)
        mnistc.utils.set_random_seed(7)
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        runs.append((history.history["loss"], model.get_weights(), model.evaluate(x, y, verbose=0), model.losses))
    (h0, w0, e0, l0), (h1, w1, e1, l1) = runs
    assert h0 == h1 and e0 == e1 and all(np.array_equal(a, b) for a, b in zip(w0, w1))
    assert len(l0) == len(l1) == 1 and l0[0] == l1[0] > 0


def test_zero_factors_give_the_same_bits_as_no_regularizer():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((40, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, 40).astype(np.int32)
    runs = []
    for reg in (None, L1L2(), "l1l2"):
        mnistc.utils.set_random_seed(8)
        model = mnistc.Sequential([
            mnistc.Input((6, 6, 1)),
            layers.Conv2D(2, 3, activation="relu", kernel_regularizer=reg, bias_regularizer=reg),
            layers.BatchNormalization(gamma_regularizer=reg, beta_regularizer=reg), layers.Flatten(),
            layers.Dropout(0.25), layers.Dense(3, activation="softmax", kernel_regularizer=reg)])
        model.compile(optimizer="adam", loss=SCCE)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        runs.append((history.history["loss"], model.get_weights(), model.evaluate(x, y, verbose=0)))
    for other in runs[1:]:
        assert other[0] == runs[0][0] and other[2] == runs[0][2]
        assert all(np.array_equal(a, b) for a, b in zip(other[1], runs[0][1]))


def test_the_thread_count_does_not_change_the_bits():
    """A kernel large enough for its penalty work to go over the pool (64 x 784 weights, pieces
    fixed by its length) trains to the same bits on one thread and on two."""
    rng = np.random.default_rng(17)
    x, y = rng.standard_normal((96, 784)).astype(np.float32), rng.integers(0, 4, 96).astype(np.int32)
    saved, runs = mnistc.get_num_threads(), []
    try:
        for threads in (1, 2):
            mnistc.set_num_threads(threads)
            mnistc.utils.set_random_seed(10)
            model = mnistc.Sequential([
                mnistc.Input((784,)),
                layers.Dense(64, activation="relu", kernel_regularizer=L1L2(l1=1e-4, l2=1e-3),
                             bias_regularizer=L1(1e-3)),
                layers.Dense(4, activation="softmax", kernel_regularizer=L2(1e-3))])
            model.compile(optimizer="adam", loss=SCCE)
            mnistc.utils.set_random_seed(11)
            history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
            runs.append((history.history["loss"], model.get_weights(), model.evaluate(x, y, verbose=0)))
    finally:
        mnistc.set_num_threads(saved)
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


# --- Keras's API: defaults, identifiers, configs ---

def test_keras_defaults_and_identifiers():
    assert L1().l1 == 0.01 and L2().l2 == 0.01 and (L1L2().l1, L1L2().l2) == (0.0, 0.0)
    assert regularizers.l1 is L1 and regularizers.l2 is L2 and regularizers.l1_l2 is L1L2
    assert regularizers.l1_l2().get_config() == {"l1": 0.0, "l2": 0.0}  # Keras 3: the class, defaults 0
    assert L1(None).l1 == 0.01 and L1L2(l1=None, l2=0.5).get_config() == {"l1": 0.0, "l2": 0.5}
    assert regularizers.get(None) is None
    zeros = {"l1": 0.0, "l2": 0.0}
    for name, cls, config in (("l1", L1, {"l1": 0.01}), ("l2", L2, {"l2": 0.01}), ("l1l2", L1L2, zeros),
                              ("L2", L2, {"l2": 0.01}), ("L1L2", L1L2, zeros)):
        reg = regularizers.get(name)
        assert type(reg) is cls and reg.get_config() == config
    reg = L2(1e-4)
    assert regularizers.get(reg) is reg and type(regularizers.get(L1)) is L1
    assert type(regularizers.get("regularizer")) is regularizers.Regularizer
    dense = layers.Dense(3, kernel_regularizer="l2", bias_regularizer=regularizers.l1(0.5))
    assert dense.kernel_regularizer.get_config() == {"l2": 0.01} and dense.bias_regularizer.l1 == 0.5
    assert mnistc.keras.regularizers is regularizers and "regularizers" in dir(mnistc)


def test_configs_round_trip():
    for reg in (L1(0.3), L2(1e-4), L1L2(l1=0.1, l2=0.2), regularizers.Regularizer()):
        cfg = regularizers.serialize(reg)
        back = regularizers.deserialize(cfg)
        assert type(back) is type(reg) and back.get_config() == reg.get_config()
        assert type(reg).from_config(reg.get_config()).get_config() == reg.get_config()
    assert regularizers.serialize(None) is None
    keras_dict = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.001}, "registered_name": None}
    assert regularizers.get(keras_dict).get_config() == {"l2": 0.001}
    for layer in (layers.Dense(3, kernel_regularizer=L1L2(l1=0.1, l2=0.2), bias_regularizer="l1"),
                  layers.Conv2D(2, 3, kernel_regularizer="l2"),
                  layers.BatchNormalization(gamma_regularizer=L2(0.5), beta_regularizer=L1(0.25))):
        cfg = layer.get_config()
        again = type(layer).from_config(cfg).get_config()
        assert again == cfg and layers.deserialize(layers.serialize(layer)).get_config() == cfg
    cfg = layers.Dense(3).get_config()
    assert cfg["kernel_regularizer"] is None and cfg["bias_regularizer"] is None
    assert layers.BatchNormalization().get_config()["gamma_regularizer"] is None


def test_save_and_load_keep_the_regularizers(tmp_path):
    mnistc.utils.set_random_seed(9)
    model = mnistc.Sequential([
        mnistc.Input((6, 6, 1)),
        layers.Conv2D(2, 3, kernel_regularizer="l2", bias_regularizer=L1L2(l1=0.5)),
        layers.BatchNormalization(gamma_regularizer=L1(0.3), beta_regularizer="l2"), layers.Flatten(),
        layers.Dense(3, activation="softmax", kernel_regularizer=L2(1e-3))])
    model.compile(optimizer="adam", loss=SCCE)
    rng = np.random.default_rng(16)
    x, y = rng.standard_normal((20, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, 20).astype(np.int32)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = mnistc.load_model(tmp_path / "m.keras")
    for a, b in zip(model.layers, loaded.layers):
        assert a.get_config() == b.get_config()
    assert loaded.losses == model.losses and len(model.losses) == 5
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


# --- errors ---

@pytest.mark.parametrize("make, match", [
    (lambda: L2(-1), r"Invalid value for argument l2: expected a non-negative float\. Received: l2=-1"),
    (lambda: L1(float("nan")), r"l1: expected a non-negative float\. Received: l1=nan"),
    (lambda: L1L2(l2=math.inf), r"l2: expected a non-negative float"),
    (lambda: L2("0.1"), r"l2: expected a non-negative float\. Received: l2='0.1'"),
    (lambda: regularizers.get("nope"), r"Could not interpret regularizer identifier: 'nope'.*supports L1, L2 and L1L2"),
    (lambda: regularizers.get("l1_l2"), r"'l1_l2' \(use regularizers\.L1L2\(l1=0\.01, l2=0\.01\)\)"),
    (lambda: regularizers.get("orthogonal_regularizer"), r"OrthogonalRegularizer is not supported"),
    (lambda: regularizers.get(lambda w: 0.01 * float(np.sum(w))), r"custom regularizers cannot run in the C core"),
    (lambda: regularizers.get({"class_name": "Orthogonal", "config": {}}), r"Could not interpret regularizer"),
    (lambda: regularizers.get({"class_name": "L2", "config": {"l3": 1}}), r"Bad L2 config"),
    (lambda: layers.Dense(3, kernel_regularizer="bogus"), r"'bogus'"),
    (lambda: layers.Dense(3, activity_regularizer="l2"),
     r"Dense: activity_regularizer is not supported by mnistc.*kernel_regularizer and bias_regularizer"),
    (lambda: layers.Conv2D(3, 2, activity_regularizer=L2()), r"Conv2D: activity_regularizer is not supported"),
    (lambda: layers.BatchNormalization(activity_regularizer="l1"), r"gamma_regularizer and beta_regularizer"),
])
def test_bad_regularizers_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_custom_regularizer_subclass_is_refused():
    class Scaled(L2):
        def __call__(self, x):
            return 2 * super().__call__(x)

    with pytest.raises(ValueError, match="custom regularizers cannot run in the C core"):
        layers.Dense(3, kernel_regularizer=Scaled(0.1))
    names = "deserialize, get, L1, l1, l1_l2, L1L2, L2, l2, Regularizer, serialize"
    with pytest.raises(AttributeError, match=f"mnistc.regularizers has: {names}"):
        regularizers.OrthogonalRegularizer  # noqa: B018


@pytest.mark.parametrize("layer, shape, col, value, match", [
    (layers.Dense(3), (4,), _C.FCOL_W0_L2, -1.0, r"layers\[0\]: weight 0's l2 penalty factor must be a finite "
                                                 r"number >= 0, got -1"),
    (layers.Dense(3), (4,), _C.FCOL_W1_L1, math.nan, r"layers\[0\]: weight 1's l1 penalty factor .* got nan"),
    (layers.Dense(3), (4,), _C.FCOL_W0_L1, math.inf, r"weight 0's l1 penalty factor .* got inf"),
    (layers.Dense(3, use_bias=False), (4,), _C.FCOL_W1_L2, 0.1,
     r"layers\[0\]: dense has no trained weight 1 here, so its l2 penalty factor must be 0, got 0.1"),
    (layers.BatchNormalization(center=False), (2, 2, 3), _C.FCOL_W1_L1, 0.5,
     r"BatchNormalization has no trained weight 1 here"),
    (layers.Dropout(0.5), (4,), _C.FCOL_W0_L2, 0.5, r"dropout has no trained weight 0 here"),
])
def test_the_c_table_check_names_the_layer_and_leaves_the_model_as_it_was(layer, shape, col, value, match):
    model = mnistc.Sequential([mnistc.Input(shape), layer])
    plan = model._get_plan()
    lf = plan.lfloats.copy()
    lf[0, col] = value
    params = plan.params.copy()
    x = np.ones((2, math.prod(shape)), np.float32)
    y = np.ones((2, math.prod(model.output_shape[1:])), np.float32)
    with pytest.raises(ValueError, match=match):
        _C.loss_and_grad(plan.layers, lf, plan.params, np.zeros_like(plan.params), x, y, SPEC_MSE)
    assert np.array_equal(plan.params, params)


# --- PyTorch, the penalty written into its loss (torch's weight_decay is not Keras's L2 under Adam) ---

@pytest.mark.torch
def test_adam_with_penalties_matches_pytorch_over_30_steps(mnist_dir):
    """The same MLP, weights, batches and Adam settings (torch's epsilon moved to where Keras adds it,
    as in test_conv_model), torch's loss = cross-entropy + the four penalties written out. Measured on
    x86-64: losses within 1.1e-7 relative, weights within 3e-6 of how far they moved; the bounds
    leave room for a ReLU or an l1 sign on the other side of its kink after other float32 rounding."""
    torch = pytest.importorskip("torch")
    (x, y), _ = mnistc.datasets.mnist.load_data(mnist_dir)
    x = (x[:30 * 128] / 255.0).astype(np.float32).reshape(-1, 784)
    y = y[:30 * 128].astype(np.int64)
    mnistc.utils.set_random_seed(3)
    model = mnistc.Sequential([
        mnistc.Input((784,)),
        layers.Dense(128, activation="relu", kernel_regularizer=L2(1e-3), bias_regularizer=L1(1e-3)),
        layers.Dense(10, kernel_regularizer=L1L2(l1=1e-4, l2=1e-3))])
    model.compile(mnistc.optimizers.Adam(), mnistc.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial = model.get_weights()
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        with torch.no_grad():
            for module, (kernel, bias) in zip((net[0], net[2]), (initial[:2], initial[2:])):
                module.weight.copy_(torch.from_numpy(kernel.T.copy()))
                module.bias.copy_(torch.from_numpy(bias))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
        ours, theirs = [], []
        for step in range(30):
            xb, yb = x[step * 128:(step + 1) * 128], y[step * 128:(step + 1) * 128]
            ours.append(model.train_on_batch(xb, yb))
            opt.param_groups[0]["eps"] = 1e-7 / np.sqrt(1 - 0.999 ** (step + 1))  # Keras's eps placement
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(yb))
            loss = (loss + 1e-3 * net[0].weight.square().sum() + 1e-3 * net[0].bias.abs().sum()
                    + 1e-4 * net[2].weight.abs().sum() + 1e-3 * net[2].weight.square().sum())
            loss.backward()
            opt.step()
            theirs.append(loss.item())
        torch_weights = [p.detach().numpy().T for p in net.parameters()]
    finally:
        torch.set_num_threads(saved_threads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert ours[0] - np.log(10) > 0.05  # the penalties are part of the loss (the data loss starts near ln 10)
    for name, a, b, w0 in zip(("kernel 1", "bias 1", "kernel 2", "bias 2"), model.get_weights(), torch_weights,
                              initial):
        moved = np.abs(b - w0).max()
        assert moved > 1e-2, name
        assert np.abs(a - b).max() <= 1e-3 * moved, name


# --- Keras 3 itself (optional: skipped without keras and jax), in a child process for its backend ---

KERAS_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
import numpy as np, keras
from keras import layers as L, regularizers as R
arrays = np.load(sys.argv[1])
model = keras.Sequential([keras.Input((8, 8, 1)),
    L.Conv2D(4, 3, activation="relu", kernel_regularizer=R.L2(1e-3), bias_regularizer="l1"),
    L.BatchNormalization(gamma_regularizer=R.L1L2(l1=1e-3, l2=1e-2), beta_regularizer=R.l2(0.05)),
    L.Flatten(), L.Dense(3, activation="softmax", kernel_regularizer=R.L1(1e-3), bias_regularizer=R.L2(0.1))])
model.set_weights([arrays[f"w{i}"] for i in range(8)])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
x, y = arrays["x"], arrays["y"]
out = {"losses": [float(v) for v in model.losses], "evaluate": model.evaluate(x, y, batch_size=16, verbose=0),
       "steps": [float(model.train_on_batch(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])) for i in range(4)]}
out["weights"] = [w.tolist() for w in model.get_weights()]
model.layers[0].trainable = False
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
out["frozen"] = model.evaluate(x, y, verbose=0)
print(json.dumps(out))
"""


def test_matches_keras_3(tmp_path):
    """The same convnet, weights and batches in Keras 3 (JAX backend): model.losses, evaluate, four SGD
    steps' losses and the weights after them, and evaluate with the conv layer frozen. Measured:
    every loss within 1e-7 relative, the weights within 1.2e-7."""
    if not (importlib.util.find_spec("keras") and importlib.util.find_spec("jax")):
        pytest.skip("keras and jax are not installed (an optional comparison)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 64).astype(np.int32)
    model = mnistc.Sequential([
        mnistc.Input((8, 8, 1)),
        layers.Conv2D(4, 3, activation="relu", kernel_regularizer=L2(1e-3), bias_regularizer="l1"),
        layers.BatchNormalization(gamma_regularizer=L1L2(l1=1e-3, l2=1e-2), beta_regularizer=regularizers.l2(0.05)),
        layers.Flatten(),
        layers.Dense(3, activation="softmax", kernel_regularizer=L1(1e-3), bias_regularizer=L2(0.1))])
    weights = [rng.uniform(-0.3, 0.3, w.shape).astype(np.float32) for w in model.get_weights()]
    weights[5] = np.abs(weights[5]) + 0.5  # moving variance
    model.set_weights(weights)
    np.savez(tmp_path / "in.npz", x=x, y=y, **{f"w{i}": w for i, w in enumerate(weights)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS")}
    run = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(tmp_path / "in.npz")], capture_output=True,
                         text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    keras = json.loads(run.stdout.strip().splitlines()[-1])
    model.compile(optimizer=mnistc.optimizers.SGD(0.05), loss=SCCE)
    np.testing.assert_allclose(model.losses, keras["losses"], rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=16, verbose=0), keras["evaluate"], rtol=1e-6)
    steps = [model.train_on_batch(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]) for i in range(4)]
    np.testing.assert_allclose(steps, keras["steps"], rtol=1e-6)
    for ours, theirs in zip(model.get_weights(), keras["weights"]):
        np.testing.assert_allclose(ours, np.array(theirs, np.float32), atol=1e-6)
    model.layers[0].trainable = False
    model.compile(optimizer="sgd", loss=SCCE)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), keras["frozen"], rtol=1e-6)
