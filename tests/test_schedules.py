"""Learning-rate schedules: their values against the float64 reference and Keras's documented examples,
the rate changing batch by batch inside one C epoch, optimizer.learning_rate under a schedule, config
and file round trips, and the errors."""
import json

import numpy as np
import pytest

import mnistc
import reference as R
from mnistc import optimizers
from mnistc.optimizers import schedules

SCHEDULES = {
    "exponential": lambda: schedules.ExponentialDecay(0.1, decay_steps=7, decay_rate=0.5),
    "exponential_staircase": lambda: schedules.ExponentialDecay(0.1, 7, 0.5, staircase=True),
    "inverse_time": lambda: schedules.InverseTimeDecay(0.1, decay_steps=3, decay_rate=0.5),
    "inverse_time_staircase": lambda: schedules.InverseTimeDecay(0.1, 3, 0.5, staircase=True),
    "polynomial": lambda: schedules.PolynomialDecay(0.1, decay_steps=9, end_learning_rate=0.01, power=2.0),
    "polynomial_cycle": lambda: schedules.PolynomialDecay(0.1, 9, power=0.5, cycle=True),
    "cosine": lambda: schedules.CosineDecay(0.1, decay_steps=20, alpha=0.1),
    "cosine_warmup": lambda: schedules.CosineDecay(0.0, 20, alpha=0.1, warmup_target=0.2, warmup_steps=10),
    "piecewise": lambda: schedules.PiecewiseConstantDecay([5, 15], [0.1, 0.05, 0.01]),
}


def hyper_of(schedule):
    return optimizers.SGD(learning_rate=schedule).c_hyper()


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_values_match_the_reference_and_the_c_optimizer(name):
    schedule = SCHEDULES[name]()
    hyper = hyper_of(schedule)
    params, it = np.zeros(1, np.float32), np.zeros(1, np.int64)
    for step in range(45):
        want = R.schedule_lr(hyper, step)
        assert schedule(step) == pytest.approx(want, rel=1e-12, abs=1e-15)
        before = float(params[0])
        mnistc._C.optimizer_step(0, hyper, params, np.ones(1, np.float32), np.array([[0, 1]], np.int64), (), it)
        assert before - float(params[0]) == pytest.approx(want, rel=1e-4, abs=1e-7)


def test_keras_documented_values():
    # keras/src/optimizers/schedules/learning_rate_schedule.py docstrings
    pw = schedules.PiecewiseConstantDecay([100000, 110000], [1.0, 0.5, 0.1])
    assert [pw(s) for s in (0, 100000, 100001, 110000, 110001)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    ed = schedules.ExponentialDecay(0.1, decay_steps=100000, decay_rate=0.96, staircase=True)
    assert ed(99999) == 0.1 and ed(250000) == pytest.approx(0.1 * 0.96 ** 2)
    cd = schedules.CosineDecay(0.0, 1000, warmup_target=0.1, warmup_steps=1000)
    assert cd(0) == 0.0 and cd(500) == pytest.approx(0.05) and cd(1000) == pytest.approx(0.1)
    assert cd(1500) == pytest.approx(0.05) and cd(2000) == pytest.approx(0.0, abs=1e-12) and cd(5000) == cd(2000)
    it = schedules.InverseTimeDecay(0.1, 1.0, 0.5)
    assert it(2) == pytest.approx(0.05)


def fit_data(n=64):
    rng = np.random.default_rng(5)
    return rng.random((n, 6), dtype=np.float32), rng.integers(0, 3, n)


def model_with(optimizer, seed=2):
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input((6,)), mnistc.layers.Dense(5, activation="tanh"),
                               mnistc.layers.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy")
    return model


def test_the_rate_changes_batch_by_batch_inside_one_epoch():
    """One epoch of 4 batches whose rate drops to 0 after step 1 equals 2 plain steps at the first rate:
    the C epoch evaluates the schedule at every step, not once per epoch."""
    x, y = fit_data()
    sched = model_with(optimizers.SGD(schedules.PiecewiseConstantDecay([1], [0.5, 0.0])))
    sched.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    plain = model_with(optimizers.SGD(0.5))
    for b in range(2):
        plain.train_on_batch(x[16 * b:16 * (b + 1)], y[16 * b:16 * (b + 1)])
    four = model_with(optimizers.SGD(0.5))
    four.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b, c in zip(sched.get_weights(), plain.get_weights(), four.get_weights()):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    assert sched.optimizer.iterations == 4


def test_a_decaying_rate_matches_step_by_step_training():
    x, y = fit_data()
    make = lambda: optimizers.Adam(schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.3))  # noqa: E731
    epoch = model_with(make())
    epoch.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    steps = model_with(make())
    for _ in range(2):
        for b in range(4):
            steps.train_on_batch(x[16 * b:16 * (b + 1)], y[16 * b:16 * (b + 1)])
    for a, b in zip(epoch.get_weights(), steps.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_reads_the_current_value_and_is_not_settable_under_a_schedule():
    schedule = schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    opt = optimizers.Nadam(learning_rate=schedule)
    assert opt.learning_rate == 0.1
    model = model_with(opt)
    x, y = fit_data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert opt.iterations == 4 and opt.learning_rate == pytest.approx(schedule(4)) == pytest.approx(0.025)
    with pytest.raises(TypeError, match="created with a `LearningRateSchedule`.*not settable"):
        opt.learning_rate = 0.01
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate.assign(0.01)
    assert len(opt.variables) == 1 + len(opt._slots)  # no learning-rate variable, as in Keras


def test_learning_rate_assign_and_numpy_on_a_float_rate():
    opt = optimizers.Adam(learning_rate=1e-3)
    opt.learning_rate.assign(5e-4)
    assert opt.learning_rate == 5e-4 and isinstance(opt.learning_rate, float)
    assert opt.learning_rate.numpy() == np.float32(5e-4)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate.assign(float("nan"))
    assert opt.learning_rate == 5e-4
    opt.learning_rate = schedules.CosineDecay(1e-3, 100)
    assert opt.learning_rate == 1e-3 and opt.c_hyper()[7] == schedules.COSINE
    assert json.loads(json.dumps(optimizers.Adam(opt.learning_rate).get_config()))["learning_rate"] == 1e-3


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_config_round_trip(name):
    schedule = SCHEDULES[name]()
    ser = schedules.serialize(schedule)
    assert ser["class_name"] == type(schedule).__name__ and ser["module"] == "keras.optimizers.schedules"
    twin = schedules.deserialize(json.loads(json.dumps(ser)))
    assert type(twin) is type(schedule) and twin.get_config() == schedule.get_config()
    opt = optimizers.RMSprop(learning_rate=schedule)
    back = optimizers.get(json.loads(json.dumps(optimizers.serialize(opt))))
    assert type(back._learning_rate) is type(schedule)
    np.testing.assert_array_equal(back.c_hyper(), opt.c_hyper())


def test_a_keras_written_config_loads():
    # the form keras.optimizers.serialize(Adam(ExponentialDecay(...))) writes
    config = {"module": "keras.optimizers", "class_name": "Adam", "config": {
        "name": "adam", "learning_rate": {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
                                          "config": {"initial_learning_rate": 0.01, "decay_steps": 100,
                                                     "decay_rate": 0.9, "staircase": True,
                                                     "name": "ExponentialDecay"}, "registered_name": None},
        "weight_decay": None, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}}
    opt = optimizers.get(config)
    assert isinstance(opt._learning_rate, schedules.ExponentialDecay) and opt._learning_rate.staircase


def test_saved_model_keeps_its_schedule_and_resumes(tmp_path):
    x, y = fit_data()
    model = model_with(optimizers.SGD(schedules.PiecewiseConstantDecay([3, 6], [0.3, 0.1, 0.02]), momentum=0.5))
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = mnistc.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer._learning_rate, schedules.PiecewiseConstantDecay)
    assert loaded.optimizer.iterations == 4 and loaded.optimizer.learning_rate == 0.1
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_import_paths():
    from mnistc.optimizers.schedules import CosineDecay, ExponentialDecay  # noqa: F401
    assert mnistc.optimizers.schedules.ExponentialDecay is ExponentialDecay


class Halving(schedules.LearningRateSchedule):
    def __call__(self, step):
        return 0.1 / (step + 1)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), ValueError,
     r"`decay_steps` must be > 0. Received: decay_steps=0"),
    (lambda: schedules.CosineDecay(0.1, -3), ValueError, "`decay_steps` must be > 0"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_steps=-1), ValueError, "`warmup_steps` must be >= 0"),
    (lambda: schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2]), ValueError,
     "length of boundaries should be 1 less than the length of values"),
    (lambda: schedules.PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3]), ValueError, "strictly increasing"),
    (lambda: schedules.ExponentialDecay(float("nan"), 10, 0.5), ValueError, "initial_learning_rate` must be a finite"),
    (lambda: optimizers.Adam(Halving()), ValueError,
     "cannot run inside mnistc's C training loop.*LearningRateScheduler"),
    (lambda: optimizers.SGD(lambda: 0.1), ValueError, "callable `learning_rate` cannot run"),
    (lambda: schedules.deserialize({"class_name": "Halving", "config": {}}), ValueError,
     "Unknown learning rate schedule: 'Halving'"),
    (lambda: schedules.deserialize({"class_name": "CosineDecay", "config": {"bogus": 1}}), ValueError,
     "CosineDecay: bad config"),
])
def test_errors_name_the_fix(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
