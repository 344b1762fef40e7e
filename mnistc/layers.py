"""Keras layers: Input, InputLayer, Flatten, Reshape, Dense, Activation, Softmax, ReLU, Dropout, Rescaling,
Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, BatchNormalization.

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
        self._weight_regularizers = []  # per weight: its Regularizer or None, fixed when it is made
        self._inbound = None      # KerasTensor this layer was called on (functional API)
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
        w = np.ascontiguousarray(initializer(shape), np.float32)
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
            return KerasTensor(self.output_shape, self, inputs)
        from mnistc.models import _run_layers
        return _run_layers([self], inputs, training=bool(training))

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
    """An Activation layer whose function is fixed by its class (Softmax, ReLU)."""

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


class ReLU(_FixedActivation):
    """max(x, 0) as a layer."""

    fixed = "relu"


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


MaxPool2D, AvgPool2D, GlobalAvgPool2D = MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D


_CLASSES = {c.__name__: c for c in (InputLayer, Flatten, Reshape, Dense, Activation, Softmax, ReLU, Dropout,
                                    Rescaling, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
                                    BatchNormalization)}


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
