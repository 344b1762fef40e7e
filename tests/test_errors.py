"""Every user mistake gets a clear error naming the fix, and leaves the model and arrays as they were."""
import numpy as np
import pytest

import mnistc
from mnistc import layers


def setup():
    rng = np.random.default_rng(0)
    x = rng.random((40, 8), dtype=np.float32)
    y = rng.integers(0, 3, 40)
    model = mnistc.Sequential([mnistc.Input((8,)), layers.Dense(5, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, x, y


def unchanged(model, x, y, fn):
    """Run fn (which must raise), then assert weights, optimizer state and arrays are untouched."""
    w, xc, yc = model.get_weights(), x.copy(), y.copy()
    it = model.optimizer.iterations if model.optimizer else None
    fn()
    assert all(np.array_equal(a, b) for a, b in zip(w, model.get_weights()))
    assert np.array_equal(x, xc, equal_nan=True) and np.array_equal(y, yc)
    if it is not None:
        assert model.optimizer.iterations == it


def raises(exc, match, fn):
    def run():
        with pytest.raises(exc, match=match):
            fn()
    return run


def test_integer_labels_with_categorical_crossentropy_names_the_fix():
    model, x, y = setup()
    model.compile("adam", "categorical_crossentropy")
    unchanged(model, x, y, raises(ValueError, "sparse_categorical_crossentropy.*to_categorical",
                                  lambda: model.fit(x, y, verbose=0)))
    unchanged(model, x, y, raises(ValueError, "same shape", lambda: model.fit(x, y[:, None], verbose=0)))


def test_one_hot_labels_with_sparse_loss():
    model, x, y = setup()
    onehot = mnistc.utils.to_categorical(y, 3)
    unchanged(model, x, y, raises(ValueError, "one-hot.*categorical_crossentropy",
                                  lambda: model.fit(x, onehot, verbose=0)))


def test_fit_before_compile():
    model = mnistc.Sequential([mnistc.Input((8,)), layers.Dense(3)])
    x, y = np.zeros((4, 8), np.float32), np.zeros(4, int)
    for call in (lambda: model.fit(x, y), lambda: model.evaluate(x, y), lambda: model.train_on_batch(x, y)):
        with pytest.raises(ValueError, match="You must call `compile\\(\\)` before using the model"):
            call()
    assert model.predict(x, verbose=0).shape == (4, 3)  # predict needs no compile


def test_compile_without_loss():
    model, x, y = setup()
    model.compile("adam")
    with pytest.raises(ValueError, match="No loss to compute"):
        model.fit(x, y, verbose=0)


def test_wrong_input_shape_says_expected_and_got():
    model, x, y = setup()
    bad = np.zeros((40, 7), np.float32)
    unchanged(model, x, y, raises(ValueError, r"expected shape \(None, 8\).*\(None, 7\)",
                                  lambda: model.fit(bad, y, verbose=0)))
    with pytest.raises(ValueError, match=r"expected shape \(None, 8\).*\(None, 2, 4\)"):
        model.predict(np.zeros((3, 2, 4), np.float32), verbose=0)


def test_length_mismatch():
    model, x, y = setup()
    unchanged(model, x, y, raises(ValueError, "Data cardinality is ambiguous.*'x' sizes: 40\n'y' sizes: 39",
                                  lambda: model.fit(x, y[:39], verbose=0)))


@pytest.mark.parametrize("bad_label, match", [(3, r"labels must be in \[0, 3\).*found 3 at index 5"),
                                              (-1, r"found -1 at index 5")])
def test_labels_out_of_range(bad_label, match):
    model, x, y = setup()
    y = y.copy()
    y[5] = bad_label
    unchanged(model, x, y, raises(ValueError, match, lambda: model.fit(x, y, verbose=0)))


def test_non_integer_labels():
    model, x, y = setup()
    yf = y.astype(np.float64) + 0.5
    unchanged(model, x, yf, raises(ValueError, "integer class ids", lambda: model.fit(x, yf, verbose=0)))
    ys = np.array(["a"] * 40)
    with pytest.raises(TypeError, match="real numeric array"):
        model.fit(x, ys, verbose=0)


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_nan_or_inf_in_x(value, word):
    model, x, y = setup()
    x = x.copy()
    x[3, 2] = value
    unchanged(model, x, y, raises(ValueError, f"1 {word}|{word}", lambda: model.fit(x, y, verbose=0)))
    x64 = x.astype(np.float64)
    with pytest.raises(ValueError, match=word):
        model.predict(x64, verbose=0)


def test_empty_x():
    model, x, y = setup()
    with pytest.raises(ValueError, match="0 samples"):
        model.fit(x[:0], y[:0], verbose=0)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(batch_size=0), ValueError, "`batch_size` must be >= 1, got 0"),
    (dict(batch_size=2.5), TypeError, "`batch_size` must be an integer"),
    (dict(epochs=-1), ValueError, "`epochs` must be >= 0, got -1"),  # 0 trains nothing, as in Keras
    (dict(epochs=True), TypeError, "`epochs` must be an integer"),
    (dict(verbose=3), ValueError, "`verbose` must be"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(sample_weight=np.ones(39)), ValueError, "'sample_weight' sizes: 39"),
])
def test_bad_fit_arguments(kwargs, exc, match):
    model, x, y = setup()
    unchanged(model, x, y, raises(exc, match, lambda: model.fit(x, y, **{"verbose": 0, **kwargs})))


@pytest.mark.parametrize("make, match", [
    (lambda: mnistc.optimizers.Adam(float("nan")), "learning_rate must be a finite number > 0"),
    (lambda: mnistc.optimizers.Adam(-1e-3), "learning_rate must be a finite number > 0"),
    (lambda: mnistc.optimizers.Adam(0.0), "learning_rate must be a finite number > 0"),
    (lambda: mnistc.optimizers.Adam(1), "should be a float"),
    (lambda: mnistc.optimizers.Adam(beta_1=1.0), r"`beta_1` must be in \[0, 1\)"),
    (lambda: mnistc.optimizers.Adam(beta_2=float("nan")), r"`beta_2` must be in \[0, 1\)"),
    (lambda: mnistc.optimizers.Adam(epsilon=0.0), "`epsilon` must be a finite number > 0"),
    (lambda: mnistc.optimizers.SGD(momentum=0), "momentum` must be a float between"),
    (lambda: mnistc.optimizers.RMSprop(rho=1.5), r"`rho` must be in \[0, 1\)"),
])
def test_bad_optimizer_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_setting_a_bad_learning_rate_later_is_refused():
    opt = mnistc.optimizers.Adam()
    with pytest.raises(ValueError, match="finite"):
        opt.learning_rate = float("inf")
    assert opt.learning_rate == 1e-3


@pytest.mark.parametrize("make, match", [
    (lambda: layers.Dense(4, activation="relux"), "Could not interpret activation function identifier: 'relux'"),
    (lambda: layers.Dense(0), "expected a positive integer"),
    (lambda: layers.Dense(4, kernel_initializer="nope"), "Could not interpret initializer"),
    (lambda: layers.Dense(4, units_typo=3), "Unrecognized keyword arguments passed to Dense"),
    (lambda: layers.Dropout(1.5), "between 0 and 1"),
    (lambda: mnistc.losses.get("cross_entropyy"), "Could not interpret loss identifier"),
    (lambda: mnistc.optimizers.get("adamm"), "Could not interpret optimizer identifier"),
    (lambda: mnistc.metrics.get("f1"), "Unsupported metric"),
])
def test_unknown_names(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_dense_on_unflattened_images_names_flatten():
    # Dense maps the last axis (Keras): (28, 28) -> (28, 10) builds, but a classifier's loss names Flatten
    with pytest.raises(ValueError, match="Add a Flatten\\(\\) layer"):
        mnistc.Sequential([mnistc.Input((28, 28)), layers.Dense(10, activation="softmax")])
    model = mnistc.Sequential([mnistc.Input((28, 28)), layers.Dense(10)])
    assert model.output_shape == (None, 28, 10)
    model.compile("adam", mnistc.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.zeros((4, 28, 28), np.float32), np.zeros(4, np.int64)
    unchanged(model, x, y, raises(ValueError, "Add a Flatten\\(\\) layer before the last Dense layer",
                                  lambda: model.fit(x, y, verbose=0)))


def test_binary_crossentropy_on_multiclass_labels():
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 8), dtype=np.float32), rng.integers(0, 10, 20)
    model = mnistc.Sequential([mnistc.Input((8,)), layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    unchanged(model, x, y, raises(ValueError, r"targets must be in \[0, 1\].*sparse_categorical_crossentropy",
                                  lambda: model.fit(x, y, verbose=0)))


def test_warns_when_probabilities_loss_follows_a_linear_head():
    model, x, y = setup()
    model = mnistc.Sequential([mnistc.Input((8,)), layers.Dense(3)])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="from_logits=True"):
        model.fit(x, y, verbose=0)


@pytest.mark.parametrize("last", [layers.ReLU, layers.LeakyReLU])
def test_warns_when_probabilities_loss_follows_a_relu_layer(last):
    """The head check looks at the last layer that computes, an activation layer of its own included."""
    _, x, y = setup()
    model = mnistc.Sequential([mnistc.Input((8,)), layers.Dense(3, activation="softmax"), last()])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="last layer has activation '(leaky_)?relu'.*from_logits=True"):
        model.fit(x, y, verbose=0)


def test_warns_when_logits_loss_follows_softmax():
    model, x, y = setup()
    model.compile("adam", mnistc.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(UserWarning, match="does not represent logits"):
        model.fit(x, y, verbose=0)


def test_warns_when_inputs_look_unscaled():
    model, x, y = setup()
    with pytest.warns(UserWarning, match="look unscaled.*Rescaling"):
        model.fit(x * 255, y, verbose=0)


def test_complex_and_object_inputs_are_type_errors():
    model, x, y = setup()
    with pytest.raises(TypeError, match="complex"):
        model.predict(x.astype(np.complex64), verbose=0)
    with pytest.raises(TypeError, match="object"):
        model.predict(np.empty((2, 8), object), verbose=0)


def test_accepted_layouts_give_bit_identical_predictions():
    model, x, _ = setup()
    ref = model.predict(x, verbose=0)
    for variant in (x.astype(np.float64), np.asfortranarray(x), x.astype(">f4"),
                    np.concatenate([x, x], axis=1)[:, :8], x.tolist()):
        np.testing.assert_array_equal(model.predict(variant, verbose=0), ref)
    ro = x.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(model.predict(ro, verbose=0), ref)
    strided = np.repeat(x, 2, axis=0)[::2]
    np.testing.assert_array_equal(model.predict(strided, verbose=0), ref)


def test_second_fit_while_training_is_refused():
    model, x, y = setup()
    errors = []

    class Reenter(mnistc.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                try:
                    model.fit(x, y, verbose=0)
                except RuntimeError as e:
                    errors.append(str(e))

    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[Reenter()])
    assert errors == ["fit() is already running on this model"]


def test_fit_refuses_non_finite_weights_naming_them():
    model, x, y = setup()
    w = model.get_weights()
    w[0][0, 0] = np.nan
    model.set_weights(w)
    with pytest.raises(ValueError, match=r"Cannot train: the weights \['dense.*/kernel'\] hold 1 NaN"):
        model.fit(x, y, verbose=0)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(w, model.get_weights()))
    assert model.optimizer.iterations == 0
