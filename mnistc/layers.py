"""Keras layers: Input, InputLayer, Flatten, Reshape, Dense, Activation, Softmax, ReLU, LeakyReLU, Dropout,
Rescaling, Normalization, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, BatchNormalization.

A layer knows its shapes and weights; the model lays its weights out in one flat float32 block and
runs the chain in C. Each layer describes itself to the C core as zero or more rows of the layer
table (`_c_rows`, a list of `_plan.CRow`): Flatten, Reshape and InputLayer are free on contiguous
rows and send none.
"""
import functools
import math
import re
import warnings

import numpy as np

from mnistc import _C, _public, activations, initializers, regularizers
from mnistc._plan import CRow
from mnistc._tensor import as_tensor

_name_counts = {}


def _auto_name(base):
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


@functools.lru_cache(maxsize=None)  # a few class names; re.sub's template handling allocates per call
def _snake(name):
    """Keras's to_snake_case: Dense -> dense, Conv2D -> conv2d, MaxPooling2D -> max_pooling2d."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _shape_tuple(shape, what):
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(None if d is None else int(d) for d in shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of ints, got {shape!r}") from None
    if any(d is not None and d < 1 for d in shape):
        raise ValueError(f"{what} must contain positive dimensions, got {shape}")
    return shape


class KerasTensor:
    """A symbolic tensor of the functional API: a shape and the layer call that produces it."""

    def __init__(self, shape, layer, parent):
        self.shape = (None, *shape)
        self._layer = layer
        self._parent = parent

    @property
    def dtype(self):
        return "float32"

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, name={self._layer.name}>"


class Layer:
    """Base class of all layers (name, trainable, built, weights).

    Example:
        layer = mnistc.layers.Dense(10)
        layer.trainable = False
        layer.get_weights()
    """

    _allowed_kwargs = ("input_shape", "input_dim", "batch_input_shape", "batch_size", "dtype",
                       "activity_regularizer")

    def __init__(self, trainable=True, name=None, **kwargs):
        unknown = {k: v for k, v in kwargs.items() if k not in self._allowed_kwargs}
        if unknown:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {unknown}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        if kwargs.get("activity_regularizer") is not None:
            raise ValueError(f"{type(self).__name__}: activity_regularizer is not supported by mnistc (got "
                             f"{kwargs['activity_regularizer']!r}). Penalties on weights are: kernel_regularizer "
                             "and bias_regularizer (Dense, Conv2D), gamma_regularizer and beta_regularizer "
                             "(BatchNormalization).")
        self.name = name or _auto_name(_snake(type(self).__name__))
        self._trainable = bool(trainable)
        self.built = False
        self.input_shape = None   # per-sample shape, batch axis excluded
        self.output_shape = None
        self._weights = []        # arrays owned by the layer or views into a model's block
        self._weight_names = []
        self._weight_trained = [] # per weight: trained by the optimizer when the layer is trainable
        self._constants = []      # arrays the C core reads that are not Keras weights (_plan._laid_out)
        self._weight_regularizers = []  # per weight: its Regularizer or None, fixed when it is made
        self._first_call = None   # (input, output) KerasTensors of the layer's first symbolic call
        shape = kwargs.get("input_shape")
        if kwargs.get("batch_input_shape") is not None:
            shape = tuple(kwargs["batch_input_shape"])[1:]
        if kwargs.get("input_dim") is not None:
            shape = (kwargs["input_dim"],)
        self._declared_input_shape = None if shape is None else _shape_tuple(shape, "input_shape")

    # --- trainable and weights ---
    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)

    @property
    def weights(self):
        return list(self._weights)

    @property
    def trainable_weights(self):
        if not self._trainable:
            return []
        return [w for w, t in zip(self._weights, self._weight_trained) if t]

    @property
    def non_trainable_weights(self):
        if not self._trainable:
            return list(self._weights)
        return [w for w, t in zip(self._weights, self._weight_trained) if not t]

    @property
    def variables(self):
        return self.weights

    @property
    def losses(self):
        """The current penalties of the regularized trainable weights, float32 scalars in weight order
        (none while the layer is frozen), as Keras's `layer.losses`."""
        if not self._trainable:
            return []
        return [reg(w) for w, t, reg in zip(self._weights, self._weight_trained, self._weight_regularizers)
                if t and reg is not None]

    def get_weights(self):
        """Copies of the layer's weights (kernel, bias), as in Keras."""
        return [np.array(w, copy=True) for w in self._weights]

    def set_weights(self, weights):
        """Write `weights` into the layer's arrays (in place; nothing changes if any check fails).

        Raises:
            ValueError: wrong count or shape. Non-finite values are written as Keras writes them;
            fit then refuses to start, naming the weights.
        """
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(
                f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of length "
                f"{len(weights)}, but the layer was expecting {len(self._weights)} weights.")
        arrays = []
        for cur, new in zip(self._weights, weights):
            new = np.asarray(new)
            if new.shape != cur.shape:
                raise ValueError(f"Layer {self.name} weight shape {cur.shape} is not compatible with "
                                 f"provided weight shape {new.shape}.")
            arrays.append(new.astype(np.float32, copy=False))
        for cur, new in zip(self._weights, arrays):
            cur[...] = new

    def count_params(self):
        return int(sum(w.size for w in self._weights))

    # --- building ---
    def build(self, input_shape):
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        self.built = True

    def _ensure_built(self, input_shape):
        input_shape = tuple(input_shape)
        if self.built:
            if self.input_shape != input_shape:
                raise ValueError(
                    f"Input 0 of layer '{self.name}' is incompatible with the layer: expected shape "
                    f"{(None, *self.input_shape)}, but received input with shape {(None, *input_shape)}")
            return
        self.build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _add_weight(self, name, shape, initializer, trainable=True, regularizer=None):
        w = np.array(initializer(shape), np.float32, order="C")  # 0-d stays 0-d (Normalization's count)
        self._weights.append(w)
        self._weight_names.append(name)
        self._weight_trained.append(bool(trainable))
        self._weight_regularizers.append(regularizer)
        return w

    def _penalty_floats(self, slots, floats=None):
        """The C row's float constants (`floats`, zeros if None) with the penalty factors of the
        weights in C weight slots 0 and 1 (`slots`: their indices in the layer's weights, -1 absent)."""
        f = list(floats or [0.0] * _C.FTABLE_COLS)
        for slot, (col_l1, col_l2) in enumerate(((_C.FCOL_W0_L1, _C.FCOL_W0_L2), (_C.FCOL_W1_L1, _C.FCOL_W1_L2))):
            if slot < len(slots) and slots[slot] >= 0:
                f[col_l1], f[col_l2] = regularizers._c_factors(self._weight_regularizers[slots[slot]])
        return tuple(f)

    def _c_rows(self):
        """Rows for the C layer table (a list of `_plan.CRow`); none for a layer that is free."""
        return []

    # --- functional API and eager calls ---
    def __call__(self, inputs, training=None):
        if isinstance(inputs, KerasTensor):
            self._ensure_built(inputs.shape[1:])
            out = KerasTensor(self.output_shape, self, inputs)
            if self._first_call is None:
                self._first_call = (inputs, out)
            return out
        from mnistc.models import _run_layers
        return _run_layers([self], inputs, training=bool(training))

    @property
    def input(self):
        """The KerasTensor the layer was first called on (a Sequential's layers are called when it is
        built), for feature extraction: `Model(model.inputs, model.layers[k].output)`."""
        return self._first_call_tensor(0, "input")

    @property
    def output(self):
        """The KerasTensor of the layer's first call (see `input`)."""
        return self._first_call_tensor(1, "output")

    def _first_call_tensor(self, which, what):
        if self._first_call is None:
            raise AttributeError(f"The layer {self.name} has never been called and thus has no defined {what}.")
        return self._first_call[which]

    # --- config ---
    def get_config(self):
        cfg = {"name": self.name, "trainable": self._trainable}
        if self._declared_input_shape is not None:
            cfg["input_shape"] = list(self._declared_input_shape)
        return cfg

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class InputLayer(Layer):
    """The model's input: its per-sample `shape` (batch axis excluded)."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, **kwargs):
        if shape is None and batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None and "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if shape is None:
            raise ValueError("InputLayer: provide `shape`, the per-sample input shape, e.g. shape=(28, 28)")
        super().__init__(name=name, **kwargs)
        self._shape = _shape_tuple(shape, "shape")
        if any(d is None for d in self._shape):
            raise ValueError(f"InputLayer: every dimension of shape must be known, got {self._shape}")
        self.build(self._shape)

    def get_config(self):
        return {"name": self.name, "shape": list(self._shape)}


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None):
    """A symbolic input for the functional API and for Sequential: `Input(shape=(28, 28))`."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name)
    t = KerasTensor(layer._shape, layer, None)
    return t


class Flatten(Layer):
    """(None, 28, 28) -> (None, 784), row-major; no weights."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, "Flatten")

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)


class Reshape(Layer):
    """Reshape each sample to `target_shape` (one dimension may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in target) > 1 or any(d < 1 and d != -1 for d in target):
            raise ValueError(f"Reshape: invalid target_shape {target_shape!r}")
        self.target_shape = target

    def compute_output_shape(self, input_shape):
        n = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if n % known:
                raise ValueError(f"Reshape '{self.name}': cannot reshape {input_shape} to {self.target_shape}")
            return tuple(n // known if d == -1 else d for d in self.target_shape)
        if known != n:
            raise ValueError(f"Reshape '{self.name}': total size of the new shape {self.target_shape} "
                             f"({known}) must equal that of the input {input_shape} ({n})")
        return self.target_shape

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class _KernelBias:
    """`kernel` and `bias` (None without use_bias) of a layer whose weights are [kernel, bias], with
    their regularizers."""

    def _init_regularizers(self, kernel_regularizer, bias_regularizer):
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def _regularizer_config(self):
        return {"kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}

    def _kernel_bias_floats(self):
        return self._penalty_floats((0, 1 if self.use_bias else -1))

    @property
    def kernel(self):
        return self._weights[0] if self.built else None

    @property
    def bias(self):
        return self._weights[1] if self.built and self.use_bias else None


class Dense(_KernelBias, Layer):
    """out = activation(inp @ kernel + bias); kernel shape (n_in, units), Keras layout.

    Example:
        layer = mnistc.layers.Dense(128, activation="relu")
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, **kwargs):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Received an invalid value for `units`, expected a positive integer. "
                             f"Received: units={units!r}")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._init_regularizers(kernel_regularizer, bias_regularizer)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if self.activation == "softmax" and len(input_shape) != 1:
            raise ValueError(
                f"Dense layer '{self.name}' with softmax received input of shape {(None, *input_shape)}; the "
                "losses read flat samples (None, classes). Add a Flatten() layer before it.")
        self._add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                         regularizer=self.kernel_regularizer)
        if self.use_bias:
            self._add_weight("bias", (self.units,), self.bias_initializer, regularizer=self.bias_regularizer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.units)

    def _c_rows(self):
        return [CRow(_C.LAYER_DENSE, self.input_shape, self.output_shape, activations.code(self.activation),
                     weights=(0, 1 if self.use_bias else -1), floats=self._kernel_bias_floats())]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **self._regularizer_config()}


class Activation(Layer):
    """Applies an activation function: `Activation("softmax")`."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def build(self, input_shape):
        if self.activation == "softmax" and len(input_shape) != 1:
            raise ValueError(f"Activation '{self.name}': softmax needs flat samples, got shape "
                             f"{(None, *input_shape)}; add a Flatten() layer before it")
        super().build(input_shape)

    def _c_rows(self):
        return [CRow(_C.LAYER_ACTIVATION, self.input_shape, self.output_shape, activations.code(self.activation))]

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class _FixedActivation(Activation):
    """An Activation layer whose function is fixed by its class (Softmax)."""

    fixed = None

    def __init__(self, **kwargs):
        super().__init__(self.fixed, **kwargs)

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("activation")
        return cfg


class Softmax(_FixedActivation):
    """Softmax over the last axis as a layer (`Sequential([model, layers.Softmax()])`)."""

    fixed = "softmax"

    def __init__(self, axis=-1, **kwargs):
        if axis != -1:
            raise ValueError(f"Softmax: only axis=-1 is supported, got axis={axis}")
        super().__init__(**kwargs)


def _non_negative(value, what, layer, maximum=False):
    """A float >= 0, Keras's check, with NaN refused too, and infinity unless it is a `maximum`
    (which may also be None: none)."""
    if value is None and maximum:
        return None
    v = float(value) if _is_real(value) else math.nan
    if not (v >= 0.0 and (maximum or math.isfinite(v))):
        raise ValueError(f"{what} of a {layer} layer cannot be None or a negative value; expected a "
                         f"{'' if maximum else 'finite '}float >= 0. Received: {what}={value!r}")
    return v


def _relu_row(layer, negative_slope, max_value, threshold):
    """The C row of Keras's relu(x, negative_slope, max_value, threshold) (ReLU and LeakyReLU)."""
    floats = [0.0] * _C.FTABLE_COLS
    floats[_C.FCOL_NEGATIVE_SLOPE] = negative_slope
    floats[_C.FCOL_MAX_VALUE] = math.inf if max_value is None else max_value
    floats[_C.FCOL_THRESHOLD] = threshold
    shape = layer.input_shape or (1,)  # a 1-D batch: samples of one value
    return [CRow(_C.LAYER_RELU, shape, shape, floats=tuple(floats))]


class ReLU(Layer):
    """Keras's ReLU layer: x above `threshold`, clipped at `max_value` (None: no maximum), and
    negative_slope * (x - threshold) at or below it. The defaults give max(x, 0).

    Example:
        layers.ReLU(max_value=6.0)
    """

    _acts_as = "relu"   # what the loss's from_logits check sees when the layer is last

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = _non_negative(max_value, "max_value", "ReLU", maximum=True)
        self.negative_slope = _non_negative(negative_slope, "negative_slope", "ReLU")
        self.threshold = _non_negative(threshold, "threshold", "ReLU")

    def _c_rows(self):
        return _relu_row(self, self.negative_slope, self.max_value, self.threshold)

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class LeakyReLU(Layer):
    """x for x > 0, negative_slope * x otherwise (Keras 3's default slope 0.3). Keras 2's `alpha=` is
    accepted with Keras 3's deprecation warning.

    Example:
        layers.LeakyReLU(negative_slope=0.1)
    """

    _acts_as = "leaky_relu"

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        super().__init__(**kwargs)
        self.negative_slope = _non_negative(negative_slope, "negative_slope", "LeakyReLU")

    def _c_rows(self):
        return _relu_row(self, self.negative_slope, None, 0.0)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class Dropout(Layer):
    """Inverted dropout: during fit, zeroes a fraction `rate` of the inputs and scales the rest by
    1/(1-rate); inactive in evaluate and predict."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0 <= float(rate) <= 1:
            raise ValueError("Invalid value received for argument `rate`. Expected a float value "
                             f"between 0 and 1. Received: rate={rate!r}")
        if noise_shape is not None:
            raise ValueError("Dropout: noise_shape is not supported by mnistc")
        self.rate = float(rate)
        self.seed = seed

    def _c_rows(self):
        if self.rate == 0.0:
            return []
        floats = [0.0] * _C.FTABLE_COLS
        floats[_C.FCOL_RATE] = self.rate
        return [CRow(_C.LAYER_DROPOUT, self.input_shape, self.output_shape, floats=tuple(floats))]

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Rescaling(Layer):
    """out = inp * scale + offset. First in a model, it lets uint8 images go to C as they are:
    the scaling happens while a batch is gathered, with no float copy of the data set.

    Example:
        mnistc.Sequential([mnistc.Input((28, 28)), mnistc.layers.Rescaling(1 / 255), ...])
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), float(offset)
        if not (math.isfinite(self.scale) and math.isfinite(self.offset)):
            raise ValueError(f"Rescaling: scale and offset must be finite, got {scale}, {offset}")

    def _c_rows(self):
        floats = [0.0] * _C.FTABLE_COLS
        floats[_C.FCOL_SCALE], floats[_C.FCOL_OFFSET] = self.scale, self.offset
        return [CRow(_C.LAYER_RESCALING, self.input_shape, self.output_shape, floats=tuple(floats))]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


# --- convolutional layers (channels last: samples (height, width, channels)) ---

def _pair(value, what, layer):
    """An int or a pair of ints >= 1 as a pair, Keras's rule for kernel_size, strides, pool_size."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        pair = ()
    if len(pair) != 2 or any(v < 1 for v in pair) or any(isinstance(v, bool) for v in value):
        raise ValueError(f"{layer}: `{what}` must be a positive int or a tuple of 2 positive ints, got {value!r}")
    if max(pair) > _C.MAX_WINDOW:
        raise ValueError(f"{layer}: `{what}` must be at most {_C.MAX_WINDOW} (the C core's bound on windows and "
                         f"strides), got {value!r}")
    return pair


def _padding(padding, layer):
    p = str(padding).lower() if isinstance(padding, str) else padding
    if p not in ("valid", "same"):
        raise ValueError(f"{layer}: `padding` must be 'valid' or 'same', got {padding!r}")
    return p


def _channels_last(data_format, layer):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{layer}: mnistc runs channels_last only (samples shaped (height, width, channels)); "
                         f"got data_format={data_format!r}. Transpose the data with "
                         "np.transpose(x, (0, 2, 3, 1)) and drop data_format.")


def _is_real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _image_shape(layer, input_shape):
    shape = tuple(input_shape)
    if len(shape) != 3:
        hint = ""
        if len(shape) == 2:
            hint = (f" For grayscale images add a channel axis: layers.Reshape({(*shape, 1)}) as the first layer, "
                    "or x[..., None] on the data.")
        raise ValueError(f"{type(layer).__name__} layer '{layer.name}' expects samples of shape (height, width, "
                         f"channels), got input of shape {(None, *shape)}.{hint}")
    return shape


def _window_geometry(layer, in_hw, kernel, strides, padding):
    """(out_hw, pads_before) per dimension with Keras's 'valid' / 'same' rules."""
    out, pads = [], []
    for n, k, s, dim in zip(in_hw, kernel, strides, ("height", "width")):
        if padding == "same":
            o = -(-n // s)
            pads.append(max((o - 1) * s + k - n, 0) // 2)
        else:
            if k > n:
                raise ValueError(
                    f"{type(layer).__name__} layer '{layer.name}': the window {kernel} is larger than the input's "
                    f"{dim} {n} (input {(None, *in_hw)} + channels); use padding='same', a smaller window, or "
                    "fewer pooling layers before it.")
            o = (n - k) // s + 1
            pads.append(0)
        out.append(o)
    return tuple(out), tuple(pads)


class Conv2D(_KernelBias, Layer):
    """2-D convolution over (height, width, channels) samples: out = activation(conv(inp, kernel) + bias),
    kernel shape (kernel_h, kernel_w, in_channels, filters) as in Keras.

    Example:
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu")
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, **kwargs):
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly positive value. "
                             f"Received filters={filters!r}.")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        _channels_last(data_format, "Conv2D")
        if _pair(dilation_rate, "dilation_rate", "Conv2D") != (1, 1) or groups != 1:
            raise ValueError("Conv2D: dilation_rate and groups other than 1 are not supported by mnistc")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = _pair(strides, "strides", "Conv2D")
        self.padding = _padding(padding, "Conv2D")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._init_regularizers(kernel_regularizer, bias_regularizer)

    def build(self, input_shape):
        h, w, c = _image_shape(self, input_shape)
        if self.activation == "softmax":
            raise ValueError(f"Conv2D layer '{self.name}': softmax over feature maps is not supported; use it on "
                             "the last Dense layer after Flatten()")
        self._geometry = _window_geometry(self, (h, w), self.kernel_size, self.strides, self.padding)
        self._add_weight("kernel", (*self.kernel_size, c, self.filters), self.kernel_initializer,
                         regularizer=self.kernel_regularizer)
        if self.use_bias:
            self._add_weight("bias", (self.filters,), self.bias_initializer, regularizer=self.bias_regularizer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        (oh, ow), _ = _window_geometry(self, tuple(input_shape)[:2], self.kernel_size, self.strides, self.padding)
        return (oh, ow, self.filters)

    def _c_rows(self):
        return [CRow(_C.LAYER_CONV2D, self.input_shape, self.output_shape, activations.code(self.activation),
                     weights=(0, 1 if self.use_bias else -1), kernel=self.kernel_size, strides=self.strides,
                     padding=self._geometry[1], floats=self._kernel_bias_floats())]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                **self._regularizer_config()}


class _Pooling2D(Layer):
    """Shared by MaxPooling2D and AveragePooling2D: a window per channel, strides default to pool_size."""

    kind = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        _channels_last(data_format, name)
        self.pool_size = _pair(pool_size, "pool_size", name)
        self.strides = self.pool_size if strides is None else _pair(strides, "strides", name)
        self.padding = _padding(padding, name)

    def build(self, input_shape):
        h, w, _ = _image_shape(self, input_shape)
        self._geometry = _window_geometry(self, (h, w), self.pool_size, self.strides, self.padding)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        (oh, ow), _ = _window_geometry(self, tuple(input_shape)[:2], self.pool_size, self.strides, self.padding)
        return (oh, ow, input_shape[2])

    def _c_rows(self):
        return [CRow(self.kind, self.input_shape, self.output_shape, kernel=self.pool_size, strides=self.strides,
                     padding=self._geometry[1])]

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """The largest value of each pool_size window, per channel (NaN if the window holds one)."""

    kind = _C.LAYER_MAXPOOL2D


class AveragePooling2D(_Pooling2D):
    """The mean of each pool_size window, per channel; with padding='same', of its cells inside the input."""

    kind = _C.LAYER_AVGPOOL2D


class GlobalAveragePooling2D(Layer):
    """(height, width, channels) -> (channels,): the mean of each feature map (keepdims: (1, 1, channels))."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, "GlobalAveragePooling2D")
        self.keepdims = bool(keepdims)

    def build(self, input_shape):
        _image_shape(self, input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        c = tuple(input_shape)[-1]
        return (1, 1, c) if self.keepdims else (c,)

    def _c_rows(self):
        return [CRow(_C.LAYER_GLOBALAVGPOOL2D, self.input_shape, (1, 1, self.input_shape[-1]))]

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class BatchNormalization(Layer):
    """Normalises each channel (the last axis): with batch statistics while training, with the moving
    statistics in evaluate/predict and whenever the layer is frozen (`trainable=False`), as in Keras 3.
    Weights: gamma, beta (trained), moving_mean, moving_variance (updated by fit, never by the optimizer).
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if axis not in (-1, 3) and not (isinstance(axis, (list, tuple)) and list(axis) in ([-1], [3])):
            raise ValueError(f"BatchNormalization: mnistc normalises the last axis (axis=-1, channels_last), "
                             f"got axis={axis!r}")
        if not _is_real(momentum) or not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNormalization: `momentum` must be in [0, 1], got {momentum!r}")
        if not _is_real(epsilon) or not (float(epsilon) > 0.0 and math.isfinite(float(epsilon))):
            raise ValueError(f"BatchNormalization: `epsilon` must be a positive number, got {epsilon!r}")
        self.axis = -1
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def build(self, input_shape):
        c = tuple(input_shape)[-1]
        slots = []
        if self.scale:
            slots.append(len(self._weights))
            self._add_weight("gamma", (c,), self.gamma_initializer, regularizer=self.gamma_regularizer)
        else:
            slots.append(-1)
        if self.center:
            slots.append(len(self._weights))
            self._add_weight("beta", (c,), self.beta_initializer, regularizer=self.beta_regularizer)
        else:
            slots.append(-1)
        slots.append(len(self._weights))
        self._add_weight("moving_mean", (c,), self.moving_mean_initializer, trainable=False)
        slots.append(len(self._weights))
        self._add_weight("moving_variance", (c,), self.moving_variance_initializer, trainable=False)
        self._slots = tuple(slots)
        super().build(input_shape)

    def _named(self, name):
        if not self.built or name not in self._weight_names:
            return None
        return self._weights[self._weight_names.index(name)]

    gamma = property(lambda self: self._named("gamma"))
    beta = property(lambda self: self._named("beta"))
    moving_mean = property(lambda self: self._named("moving_mean"))
    moving_variance = property(lambda self: self._named("moving_variance"))

    def _c_rows(self):
        floats = [0.0] * _C.FTABLE_COLS
        floats[_C.FCOL_EPSILON], floats[_C.FCOL_MOMENTUM] = self.epsilon, self.momentum
        return [CRow(_C.LAYER_BATCHNORM, self.input_shape, self.output_shape, weights=self._slots,
                     floats=self._penalty_floats(self._slots, floats))]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer)}


# Keras's backend.epsilon(): Normalization divides by max(sqrt(variance), epsilon)
_EPSILON = 1e-7
# adapt() reads an array in chunks of about this many values (float64 temporaries stay small)
_ADAPT_CHUNK = 1 << 20


def _batch_x(batch):
    """The inputs of one element of an adapt() iterable: x of (x, y) or (x, y, sample_weight)."""
    return batch[0] if isinstance(batch, tuple) else batch


class Normalization(Layer):
    """Shifts and scales inputs to mean 0 and variance 1 with statistics computed beforehand by
    adapt(data) or given as `mean` and `variance`: out = (x - mean) / max(sqrt(variance), 1e-7), or
    with invert=True out = mean + x * max(sqrt(variance), 1e-7). axis=-1 keeps one mean and variance
    per index of the last axis, axis=None one for all values (other axes are not supported). Before
    adapt() the statistics are 0 and 1 (the layer passes its input through), as in Keras.

    Example:
        norm = layers.Normalization(); norm.adapt(x_train)
        model = mnistc.Sequential([mnistc.Input((784,)), norm, layers.Dense(10)])
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        axes = () if axis is None else (axis,) if _is_int(axis) else tuple(axis) if isinstance(axis, (list, tuple)) \
            else None
        if axes is None or len(axes) > 1 or not all(_is_int(a) for a in axes):
            raise ValueError("Normalization: mnistc keeps a mean and variance per index of the last axis (axis=-1) "
                             f"or one for all values (axis=None); got axis={axis!r}")
        self.axis = tuple(int(a) for a in axes)
        if (mean is None) != (variance is None):
            raise ValueError("When setting values directly, both `mean` and `variance` must be set. "
                             f"Received: mean={mean} and variance={variance}")
        if mean is not None:
            mean, variance = self._given(mean, "mean"), self._given(variance, "variance")
            if mean.shape != variance.shape:
                raise ValueError("When setting values directly, `mean` and `variance` must have the same shape. "
                                 f"Received: mean shape {mean.shape} and variance shape {variance.shape}")
            if mean.ndim > len(self.axis):
                raise ValueError(f"The rank of `mean` must be less than or equal to the number of axes "
                                 f"({len(self.axis)}). Received: mean shape {mean.shape} for axis {self.axis}")
            if (variance < 0).any():
                raise ValueError(f"Normalization: `variance` must be >= 0, got {variance.tolist()}")
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)

    @staticmethod
    def _given(value, what):
        try:
            a = np.array(value, np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"Normalization: `{what}` must be a number or an array of numbers, got {value!r}") \
                from None
        if not np.isfinite(a).all():
            raise ValueError(f"Normalization: `{what}` must be finite, got {value!r}")
        return a

    def _stats_shape(self, input_shape):
        """() for axis=None, else (last dim,) after Keras's range check and mnistc's last-axis rule."""
        if not self.axis:
            return ()
        if not input_shape:
            raise ValueError(f"Normalization layer '{self.name}': with samples that are single values, axis="
                             f"{self.axis[0]} is the batch axis; use axis=None for one mean and variance")
        ndim = len(input_shape) + 1  # Keras counts the batch axis
        a = self.axis[0]
        if not -ndim <= a < ndim:
            raise ValueError(f"All `axis` values must be in the range [-ndim, ndim). Received inputs with "
                             f"ndim={ndim}, while axis={self.axis}")
        if a % ndim != ndim - 1:
            raise ValueError(f"Normalization layer '{self.name}': mnistc keeps statistics for the last axis only "
                             f"(axis=-1, here also axis={ndim - 1}) or for all values (axis=None); got axis={a} "
                             f"for inputs of shape {(None, *input_shape)}")
        return (input_shape[-1],)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        shape = self._stats_shape(input_shape)
        if self.input_mean is None:
            self._add_weight("mean", shape, initializers.get("zeros"), trainable=False)
            self._add_weight("variance", shape, initializers.get("ones"), trainable=False)
            self._add_weight("count", (), initializers.get("zeros"), trainable=False)  # Keras's, always 0
        else:
            try:
                self._constants = [np.ascontiguousarray(np.broadcast_to(v, shape), np.float32)
                                   for v in (self.input_mean, self.input_variance)]
            except ValueError:
                raise ValueError(f"Normalization layer '{self.name}': `mean` and `variance` of shape "
                                 f"{self.input_mean.shape} do not broadcast to the statistics' shape {shape} of "
                                 f"inputs {(None, *input_shape)}") from None
        super().build(input_shape)

    def _stat(self, i):
        """A copy of the mean (i=0) or variance (1) shaped to broadcast against a batch, as Keras's
        layer.mean and layer.variance: (1, 784) for inputs (None, 784), (1, 1) for axis=None."""
        if not self.built:
            return None
        stat = (self._weights if self.input_mean is None else self._constants)[i]
        return as_tensor(stat.reshape((1,) * (len(self.input_shape) + 1 - stat.ndim) + stat.shape).copy())

    mean = property(lambda self: self._stat(0))
    variance = property(lambda self: self._stat(1))

    def get_weights(self):
        weights = super().get_weights()
        if weights:
            weights[2] = weights[2].astype(np.int32)  # Keras's count is an int32 variable
        return weights

    def adapt(self, data):
        """Compute the mean and variance of `data` (float64, then stored as float32) per index of the
        kept axis, or over all values for axis=None, as Keras's adapt().

        Args:
            data: a NumPy array (N, *input_shape), or an iterable of such batches (a list, a generator;
                an element (x, y) or (x, y, sample_weight) counts by its x).
        Raises:
            ValueError: data of another shape than the layer's input, no samples, non-finite values,
                or a layer given `mean` and `variance`.
            TypeError: data that is neither an array nor an iterable of arrays.
        """
        if self.input_mean is not None:
            raise ValueError(f"Normalization layer '{self.name}' was given `mean` and `variance`; it has no "
                             "statistics to adapt. Create it without them to call adapt().")
        if isinstance(data, np.ndarray):
            batches = [data]
        elif hasattr(data, "numpy"):  # a framework's tensor
            batches = [np.asarray(data.numpy())]
        elif hasattr(data, "__iter__") and not isinstance(data, (str, bytes, dict)):
            batches = (_batch_x(b) for b in data)
        else:
            raise TypeError(f"Unsupported data type: {type(data)}. `adapt` supports `np.ndarray` and iterables of "
                            "batches (e.g. list, generator).")
        count, mean, m2 = 0, None, None
        for k, batch in enumerate(batches):
            if getattr(batch, "shape", None) is None:
                raise TypeError("adapt() expects an iterable that yields arrays with a `.shape` attribute (e.g. "
                                f"numpy arrays). Got an element of type {type(batch).__name__}.")
            batch = np.asarray(batch)
            if batch.dtype.kind not in "biuf" or batch.ndim == 0:
                raise TypeError(f"Normalization.adapt: expected real numbers in batches (N, ...), got dtype "
                                f"{batch.dtype} and shape {batch.shape}")
            if k == 0 and not self.built:
                self._ensure_built(batch.shape[1:])
            if batch.shape[1:] != self.input_shape:
                raise ValueError(f"The layer was built with input_shape={(None, *self.input_shape)}, but adapt() "
                                 f"is being called with data with an incompatible shape, data.shape={batch.shape}")
            for n, m, s in self._chunk_moments(batch):
                # Chan et al.'s pairwise update of (count, mean, sum of squared deviations)
                if count == 0:
                    count, mean, m2 = n, m, s
                    continue
                total = count + n
                delta = m - mean
                mean = mean + delta * (n / total)
                m2 = m2 + s + delta * delta * (count * (n / total))
                count = total
        if count == 0:
            raise ValueError("adapt() received no samples. Expected at least one: pass an array of shape "
                             f"(N, *{self.input_shape}) or a non-empty iterable of such batches.")
        var = m2 / count
        if not (np.isfinite(mean).all() and np.isfinite(var).all()):
            raise ValueError(f"Normalization layer '{self.name}': the adapt() data holds NaN or infinite values, "
                             "which would make the mean and variance NaN; clean the data first.")
        self._weights[0][...] = mean
        self._weights[1][...] = var

    def _chunk_moments(self, batch):
        """(values per statistic, mean, sum of squared deviations) of chunks of batch's rows, float64."""
        n_stats = 1 if not self.axis else self.input_shape[-1]
        flat = batch.reshape(-1, n_stats)  # rows of the kept axis (one column for axis=None)
        step = max(1, _ADAPT_CHUNK // n_stats)
        for r0 in range(0, len(flat), step):
            chunk = flat[r0:r0 + step].astype(np.float64)
            m = chunk.mean(axis=0)
            s = ((chunk - m) ** 2).sum(axis=0)
            yield len(chunk), m.reshape(self._weights[0].shape), s.reshape(self._weights[0].shape)

    def _c_rows(self):
        floats = [0.0] * _C.FTABLE_COLS
        floats[_C.FCOL_EPSILON], floats[_C.FCOL_INVERT] = _EPSILON, float(self.invert)
        # axis=None: the sample's values as one channel, so C keeps one mean and variance
        shape = self.input_shape if self.axis else (math.prod(self.input_shape), 1)
        return [CRow(_C.LAYER_NORMALIZATION, shape, shape, weights=(0, 1), floats=tuple(floats))]

    def get_config(self):
        mean, var = self.input_mean, self.input_variance
        return {**super().get_config(), "axis": self.axis, "invert": self.invert,
                "mean": None if mean is None else mean.tolist(), "variance": None if var is None else var.tolist()}


MaxPool2D, AvgPool2D, GlobalAvgPool2D = MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D


_CLASSES = {c.__name__: c for c in (InputLayer, Flatten, Reshape, Dense, Activation, Softmax, ReLU, LeakyReLU,
                                    Dropout, Rescaling, Conv2D, MaxPooling2D, AveragePooling2D,
                                    GlobalAveragePooling2D, BatchNormalization, Normalization)}


def serialize(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(cfg):
    cls = _CLASSES.get(cfg.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown layer class {cfg.get('class_name')!r} in model config; "
                         f"known: {', '.join(sorted(_CLASSES))}")
    config = dict(cfg.get("config", {}))
    for key in [k for k in config if k.endswith("_initializer")]:
        if isinstance(config.get(key), dict):
            config[key] = initializers.get(config[key])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**config)


__getattr__, __dir__ = _public.hooks(__name__)
