"""ReLU (Keras's negative_slope, max_value, threshold), LeakyReLU and Normalization (adapt, invert,
axis=-1 and axis=None, or given mean and variance).

Each layer as the one layer of a small model against the float64 reference (reference.py) and, for
dx, against central differences (test_conv_layers.check_layer). Keras's outputs: bit for bit against
Keras 3's op sequence written out in float32 NumPy (keras/src/activations/activations.py ReLU.static_call,
keras/src/layers/preprocessing/normalization.py call), and against Keras itself where it is installed.
adapt() against float64 NumPy moments. A LeakyReLU MLP with a Normalization first layer on real MNIST.
"""
import os

import numpy as np
import pytest

import mnistc
import reference as R
from mnistc import _C
from test_conv_layers import c_loss_and_grad, check_layer

L = mnistc.layers
EPSILON = np.float32(1e-7)  # keras.config.epsilon()


# --- Keras's computations, op by op in float32 (the numpy backend) ---

def keras_relu_f32(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """keras/src/activations/activations.py ReLU.static_call with backend/numpy/nn.py's relu and
    leaky_relu."""
    x = np.asarray(x, np.float32)
    f = np.float32
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return np.maximum(x, f(negative_slope) * x)
        negative_part = np.maximum(-x + f(threshold), f(0)) if threshold != 0 else np.maximum(-x, f(0))
    y = np.where(x > f(threshold), x, f(0)) if threshold != 0 else np.maximum(x, f(0))
    if max_value is not None:
        y = np.clip(y, f(0), f(max_value))
    if negative_slope != 0.0:
        y = y - f(negative_slope) * negative_part
    return y


def keras_normalization_f32(x, mean, variance, invert=False):
    """keras/src/layers/preprocessing/normalization.py Normalization.call."""
    x, mean, variance = (np.asarray(a, np.float32) for a in (x, mean, variance))
    d = np.maximum(np.sqrt(variance), EPSILON)
    return mean + x * d if invert else (x - mean) / d


def c_predict(model, x):
    """The C forward of x (also where predict refuses x: infinities, NaN), shaped as the outputs."""
    plan = model._get_plan()
    out = np.empty((len(x), int(np.prod(model.output_shape[1:]))), np.float32)
    _C.predict(plan.layers, plan.lfloats, plan.params, np.ascontiguousarray(x, np.float32).reshape(len(x), -1),
               out, 1)
    return out.reshape(len(x), *model.output_shape[1:])


def predict_one(layer, x):
    return c_predict(mnistc.Sequential([mnistc.Input(x.shape[1:]), layer]), x)


def values_with_edges(rng, n, edges):
    """n standard-normal float32 values times 4, with the `edges` (kinks, infinities, zeros) among them."""
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    x[:len(edges)] = edges
    return x


RELU_ARGS = [
    dict(),
    dict(max_value=6.0),
    dict(negative_slope=0.3),
    dict(negative_slope=0.5, max_value=1.0, threshold=0.7),
    dict(threshold=0.5),
    dict(negative_slope=0.2, threshold=2.0),
    dict(negative_slope=0.1, max_value=0.3, threshold=1.0),  # max below the threshold
    dict(max_value=0.0),
]


# --- ReLU and LeakyReLU: Keras's arguments ---

def test_relu_and_leaky_relu_defaults_names_and_configs_are_keras():
    leaky, relu = L.LeakyReLU(), L.ReLU()
    assert leaky.negative_slope == 0.3  # Keras 3's LeakyReLU default (activations.leaky_relu's is 0.2)
    assert leaky.name.startswith("leaky_re_lu") and relu.name.startswith("re_lu")
    assert {k: v for k, v in leaky.get_config().items() if k != "name"} == {"trainable": True, "negative_slope": 0.3}
    assert {k: v for k, v in relu.get_config().items() if k != "name"} == {
        "trainable": True, "max_value": None, "negative_slope": 0.0, "threshold": 0.0}
    r = L.ReLU.from_config(L.ReLU(max_value=6, negative_slope=0.1, threshold=0.5).get_config())
    assert (r.max_value, r.negative_slope, r.threshold) == (6.0, 0.1, 0.5)
    assert L.LeakyReLU.from_config(L.LeakyReLU(0.05).get_config()).negative_slope == 0.05
    assert leaky.count_params() == 0 and relu.weights == []


def test_leaky_relu_takes_keras2_alpha_with_keras3_deprecation_warning():
    with pytest.warns(UserWarning, match="Argument `alpha` is deprecated. Use `negative_slope` instead."):
        layer = L.LeakyReLU(alpha=0.1)
    assert layer.negative_slope == 0.1 and "alpha" not in layer.get_config()


@pytest.mark.parametrize("cls,kwargs,what", [
    (L.LeakyReLU, dict(negative_slope=-0.1), "negative_slope"),
    (L.LeakyReLU, dict(negative_slope=None), "negative_slope"),
    (L.LeakyReLU, dict(negative_slope=float("nan")), "negative_slope"),
    (L.LeakyReLU, dict(negative_slope="0.3"), "negative_slope"),
    (L.ReLU, dict(max_value=-1.0), "max_value"),
    (L.ReLU, dict(max_value=float("nan")), "max_value"),
    (L.ReLU, dict(negative_slope=None), "negative_slope"),
    (L.ReLU, dict(negative_slope=-1), "negative_slope"),
    (L.ReLU, dict(threshold=-1.0), "threshold"),
    (L.ReLU, dict(threshold=None), "threshold"),
    (L.ReLU, dict(threshold=float("inf")), "threshold"),
])
def test_relu_arguments_are_checked_as_keras_does(cls, kwargs, what):
    with pytest.raises(ValueError, match=f"{what} of a {cls.__name__} layer cannot be None or a negative value"):
        cls(**kwargs)


@pytest.mark.parametrize("kwargs", RELU_ARGS)
@pytest.mark.parametrize("in_shape,B", [((7,), 5), ((3, 4, 2), 3)])
def test_relu_matches_reference_and_central_differences(kwargs, in_shape, B):
    check_layer(L.ReLU(**kwargs), in_shape, B, seed=RELU_ARGS.index(kwargs), fd_eps=1e-4)


@pytest.mark.parametrize("slope", [0.3, 0.0, 0.01, 1.0, 1.5])
def test_leaky_relu_matches_reference_and_central_differences(slope):
    check_layer(L.LeakyReLU(slope), (4, 6), 5, seed=int(slope * 100), fd_eps=1e-4)


@pytest.mark.parametrize("kwargs", RELU_ARGS)
def test_relu_is_keras_bit_for_bit(kwargs):
    rng = np.random.default_rng(3)
    edges = [0.0, -0.0, np.inf, -np.inf, kwargs.get("threshold", 0.0), kwargs.get("max_value") or 1.0,
             np.nextafter(np.float32(kwargs.get("threshold", 0.0)), np.float32(1))]
    x = values_with_edges(rng, 600, edges).reshape(100, 6)
    np.testing.assert_array_equal(predict_one(L.ReLU(**kwargs), x), keras_relu_f32(x, **kwargs))


@pytest.mark.parametrize("slope", [0.3, 0.2, 0.01, 1.0])
def test_leaky_relu_is_keras_bit_for_bit(slope):
    x = values_with_edges(np.random.default_rng(4), 600, [0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45])
    x = x.reshape(100, 6)
    got = predict_one(L.LeakyReLU(slope), x)
    np.testing.assert_array_equal(got, keras_relu_f32(x, negative_slope=slope))
    assert np.array_equal(np.signbit(got), np.signbit(keras_relu_f32(x, negative_slope=slope)))


def test_relu_keeps_nan_as_the_relu_activation_does():
    """Keras's numpy backend gives 0 for NaN above a threshold > 0 (np.where(x > t, x, 0)); mnistc keeps NaN
    whatever the arguments, as its relu activation does, so a NaN never turns into a plausible value."""
    x = np.array([[np.nan, 1.0]], np.float32)
    for layer in (L.ReLU(), L.ReLU(threshold=0.5), L.ReLU(max_value=1.0, negative_slope=0.2), L.LeakyReLU()):
        out = predict_one(layer, x)
        assert np.isnan(out[0, 0]) and out[0, 1] == keras_relu_f32(x[:, 1:], **_relu_kwargs(layer))[0, 0]


def _relu_kwargs(layer):
    if isinstance(layer, L.LeakyReLU):
        return dict(negative_slope=layer.negative_slope)
    return dict(negative_slope=layer.negative_slope, max_value=layer.max_value, threshold=layer.threshold)


def test_relu_derivative_at_the_kinks():
    """1 strictly between threshold and max_value, 0 from max_value on (TensorFlow's relu6, PyTorch's
    hardtanh), negative_slope at and below the threshold (the relu and leaky_relu activations' choice)."""
    layer = L.ReLU(max_value=2.0, negative_slope=0.25, threshold=1.0)
    model = mnistc.Sequential([mnistc.Input((6,)), layer])
    x = np.array([[0.5, 1.0, 1.5, 2.0, 3.0, -5.0]], np.float32)
    out = keras_relu_f32(x, 0.25, 2.0, 1.0)
    _, dx, _, _ = c_loss_and_grad(model, x, out + 1, False)  # MSE: dL/dout = 2 (out - y) / n = -1 / 3
    np.testing.assert_allclose(dx, np.array([[0.25, 0.25, 1.0, 0.0, 0.0, 0.25]]) * (-1 / 3), rtol=1e-6)


def test_relu_constants_travel_in_the_float_table():
    model = mnistc.Sequential([mnistc.Input((3,)), L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.7)])
    plan = model._get_plan()
    assert plan.layers[0][_C.COL_KIND] == _C.LAYER_RELU
    floats = plan.lfloats[0]
    assert (floats[_C.FCOL_NEGATIVE_SLOPE], floats[_C.FCOL_MAX_VALUE], floats[_C.FCOL_THRESHOLD]) == (0.1, 6.0, 0.7)
    assert not floats[_C.FCOL_W0_L1:].any()


def test_leaky_relu_activation_string_on_dense_conv_and_activation_is_keras_0_2():
    """activation="leaky_relu" is keras.activations.leaky_relu with its default negative_slope=0.2."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 5, 5, 2)).astype(np.float32)
    for layer in (L.Dense(4, activation="leaky_relu"), L.Conv2D(3, 2, activation="leaky_relu"),
                  L.Activation("leaky_relu")):
        model = mnistc.Sequential([mnistc.Input((5, 5, 2)), layer])
        ws = layer.get_weights()
        pre = (R.dense_forward(x, *ws) if isinstance(layer, L.Dense) else
               R.conv2d(x, *ws) if isinstance(layer, L.Conv2D) else x.astype(np.float64))
        np.testing.assert_allclose(model.predict(x, verbose=0), np.where(pre > 0, pre, 0.2 * pre), rtol=1e-5,
                                   atol=1e-6)
    assert mnistc.activations.get(mnistc.activations.leaky_relu) == "leaky_relu"


def test_leaky_relu_matches_pytorch_forward_and_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 9)).astype(np.float32)
    y = rng.standard_normal((16, 9)).astype(np.float32)
    for slope in (0.3, 0.01, 1.5):  # torch, TensorFlow and JAX: x if x > 0 else slope * x, also for slope > 1
        model = mnistc.Sequential([mnistc.Input((9,)), L.LeakyReLU(slope)])
        xt = torch.tensor(x, requires_grad=True)
        out = torch.nn.LeakyReLU(slope)(xt)
        torch.nn.functional.mse_loss(out, torch.tensor(y)).backward()
        np.testing.assert_array_equal(model.predict(x, verbose=0), out.detach().numpy())
        _, dx, _, _ = c_loss_and_grad(model, x, y, False)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-9)
    relu6 = mnistc.Sequential([mnistc.Input((9,)), L.ReLU(max_value=6.0)])
    np.testing.assert_array_equal(relu6.predict(x * 5, verbose=0), torch.nn.ReLU6()(torch.tensor(x * 5)).numpy())


# --- Normalization ---

def test_normalization_weights_and_param_counts_are_keras(capsys):
    """Keras 3: non-trainable mean, variance (the kept axes' shape) and an int32 count (always 0, kept for
    older saved models); none when mean and variance are given. keras.Sequential([Input((784,)),
    Normalization(), Dense(10)]) has 1,569 non-trainable and 7,850 trainable params."""
    norm = L.Normalization()
    model = mnistc.Sequential([mnistc.Input((784,)), norm, L.Dense(10)])
    assert norm._weight_names == ["mean", "variance", "count"]
    assert [w.shape for w in norm.weights] == [(784,), (784,), ()]
    assert norm.trainable_weights == [] and len(norm.non_trainable_weights) == 3
    assert norm.count_params() == 1569 and model.count_params() == 9419
    assert [w.dtype for w in norm.get_weights()] == [np.float32, np.float32, np.int32]
    model.summary()
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if "(Normalization)" in line)
    assert row.rstrip("│ ").endswith("1,569") and "(None, 784)" in row
    assert " Trainable params: 7,850 " in text and " Non-trainable params: 1,569 " in text
    given = L.Normalization(mean=3.0, variance=2.0)
    mnistc.Sequential([mnistc.Input((4,)), given])
    assert given.weights == [] and given.count_params() == 0
    scalar = L.Normalization(axis=None)
    mnistc.Sequential([mnistc.Input((28, 28)), scalar])
    assert [w.shape for w in scalar.weights] == [(), (), ()]
    last = L.Normalization(axis=2)  # the last axis of (None, 28, 28), spelled positively
    mnistc.Sequential([mnistc.Input((28, 28)), last])
    assert [w.shape for w in last.weights] == [(28,), (28,), ()]


def test_normalization_before_adapt_passes_inputs_through_as_keras():
    """Keras builds mean 0 and variance 1: predict before adapt() is the identity, not an error."""
    x = np.random.default_rng(7).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(predict_one(L.Normalization(), x), x)
    np.testing.assert_array_equal(predict_one(L.Normalization(invert=True), x), x)


def test_normalization_reproduces_the_keras_docstring_examples():
    adapt_data = np.array([[0., 7., 4.], [2., 9., 6.], [0., 7., 4.], [2., 9., 6.]], dtype="float32")
    layer = L.Normalization(axis=None)
    layer.adapt(np.array([1., 2., 3., 4., 5.], dtype="float32"))
    np.testing.assert_allclose(layer(np.array([1., 2., 3.], dtype="float32")), [-1.4142135, -0.70710677, 0.])
    layer = L.Normalization(axis=-1)
    layer.adapt(adapt_data)
    np.testing.assert_array_equal(layer(np.array([[0., 7., 4.]], dtype="float32")), [[-1., -1., -1.]])
    layer = L.Normalization(mean=3., variance=2.)
    np.testing.assert_allclose(layer(np.array([[1.], [2.], [3.]], dtype="float32")),
                               [[-1.4142135], [-0.70710677], [0.]])
    layer = L.Normalization(axis=-1, invert=True)
    layer.adapt(adapt_data)
    np.testing.assert_array_equal(layer(np.array([[1., 2., 3.]], dtype="float32")), [[2., 10., 8.]])


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.float64])
@pytest.mark.parametrize("axis,shape", [(-1, (12,)), (None, (12,)), (-1, (5, 6)), (None, (4, 3, 2)), (3, (4, 3, 2))])
def test_adapt_statistics_are_float64_moments(dtype, axis, shape):
    rng = np.random.default_rng(8)
    data = (rng.random((300, *shape)) * 255 if dtype == np.uint8 else rng.standard_normal((300, *shape)) * 3 + 1)
    data = data.astype(dtype)
    layer = L.Normalization(axis=axis)
    layer.adapt(data)
    d = data.astype(np.float64)
    axes = tuple(range(d.ndim)) if axis is None else tuple(range(d.ndim - 1))
    np.testing.assert_array_equal(layer.get_weights()[0], d.mean(axis=axes).astype(np.float32))
    np.testing.assert_allclose(layer.get_weights()[1], d.var(axis=axes), rtol=1e-6)
    assert layer.get_weights()[2] == 0  # Keras never updates count


def test_adapt_on_batches_equals_adapt_on_the_whole_array():
    """Keras's adapt() also takes an iterable of batches, (x, y) pairs counting by x; the moments are
    combined exactly (Chan et al.), in float64, and large arrays are read in chunks the same way."""
    rng = np.random.default_rng(9)
    data = (rng.standard_normal((1000, 10)) * 5 + 3).astype(np.float32)
    whole = L.Normalization()
    whole.adapt(data)
    batched = L.Normalization()
    batched.adapt(((data[i:i + 64], np.zeros(len(data[i:i + 64]))) for i in range(0, 1000, 64)))
    listed = L.Normalization()
    listed.adapt([data[:1], data[1:999], data[999:]])
    for other in (batched, listed):
        np.testing.assert_allclose(other.get_weights()[0], whole.get_weights()[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(other.get_weights()[1], whole.get_weights()[1], rtol=1e-6)


def test_adapt_writes_into_the_model_in_place():
    rng = np.random.default_rng(10)
    norm = L.Normalization()
    model = mnistc.Sequential([mnistc.Input((3,)), norm])
    data = (rng.standard_normal((50, 3)) * 2 + 5).astype(np.float32)
    norm.adapt(data)
    assert np.shares_memory(norm.weights[0], model._get_plan().params)
    out = model.predict(data, verbose=0)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1, rtol=1e-5)


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("axis,shape", [(-1, (6,)), (None, (6,)), (-1, (3, 4, 2)), (None, (3, 4))])
def test_normalization_is_keras_bit_for_bit(invert, axis, shape):
    rng = np.random.default_rng(11)
    data = (rng.standard_normal((200, *shape)) * 7 - 2).astype(np.float32)
    layer = L.Normalization(axis=axis, invert=invert)
    layer.adapt(data)
    mean, var = layer.get_weights()[:2]
    if var.ndim:
        var[0] = 1e-20  # a (near) constant feature: divided by epsilon, not by sqrt(variance)
        layer.set_weights([mean, var, 0])
    x = (rng.standard_normal((50, *shape)) * 7 - 2).astype(np.float32)
    np.testing.assert_array_equal(predict_one(layer, x), keras_normalization_f32(x, mean, var, invert))


@pytest.mark.parametrize("mean,variance,shape", [(3.0, 2.0, (4,)), ([1.0, 2.0, 3.0], [4.0, 0.25, 0.0], (2, 3)),
                                                 ([2.0], [9.0], (5,))])
def test_normalization_with_given_statistics_is_keras_bit_for_bit(mean, variance, shape):
    x = np.random.default_rng(12).standard_normal((20, *shape)).astype(np.float32)
    for invert in (False, True):
        layer = L.Normalization(mean=mean, variance=variance, invert=invert)
        np.testing.assert_array_equal(predict_one(layer, x), keras_normalization_f32(x, mean, variance, invert))
        assert layer.mean.shape == (1,) * len(shape) + (shape[-1],) and layer.weights == []


@pytest.mark.parametrize("kwargs,in_shape,B", [
    (dict(), (7,), 5),
    (dict(invert=True), (7,), 5),
    (dict(axis=None), (3, 4, 2), 3),
    (dict(axis=None, invert=True), (5,), 1),
    (dict(), (2, 3, 4), 3),
    (dict(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.5, 1e-3]), (2, 3), 4),
])
def test_normalization_matches_reference_and_central_differences(kwargs, in_shape, B):
    """Gradients flow through to the input; mean, variance and count get no gradient (they stay
    untouched in the gradient block) and never change."""
    check_layer(L.Normalization(**kwargs), in_shape, B, training=True)


def test_normalization_mean_and_variance_properties_broadcast_as_keras():
    layer = L.Normalization()
    mnistc.Sequential([mnistc.Input((5,)), layer])
    layer.adapt(np.arange(20, dtype=np.float32).reshape(4, 5))
    assert layer.mean.shape == (1, 5) and layer.variance.shape == (1, 5)
    np.testing.assert_array_equal(layer.mean.numpy()[0], [7.5, 8.5, 9.5, 10.5, 11.5])
    none = L.Normalization(axis=None)
    none.adapt(np.arange(20, dtype=np.float32).reshape(2, 2, 5))
    assert none.mean.shape == (1, 1, 1) and none.mean.numpy().item() == 9.5
    assert L.Normalization().mean is None  # not built yet


@pytest.mark.parametrize("kwargs,shape,error,match", [
    (dict(axis=0), (28, 28), ValueError, "last axis only"),
    (dict(axis=1), (28, 28), ValueError, "last axis only"),
    (dict(axis=3), (28, 28), ValueError, r"range \[-ndim, ndim\)"),
    (dict(mean=[1.0, 2.0], variance=[1.0, 1.0]), (3,), ValueError, "do not broadcast"),
])
def test_normalization_refuses_other_axes_and_statistics_that_do_not_fit(kwargs, shape, error, match):
    with pytest.raises(error, match=match):
        mnistc.Sequential([mnistc.Input(shape), L.Normalization(**kwargs)])


@pytest.mark.parametrize("kwargs,match", [
    (dict(axis=(1, 2)), "axis=-1"),
    (dict(axis="last"), "axis=-1"),
    (dict(mean=1.0), "both `mean` and `variance` must be set"),
    (dict(mean=[1.0, 2.0], variance=[1.0]), "must have the same shape"),
    (dict(mean=[[1.0]], variance=[[1.0]]), "rank of `mean` must be less than or equal"),
    (dict(axis=None, mean=[1.0], variance=[1.0]), "rank of `mean` must be less than or equal"),
    (dict(mean=1.0, variance=-1.0), "`variance` must be >= 0"),
    (dict(mean=np.nan, variance=1.0), "`mean` must be finite"),
])
def test_normalization_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.Normalization(**kwargs)


def test_adapt_errors_leave_the_statistics_as_they_were():
    layer = L.Normalization()
    mnistc.Sequential([mnistc.Input((3,)), layer])
    layer.adapt(np.arange(12, dtype=np.float32).reshape(4, 3))
    before = layer.get_weights()
    bad = np.ones((4, 3), np.float32)
    bad[2, 1] = np.nan
    cases = [
        (np.ones((4, 2), np.float32), ValueError, r"built with input_shape=\(None, 3\).*data.shape=\(4, 2\)"),
        (np.ones((0, 3), np.float32), ValueError, "received no samples"),
        ([], ValueError, "received no samples"),
        (bad, ValueError, "NaN or infinite"),
        ([1.0, 2.0], TypeError, "arrays with a `.shape` attribute"),
        (np.array([["a", "b", "c"]]), TypeError, "real numbers"),
        (3.0, TypeError, "Unsupported data type"),
    ]
    for data, error, match in cases:
        with pytest.raises(error, match=match):
            layer.adapt(data)
        for w, w0 in zip(layer.get_weights(), before):
            np.testing.assert_array_equal(w, w0)
    with pytest.raises(ValueError, match="was given `mean` and `variance`"):
        L.Normalization(mean=0.0, variance=1.0).adapt(np.ones((2, 3)))


def test_normalization_config_round_trip():
    for layer in (L.Normalization(), L.Normalization(axis=None, invert=True),
                  L.Normalization(mean=[1.0, 2.0], variance=[3.0, 4.0])):
        cfg = layer.get_config()
        twin = L.Normalization.from_config(cfg)
        assert twin.get_config() == cfg
    assert L.Normalization(axis=None).get_config()["axis"] == ()  # Keras's form: a tuple of the kept axes
    assert L.Normalization().get_config()["axis"] == (-1,)


def test_models_with_the_new_layers_save_and_load(tmp_path):
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((40, 6)) * 3 + 2).astype(np.float32)
    y = rng.integers(0, 3, 40)
    norm = L.Normalization()
    norm.adapt(x)
    model = mnistc.Sequential([mnistc.Input((6,)), norm, L.Dense(8), L.LeakyReLU(0.1),
                               L.Dense(8), L.ReLU(max_value=4.0, negative_slope=0.05, threshold=0.2),
                               L.Normalization(mean=0.5, variance=4.0, invert=True),
                               L.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    want = model.predict(x, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = mnistc.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert loaded.layers[2].negative_slope == 0.1
    assert (loaded.layers[4].max_value, loaded.layers[4].threshold) == (4.0, 0.2)
    for a, b in zip(loaded.layers[0].get_weights(), norm.get_weights()):
        np.testing.assert_array_equal(a, b)
    weights = tmp_path / "m.weights.npz"
    model.save_weights(weights)
    with np.load(weights, allow_pickle=False) as z:
        assert sorted(k for k in z.files if k.startswith("layers/normalization")) == [
            "layers/normalization/vars/0", "layers/normalization/vars/1", "layers/normalization/vars/2"]
    twin = mnistc.Sequential([mnistc.Input((6,)), L.Normalization(), L.Dense(8), L.LeakyReLU(0.1), L.Dense(8),
                              L.ReLU(max_value=4.0, negative_slope=0.05, threshold=0.2),
                              L.Normalization(mean=0.5, variance=4.0, invert=True), L.Dense(3, activation="softmax")])
    twin.load_weights(weights)  # by topology: the fresh Normalization gets the adapted statistics
    np.testing.assert_array_equal(twin.predict(x, verbose=0), want)


def test_fit_trains_through_normalization_and_leaves_its_statistics():
    """In the middle of a model the layer passes gradients to the layers below it; fit never changes
    mean, variance or count (they are not trained, and no batch statistics are kept)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x[:, :1] * 3 - x[:, 1:2]).astype(np.float32)
    norm = L.Normalization()
    model = mnistc.Sequential([mnistc.Input((5,)), L.Dense(6), norm, L.LeakyReLU(), L.Dense(1)])
    norm.set_weights([rng.standard_normal(6), rng.uniform(0.5, 2, 6), 0])
    before = norm.get_weights()
    first = model.layers[0].get_weights()
    model.compile(mnistc.optimizers.Adam(0.01), "mse")
    h = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < 0.2 * h.history["loss"][0]
    assert not np.array_equal(model.layers[0].get_weights()[0], first[0])
    for w, w0 in zip(norm.get_weights(), before):
        np.testing.assert_array_equal(w, w0)


# --- Keras itself, where installed (not a dependency: CI runs the float32 emulations above) ---

@pytest.fixture(scope="module")
def keras():
    old = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = "numpy"  # the backend the emulations follow, without TensorFlow
    try:
        return pytest.importorskip("keras")
    finally:
        if old is None:
            del os.environ["KERAS_BACKEND"]
        else:
            os.environ["KERAS_BACKEND"] = old


def test_outputs_equal_keras_bit_for_bit(keras):
    if keras.backend.backend() != "numpy":
        pytest.skip(f"keras was imported with the {keras.backend.backend()} backend")
    rng = np.random.default_rng(15)
    x = values_with_edges(rng, 480, [0.0, np.inf, -np.inf, 0.7, 1.0, 6.0]).reshape(80, 6)
    for kwargs in RELU_ARGS:
        np.testing.assert_array_equal(predict_one(L.ReLU(**kwargs), x),
                                      np.asarray(keras.layers.ReLU(**kwargs)(x)), err_msg=str(kwargs))
    for slope in (0.3, 0.05):
        np.testing.assert_array_equal(predict_one(L.LeakyReLU(slope), x),
                                      np.asarray(keras.layers.LeakyReLU(negative_slope=slope)(x)))
    np.testing.assert_array_equal(predict_one(L.LeakyReLU(), x), np.asarray(keras.layers.LeakyReLU()(x)))
    data = (rng.standard_normal((300, 2, 6)) * 4 + 1).astype(np.float32)
    finite = np.nan_to_num(x, posinf=9.0, neginf=-9.0).reshape(40, 2, 6)
    for kwargs in (dict(), dict(axis=None), dict(invert=True)):
        ours, theirs = L.Normalization(**kwargs), keras.layers.Normalization(**kwargs)
        ours.adapt(data)
        theirs.adapt(data)
        np.testing.assert_allclose(ours.get_weights()[0], np.asarray(theirs.weights[0].value), rtol=1e-5, atol=1e-6)
        theirs.set_weights(ours.get_weights())  # Keras averages in float32; the same statistics compare the map
        theirs.finalize_state()  # Keras reads its statistics from copies made here (as load_own_variables does)
        np.testing.assert_array_equal(predict_one(ours, finite), np.asarray(theirs(finite)), err_msg=str(kwargs))
        assert ours.count_params() == theirs.count_params()
    given = dict(mean=[1.0, 2.0, 0.0, 3.0, 1.0, 2.0], variance=[1.0, 4.0, 0.0, 2.0, 0.5, 1e-20])
    np.testing.assert_array_equal(predict_one(L.Normalization(**given), finite),
                                  np.asarray(keras.layers.Normalization(**given)(finite)))


# --- real MNIST: a LeakyReLU MLP behind a Normalization layer, on raw uint8 pixels ---

def test_leaky_relu_mlp_with_normalization_first_learns_mnist(mnist_dir):
    (x_train, y_train), (x_test, y_test) = mnistc.datasets.mnist.load_data(mnist_dir)
    x_train, y_train, x_test, y_test = x_train[:10000], y_train[:10000], x_test[:2000], y_test[:2000]
    mnistc.utils.set_random_seed(0)
    norm = L.Normalization(axis=None)
    norm.adapt(x_train)  # uint8 pixels: the float64 moments of all 10000 * 784 values
    pixels = x_train.astype(np.float64)
    np.testing.assert_allclose(norm.get_weights()[:2], [pixels.mean(), pixels.var()], rtol=1e-6)
    model = mnistc.Sequential([mnistc.Input((28, 28)), norm, L.Flatten(), L.Dense(64), L.LeakyReLU(),
                               L.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)  # raw 0..255: no unscaled warning
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"LeakyReLU MLP after Normalization: test accuracy {acc:.4f}, loss {loss:.4f}")
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert acc >= 0.90, (loss, acc)  # 0.916 measured; Rescaling(1 / 255) with relu: 0.919
