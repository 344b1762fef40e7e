"""Keras idioms tutorial code relies on: fit(epochs=0), a functional model's InputLayer in
`layers`, model.inputs / outputs, clone_model, model_from_json and backend.clear_session."""
import json

import numpy as np
import pytest

import mnistc
from mnistc import layers


def functional(input_name="pixels"):
    inputs = mnistc.Input((4, 3), name=input_name)
    h = layers.Dense(6, activation="relu", name="hidden")(layers.Flatten(name="flat")(inputs))
    outputs = layers.Dense(3, activation="softmax", name="head")(layers.Dropout(0.25, name="drop")(h))
    return mnistc.Model(inputs, outputs, name="net")


def sequential():
    return mnistc.Sequential([mnistc.Input((4, 3)), layers.Flatten(name="flat"),
                              layers.Dense(6, activation="relu", name="hidden"),
                              layers.Dense(3, activation="softmax", name="head")], name="stack")


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 4, 3), dtype=np.float32), rng.integers(0, 3, n)


# --- fit(epochs=0) ---

@pytest.mark.parametrize("epochs, initial_epoch", [(0, 0), (2, 2), (1, 3)])
def test_fit_with_no_epoch_to_run_returns_an_empty_history_and_changes_nothing(epochs, initial_epoch):
    model = sequential()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data()
    before = model.get_weights()
    seen = []
    cb = mnistc.callbacks.LambdaCallback(on_train_begin=lambda logs: seen.append("begin"),
                                         on_epoch_end=lambda epoch, logs: seen.append(epoch),
                                         on_train_end=lambda logs: seen.append("end"))
    history = model.fit(x, y, epochs=epochs, initial_epoch=initial_epoch, callbacks=[cb], verbose=0)
    assert isinstance(history, mnistc.callbacks.History) and model.history is history
    assert history.history == {} and history.epoch == []
    assert history.params == {"verbose": 0, "epochs": epochs, "steps": 2}
    assert seen == ["begin", "end"]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_fit_with_epochs_zero_still_checks_its_arguments():
    model = sequential()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = data()
    with pytest.raises(ValueError, match="cardinality"):
        model.fit(x, y[:-1], epochs=0, verbose=0)
    with pytest.raises(ValueError, match="`epochs` must be >= 0, got -1"):
        model.fit(x, y, epochs=-1, verbose=0)


# --- a functional model's layers start with its InputLayer ---

def test_functional_layers_start_with_the_input_layer_and_a_sequentials_do_not():
    model = functional()
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.layers[0].name == "pixels" and model.get_layer(index=0) is model.layers[0]
    assert model.get_layer("pixels") is model.layers[0]
    assert [type(l).__name__ for l in sequential().layers] == ["Flatten", "Dense", "Dense"]


def test_the_input_layer_has_no_weights_and_changes_no_count():
    model = functional()
    assert model.layers[0].weights == [] and model.layers[0].count_params() == 0
    assert model.count_params() == 12 * 6 + 6 + 6 * 3 + 3
    assert len(model.get_weights()) == len(model.weights) == 4
    assert len(model._plan.layers) == 3  # hidden, dropout, head: the InputLayer and Flatten send no C row


def test_functional_model_with_its_input_layer_trains_freezes_saves_and_summarises(tmp_path, capsys):
    mnistc.utils.set_random_seed(3)
    model = functional()
    x, y = data()
    model.trainable = False
    assert not model.trainable and not any(l.trainable for l in model.layers[1:])
    model.trainable = True
    model.get_layer("hidden").trainable = False
    frozen = model.get_layer("hidden").kernel.copy()
    head = model.get_layer("head").kernel.copy()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    assert np.array_equal(model.get_layer("hidden").kernel, frozen)
    assert not np.array_equal(model.get_layer("head").kernel, head)
    model.summary(show_trainable=True)
    out = capsys.readouterr().out
    assert "pixels (InputLayer)" in out and "(None, 4, 3)" in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert rows["pixels"].rstrip("│ ").endswith("-") and rows["hidden"].rstrip("│ ").endswith("N")
    assert "Trainable params: 21" in out and "Non-trainable params: 78" in out
    model.save(tmp_path / "f.keras")
    loaded = mnistc.load_model(tmp_path / "f.keras")
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    model.save_weights(tmp_path / "w.weights.npz")
    fresh = functional()
    fresh.load_weights(tmp_path / "w.weights.npz")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_functional_model_inside_a_sequential_brings_its_layers_not_its_input():
    inner = functional()
    outer = mnistc.Sequential([inner, layers.Dense(2, name="extra")])
    assert [l.name for l in outer.layers] == ["flat", "hidden", "drop", "head", "extra"]
    assert outer.input_shape == (None, 4, 3)


def test_input_names_stay_unique_within_a_model():
    inputs = mnistc.Input((3,), name="same")
    with pytest.raises(ValueError, match="unique names"):
        mnistc.Model(inputs, layers.Dense(2, name="same")(inputs))


# --- model.inputs / model.outputs ---

def test_functional_inputs_and_outputs_are_the_tensors_it_was_made_from():
    inputs = mnistc.Input((5,))
    outputs = layers.Dense(2)(layers.Dense(4)(inputs))
    model = mnistc.Model(inputs=[inputs], outputs=[outputs])
    assert model.inputs == [inputs] and model.outputs == [outputs]
    assert model.input is inputs and model.output is outputs
    assert isinstance(inputs, mnistc.layers.KerasTensor)


def test_sequential_inputs_and_outputs_follow_its_layers():
    model = sequential()
    assert [t.shape for t in model.inputs] == [(None, 4, 3)] and [t.shape for t in model.outputs] == [(None, 3)]
    assert model.inputs[0] is model.inputs[0]
    model.pop()
    assert model.outputs[0].shape == (None, 6)
    model.add(layers.Dense(5))
    assert model.output.shape == (None, 5) and model.output._layer is model.layers[-1]
    with pytest.raises(AttributeError, match="no defined inputs yet"):
        mnistc.Sequential([layers.Dense(2)]).inputs


def test_a_model_built_from_its_own_inputs_and_outputs_computes_the_same():
    model = sequential()
    again = mnistc.Model(model.inputs, model.outputs)
    x, _ = data(8)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_feature_extractor_from_a_layers_output_shares_the_trained_layers():
    """`Model(model.inputs, model.layers[k].output)`: the part of a trained model up to layer k."""
    model = sequential()
    x, y = data(40)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    hidden = model.layers[-2]
    extractor = mnistc.Model(inputs=model.inputs, outputs=hidden.output)
    assert extractor.layers[1:] == model.layers[:-1]
    features = extractor.predict(x, verbose=0)
    head = mnistc.Sequential([mnistc.Input(features.shape[1:]), model.layers[-1]])
    np.testing.assert_array_equal(head.predict(features, verbose=0), model.predict(x, verbose=0))
    assert hidden.input._layer is model.layers[-3] and model.layers[0].input is model.inputs[0]


def test_a_layer_never_called_has_no_output_and_the_first_call_stays():
    dense = layers.Dense(2)
    with pytest.raises(AttributeError, match="never been called and thus has no defined output"):
        dense.output
    with pytest.raises(AttributeError, match="no defined input"):
        dense.input
    first = dense(mnistc.Input((3,)))
    dense(mnistc.Input((3,)))
    assert dense.output is first and dense.input is first._parent


# --- clone_model ---

@pytest.mark.parametrize("make", [functional, sequential])
def test_clone_model_has_the_same_structure_new_layers_and_fresh_weights(make):
    mnistc.utils.set_random_seed(5)
    model = make()
    model.get_layer("hidden").trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    clone = mnistc.models.clone_model(model)
    assert type(clone) is type(model) and clone.name == model.name and not clone.compiled
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert all(a is not b for a, b in zip(clone.layers, model.layers))
    assert clone.get_config() == model.get_config()
    assert clone.get_layer("hidden").trainable is False
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    assert not np.array_equal(clone.get_layer("hidden").kernel, model.get_layer("hidden").kernel)
    clone.set_weights(model.get_weights())
    x, y = data()
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    kernel = model.get_layer("head").kernel.copy()
    clone.compile("adam", "sparse_categorical_crossentropy")
    clone.fit(x, y, epochs=1, verbose=0)
    assert np.array_equal(model.get_layer("head").kernel, kernel)  # training the clone leaves the original


def test_clone_model_of_an_unbuilt_sequential_and_with_a_clone_function():
    model = mnistc.Sequential([layers.Dense(4, name="a"), layers.Dense(2, name="b")])
    clone = mnistc.models.clone_model(model)
    assert not clone.built and [l.name for l in clone.layers] == ["a", "b"]
    renamed = mnistc.models.clone_model(
        sequential(), clone_function=lambda l: type(l).from_config({**l.get_config(), "name": l.name + "_2"}))
    assert [l.name for l in renamed.layers] == ["flat_2", "hidden_2", "head_2"]
    with pytest.raises(ValueError, match="mnistc Model"):
        mnistc.models.clone_model(layers.Dense(2))
    with pytest.raises(ValueError, match="input_tensors"):
        mnistc.models.clone_model(model, input_tensors=[mnistc.Input((3,))])


# --- model_from_json ---

@pytest.mark.parametrize("make", [functional, sequential])
def test_model_from_json_reads_to_json(make):
    model = make()
    text = model.to_json()
    assert json.loads(text)["class_name"] == ("Functional" if make is functional else "Sequential")
    again = mnistc.models.model_from_json(text)
    assert type(again) is type(model) and again.to_json() == text
    assert [l.name for l in again.layers] == [l.name for l in model.layers]
    again.set_weights(model.get_weights())
    x, _ = data(8)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_from_json_refuses_what_is_not_a_model():
    with pytest.raises(ValueError, match="JSON string"):
        mnistc.models.model_from_json("{not json")
    with pytest.raises(mnistc.FormatError, match="unknown model class"):
        mnistc.models.model_from_json(json.dumps({"class_name": "Model", "config": {}}))


# --- backend.clear_session ---

def test_clear_session_resets_the_automatic_names():
    mnistc.backend.clear_session()
    first = [layers.Dense(2).name, layers.Dense(2).name, mnistc.Sequential().name]
    kept = layers.Dense(3)
    mnistc.backend.clear_session()
    again = [layers.Dense(2).name, layers.Dense(2).name, mnistc.Sequential().name]
    assert first == again == ["dense", "dense_1", "sequential"]
    assert kept.name == "dense_2"
