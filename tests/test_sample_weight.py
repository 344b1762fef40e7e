"""Sample and class weights: the C loss against the float64 reference (Keras's sum(w * loss) / B) and
by finite differences, the gather through fit's permutation, and the Keras-shaped API (fit,
evaluate, train_on_batch, test_on_batch, validation weights, unweighted accuracy, errors)."""
import numpy as np
import pytest

import reference as R
from mnistc import _C, layers, models
from mnistc.utils import set_random_seed
from test_ops import ATOL, RTOL, LOSS_CASES, check_directional, loss_case


def c_weighted(layers_, lfloats, params, x, y, spec, w):
    grads = np.zeros(len(params), np.float32)
    loss, dx = _C.loss_and_grad(layers_, lfloats, params, grads, x, y, spec, sample_weight=w)
    return loss, dx


def weights_for(rng, n):
    w = rng.uniform(0.0, 3.0, n).astype(np.float32)
    w[0] = 0.0  # a zero weight: the row counts in the divisor only
    return w


@pytest.mark.parametrize("name", LOSS_CASES)
def test_weighted_loss_and_gradient_match_reference(name):
    rng = np.random.default_rng(40)
    tspec, spec, x, y = loss_case(name, rng)
    layers_, lfloats, params = R.build_table(tspec, len(x[0]), rng)
    w = weights_for(rng, len(x))
    loss, dx = c_weighted(layers_, lfloats, params, x, y, spec, w)
    r_loss, _, r_dx, _ = R.model_loss_and_grad(layers_, lfloats, params, x, y, spec, sample_weight=w)
    np.testing.assert_allclose(loss, r_loss, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, r_dx, rtol=RTOL, atol=ATOL)
    assert np.all(dx[0] == 0)


@pytest.mark.parametrize("name", LOSS_CASES)
def test_weighted_loss_gradcheck(name):
    rng = np.random.default_rng(41)
    tspec, spec, x, y = loss_case(name, rng)
    layers_, lfloats, params = R.build_table(tspec, len(x[0]), rng)
    w = weights_for(rng, len(x))
    _, dx = c_weighted(layers_, lfloats, params, x, y, spec, w)
    eps = 1e-3 if spec[0] == R.MAE else 1e-2
    check_directional(lambda xx: c_weighted(layers_, lfloats, params, xx, y, spec, w)[0], x, dx, rng, eps=eps)


def test_reduction_divides_by_the_row_count_not_the_weight_sum():
    """Keras 3 "sum_over_batch_size": sum(w * loss) / B. One row weighted 1, the others 0, gives that
    row's loss / B (the "mean_with_sample_weight" rule would give the row's loss itself)."""
    rng = np.random.default_rng(42)
    _, spec, x, y = loss_case("scce_fused", rng)
    table = R.build_table([("act", "softmax")], len(x[0]), rng)
    per, _ = R.loss_eval(spec, True, None, x.astype(np.float64), y)
    w = np.zeros(len(x), np.float32)
    w[1] = 1.0
    loss, _ = c_weighted(*table, x, y, spec, w)
    np.testing.assert_allclose(loss, per[1] / len(x), rtol=1e-6)
    ones, dx1 = c_weighted(*table, x, y, spec, np.ones(len(x), np.float32))
    plain, dx0 = _C.loss_and_grad(*table, np.zeros(len(table[2]), np.float32), x, y, spec)
    np.testing.assert_allclose(ones, plain, rtol=1e-7)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-6, atol=1e-9)


def model_and_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = rng.integers(0, 3, n)
    set_random_seed(7)
    m = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                           layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m, x, y, rng


def test_zero_weighted_rows_do_not_move_the_weights_through_the_shuffle():
    """A row with weight 0 contributes nothing: replacing its x by other values leaves every weight
    bit-identical after shuffled epochs (the weights are gathered through the same permutation as
    the rows; a misaligned gather would let the replaced rows count)."""
    m, x, y, rng = model_and_data()
    w = rng.uniform(0.5, 2.0, len(x)).astype(np.float32)
    w[::5] = 0.0
    start = m.get_weights()
    x2 = x.copy()
    x2[::5] = rng.standard_normal(x2[::5].shape) * 10
    runs = []
    for xs in (x, x2):
        m.set_weights(start)
        m.compile("adam", "sparse_categorical_crossentropy")
        set_random_seed(3)
        m.fit(xs, y, batch_size=16, epochs=3, sample_weight=w, verbose=0)
        runs.append(m.get_weights())
    for a, b in zip(*runs):
        assert np.array_equal(a, b)
    m.set_weights(start)
    m.compile("adam", "sparse_categorical_crossentropy")
    set_random_seed(3)
    m.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], m.get_weights()))


def per_sample_losses(m, x, y):
    p = m.predict(x, verbose=0).astype(np.float64)
    return -np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1 - 1e-7))


def test_evaluate_weights_the_loss_and_not_the_accuracy():
    m, x, y, rng = model_and_data()
    w = rng.uniform(0, 4, len(x))
    loss, acc = m.evaluate(x, y, sample_weight=w, batch_size=10, verbose=0)
    per = per_sample_losses(m, x, y)
    np.testing.assert_allclose(loss, (per * w).sum() / len(x), rtol=1e-5)
    _, acc_plain = m.evaluate(x, y, verbose=0)
    assert acc == acc_plain
    logs = m.test_on_batch(x, y, sample_weight=w, return_dict=True)
    np.testing.assert_allclose(logs["loss"], loss, rtol=1e-5)


def test_class_weight_equals_the_matching_sample_weights():
    m, x, y, _ = model_and_data()
    cw = {0: 1.0, 1: 4.0, 2: 0.5}
    sw = np.array([cw[c] for c in y], np.float32)
    start = m.get_weights()
    results = []
    for kwargs in ({"class_weight": cw}, {"sample_weight": sw}):
        m.set_weights(start)
        m.compile("adam", "sparse_categorical_crossentropy")
        set_random_seed(5)
        h = m.fit(x, y, batch_size=32, epochs=2, verbose=0, **kwargs)
        results.append((h.history["loss"], m.get_weights()))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert np.array_equal(a, b)
    # one-hot targets: the class is the argmax of the row
    onehot = np.eye(3, dtype=np.float32)[y]
    m.set_weights(start)
    m.compile("sgd", "categorical_crossentropy")
    a = m.train_on_batch(x, onehot, class_weight=cw)
    m2, *_ = model_and_data()
    m2.set_weights(start)
    m2.compile("sgd", "categorical_crossentropy")
    b = m2.train_on_batch(x, onehot, sample_weight=sw)
    assert a == b


def test_class_weight_applies_to_training_rows_only_with_validation_split():
    m, x, y, _ = model_and_data()
    cw = {0: 10.0}
    start = m.get_weights()
    m.compile("sgd", "sparse_categorical_crossentropy")
    h = m.fit(x, y, class_weight=cw, validation_split=0.25, epochs=1, verbose=0)
    m2, *_ = model_and_data()
    m2.set_weights(m.get_weights())
    m2.compile("sgd", "sparse_categorical_crossentropy")
    np.testing.assert_allclose(h.history["val_loss"][0], m2.evaluate(x[72:], y[72:], verbose=0), rtol=1e-6)
    # sample weights are split with the rows: the validation loss is weighted by its own slice
    w = np.linspace(0.1, 2.0, len(x))
    m.set_weights(start)
    h = m.fit(x, y, sample_weight=w, validation_split=0.25, epochs=1, verbose=0)
    np.testing.assert_allclose(h.history["val_loss"][0], m.evaluate(x[72:], y[72:], sample_weight=w[72:],
                                                                     verbose=0), rtol=1e-6)
    h = m.fit(x[:72], y[:72], validation_data=(x[72:], y[72:], w[72:]), epochs=1, verbose=0)
    np.testing.assert_allclose(h.history["val_loss"][0], m.evaluate(x[72:], y[72:], sample_weight=w[72:],
                                                                     verbose=0), rtol=1e-6)


def test_fit_loss_is_the_weighted_loss():
    """With SGD at learning rate 1e-30 nothing moves (w - 1e-30 g == w in float32): the epoch's loss is the weighted evaluate loss."""
    from mnistc import optimizers
    m, x, y, rng = model_and_data()
    w = rng.uniform(0, 3, len(x))
    m.compile(optimizers.SGD(learning_rate=1e-30), "sparse_categorical_crossentropy")
    h = m.fit(x, y, sample_weight=w, batch_size=20, epochs=1, verbose=0)
    np.testing.assert_allclose(h.history["loss"][0], m.evaluate(x, y, sample_weight=w, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"sample_weight": np.ones(5)}, ValueError, "cardinality"),
    ({"sample_weight": np.ones((96, 2))}, ValueError, "one weight per sample"),
    ({"sample_weight": np.r_[np.nan, np.ones(95)]}, ValueError, "1 NaN"),
    ({"sample_weight": np.ones(96), "class_weight": {0: 1.0}}, ValueError, "at the same time"),
    ({"class_weight": [1.0, 2.0]}, TypeError, "dict"),
    ({"class_weight": {3: 1.0}}, ValueError, r"\[0, 3\)"),
    ({"class_weight": {0: float("inf")}}, ValueError, "finite"),
])
def test_bad_weights_name_the_problem_and_change_nothing(kwargs, err, match):
    m, x, y, _ = model_and_data()
    before = m.get_weights()
    x0 = x.copy()
    with pytest.raises(err, match=match):
        m.fit(x, y, verbose=0, **kwargs)
    for a, b in zip(before, m.get_weights()):
        assert np.array_equal(a, b)
    assert np.array_equal(x, x0)
