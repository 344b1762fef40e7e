"""fit / evaluate / predict on batch streams (generators, iterators, utils.PyDataset and its Keras 2
name utils.Sequence): one C call per batch, the same numbers as the array path, Keras's epoch rules
(steps_per_epoch, running out of data) and errors naming the real cause."""
import warnings

import numpy as np
import pytest

import mnistc
from mnistc import layers, models, utils
from mnistc.utils import set_random_seed

BS = 16


def setup(n=64):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = rng.integers(0, 3, n)
    set_random_seed(11)
    m = models.Sequential([layers.Input((5,)), layers.Dense(7, activation="relu"),
                           layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m, x, y


def batches(x, y, w=None):
    for i in range(0, len(x), BS):
        yield (x[i:i + BS], y[i:i + BS]) if w is None else (x[i:i + BS], y[i:i + BS], w[i:i + BS])


def forever(x, y):
    while True:
        yield from batches(x, y)


class Batches(utils.PyDataset):
    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.ends = x, y, 0

    def __len__(self):
        return len(self.x) // BS

    def __getitem__(self, i):
        return self.x[i * BS:(i + 1) * BS], self.y[i * BS:(i + 1) * BS]

    def on_epoch_end(self):
        self.ends += 1


def test_generator_training_equals_unshuffled_array_training():
    m, x, y = setup()
    start = m.get_weights()
    h1 = m.fit(forever(x, y), steps_per_epoch=len(x) // BS, epochs=3, verbose=0)
    w1 = m.get_weights()
    m.set_weights(start)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    h2 = m.fit(x, y, batch_size=BS, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(w1, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-12)
    assert h1.history["accuracy"] == h2.history["accuracy"]
    assert h1.params["steps"] == 4


def test_pydataset_and_sequence_run_each_epoch_and_call_on_epoch_end():
    assert utils.Sequence is utils.PyDataset
    m, x, y = setup()
    ds = Batches(x, y, workers=2)
    h = m.fit(ds, epochs=3, verbose=0, validation_data=Batches(x, y))
    assert ds.ends == 3 and len(h.history["loss"]) == 3 and ds.workers == 2
    loss, acc = m.evaluate(Batches(x, y), verbose=0)
    np.testing.assert_allclose(loss, m.evaluate(x, y, verbose=0)[0], rtol=1e-6)
    np.testing.assert_allclose(h.history["val_loss"][-1], loss, rtol=1e-6)
    np.testing.assert_array_equal(m.predict(Batches(x, y), verbose=0), m.predict(x, batch_size=BS, verbose=0))


def test_pydataset_batch_order_is_shuffled_per_epoch_unless_shuffle_false():
    m, x, y = setup()
    seen = []

    class Logged(Batches):
        def __getitem__(self, i):
            seen.append(i)
            return super().__getitem__(i)

    m.fit(Logged(x, y), epochs=2, verbose=0, shuffle=False)
    assert seen == [0, 1, 2, 3, 0, 1, 2, 3]
    seen.clear()
    m.fit(Logged(x, y), epochs=4, verbose=0)
    assert sorted(seen[:4]) == [0, 1, 2, 3] and seen != [0, 1, 2, 3] * 4


def test_finite_generator_without_steps_runs_until_exhausted():
    m, x, y = setup()
    calls = []
    cb = mnistc.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: calls.append(b))
    h = m.fit(batches(x, y), epochs=1, verbose=0, callbacks=[cb])
    assert calls == [0, 1, 2, 3] and len(h.history["loss"]) == 1
    assert h.params["steps"] is None
    out = m.predict((xb for xb, _ in batches(x, y)), verbose=0)
    assert out.shape == (64, 3)
    ev = m.evaluate(batches(x, y), verbose=0)
    np.testing.assert_allclose(ev[0], m.evaluate(x, y, verbose=0)[0], rtol=1e-6)


def test_generator_running_out_warns_and_stops_as_keras():
    m, x, y = setup()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = m.fit(batches(x, y), steps_per_epoch=3, epochs=5, verbose=0)
    assert len(h.history["loss"]) == 2  # 3 batches, then the 4th and last
    assert any("ran out of data" in str(i.message) for i in w)


def test_sample_weights_and_class_weights_in_batches():
    m, x, y = setup()
    w = np.linspace(0.0, 2.0, len(x)).astype(np.float32)
    loss = m.evaluate(batches(x, y, w), verbose=0)[0]
    np.testing.assert_allclose(loss, m.evaluate(x, y, sample_weight=w, verbose=0)[0], rtol=1e-6)
    start = m.get_weights()
    h1 = m.fit(batches(x, y), class_weight={1: 3.0}, verbose=0)
    m.set_weights(start)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    h2 = m.fit(x, y, class_weight={1: 3.0}, batch_size=BS, shuffle=False, verbose=0)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda m, x, y: m.fit(batches(x, y), epochs=2, verbose=0), "without `steps_per_epoch`.*needed 2 times"),
    (lambda m, x, y: m.fit(forever(x, y), steps_per_epoch=2, epochs=2, verbose=0,
                           validation_data=batches(x, y)), "without `validation_steps`.*needed 2 times"),
    (lambda m, x, y: m.fit(batches(x, y), y, verbose=0), "`y` cannot be used when `x` is a generator"),
    (lambda m, x, y: m.fit(batches(x, y), batch_size=8, verbose=0), "`batch_size` cannot be used"),
    (lambda m, x, y: m.fit(x, y, steps_per_epoch=3, verbose=0), "`steps_per_epoch` applies to generator"),
    (lambda m, x, y: m.fit(iter([(x[:4], y[:4]), (x[:4].reshape(4, 5, 1, 1), y[:4])]), verbose=0),
     r"x of batch 1: expected shape \(None, 5\), but input has incompatible shape \(None, 5, 1, 1\)"),
    (lambda m, x, y: m.fit(iter([(x[:4], y[:4]), (x[:4], y[:3])]), verbose=0), "'y' sizes: 3"),
    (lambda m, x, y: m.fit(iter([x[:4]]), verbose=0), "batch 0 is a ndarray, expected a tuple"),
    (lambda m, x, y: m.fit(iter([(x[:4], [y[:4], y[:4]])]), verbose=0), "multi-output"),
    (lambda m, x, y: m.fit(x, [y, y], verbose=0), "y: got a list of 2 arrays"),
    (lambda m, x, y: m.evaluate(iter([]), verbose=0), "yielded no batches"),
])
def test_stream_errors_name_the_cause(call, match):
    m, x, y = setup()
    with pytest.raises(ValueError, match=match):
        call(m, x, y)


def test_multi_output_functional_model_is_named_as_such():
    i = mnistc.Input((5,))
    with pytest.raises(ValueError, match="got 2 outputs. Multi-input and multi-output models are not supported"):
        mnistc.Model(i, [layers.Dense(2)(i), layers.Dense(3)(i)])
