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
    (dict(opt=5), ValueError, r"opt: expected 0 \(SGD\), 1 \(Adam\) or 2 \(RMSprop\), got 5"),
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
