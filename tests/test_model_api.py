"""The Keras-shaped model API: building, shapes, weights as views, summary, fit/evaluate/predict,
History, determinism and fine-tuning, on small synthetic data."""
import warnings

import numpy as np
import pytest

import mnistc
from mnistc import layers


def blobs(n=300, d=20, k=3, seed=0):
    """k well-separated Gaussian clusters in d dims, float32, labels 0..k-1."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (k, d))
    y = rng.integers(0, k, n)
    x = (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32) / 5
    return x, y.astype(np.int64)


def mlp(d=20, k=3, hidden=16, head="softmax"):
    return mnistc.Sequential([mnistc.Input((d,)), layers.Dense(hidden, activation="relu"),
                              layers.Dense(k, activation=head)])


def compiled(**kw):
    m = mlp(**kw)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_seed_mlp_param_counts_and_summary(capsys):
    model = mnistc.Sequential([mnistc.Input((28, 28)), layers.Flatten(), layers.Dense(128, activation="relu"),
                               layers.Dense(10)])
    assert [type(l).__name__ for l in model.layers] == ["Flatten", "Dense", "Dense"]
    assert model.count_params() == 101_770
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 101,770 (397.54 KB)" in out
    assert "Trainable params: 101,770 (397.54 KB)" in out
    assert "Non-trainable params: 0 (0.00 B)" in out
    assert "(None, 784)" in out and "100,480" in out and "1,290" in out
    model.layers[1].trainable = False
    model.summary()
    out = capsys.readouterr().out
    assert "Trainable params: 1,290" in out and "Non-trainable params: 100,480" in out


def test_optimizer_params_in_summary_after_fit(capsys):
    model = mnistc.Sequential([mnistc.Input((28, 28)), layers.Flatten(), layers.Dense(128, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((64, 28, 28), dtype=np.float32)
    model.fit(x, np.arange(64) % 10, epochs=1, verbose=0)
    model.summary()
    out = capsys.readouterr().out
    assert "Optimizer params: 203,542" in out
    assert "Total params: 305,312" in out


def test_legacy_input_shape_and_layers_property():
    model = mnistc.Sequential([layers.Flatten(input_shape=(28, 28)), layers.Dense(4)])
    assert model.built and model.output_shape == (None, 4)
    assert len(model.layers) == 2
    with pytest.raises(AttributeError):
        model.layers = []


def test_auto_names_are_unique_and_snake_case():
    a, b = layers.Dense(2), layers.Dense(2)
    assert a.name.startswith("dense") and b.name.startswith("dense") and a.name != b.name
    with pytest.raises(ValueError, match="unique names"):
        mnistc.Sequential([layers.Dense(2, name="x"), layers.Dense(2, name="x")])


def test_unbuilt_model_builds_on_first_fit():
    x, y = blobs()
    model = mnistc.Sequential([layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")])
    assert not model.built
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.built and model.layers[0].kernel.shape == (20, 8)


def test_weights_are_views_updated_in_place_by_fit():
    x, y = blobs()
    model = compiled()
    kernel = model.layers[0].kernel
    before = kernel.copy()
    model.fit(x, y, epochs=1, verbose=0)
    assert model.layers[0].kernel is kernel
    assert np.shares_memory(kernel, model._plan.params)
    assert not np.array_equal(kernel, before)


def test_weights_and_their_gradients_start_on_cache_lines():
    # the kernels' vector loads of weight rows must not straddle cache lines; with 13 hidden units
    # (a 20x13 kernel) the later weights are off a 64-byte boundary unless the layout pads them
    x, y = blobs()
    model = compiled(hidden=13)
    model.fit(x, y, epochs=1, verbose=0)
    plan = model._plan
    for layer in model.layers:
        for w in layer.weights:
            assert w.ctypes.data % 64 == 0, (layer.name, w.shape)
    assert plan.grads.ctypes.data % 64 == 0 and plan.params.ctypes.data % 64 == 0


def test_get_weights_copies_and_set_weights_checks():
    model = mlp()
    w = model.get_weights()
    assert [a.shape for a in w] == [(20, 16), (16,), (16, 3), (3,)]
    w[0][...] = 7
    assert not np.any(model.layers[0].kernel == 7)
    with pytest.raises(ValueError, match="expecting 4 weights"):
        model.set_weights(w[:3])
    before = model.get_weights()
    bad = [a.copy() for a in w]
    bad[3] = np.zeros(4)
    with pytest.raises(ValueError, match=r"\(3,\) is not compatible with provided weight shape \(4,\)"):
        model.set_weights(bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    model.set_weights(w)
    assert np.all(model.layers[0].kernel == 7)


def test_fit_history_keys_and_values():
    x, y = blobs()
    model = compiled()
    h = model.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
    assert list(h.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 and all(isinstance(f, float) for f in v) for v in h.history.values())
    assert h.epoch == [0, 1, 2]
    assert h.params == {"verbose": 0, "epochs": 3, "steps": 8}  # 240 train samples / 32
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert model.history is h


def test_validation_split_takes_the_last_fraction_before_shuffling():
    x, y = blobs(100)
    model = compiled()
    h = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0, shuffle=False)
    expected = model.evaluate(x[75:], y[75:], verbose=0, return_dict=True)
    assert h.history["val_loss"][0] == pytest.approx(expected["loss"], rel=1e-6)
    with pytest.raises(ValueError, match="not sufficient to split"):
        model.fit(x[:1], y[:1], validation_split=0.5, verbose=0)


def test_evaluate_return_forms():
    x, y = blobs()
    model = compiled()
    loss, acc = model.evaluate(x, y, verbose=0)
    d = model.evaluate(x, y, verbose=0, return_dict=True)
    assert d == {"accuracy": acc, "loss": loss}
    assert 0 <= acc <= 1
    model.compile("adam", "sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, verbose=0), float)
    with pytest.raises(ValueError, match="Arguments not recognized"):
        model.evaluate(x, y, verbose=0, bogus=1)


def test_evaluate_matches_numpy_forward():
    x, y = blobs()
    model = compiled()
    w1, b1, w2, b2 = [a.astype(np.float64) for a in model.get_weights()]
    h = np.maximum(x @ w1 + b1, 0)
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ref_loss = -np.log(p[np.arange(len(y)), y]).mean()
    ref_acc = (p.argmax(1) == y).mean()
    loss, acc = model.evaluate(x, y, batch_size=7, verbose=0)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert acc == pytest.approx(ref_acc)
    np.testing.assert_allclose(model.predict(x, verbose=0), p, rtol=1e-5, atol=1e-6)


def test_predict_shapes_and_batch_independence():
    x, _ = blobs(70)
    model = mlp()
    p1 = model.predict(x, batch_size=1, verbose=0)
    p2 = model.predict(x, batch_size=64, verbose=0)
    assert p1.dtype == np.float32 and p1.shape == (70, 3)
    np.testing.assert_allclose(p1, p2, rtol=1e-6, atol=1e-7)
    one = model(x[:1]).numpy()
    np.testing.assert_allclose(one, p1[:1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.predict_on_batch(x), p2, rtol=1e-6, atol=1e-7)


def test_train_on_batch_and_test_on_batch():
    x, y = blobs(64)
    model = compiled()
    before = model.test_on_batch(x, y)
    losses = [model.train_on_batch(x, y)[0] for _ in range(30)]
    assert losses[0] == pytest.approx(before[0], rel=1e-5)   # measured before the update
    assert losses[-1] < losses[0]
    assert model.optimizer.iterations == 30
    d = model.train_on_batch(x, y, return_dict=True)
    assert set(d) == {"loss", "accuracy"}


def test_same_seed_same_bits_different_seed_differs():
    x, y = blobs()

    def run(seed):
        mnistc.utils.set_random_seed(seed)
        model = mnistc.Sequential([mnistc.Input((20,)), layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                                   layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        h = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        return model.get_weights(), h.history["loss"]

    w1, l1 = run(7)
    w2, l2 = run(7)
    w3, _ = run(8)
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2)) and l1 == l2
    assert not np.array_equal(w1[0], w3[0])


def test_fine_tuning_freezes_weights_bit_identical_and_skips_optimizer_state():
    x, y = blobs()
    model = compiled()
    model.fit(x, y, epochs=1, verbose=0)
    body = model.layers[0]
    body.trainable = False
    assert body.trainable_weights == [] and len(body.non_trainable_weights) == 2
    frozen = [w.copy() for w in body.weights]
    model.compile(optimizer=mnistc.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    head_before = model.layers[1].get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(frozen, body.weights))
    assert not np.array_equal(head_before[0], model.layers[1].kernel)
    n_head = 16 * 3 + 3
    assert [s.size for s in model.optimizer._slots] == [n_head, n_head]


def test_trainable_change_without_recompile_warns_once_and_keeps_compiled_flags():
    x, y = blobs()
    model = compiled()
    model.layers[0].trainable = False
    before = model.layers[0].kernel.copy()
    with pytest.warns(UserWarning, match="changed since the model was compiled"):
        model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(before, model.layers[0].kernel)  # compiled flags still apply (Keras contract)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, epochs=1, verbose=0)                      # once only


def test_replace_the_head_keeps_the_body_weights():
    x, y = blobs()
    base = compiled()
    base.fit(x, y, epochs=1, verbose=0)
    body = base.layers[0]
    kernel = body.kernel.copy()
    new = mnistc.Sequential([mnistc.Input((20,)), body, layers.Dense(2, activation="softmax")])
    body.trainable = False
    new.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    new.fit(x, y % 2, epochs=2, verbose=0)
    assert np.array_equal(body.kernel, kernel)
    assert new.evaluate(x, y % 2, verbose=0)[1] > 0.5


def test_functional_model_matches_sequential():
    inputs = mnistc.Input((20,))
    h = layers.Dense(16, activation="relu")(inputs)
    outputs = layers.Dense(3, activation="softmax")(h)
    fmodel = mnistc.Model(inputs, outputs)
    smodel = mlp()
    smodel.set_weights(fmodel.get_weights())
    x, _ = blobs(20)
    np.testing.assert_array_equal(fmodel.predict(x, verbose=0), smodel.predict(x, verbose=0))
    with pytest.raises(ValueError, match="not computed from `inputs`"):
        mnistc.Model(mnistc.Input((20,)), outputs)


def test_uint8_images_with_rescaling_match_float_input():
    rng = np.random.default_rng(1)
    x8 = rng.integers(0, 256, (50, 6, 6), dtype=np.uint8)
    y = rng.integers(0, 4, 50)
    model = mnistc.Sequential([mnistc.Input((6, 6)), layers.Rescaling(1 / 255), layers.Flatten(),
                               layers.Dense(4, activation="softmax")])
    p8 = model.predict(x8, verbose=0)
    pf = model.predict(x8.astype(np.float32), verbose=0)
    np.testing.assert_array_equal(p8, pf)
    model.compile("adam", "sparse_categorical_crossentropy")
    x_copy = x8.copy()
    model.fit(x8, y, epochs=1, verbose=0)
    assert np.array_equal(x8, x_copy)


def test_one_hot_targets_with_categorical_crossentropy():
    x, y = blobs()
    model = mlp()
    model.compile("adam", mnistc.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    h = model.fit(x, mnistc.utils.to_categorical(y, 3), epochs=5, verbose=0)
    assert h.history["accuracy"][-1] > 0.8


def test_binary_head_with_sigmoid_and_accuracy():
    x, y = blobs(k=2)
    model = mnistc.Sequential([mnistc.Input((20,)), layers.Dense(8, activation="relu"),
                               layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, epochs=10, verbose=0)
    assert h.history["accuracy"][-1] > 0.9


@pytest.mark.parametrize("opt", ["sgd", "rmsprop", "adam", "adamw",
                                 mnistc.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                                 mnistc.optimizers.RMSprop(centered=True, momentum=0.5)])
def test_every_optimizer_trains(opt):
    x, y = blobs()
    model = mlp()
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, epochs=8, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_default_optimizer_is_rmsprop():
    model = mlp()
    model.compile(loss="mse")
    assert isinstance(model.optimizer, mnistc.optimizers.RMSprop)


def test_import_as_keras_tutorial_code_runs():
    keras = mnistc
    x, y = blobs(200, d=16)
    x = x.reshape(-1, 4, 4)
    model = keras.models.Sequential([
        keras.layers.Flatten(input_shape=(4, 4)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(3),
    ])
    predictions = model(x[:1]).numpy()
    assert predictions.shape == (1, 3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert float(loss_fn(y[:1], predictions).numpy()) > 0
    model.compile(optimizer="adam", loss=loss_fn, metrics=["accuracy"])
    model.fit(x, y, epochs=3, verbose=0)
    assert len(model.evaluate(x, y, verbose=0)) == 2
