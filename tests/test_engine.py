"""The batch loops through the binding: train_epoch / evaluate / predict on small synthetic data, the
epoch against a float64 reference and against single C steps, determinism, uint8 input, permutations,
frozen layers, the progress hook, argument validation, and the buffer rules (inputs unchanged, no
reference leaks)."""
import os
import signal
import sys
import threading

import numpy as np
import pytest

import reference as R
from mnistc import _C

SCCE_SPEC = (R.SCCE, 0, 0.0)
ADAM = (R.ADAM, R.hyper_vector(0.01, 0.9, 0.999, 1e-7))


def blobs(n=60, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, size=(k, d))
    y = rng.integers(0, k, n).astype(np.int32)
    x = (centers[y] + rng.normal(0, 0.7, size=(n, d))).astype(np.float32)
    return x, y


class Net:
    """A table, its parameter block and an optimizer state, as the Python facade would hold them."""

    def __init__(self, spec, d, seed=0, trainable=None, opt=ADAM):
        rng = np.random.default_rng(seed)
        self.layers, self.lfloats, self.params = R.build_table(spec, d, rng, trainable)
        self.grads = np.zeros_like(self.params)
        self.segments = R.segments_of(self.layers)
        self.kind, self.hyper = opt
        n = int(self.segments[:, 1].sum())
        self.slots = tuple(np.zeros(n, np.float32) for _ in range(R.n_slots(self.kind, self.hyper)))
        self.iterations = np.zeros(1, np.int64)

    def epoch(self, x, y, perm=None, batch_size=4, seed=0, hook=None, every_batch=False, loss=SCCE_SPEC,
              metric=R.M_SPARSE):
        return _C.train_epoch(self.layers, self.lfloats, self.params, self.grads, x, y, perm, batch_size, loss,
                              metric, self.kind, self.hyper, self.slots, self.iterations, seed,
                              hook, every_batch)

    def evaluate(self, x, y, batch_size=4, loss=SCCE_SPEC, metric=R.M_SPARSE, hook=None):
        return _C.evaluate(self.layers, self.lfloats, self.params, x, y, batch_size, loss, metric, hook)

    def predict(self, x, batch_size=4, hook=None):
        out = np.empty((len(x), int(self.layers[-1][R.OUT_C])), np.float32)
        _C.predict(self.layers, self.lfloats, self.params, x, out, batch_size, hook)
        return out


MLP = [("dense", 8, "relu"), ("dense", 3, "softmax")]
MLP_DROPOUT = [("dense", 8, "relu"), ("dropout", 0.3), ("dense", 3, "softmax")]


# --- training behaviour ---

def test_loss_decreases_and_accuracy_rises():
    x, y = blobs(120)
    net = Net(MLP, 6)
    first_loss, first_acc, n, stopped = net.epoch(x, y, batch_size=8)
    assert n == 120 and stopped is False
    for _ in range(15):
        loss_sum, acc_sum, n, _ = net.epoch(x, y, batch_size=8)
    assert loss_sum / n < 0.5 * first_loss / 120
    assert acc_sum / n > 0.9 and acc_sum / n > first_acc / 120
    assert net.iterations[0] == 16 * 15
    loss_sum, acc_sum, n = net.evaluate(x, y)
    assert n == 120 and acc_sum / n > 0.9


def test_epoch_matches_float64_reference_with_partial_last_batch():
    x, y = blobs(10)
    net = Net([("dense", 5, "tanh"), ("dense", 3, "softmax")], 6, opt=(R.SGD, R.hyper_vector(0.1, 0.9)))
    perm = np.random.default_rng(1).permutation(10)
    r_params = net.params.astype(np.float64)
    r_slots = [s.astype(np.float64) for s in net.slots]
    r_loss_sum, it = 0.0, 0
    for start in range(0, 10, 4):  # batches of 4, 4 and 2
        idx = perm[start:start + 4]
        loss, grads, _, _ = R.model_loss_and_grad(net.layers, net.lfloats, r_params, x[idx], y[idx], SCCE_SPEC)
        r_loss_sum += loss * len(idx)
        it = R.optimizer_step(net.kind, net.hyper, r_params, grads, net.segments, r_slots, it)
    loss_sum, _, n, _ = net.epoch(x, y, perm, batch_size=4)
    assert n == 10 and net.iterations[0] == it == 3
    np.testing.assert_allclose(loss_sum, r_loss_sum, rtol=1e-5)
    np.testing.assert_allclose(net.params, r_params, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.slots[0], r_slots[0], rtol=1e-4, atol=1e-5)


def test_epoch_equals_single_c_steps_bit_for_bit():
    """train_epoch is loss_and_grad + optimizer_step per batch, with no hidden extra state."""
    x, y = blobs(11)
    a, b = Net(MLP, 6), Net(MLP, 6)
    perm = np.random.default_rng(2).permutation(11)
    sums = 0.0
    for start in range(0, 11, 5):
        idx = perm[start:start + 5]
        loss, _ = _C.loss_and_grad(b.layers, b.lfloats, b.params, b.grads, x[idx], y[idx], SCCE_SPEC, 0, True)
        sums += loss * len(idx)
        _C.optimizer_step(b.kind, b.hyper, b.params, b.grads, b.segments, b.slots, b.iterations)
    loss_sum, _, _, _ = a.epoch(x, y, perm, batch_size=5)
    assert np.array_equal(a.params, b.params) and all(np.array_equal(s, t) for s, t in zip(a.slots, b.slots))
    assert a.iterations[0] == b.iterations[0] == 3
    np.testing.assert_allclose(loss_sum, sums, rtol=1e-12)


def test_same_seed_gives_bit_identical_params_and_other_seed_differs():
    x, y = blobs(40)
    runs = []
    for seed in (5, 5, 6):
        net = Net(MLP_DROPOUT, 6)
        for epoch in range(2):
            net.epoch(x, y, np.random.default_rng([seed, epoch]).permutation(40), batch_size=8, seed=seed)
        runs.append(net.params.copy())
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_dropout_masks_depend_on_seed_and_step_only():
    x, y = blobs(8)
    nets = [Net(MLP_DROPOUT, 6) for _ in range(3)]
    out = [n.epoch(x, y, batch_size=8, seed=s)[0] for n, s in zip(nets, (1, 1, 2))]
    assert out[0] == out[1] and out[0] != out[2]
    # the step (iterations) keys the mask: the same weights at another step draw another mask
    c, d = Net(MLP_DROPOUT, 6), Net(MLP_DROPOUT, 6)
    d.iterations[0] = 100
    assert c.epoch(x, y, batch_size=8, seed=1)[0] != d.epoch(x, y, batch_size=8, seed=1)[0]
    # inference is deterministic and mask-free: evaluate equals a dropout-free copy of the model
    e = Net(MLP, 6)
    assert Net(MLP_DROPOUT, 6).evaluate(x, y) == e.evaluate(x, y)


def test_uint8_input_is_bit_identical_to_the_same_values_in_float32():
    rng = np.random.default_rng(3)
    x8 = rng.integers(0, 256, size=(50, 12)).astype(np.uint8)
    y = rng.integers(0, 3, 50).astype(np.int32)
    spec = [("rescale", 1 / 255, 0.0), ("dense", 8, "relu"), ("dropout", 0.2), ("dense", 3, "softmax")]
    a, b = Net(spec, 12), Net(spec, 12)
    perm = rng.permutation(50)
    ra = a.epoch(x8, y, perm, batch_size=7, seed=3)
    rb = b.epoch(x8.astype(np.float32), y, perm, batch_size=7, seed=3)
    assert ra == rb
    assert np.array_equal(a.params, b.params)
    assert a.evaluate(x8, y, batch_size=9) == b.evaluate(x8.astype(np.float32), y, batch_size=9)
    assert np.array_equal(a.predict(x8, 9), b.predict(x8.astype(np.float32), 9))


@pytest.mark.parametrize("as_uint8", [False, True])
def test_epoch_is_bit_identical_for_any_thread_count(as_uint8):
    """Large enough for every split the engine makes (a 40k-parameter Adam segment, 96 x 400 gathered
    values per batch, GEMMs over several blocks): 1, 2 and 3 threads give the same bits."""
    rng = np.random.default_rng(11)
    d, n = 400, 300
    x8 = rng.integers(0, 256, size=(n, d)).astype(np.uint8)
    y = rng.integers(0, 10, n).astype(np.int32)
    spec = [("rescale", 1 / 255, -0.5), ("dense", 100, "relu"), ("dropout", 0.1), ("dense", 10, "softmax")]
    x = x8 if as_uint8 else x8.astype(np.float32) / np.float32(255)
    if not as_uint8:
        spec = spec[1:]
    perm = rng.permutation(n)
    saved = _C.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            _C.set_num_threads(threads)
            net = Net(spec, d)
            sums = [net.epoch(x, y, perm, batch_size=96, seed=4) for _ in range(2)]
            results.append((sums, net.params.copy(), [s.copy() for s in net.slots]))
    finally:
        _C.set_num_threads(saved)
    sums1, params1, slots1 = results[0]
    assert sums1[1][0] < sums1[0][0]  # it trains
    for sums, params, slots in results[1:]:
        assert sums == sums1
        assert np.array_equal(params, params1)
        assert all(np.array_equal(s, t) for s, t in zip(slots, slots1))


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def image_like(n, d, rng, zeros=0.8):
    """uint8 rows that are mostly exact zeros, as digit images are (the products skip zeros then)."""
    x8 = rng.integers(1, 256, size=(n, d)).astype(np.uint8)
    x8[rng.random((n, d)) < zeros] = 0
    return x8


@pytest.mark.parametrize("as_uint8", [False, True])
@pytest.mark.parametrize("batch_size", [25, 96, 1000])
def test_inference_is_bit_identical_for_any_thread_count(batch_size, as_uint8):
    """Inference splits each batch's rows over the threads, every layer on one block per task, each
    block's products planned for the whole batch. The shapes reach every planning rule: 96 rows of a
    784-wide layer sum K as two halves (96 x 128 <= 65536) and 1000 rows do not; 25 rows on two
    threads are blocks of 12, 12 and 1 (alone, one row would take the few-rows path); the inputs
    are mostly zeros (the skipping path). predict and evaluate give the bits of one thread."""
    rng = np.random.default_rng(3)
    d, n = 784, 1000
    x8 = image_like(n, d, rng)
    y = rng.integers(0, 10, n).astype(np.int32)
    spec = [("rescale", 1 / 255, 0.0), ("dense", 128, "relu"), ("dropout", 0.2), ("dense", 10, "softmax")]
    x = x8 if as_uint8 else x8.astype(np.float32) / np.float32(255)
    net = Net(spec if as_uint8 else spec[1:], d)
    saved = _C.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            _C.set_num_threads(threads)
            results.append((net.predict(x, batch_size), net.evaluate(x, y, batch_size)))
    finally:
        _C.set_num_threads(saved)
    pred1, sums1 = results[0]
    assert np.isfinite(pred1).all() and sums1[2] == n
    for pred, sums in results[1:]:
        assert same_bits(pred, pred1)
        assert sums == sums1


def test_inference_runs_every_term_of_weights_that_are_not_finite():
    """An infinite weight meets only zero inputs: 0 * inf is NaN, so every output is NaN whether a
    thread computes the whole batch or blocks of it (zero skipping must not leave the term out)."""
    rng = np.random.default_rng(4)
    d, n = 784, 200
    x = image_like(n, d, rng).astype(np.float32) / np.float32(255)
    x[:, 5] = 0.0
    net = Net([("dense", 32, "linear"), ("dense", 3, "softmax")], d)
    w_off = int(net.layers[0][5])
    net.params[w_off + 5 * 32] = np.inf  # W[5, 0]
    saved = _C.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            _C.set_num_threads(threads)
            outs.append(net.predict(x, 100))
    finally:
        _C.set_num_threads(saved)
    assert np.isnan(outs[0]).all() and same_bits(outs[1], outs[0])


def test_perm_orders_the_batches_and_none_is_sequential():
    x, y = blobs(12)
    perm = np.random.default_rng(4).permutation(12)
    a, b, c, d = (Net(MLP, 6) for _ in range(4))
    ra = a.epoch(x, y, perm, batch_size=5)
    rb = b.epoch(np.ascontiguousarray(x[perm]), np.ascontiguousarray(y[perm]), None, batch_size=5)
    assert ra == rb and np.array_equal(a.params, b.params)
    rc = c.epoch(x, y, np.arange(12), batch_size=5)
    rd = d.epoch(x, y, None, batch_size=5)
    assert rc == rd and np.array_equal(c.params, d.params)
    assert not np.array_equal(a.params, c.params)


def test_frozen_layer_weights_are_bit_identical_after_an_epoch():
    x, y = blobs(30)
    net = Net([("dense", 8, "relu"), ("dense", 6, "tanh"), ("dense", 3, "softmax")], 6, trainable=[0, 1, 1])
    frozen = slice(0, 6 * 8 + 8)
    before = net.params.copy()
    net.epoch(x, y, batch_size=4)
    assert np.array_equal(net.params[frozen], before[frozen])
    assert not np.array_equal(net.params[frozen.stop:], before[frozen.stop:])
    assert len(net.slots[0]) == len(net.params) - frozen.stop


def test_batch_larger_than_the_data_and_empty_data():
    x, y = blobs(5)
    net = Net(MLP, 6)
    assert net.epoch(x, y, batch_size=1000)[2] == 5 and net.iterations[0] == 1
    before = net.params.copy()
    assert net.epoch(x[:0], y[:0], batch_size=4) == (0.0, 0.0, 0, False)
    assert net.evaluate(x[:0], y[:0]) == (0.0, 0.0, 0)
    assert np.array_equal(net.params, before) and net.iterations[0] == 1
    assert net.predict(x[:0]).shape == (0, 3)


def test_evaluate_sums_and_predict_match_reference():
    x, y = blobs(9)
    net = Net([("dense", 7, "gelu"), ("dense", 3, "softmax")], 6)
    out, _ = R.model_forward(net.layers, net.lfloats, net.params, x)
    per, _ = R.cce_probs(out, labels=y, kind=R.SCCE)  # probabilities of a softmax: no clipping happens
    loss_sum, acc_sum, n = net.evaluate(x, y, batch_size=4)
    assert n == 9
    np.testing.assert_allclose(loss_sum, per.sum(), rtol=1e-5)
    assert acc_sum == R.metric_sum(R.M_SPARSE, out, y, True)
    np.testing.assert_allclose(net.predict(x, batch_size=2), out, rtol=1e-4, atol=1e-5)


def test_other_losses_train_through_the_epoch_loop():
    x, labels = blobs(40)
    onehot = np.eye(3, dtype=np.float32)[labels]
    for spec, metric, last, y in (((R.CCE, 0, 0.1), R.M_CAT, "softmax", onehot),
                                  ((R.BCE, 0, 0.0), R.M_BIN, "sigmoid", onehot),
                                  ((R.MSE, 0, 0.0), R.M_CAT, "linear", onehot),
                                  ((R.CCE, 1, 0.0), R.M_CAT, "linear", onehot)):
        net = Net([("dense", 8, "tanh"), ("dense", 3, last)], 6)
        first = net.epoch(x, y, batch_size=8, loss=spec, metric=metric)[0]
        for _ in range(10):
            last_sum, metric_sum, n, _ = net.epoch(x, y, batch_size=8, loss=spec, metric=metric)
        assert last_sum < first and metric_sum / n > 0.8, spec


# --- the progress hook ---

def test_hook_every_batch_sees_running_sums():
    x, y = blobs(10)
    calls = []
    net = Net(MLP, 6)
    loss_sum, acc_sum, n, stopped = net.epoch(x, y, batch_size=4, every_batch=True,
                                              hook=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == [0, 1, 2] and [c[3] for c in calls] == [4, 8, 10]
    assert calls[-1][1:] == (loss_sum, acc_sum, n) and not stopped
    assert calls[0][1] < calls[1][1] < calls[2][1]


def test_hook_without_every_batch_is_called_after_the_last_batch():
    x, y = blobs(40)
    calls = []
    net = Net(MLP, 6)
    net.epoch(x, y, batch_size=4, hook=lambda *a: calls.append(a))
    assert 1 <= len(calls) <= 10 and calls[-1][0] == 9 and calls[-1][3] == 40
    calls.clear()
    net.evaluate(x, y, hook=lambda *a: calls.append(a))
    assert calls[-1][0] == 9 and calls[-1][3] == 40
    calls.clear()
    net.predict(x, hook=lambda *a: calls.append(a))
    assert calls[-1][0] == 9 and calls[-1][3] == 40


def test_hook_returning_true_stops_after_the_current_batch():
    x, y = blobs(20)
    net = Net(MLP, 6)
    loss_sum, _, n, stopped = net.epoch(x, y, batch_size=4, every_batch=True, hook=lambda b, *_: b == 1)
    assert stopped is True and n == 8 and net.iterations[0] == 2


def test_hook_exception_propagates_and_stops_the_loop():
    class Boom(Exception):
        pass

    def hook(batch, *_):
        if batch == 2:
            raise Boom("from the hook")

    x, y = blobs(20)
    net = Net(MLP, 6)
    with pytest.raises(Boom, match="from the hook"):
        net.epoch(x, y, batch_size=4, every_batch=True, hook=hook)
    assert net.iterations[0] == 3
    def always(*_):
        raise Boom("predict")

    with pytest.raises(Boom, match="predict"):
        net.predict(x, batch_size=20, hook=always)
    with pytest.raises(ZeroDivisionError):
        net.evaluate(x, y, batch_size=20, hook=lambda *a: 1 / 0)


def test_hook_truthiness_error_propagates():
    class Bad:
        def __bool__(self):
            raise RuntimeError("no truth value")

    x, y = blobs(8)
    with pytest.raises(RuntimeError, match="no truth value"):
        Net(MLP, 6).epoch(x, y, batch_size=4, every_batch=True, hook=lambda *a: Bad())


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_interrupts_a_long_epoch_without_a_hook():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((60000, 64)).astype(np.float32)
    y = rng.integers(0, 10, 60000).astype(np.int32)
    net = Net([("dense", 64, "relu"), ("dense", 64, "relu"), ("dense", 10, "softmax")], 64)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(50):  # far longer than the timer; the interrupt must end it
                net.epoch(x, y, batch_size=2)  # 30000 tiny batches: an epoch lasts ~0.25 s, several
                                               # of the 50 ms signal-check intervals
    finally:
        timer.cancel()
    # interrupted inside an epoch (the C loop's signal check), not between two Python calls
    assert 0 < net.iterations[0] % 30000 and net.iterations[0] < 50 * 30000


# --- validation of the arguments ---

@pytest.mark.parametrize("trainable", [None, [0, 1], [1, 0], [0, 0]])
def test_c_derives_the_optimizer_segments_from_the_trainable_column(trainable):
    net = Net([("dense", 8, "relu"), ("dense", 3, "softmax")], 6, trainable=trainable)
    segments = _C.segments(net.layers, net.lfloats, net.params)
    np.testing.assert_array_equal(segments, R.segments_of(net.layers))
    assert segments.dtype == np.int64 and segments.shape[1] == 2


def args_for(net, x, y, /, **over):
    a = dict(layers=net.layers, lfloats=net.lfloats, params=net.params, grads=net.grads, x=x, y=y, perm=None,
             batch_size=4, loss=SCCE_SPEC, metric=R.M_SPARSE, opt=net.kind, hyper=net.hyper,
             slots=net.slots, iterations=net.iterations, seed=0, hook=None, every_batch=False)
    a.update(over)
    return a


def table_with(net, row, col, value):
    t = net.layers.copy()
    t[row, col] = value
    return t


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def bad_cases():
    x, y = blobs(10)
    net = Net(MLP, 6)
    lf_bad = net.lfloats.copy()
    drop = Net(MLP_DROPOUT, 6)
    drop_lf = drop.lfloats.copy()
    drop_lf[1, _C.FCOL_RATE] = 1.5
    frozen_tab = table_with(net, 0, _C.COL_TRAINABLE, 0)  # layer 0 frozen: slots sized for every weight
    act = Net([("dense", 8, "relu"), ("act", "tanh"), ("dense", 3, "softmax")], 6)
    return net, x, y, [
        (dict(x=x.astype(np.float64)), TypeError, "x: expected float32 or uint8 array, got float64"),
        (dict(x=x.tolist()), TypeError, "x: expected float32 or uint8 array, got list"),
        (dict(x=np.asfortranarray(x)), ValueError, "x: expected a C-contiguous array"),
        (dict(x=x[:, :5].copy()), ValueError, r"layers\[0\]: input size 6 \(1 x 1 x 6\) does not match the input row width 5"),
        (dict(x=x.reshape(10, 6, 1)), ValueError, r"x: expected a 2-D array, got shape \(10, 6, 1\)"),
        (dict(layers=table_with(net, 1, _C.COL_IN_C, 7)), ValueError,
         r"layers\[1\]: input size 7 \(1 x 1 x 7\) does not match the previous layer's output size 8"),
        (dict(layers=table_with(net, 1, _C.COL_IN_H, 0)), ValueError, r"layers\[1\]: input shape must be >= 1, got 0"),
        (dict(layers=table_with(net, 1, _C.COL_STRIDE_W, -2)), ValueError, r"layers\[1\]: stride_w must be >= 0, got -2"),
        (dict(layers=table_with(net, 1, _C.COL_WEIGHT0, 1000)), ValueError, r"layers\[1\]: weight 0 range \[1000, "
         r"1000 \+ 24\) is outside the 83 parameters"),
        (dict(layers=table_with(net, 1, _C.COL_WEIGHT0, 0)), ValueError, r"overlaps weight 0 of layers\[0\]"),
        (dict(layers=table_with(net, 1, _C.COL_WEIGHT0 + 2, 80)), ValueError,
         r"layers\[1\]: dense has no weight 2 here, so its offset must be -1, got 80"),
        (dict(layers=table_with(net, 1, _C.COL_WEIGHT0, -1)), ValueError, r"layers\[1\]: dense needs a kernel"),
        (dict(layers=table_with(act, 1, _C.COL_WEIGHT0, 70), lfloats=act.lfloats), ValueError,
         r"layers\[1\]: activation has no weights, so weight 0's offset must be -1, got 70"),
        (dict(layers=table_with(act, 1, _C.COL_OUT_H, 2), lfloats=act.lfloats), ValueError,
         r"layers\[1\]: activation is element-wise, so its output shape must equal its input shape"),
        (dict(layers=table_with(net, 1, _C.COL_KIND, _C.LAYER_COUNT)), ValueError,
         rf"layers\[1\]: kind must be in \[0, {_C.LAYER_COUNT}\), got {_C.LAYER_COUNT}"),
        (dict(layers=table_with(net, 1, _C.COL_ACTIVATION, 13)), ValueError,
         r"layers\[1\]: activation must be in \[0, 13\), got 13"),
        (dict(layers=table_with(net, 1, _C.COL_TRAINABLE, 2)), ValueError, r"layers\[1\]: trainable must be 0 or 1, got 2"),
        (dict(layers=net.layers[:, :7].copy()), ValueError,
         rf"layers: expected shape \(L, {_C.TABLE_COLS}\), got \(2, 7\)"),
        (dict(layers=net.layers.astype(np.int32)), TypeError, "layers: expected int64 array, got int32"),
        (dict(layers=net.layers[:0]), ValueError, "layers: the table has no rows"),
        (dict(lfloats=lf_bad[:1]), ValueError,
         rf"lfloats: expected shape \(2, {_C.FTABLE_COLS}\) \(one row per layer\), got \(1, {_C.FTABLE_COLS}\)"),
        (dict(layers=drop.layers, lfloats=drop_lf, params=drop.params, grads=drop.grads), ValueError,
         r"layers\[1\]: dropout rate must be in \[0, 1\], got 1.5"),
        (dict(y=np.array([0, 1, 5, 0, 0, 0, 0, 0, 0, 0], np.int32)), ValueError,
         r"y: label 5 at index 2 is out of range \[0, 3\)"),
        (dict(y=np.full(10, -1, np.int32)), ValueError, r"y: label -1 at index 0 is out of range"),
        (dict(y=y.astype(np.int64)), TypeError, "y: expected int32 array, got int64"),
        (dict(y=y[:9]), ValueError, r"y: expected length 10 \(rows of x\), got 9"),
        (dict(y=np.zeros((10, 2), np.float32), loss=(R.CCE, 0, 0.0), metric=R.M_CAT), ValueError,
         r"y: expected shape \(10, 3\) \(rows of x, n_out of the last layer\), got \(10, 2\)"),
        (dict(params=read_only(net.params)), ValueError, "params: expected a writeable float32 array"),
        (dict(params=net.params.astype(np.float64)), TypeError, "params: expected float32 array, got float64"),
        (dict(grads=net.grads[:-1].copy()), ValueError, r"grads: expected length 83 \(len\(params\)\), got 82"),
        (dict(grads=net.params), ValueError, "grads: must not share memory with params"),
        (dict(layers=frozen_tab), ValueError, r"slots\[0\]: expected length 27 \(sum of the segment lengths\), "
         r"got 83"),
        (dict(batch_size=0), ValueError, "batch_size: expected a positive integer, got 0"),
        (dict(loss=[4, 0, 0.0]), TypeError, "loss: expected a tuple"),
        (dict(loss=(7, 0, 0.0)), ValueError, r"loss: kind must be in \[0, 5\), got 7"),
        (dict(loss=(R.SCCE, 0, 0.1)), ValueError, "label_smoothing applies to categorical"),
        (dict(loss=(R.MSE, 0, 0.0), y=np.zeros((10, 3), np.float32)), ValueError,
         r"metric: sparse categorical accuracy \(1\) needs int32 class ids"),
        (dict(metric=9), ValueError, rf"metric: expected a code in \[0, {_C.METRIC_COUNT}\), got 9"),
        (dict(hook=3), TypeError, "hook: expected None or a callable, got int"),
        (dict(perm=np.arange(9)), ValueError, r"perm: expected length 10 \(rows of x\), got 9"),
        (dict(perm=np.arange(10, dtype=np.int32)), TypeError, "perm: expected int64 array, got int32"),
        (dict(perm=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10])), ValueError,
         r"perm: value 10 at index 9 is out of range \[0, 10\)"),
        (dict(perm=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 3])), ValueError,
         r"perm: value 3 repeats at index 9 \(expected a permutation of range\(10\)\)"),
        (dict(iterations=read_only(net.iterations)), ValueError, "iterations: expected a writeable int64 array"),
        (dict(slots=net.slots[:1]), ValueError, "needs 2 slot arrays, got 1"),
    ]


def test_validation_errors_name_the_argument():
    net, x, y, cases = bad_cases()
    snapshot = {k: v.copy() for k, v in args_for(net, x, y).items() if isinstance(v, np.ndarray)}
    slots_before = [s.copy() for s in net.slots]
    for over, exc, match in cases:
        with pytest.raises(exc, match=match):
            _C.train_epoch(**args_for(net, x, y, **over))
    # a rejected call changes nothing
    for k, v in args_for(net, x, y).items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(v, snapshot[k]), k
    assert all(np.array_equal(s, t) for s, t in zip(net.slots, slots_before))


def test_evaluate_predict_and_loss_and_grad_validation():
    x, y = blobs(10)
    net = Net(MLP, 6)
    with pytest.raises(TypeError, match="x: expected float32 or uint8 array, got float64"):
        net.evaluate(x.astype(np.float64), y)
    with pytest.raises(ValueError, match=r"y: label 3 at index 0"):
        net.evaluate(x, np.full(10, 3, np.int32))
    out = np.empty((10, 2), np.float32)
    with pytest.raises(ValueError, match=r"out: expected shape \(10, 3\)"):
        _C.predict(net.layers, net.lfloats, net.params, x, out, 4)
    with pytest.raises(ValueError, match="out: expected a writeable float32 array"):
        _C.predict(net.layers, net.lfloats, net.params, x, read_only(np.empty((10, 3), np.float32)), 4)
    square = Net([("dense", 6, "linear")], 6)
    with pytest.raises(ValueError, match="out: must not share memory with x"):
        _C.predict(square.layers, square.lfloats, square.params, x, x, 4)
    with pytest.raises(TypeError, match="x: expected float32 array, got uint8"):
        _C.loss_and_grad(net.layers, net.lfloats, net.params, net.grads, x.astype(np.uint8), y, SCCE_SPEC)
    with pytest.raises(ValueError, match="x: expected at least one row, got 0"):
        _C.loss_and_grad(net.layers, net.lfloats, net.params, net.grads, x[:0], y[:0], SCCE_SPEC)
    with pytest.raises(TypeError):
        _C.train_epoch(net.layers)  # the argument parser's own message


# --- buffer rules ---

def test_inputs_are_unchanged_by_every_call():
    x, y = blobs(12)
    x8 = (np.abs(x) * 20).astype(np.uint8)
    net = Net(MLP_DROPOUT, 6)
    perm = np.random.default_rng(8).permutation(12)
    keep = [a.copy() for a in (x, y, x8, perm, net.layers, net.lfloats, net.hyper, net.segments)]
    net.epoch(x, y, perm, seed=3)
    net.epoch(x8, y, perm, seed=3)
    net.evaluate(x, y)
    net.predict(x8)
    _C.loss_and_grad(net.layers, net.lfloats, net.params, net.grads, x, y, SCCE_SPEC, 1, True)
    for a, b in zip((x, y, x8, perm, net.layers, net.lfloats, net.hyper, net.segments), keep):
        assert np.array_equal(a, b)


def test_refcounts_are_stable_over_1000_calls():
    x, y = blobs(6)
    net = Net(MLP, 6)
    perm = np.arange(6)
    out = np.empty((6, 3), np.float32)
    hook = lambda *a: None  # noqa: E731
    objs = (x, y, perm, net.layers, net.lfloats, net.params, net.grads, net.hyper, net.segments, net.slots,
            net.slots[0], net.iterations, out, hook)
    before = [sys.getrefcount(o) for o in objs]
    bad_y = np.full(6, 7, np.int32)
    for _ in range(1000):
        net.epoch(x, y, perm, batch_size=3, hook=hook, every_batch=True)
        net.evaluate(x, y, hook=hook)
        _C.predict(net.layers, net.lfloats, net.params, x, out, 4, hook)
        _C.loss_and_grad(net.layers, net.lfloats, net.params, net.grads, x, y, SCCE_SPEC)
        _C.optimizer_step(net.kind, net.hyper, net.params, net.grads, net.segments, net.slots, net.iterations)
        with pytest.raises(ValueError):
            net.epoch(x, bad_y, perm)
    assert [sys.getrefcount(o) for o in objs] == before


# --- real data ---

def read_idx_payload(folder, name, offset):
    import gzip
    raw = folder / name
    data = raw.read_bytes() if raw.is_file() else gzip.open(folder / (name + ".gz")).read()
    return np.frombuffer(data, np.uint8, offset=offset)


def test_mnist_epoch_matches_the_float64_reference(mnist_dir):
    """2048 real MNIST rows, uint8 through Rescaling(1/255), 784-32-10 relu/softmax, SCCE + Adam at batch 128:
    the C epoch follows the float64 reference step for step."""
    n = 2048
    x = read_idx_payload(mnist_dir, "train-images-idx3-ubyte", 16).reshape(-1, 784)[:n]
    y = read_idx_payload(mnist_dir, "train-labels-idx1-ubyte", 8)[:n].astype(np.int32)
    assert x.shape == (n, 784) and set(np.unique(y)) == set(range(10))
    net = Net([("rescale", 1 / 255, 0.0), ("dense", 32, "relu"), ("dense", 10, "softmax")], 784,
              opt=(R.ADAM, R.hyper_vector(1e-3, 0.9, 0.999, 1e-7)))
    perm = np.random.default_rng(0).permutation(n)
    r_params = net.params.astype(np.float64)
    r_slots = [np.zeros(len(net.params)), np.zeros(len(net.params))]
    r_loss, r_it = 0.0, 0
    for start in range(0, n, 128):
        idx = perm[start:start + 128]
        loss, grads, _, _ = R.model_loss_and_grad(net.layers, net.lfloats, r_params, x[idx], y[idx], SCCE_SPEC)
        r_loss += loss * len(idx)
        r_it = R.optimizer_step(net.kind, net.hyper, r_params, grads, net.segments, r_slots, r_it)
    loss_sum, acc_sum, seen, _ = net.epoch(x, y, perm, batch_size=128)
    assert seen == n and net.iterations[0] == r_it == 16
    np.testing.assert_allclose(loss_sum / n, r_loss / n, rtol=1e-5)
    np.testing.assert_allclose(net.params, r_params, rtol=1e-3, atol=1e-5)
    assert acc_sum / n > 0.3  # running accuracy while learning, chance is 0.1
    _, acc_after, _ = net.evaluate(x, y, batch_size=512)
    assert acc_after / n > 0.6  # 0.68 measured after these 16 steps
