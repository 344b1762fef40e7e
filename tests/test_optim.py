"""The optimizers through _C.optimizer_step: k steps of every variant against the float64 reference,
frozen ranges untouched, the segments/slots layout, the iterations counter, weight decay, and the
validation of every argument."""
import platform

import numpy as np
import pytest

import reference as R
from mnistc import _C

RTOL, ATOL = 1e-4, 1e-5
P = 20
SEGMENTS = np.array([[0, 6], [10, 8]], np.int64)  # [6, 10) and [18, 20) are frozen
SLOT_LEN = 14

VARIANTS = {
    "sgd": (R.SGD, R.hyper_vector(0.1)),
    "sgd_momentum": (R.SGD, R.hyper_vector(0.1, 0.9)),
    "sgd_nesterov": (R.SGD, R.hyper_vector(0.1, 0.9, flag=1)),
    "sgd_nesterov_without_momentum": (R.SGD, R.hyper_vector(0.1, 0.0, flag=1)),
    "sgd_weight_decay": (R.SGD, R.hyper_vector(0.1, 0.5, wd=0.01)),
    "adam": (R.ADAM, R.hyper_vector(0.01, 0.9, 0.999, 1e-7)),
    "adam_amsgrad": (R.ADAM, R.hyper_vector(0.01, 0.9, 0.999, 1e-7, flag=1)),
    "adam_weight_decay": (R.ADAM, R.hyper_vector(0.01, 0.8, 0.99, 1e-3, wd=0.004)),
    "rmsprop": (R.RMSPROP, R.hyper_vector(0.01, 0.9, eps=1e-7)),
    "rmsprop_momentum": (R.RMSPROP, R.hyper_vector(0.01, 0.9, eps=1e-7, momentum=0.5)),
    "rmsprop_centered": (R.RMSPROP, R.hyper_vector(0.01, 0.9, eps=1e-7, flag=1)),
    "rmsprop_momentum_centered": (R.RMSPROP, R.hyper_vector(0.01, 0.8, eps=1e-6, momentum=0.3, flag=1)),
    "rmsprop_weight_decay": (R.RMSPROP, R.hyper_vector(0.01, 0.9, eps=1e-7, wd=0.1)),
}


def fresh_state(kind, hyper, rng):
    params = rng.standard_normal(P).astype(np.float32)
    slots = tuple(np.zeros(SLOT_LEN, np.float32) for _ in range(R.n_slots(kind, hyper)))
    return params, slots, np.zeros(1, np.int64)


HYPER_ADAM = R.hyper_vector(0.01, 0.9, 0.999, 1e-7)
SCHEDULED = {
    "exponential": (R.S_EXPONENTIAL, [0.1, 3, 0.5, 0]),
    "exponential_staircase": (R.S_EXPONENTIAL, [0.1, 3, 0.5, 1]),
    "inverse_time": (R.S_INVERSE_TIME, [0.1, 2, 0.7, 0]),
    "inverse_time_staircase": (R.S_INVERSE_TIME, [0.1, 2, 0.7, 1]),
    "polynomial": (R.S_POLYNOMIAL, [0.1, 5, 0.01, 2.0, 0]),
    "polynomial_cycle": (R.S_POLYNOMIAL, [0.1, 3, 0.01, 0.5, 1]),
    "cosine": (R.S_COSINE, [0.1, 6, 0.2, 0.1, 0]),
    "cosine_warmup": (R.S_COSINE, [0.0, 5, 0.1, 0.2, 3]),
    "piecewise": (R.S_PIECEWISE, [2, 2, 5, 0.3, 0.2, 0.1]),
}
NEW_KINDS = {
    "adagrad": (R.ADAGRAD, R.hyper_vector(0.1, eps=1e-7), 0.1),
    "adagrad_weight_decay": (R.ADAGRAD, R.hyper_vector(0.05, eps=1e-3, wd=0.1), 0.5),
    "adamax": (R.ADAMAX, R.hyper_vector(0.01, 0.9, 0.999, 1e-7), 0.0),
    "adamax_beta_2_one": (R.ADAMAX, R.hyper_vector(0.02, 0.8, 1.0, 1e-5), 0.0),
    "nadam": (R.NADAM, R.hyper_vector(0.01, 0.9, 0.999, 1e-7), 0.0),
    "nadam_weight_decay": (R.NADAM, R.hyper_vector(0.01, 0.5, 0.99, 1e-4, wd=0.01), 0.0),
    "nadam_scheduled": (R.NADAM, R.scheduled_hyper(R.NADAM, R.hyper_vector(0.01, 0.9, 0.999, 1e-7),
                                                   *SCHEDULED["cosine_warmup"]), 0.0),
}


def new_kind_state(kind, fill, rng):
    params = rng.standard_normal(P).astype(np.float32)
    slots = [np.full(SLOT_LEN, fill, np.float32) for _ in range(2 if kind != R.ADAGRAD else 1)]
    if kind == R.NADAM:
        slots.append(np.ones(1, np.float32))  # u_product
    return params, tuple(slots), np.zeros(1, np.int64)


def run_against_reference(kind, hyper, params, slots, it, rng, steps):
    r_params = params.astype(np.float64)
    r_slots = [s.astype(np.float64) for s in slots]
    r_it = 0
    for _ in range(steps):
        grads = rng.standard_normal(P).astype(np.float32)
        _C.optimizer_step(kind, hyper, params, grads, SEGMENTS, slots, it)
        r_it = R.scheduled_optimizer_step(kind, hyper, r_params, grads, SEGMENTS, r_slots, r_it)
        assert it[0] == r_it
        np.testing.assert_allclose(params, r_params, rtol=RTOL, atol=ATOL)
        for s, rs in zip(slots, r_slots):
            np.testing.assert_allclose(s, rs, rtol=RTOL, atol=ATOL)
    return r_params


@pytest.mark.parametrize("name", list(NEW_KINDS))
def test_adagrad_adamax_nadam_k_steps_match_reference(name):
    kind, hyper, fill = NEW_KINDS[name]
    rng = np.random.default_rng(11)
    params, slots, it = new_kind_state(kind, fill, rng)
    before = params.copy()
    run_against_reference(kind, hyper, params, slots, it, rng, steps=8)
    assert np.array_equal(params[6:10], before[6:10]) and np.array_equal(params[18:], before[18:])


def test_nadam_u_product_is_the_running_product_of_the_momentum_schedule():
    kind, hyper, _ = NEW_KINDS["nadam"]
    rng = np.random.default_rng(12)
    params, slots, it = new_kind_state(kind, 0.0, rng)
    for _ in range(5):
        _C.optimizer_step(kind, hyper, params, rng.standard_normal(P).astype(np.float32), SEGMENTS, slots, it)
    want = np.prod([0.9 * (1 - 0.5 * 0.96 ** t) for t in range(1, 6)])
    np.testing.assert_allclose(slots[2][0], want, rtol=1e-6)
    # resuming from saved state (counter and u_product) continues the same trajectory
    params2, slots2, it2 = params.copy(), tuple(s.copy() for s in slots), it.copy()
    g = rng.standard_normal(P).astype(np.float32)
    _C.optimizer_step(kind, hyper, params, g, SEGMENTS, slots, it)
    _C.optimizer_step(kind, hyper, params2, g, SEGMENTS, slots2, it2)
    assert np.array_equal(params, params2)


def test_nadam_u_product_slot_must_hold_one_value():
    kind, hyper, _ = NEW_KINDS["nadam"]
    params, slots, it = new_kind_state(kind, 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"slots\[2\]: expected length 1 \(one value for the whole optimizer\), "
                                         r"got 14"):
        bad = (*slots[:2], np.ones(SLOT_LEN, np.float32))
        _C.optimizer_step(kind, hyper, params, params.copy(), SEGMENTS, bad, it)


@pytest.mark.parametrize("name", list(SCHEDULED))
@pytest.mark.parametrize("kind", [R.SGD, R.ADAM, R.RMSPROP])
def test_scheduled_learning_rate_k_steps_match_reference(name, kind):
    base = {R.SGD: R.hyper_vector(0.0, 0.9), R.ADAM: HYPER_ADAM,
            R.RMSPROP: R.hyper_vector(0.0, 0.9, eps=1e-7)}[kind]
    hyper = R.scheduled_hyper(kind, base, *SCHEDULED[name])
    rng = np.random.default_rng(13)
    params, slots, it = fresh_state(kind, hyper, rng)
    run_against_reference(kind, hyper, params, slots, it, rng, steps=9)


@pytest.mark.parametrize("name", list(SCHEDULED))
def test_schedule_is_evaluated_at_the_counter_before_its_increment(name):
    """Plain SGD on a gradient of 1 moves its weight by exactly -lr(step): the C rate of each step
    against the reference schedule at the counter's value before that step (0, 1, ...)."""
    hyper = R.scheduled_hyper(R.SGD, R.hyper_vector(0.0), *SCHEDULED[name])
    params = np.zeros(1, np.float32)
    it = np.array([0], np.int64)
    seen = []
    for _ in range(12):
        before = float(params[0])
        step = int(it[0])
        _C.optimizer_step(R.SGD, hyper, params, np.ones(1, np.float32), np.array([[0, 1]], np.int64), (), it)
        seen.append((step, before - float(params[0])))
    for step, lr in seen:
        assert lr == pytest.approx(R.schedule_lr(hyper, step), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_k_steps_match_reference(name):
    kind, hyper = VARIANTS[name]
    rng = np.random.default_rng(1)
    params, slots, it = fresh_state(kind, hyper, rng)
    r_params = params.astype(np.float64)
    r_slots = [s.astype(np.float64) for s in slots]
    r_it = 0
    for _ in range(6):
        grads = rng.standard_normal(P).astype(np.float32)
        _C.optimizer_step(kind, hyper, params, grads, SEGMENTS, slots, it)
        r_it = R.optimizer_step(kind, hyper, r_params, grads, SEGMENTS, r_slots, r_it)
        assert it[0] == r_it
        np.testing.assert_allclose(params, r_params, rtol=RTOL, atol=ATOL)
        for s, rs in zip(slots, r_slots):
            np.testing.assert_allclose(s, rs, rtol=RTOL, atol=ATOL)
    assert r_it == 6


@pytest.mark.parametrize("name", list(VARIANTS))
def test_frozen_ranges_are_untouched(name):
    kind, hyper = VARIANTS[name]
    rng = np.random.default_rng(2)
    params, slots, it = fresh_state(kind, hyper, rng)
    before = params.copy()
    for _ in range(3):
        grads = rng.standard_normal(P).astype(np.float32) * 100
        _C.optimizer_step(kind, hyper, params, grads, SEGMENTS, slots, it)
    assert np.array_equal(params[6:10], before[6:10]) and np.array_equal(params[18:], before[18:])
    assert not np.array_equal(params[:6], before[:6]) and not np.array_equal(params[10:18], before[10:18])


def test_slots_are_laid_out_segment_after_segment():
    rng = np.random.default_rng(3)
    kind, hyper = VARIANTS["sgd_momentum"]
    params, slots, it = fresh_state(kind, hyper, rng)
    grads = rng.standard_normal(P).astype(np.float32)
    _C.optimizer_step(kind, hyper, params, grads, SEGMENTS, slots, it)
    # first step from m = 0: m = -lr * g, in float32
    want = -(np.concatenate([grads[0:6], grads[10:18]]) * np.float32(0.1))
    assert np.array_equal(slots[0], want)


def test_rmsprop_slot_order_is_velocity_momentum_average_gradient():
    rng = np.random.default_rng(4)
    kind, hyper = VARIANTS["rmsprop_momentum_centered"]
    params, slots, it = fresh_state(kind, hyper, rng)
    grads = rng.standard_normal(P).astype(np.float32)
    _C.optimizer_step(kind, hyper, params, grads, SEGMENTS, slots, it)
    g = np.concatenate([grads[0:6], grads[10:18]]).astype(np.float64)
    np.testing.assert_allclose(slots[0], 0.2 * g * g, rtol=1e-6)  # velocity
    np.testing.assert_allclose(slots[2], 0.2 * g, rtol=1e-6)  # average gradient
    inc = 0.01 * g / np.sqrt(0.2 * g * g - (0.2 * g) ** 2 + 1e-6)
    np.testing.assert_allclose(slots[1], inc, rtol=1e-5)  # momentum holds the first increment


def test_iterations_counts_steps_and_drives_adam_bias_correction():
    rng = np.random.default_rng(5)
    kind, hyper = VARIANTS["adam"]
    params, slots, it = fresh_state(kind, hyper, rng)
    it[0] = 41
    r_params = params.astype(np.float64)
    r_slots = [s.astype(np.float64) for s in slots]
    grads = rng.standard_normal(P).astype(np.float32)
    _C.optimizer_step(kind, hyper, params, grads, SEGMENTS, slots, it)
    R.optimizer_step(kind, hyper, r_params, grads, SEGMENTS, r_slots, 41)
    assert it[0] == 42
    np.testing.assert_allclose(params, r_params, rtol=RTOL, atol=ATOL)


def test_iterations_increments_with_no_trainable_segment():
    it = np.array([7], np.int64)
    params = np.ones(4, np.float32)
    _C.optimizer_step(R.SGD, R.hyper_vector(0.1), params, np.ones(4, np.float32), np.zeros((0, 2), np.int64),
                      (), it)
    assert it[0] == 8 and (params == 1).all()


def test_weight_decay_is_applied_before_the_update():
    params = np.full(4, 2.0, np.float32)
    grads = np.zeros(4, np.float32)
    segs = np.array([[0, 4]], np.int64)
    _C.optimizer_step(R.SGD, R.hyper_vector(0.1, wd=0.5), params, grads, segs, (), np.zeros(1, np.int64))
    np.testing.assert_allclose(params, 2.0 - 2.0 * 0.5 * 0.1, rtol=1e-7)
    # with a gradient: w' = (w - w*wd*lr) - lr*g
    params[:] = 2.0
    grads[:] = 1.0
    _C.optimizer_step(R.SGD, R.hyper_vector(0.1, wd=0.5), params, grads, segs, (), np.zeros(1, np.int64))
    np.testing.assert_allclose(params, 1.9 - 0.1, rtol=1e-6)


def test_rmsprop_matches_the_keras_docstring_example():
    # keras.optimizers.RMSprop(learning_rate=0.1); loss = var**2 / 2 from var = 10 gives 9.683772
    params = np.array([10.0], np.float32)
    slots = (np.zeros(1, np.float32),)
    _C.optimizer_step(R.RMSPROP, R.hyper_vector(0.1, 0.9, eps=1e-7), params, params.copy(),
                      np.array([[0, 1]], np.int64), slots, np.zeros(1, np.int64))
    np.testing.assert_allclose(params, [9.683772], rtol=1e-6)


def test_adam_first_step_uses_epsilon_hat():
    """Step 1: w -= lr*sqrt(1-b2)/(1-b1) * m / (sqrt(v) + eps): about lr per weight, except where
    sqrt(v) is comparable to eps (epsilon is added without bias correction, as Keras does)."""
    params = np.zeros(3, np.float32)
    grads = np.array([1e-3, -5.0, 1e-6], np.float32)
    slots = (np.zeros(3, np.float32), np.zeros(3, np.float32))
    _C.optimizer_step(R.ADAM, R.hyper_vector(0.001, 0.9, 0.999, 1e-7), params, grads,
                      np.array([[0, 3]], np.int64), slots, np.zeros(1, np.int64))
    g = grads.astype(np.float64)
    want = -0.001 * np.sqrt(0.001) / 0.1 * (0.1 * g) / (np.sqrt(0.001) * np.abs(g) + 1e-7)
    np.testing.assert_allclose(params, want, rtol=1e-5)
    assert abs(params[0]) < 0.001 * 0.997 and abs(params[2]) < 0.001 * 0.25


# --- validation ---

def adam_with_vanishing_gradient(threads, steps=800):
    n = 40000  # above the size split over the thread pool
    hyper = R.hyper_vector(1e-3, 0.9, 0.999, 1e-7)
    segments = np.array([[0, n]], np.int64)
    params = np.linspace(-0.05, 0.05, n, dtype=np.float32)
    grads = np.linspace(1e-3, 2e-3, n, dtype=np.float32)
    slots = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    it = np.zeros(1, np.int64)
    saved = _C.get_num_threads()
    try:
        _C.set_num_threads(threads)
        _C.optimizer_step(R.ADAM, hyper, params, grads, segments, slots, it)
        grads[:] = 0
        for _ in range(steps):
            _C.optimizer_step(R.ADAM, hyper, params, grads, segments, slots, it)
    finally:
        _C.set_num_threads(saved)
    return params, slots


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64", "i686"),
                    reason="the subnormal flush uses the x86 MXCSR; other CPUs keep plain IEEE")
def test_adam_state_never_goes_subnormal():
    """Where the gradient stays zero, Adam's m decays by beta_1 per step: from 1e-4 it would be
    ~2e-41, a float32 subnormal, after 800 steps, and every x86 operation on a subnormal takes a
    slow microcode assist. The update flushes subnormals to zero (as TensorFlow's CPU ops do), on
    every thread alike, and leaves the caller's floating-point mode as it was."""
    params, slots = adam_with_vanishing_gradient(threads=1)
    tiny = np.finfo(np.float32).tiny
    for a in (params, *slots):
        assert not np.any((a != 0) & (np.abs(a) < tiny))
    m = slots[0]
    assert np.all((m > 0) & (m < 10 * tiny))  # decayed as far as the flush lets 0.9 * m go
    params2, slots2 = adam_with_vanishing_gradient(threads=2)
    assert np.array_equal(params, params2) and all(np.array_equal(a, b) for a, b in zip(slots, slots2))
    assert np.float32(tiny) / np.float32(16) * np.float32(16) == tiny  # NumPy still sees IEEE subnormals


def call(**over):
    kind, hyper = VARIANTS["adam"]
    args = dict(opt=kind, hyper=hyper, params=np.zeros(P, np.float32), grads=np.zeros(P, np.float32),
                segments=SEGMENTS, slots=(np.zeros(SLOT_LEN, np.float32), np.zeros(SLOT_LEN, np.float32)),
                iterations=np.zeros(1, np.int64))
    args.update(over)
    _C.optimizer_step(**args)


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("over, exc, match", [
    (dict(slots=(np.zeros(SLOT_LEN, np.float32),)), ValueError, "needs 2 slot arrays, got 1"),
    (dict(slots=(np.zeros(SLOT_LEN, np.float32), np.zeros(13, np.float32))), ValueError,
     r"slots\[1\]: expected length 14 \(sum of the segment lengths\), got 13"),
    (dict(slots=(np.zeros(SLOT_LEN, np.float32), read_only(np.zeros(SLOT_LEN, np.float32)))), ValueError,
     r"slots\[1\]: expected a writeable float32 array, got a read-only one"),
    (dict(slots=(np.zeros(SLOT_LEN, np.float32), np.zeros(SLOT_LEN))), TypeError,
     r"slots\[1\]: expected float32 array, got float64"),
    (dict(slots=[np.zeros(SLOT_LEN, np.float32)] * 2), ValueError, r"slots\[1\]: must not share memory with slots\[0\]"),
    (dict(slots=np.zeros(SLOT_LEN, np.float32)), TypeError, "slots: expected a tuple of float32 arrays"),
    (dict(params=np.zeros(P)), TypeError, "params: expected float32 array, got float64"),
    (dict(params=read_only(np.zeros(P, np.float32))), ValueError, "params: expected a writeable float32 array"),
    (dict(params=np.zeros((P, 2), np.float32)[:, 0]), ValueError, "params: expected a C-contiguous array"),
    (dict(grads=np.zeros(P - 1, np.float32)), ValueError, r"grads: expected length 20 \(len\(params\)\), got 19"),
    (dict(segments=np.array([[0, 6], [16, 8]], np.int64)), ValueError,
     r"segments\[1\]: range \[16, 16 \+ 8\) is outside the 20 parameters"),
    (dict(segments=np.array([[0, 6], [4, 8]], np.int64)), ValueError, r"segments\[1\]: offset 4 overlaps"),
    (dict(segments=np.array([[0, 6, 1]], np.int64)), ValueError, r"segments: expected shape \(S, 2\)"),
    (dict(segments=SEGMENTS.astype(np.int32)), TypeError, "segments: expected int64 array, got int32"),
    (dict(hyper=np.zeros(7)), ValueError, r"hyper: expected length 8"),
    (dict(hyper=R.hyper_vector(np.nan, 0.9, 0.999, 1e-7)), ValueError, "learning_rate must be finite, got nan"),
    (dict(hyper=R.hyper_vector(0.1, 1.0, 0.999, 1e-7)), ValueError, r"beta_1 must be in \[0, 1\), got 1"),
    (dict(iterations=np.zeros(1, np.int32)), TypeError, "iterations: expected int64 array, got int32"),
    (dict(iterations=np.zeros(2, np.int64)), ValueError, "iterations: expected length 1"),
    (dict(opt=6), ValueError, r"opt: expected 0 \(SGD\), 1 \(Adam\), 2 \(RMSprop\), 3 \(Adagrad\), 4 \(Adamax\) "
                              r"or 5 \(Nadam\), got 6"),
    (dict(hyper=R.scheduled_hyper(R.ADAM, HYPER_ADAM, R.S_EXPONENTIAL, [0.1, 10, 0.5])), ValueError,
     "schedule: kind 1 expects 4 parameters after the 8 fixed hyperparameters, got 3"),
    (dict(hyper=R.scheduled_hyper(R.ADAM, HYPER_ADAM, R.S_EXPONENTIAL, [0.1, 0, 0.5, 0])), ValueError,
     "decay_steps must be > 0, got 0"),
    (dict(hyper=R.scheduled_hyper(R.ADAM, HYPER_ADAM, R.S_COSINE, [0.1, 10, np.inf, 0.1, 0])), ValueError,
     "schedule: parameter 2 is inf"),
    (dict(hyper=R.scheduled_hyper(R.ADAM, HYPER_ADAM, R.S_PIECEWISE, [2, 5, 5, 0.1, 0.2, 0.3])), ValueError,
     "boundaries must be strictly increasing"),
    (dict(hyper=R.scheduled_hyper(R.ADAM, HYPER_ADAM, R.S_PIECEWISE, [2, 5, 7, 0.1, 0.2])), ValueError,
     "piecewise constant needs its boundary count first.*got 5 parameters that do not match"),
    (dict(hyper=R.scheduled_hyper(R.ADAM, HYPER_ADAM, R.S_PIECEWISE, [5])), ValueError,
     "piecewise constant needs its boundary count first"),
    (dict(hyper=R.scheduled_hyper(R.ADAM, HYPER_ADAM, R.S_PIECEWISE, [1, 4, 0.1, 0.2, 0.3])), ValueError,
     "schedule: kind 2 expects 4 parameters after the 8 fixed hyperparameters, got 5"),
    (dict(hyper=R.scheduled_hyper(R.ADAM, HYPER_ADAM, 9, [])), ValueError,
     r"schedule kind must be an integer in \[0, 6\)"),
    (dict(hyper=np.concatenate([HYPER_ADAM, [1.0]])), ValueError, "schedule: kind 0 expects 0 parameters"),
])
def test_optimizer_step_validation(over, exc, match):
    with pytest.raises(exc, match=match):
        call(**over)


def test_rejected_call_changes_nothing():
    params = np.ones(P, np.float32)
    it = np.zeros(1, np.int64)
    with pytest.raises(ValueError):
        call(params=params, iterations=it, slots=(np.zeros(SLOT_LEN, np.float32),))
    assert (params == 1).all() and it[0] == 0


# --- the Python optimizers: names, configs, fit, saved state ---

def blobs(seed=0, n=240):
    """Three separable Gaussian blobs in 4-d: every optimizer should fit them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.standard_normal((n, 4)) * 0.5 + np.eye(3, 4)[y] * 3).astype(np.float32)
    return x, y


def small_model(optimizer):
    import mnistc
    model = mnistc.Sequential([mnistc.Input((4,)), mnistc.layers.Dense(8, activation="relu"),
                               mnistc.layers.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("name, lr", [("adagrad", 0.1), ("adamax", 0.01), ("nadam", 0.01)])
def test_a_small_fit_converges(name, lr):
    import mnistc
    mnistc.utils.set_random_seed(0)
    x, y = blobs()
    opt = mnistc.optimizers.get(name)
    opt.learning_rate = lr
    model = small_model(opt)
    h = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < 0.25 * h.history["loss"][0]
    assert h.history["accuracy"][-1] > 0.95
    assert opt.iterations == 15 * 15


def test_get_names_defaults_and_config_round_trip():
    from mnistc import optimizers
    for name, cls, defaults in [
        ("adagrad", optimizers.Adagrad, dict(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7)),
        ("adamax", optimizers.Adamax, dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
        ("nadam", optimizers.Nadam, dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
    ]:
        opt = optimizers.get(name.capitalize() if name == "nadam" else name)
        assert type(opt) is cls and opt.name == name
        config = opt.get_config()
        assert {k: config[k] for k in defaults} == defaults
        twin = optimizers.get(optimizers.serialize(opt))
        assert type(twin) is cls and twin.get_config() == config


def test_adagrad_accumulators_start_at_initial_accumulator_value():
    from mnistc import optimizers
    opt = optimizers.Adagrad(initial_accumulator_value=0.25)
    opt.build(np.array([[0, 5], [9, 2]], np.int64))
    assert len(opt._slots) == 1 and np.array_equal(opt._slots[0], np.full(7, 0.25, np.float32))
    with pytest.raises(ValueError, match="initial_accumulator_value` must be a finite number >= 0"):
        optimizers.Adagrad(initial_accumulator_value=-1.0)


@pytest.mark.parametrize("make, match", [
    (lambda o: o.Adamax(beta_1=1.0), r"`beta_1` must be in \[0, 1\)"),
    (lambda o: o.Nadam(beta_2=1.0), r"`beta_2` must be in \[0, 1\)"),
    (lambda o: o.Nadam(epsilon=0.0), "`epsilon` must be a finite number > 0"),
    (lambda o: o.Adagrad(1), "learning_rate` should be a float"),
])
def test_bad_arguments_name_the_fix(make, match):
    from mnistc import optimizers
    with pytest.raises(ValueError, match=match):
        make(optimizers)


@pytest.mark.parametrize("name", ["nadam", "adagrad", "adamax"])
def test_saved_state_resumes_the_same_trajectory(tmp_path, name):
    """Saving after one epoch and training one more epoch from the file gives the weights an
    uninterrupted second epoch gives: the slots (and Nadam's u_product) and the counter come back."""
    import mnistc
    x, y = blobs(1)
    mnistc.utils.set_random_seed(3)
    model = small_model(name)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    model.save(tmp_path / "m.keras")
    loaded = mnistc.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is type(model.optimizer)
    if name == "nadam":
        assert loaded.optimizer._slots[2].shape == (1,) and loaded.optimizer._slots[2][0] < 1
        assert loaded.optimizer._slots[2][0] == model.optimizer._slots[2][0]
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
