"""Sequential and functional models: structure, weights and configuration.

Training and inference (compile, fit, evaluate, predict) come from `Trainer` (mnistc/trainer.py),
mixed into Model as in Keras 3. Also here: clone_model and model_from_json.
"""
import json
import math

import numpy as np

from mnistc import _data, layers as layers_mod
from mnistc._plan import Plan
from mnistc._tensor import as_tensor
from mnistc.trainer import Trainer, no_unsupported


def _single(tensors, what):
    """The KerasTensor in `tensors` (a tensor, or a list or tuple of one)."""
    if isinstance(tensors, (list, tuple)) and len(tensors) == 1:
        tensors = tensors[0]
    if isinstance(tensors, (list, tuple, dict)) and len(tensors) > 1:
        raise ValueError(f"mnistc.Model takes one input and one output; got {len(tensors)} {what}. Multi-input and "
                         "multi-output models are not supported: build one model per output, or one output "
                         "Dense layer with all the units.")
    if not isinstance(tensors, layers_mod.KerasTensor):
        raise ValueError(
            f"mnistc.Model needs `inputs` (one mnistc.Input) and `outputs` (layers called on it): "
            f"Model(inputs, outputs); got {what}={tensors!r}. Subclassed models with a custom call() are not "
            "supported; use mnistc.Sequential or the functional API.")
    return tensors


class Model(Trainer):
    """A chain of layers with compile / fit / evaluate / predict (Keras's functional API).

    Example:
        inputs = mnistc.Input((28, 28))
        outputs = mnistc.layers.Dense(10)(mnistc.layers.Flatten()(inputs))
        model = mnistc.Model(inputs, outputs)
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to Model: {kwargs}")
        Trainer.__init__(self)
        self.name = name or layers_mod._auto_name(self._kind.lower())
        self._layers = []          # the layers C runs, in order; no InputLayer
        self._input_layer = None   # a functional model's InputLayer, first in `layers`
        self._inputs = None        # [KerasTensor]; a Sequential's are made when first asked for
        self._outputs = None
        self._input_tensor = None  # a Sequential's symbolic input, kept across rebuilds
        self._input_shape = None
        self._output_shape = None
        self._plan = None
        if isinstance(self, Sequential):
            return
        inputs, outputs = _single(inputs, "inputs"), _single(outputs, "outputs")
        chain, t = [], outputs
        while t is not inputs:
            if t._parent is None:
                raise ValueError("Model: `outputs` is not computed from `inputs`; call each layer on the "
                                 "previous layer's output, starting from the Input")
            chain.append(t._layer)
            t = t._parent
        self._layers = chain[::-1]
        self._input_shape = tuple(inputs.shape[1:])
        from_input = isinstance(inputs._layer, layers_mod.InputLayer) and inputs._parent is None
        self._input_layer = inputs._layer if from_input else layers_mod.InputLayer(shape=self._input_shape)
        self._inputs, self._outputs = [inputs], [outputs]
        self._check_names()
        self._build(self._input_shape)
        if not trainable:
            self.trainable = False

    @property
    def _kind(self):
        """The model's class in configs, as Keras names it: 'Sequential' or 'Functional'."""
        return "Sequential" if isinstance(self, Sequential) else "Functional"

    # --- structure ---
    @property
    def layers(self):
        """The layers (read-only): a functional model's InputLayer first, a Sequential's not listed."""
        return ([self._input_layer] if self._input_layer is not None else []) + self._layers

    @property
    def inputs(self):
        """[KerasTensor]: the model's symbolic input."""
        return list(self._symbolic()[0])

    @property
    def outputs(self):
        """[KerasTensor]: the model's symbolic output."""
        return list(self._symbolic()[1])

    @property
    def input(self):
        return self._symbolic()[0][0]

    @property
    def output(self):
        return self._symbolic()[1][0]

    def _symbolic(self):
        if self._inputs is None:
            if not self.built:
                raise AttributeError(f"{self._kind} model '{self.name}' has no defined inputs yet.")
            # one input tensor for every rebuild, so that each layer's first call leads back to it
            if self._input_tensor is None or self._input_tensor.shape[1:] != self._input_shape:
                self._input_tensor = layers_mod.Input(shape=self._input_shape)
            t = inputs = self._input_tensor
            for layer in self._layers:
                t = layer(t)
            self._inputs, self._outputs = [inputs], [t]
        return self._inputs, self._outputs

    @property
    def built(self):
        return self._output_shape is not None

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None, *self._input_shape)

    @property
    def output_shape(self):
        return None if self._output_shape is None else (None, *self._output_shape)

    def get_layer(self, name=None, index=None):
        """The layer at `index` of `layers`, or the one called `name`."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self.layers]}.")

    def _check_names(self):
        seen = set()
        for layer in self.layers:
            if layer.name in seen:
                raise ValueError(f"All layers added to a model must have unique names. Name '{layer.name}' "
                                 "is already the name of a layer in this model.")
            seen.add(layer.name)

    def _structure_changed(self):
        self._plan = None

    def _build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            layer._ensure_built(shape)
            shape = layer.output_shape
        self._input_shape = tuple(input_shape)
        self._output_shape = shape
        self._structure_changed()
        self._get_plan()      # weights become views into the model's block now

    def build(self, input_shape):
        """Build every layer for per-sample `input_shape` (a leading None batch axis is dropped)."""
        shape = tuple(input_shape)
        if shape and shape[0] is None:
            shape = shape[1:]
        self._build(shape)

    def _adapt(self, x, what="x"):
        """x as C reads it (see _data.adapt_input), building the model from x's shape if need be."""
        if not self.built:
            x = _data._as_array(x, what)
            if x.ndim < 2:
                raise ValueError(f"Cannot build the model from input of shape {x.shape}: expected "
                                 "(samples, features...)")
            self._build(x.shape[1:])
        return _data.adapt_input(x, self._input_shape, what)

    def _get_plan(self):
        if not self.built:
            raise ValueError(f"Model '{self.name}' has not been built yet: give the first layer an input "
                             "shape (mnistc.Input(shape)) or call fit/predict on data first.")
        if self._plan is None:
            self._plan = Plan(self._layers)
        self._plan.adopt()
        return self._plan

    @property
    def _out_units(self):
        return math.prod(self._output_shape)

    def __call__(self, x, training=False):
        """Run the model on an array (inference mode) and return the outputs."""
        if isinstance(x, layers_mod.KerasTensor):
            raise ValueError("Calling a model on a symbolic input (nesting models) is not supported; "
                             "list the layers in one Sequential or functional model instead")
        if training:
            modal = [type(l).__name__ for l in self._layers if isinstance(l, layers_mod.BatchNormalization)
                     or (isinstance(l, layers_mod.Dropout) and l.rate > 0)]
            if modal:
                raise ValueError(f"model(x, training=True) is not supported for models with "
                                 f"{' or '.join(sorted(set(modal)))}, which act differently in training; use "
                                 "train_on_batch or fit to train")
        return as_tensor(self.predict_on_batch(x))

    # --- weights ---
    @property
    def trainable(self):
        return all(layer.trainable for layer in self._layers)

    @trainable.setter
    def trainable(self, value):
        for layer in self._layers:
            layer.trainable = value

    @property
    def weights(self):
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._layers for w in layer.non_trainable_weights]

    @property
    def losses(self):
        """The current weight penalties (regularizers) of the trainable weights, float32 scalars in
        weight order, as Keras's `model.losses`; fit and evaluate add their sum to the loss."""
        return [loss for layer in self._layers for loss in layer.losses]

    def get_weights(self):
        """Copies of all weights, per layer in order: kernel, bias."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Write all weights; nothing changes unless the count and every shape match."""
        weights = list(weights)
        expected = self.weights
        if len(weights) != len(expected):
            raise ValueError(f"You called `set_weights(weights)` on model '{self.name}' with a weight list of "
                             f"length {len(weights)}, but the model was expecting {len(expected)} weights.")
        arrays = []
        for cur, new in zip(expected, weights):
            new = np.asarray(new)
            if new.shape != cur.shape:
                raise ValueError(f"Weight shape {cur.shape} is not compatible with provided weight shape "
                                 f"{new.shape}.")
            arrays.append(new.astype(np.float32, copy=False))
        for cur, new in zip(expected, arrays):
            cur[...] = new

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on model '{self.name}', but the model isn't "
                             "built. You can build it manually via: `model.build(input_shape)`.")
        return sum(layer.count_params() for layer in self._layers)

    # --- summary ---
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print the layer table and the Total / Trainable / Non-trainable parameter counts."""
        from mnistc._summary import render
        text = render(self, show_trainable=show_trainable)
        (print_fn or print)(text)

    # --- saving ---
    def save_weights(self, filepath, overwrite=True):
        """Write the weights to a `.weights.npz` NumPy archive (atomically)."""
        from mnistc import saving
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        """Read weights saved by save_weights (matched by layer order and class; all or nothing)."""
        from mnistc import saving
        saving.load_weights(self, filepath)

    def save(self, filepath, overwrite=True):
        """Write architecture, compile settings, weights and optimizer state to one `.keras` file."""
        from mnistc import saving
        saving.save_model(self, filepath, overwrite=overwrite)

    def get_config(self):
        """The structure as plain data: name, the layers' configs (InputLayer excluded), the input's
        shape and, for a functional model, its name."""
        cfg = {"name": self.name, "layers": [layers_mod.serialize(l) for l in self._layers]}
        if self._input_shape is not None:
            cfg["input_shape"] = list(self._input_shape)
        if self._input_layer is not None:
            cfg["input_name"] = self._input_layer.name
        return cfg

    def to_json(self):
        """The structure as a JSON string, read back by mnistc.models.model_from_json."""
        return json.dumps({"class_name": self._kind, "config": self.get_config()})

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class Sequential(Model):
    """A plain stack of layers, each feeding the next.

    Example:
        model = mnistc.Sequential([mnistc.Input((28, 28)), mnistc.layers.Flatten(),
                                   mnistc.layers.Dense(128, activation="relu"), mnistc.layers.Dense(10)])
    """

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name)
        for layer in layers or []:
            self.add(layer)
        if not trainable:
            self.trainable = False

    def _structure_changed(self):
        super()._structure_changed()
        self._inputs = self._outputs = None

    def _build(self, input_shape):
        super()._build(input_shape)
        self._symbolic()      # the layers' `input` / `output`, as a built Keras Sequential has them

    def add(self, layer):
        """Append a layer (or an Input as the first element)."""
        if isinstance(layer, layers_mod.KerasTensor) and isinstance(layer._layer, layers_mod.InputLayer) \
                and layer._parent is None:
            layer = layer._layer
        if isinstance(layer, Model):
            # A model inside a Sequential contributes its layers (shared, with their weights).
            if not self._layers and self._input_shape is None and layer._input_shape is not None:
                self.add(layers_mod.InputLayer(shape=layer._input_shape))
            for inner in layer._layers:
                self.add(inner)
            return
        if isinstance(layer, layers_mod.InputLayer):
            if self._layers or self._input_shape is not None:
                raise ValueError("An Input or InputLayer can only be the first element of a Sequential model")
            self._input_shape = layer._shape
            self._build(self._input_shape)
            return
        if not isinstance(layer, layers_mod.Layer):
            raise ValueError(f"Only instances of `mnistc.layers.Layer` can be added to a Sequential model. "
                             f"Received: {layer!r} (of type {type(layer).__name__})")
        if any(l.name == layer.name for l in self._layers):
            raise ValueError(f"All layers added to a Sequential model should have unique names. Name "
                             f"'{layer.name}' is already the name of a layer in this model. Update the `name` "
                             "argument to pass a unique name.")
        if self._input_shape is None and not self._layers and layer._declared_input_shape is not None:
            self._input_shape = layer._declared_input_shape
        if self._input_shape is not None:
            shape = self._output_shape if self._output_shape is not None else self._input_shape
            layer._ensure_built(shape)
            self._output_shape = layer.output_shape
        self._layers.append(layer)
        self._structure_changed()
        if self.built:
            self._get_plan()  # weights become views into the model's block now
            self._symbolic()

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise IndexError("There are no layers in the model.")
        layer = self._layers.pop()
        self._structure_changed()
        if self._input_shape is not None:
            self._output_shape = self._layers[-1].output_shape if self._layers else self._input_shape
        return layer


def _run_layers(layer_list, x, training=False):
    """Eager call of standalone layers on an array: a throwaway Sequential around them."""
    x = np.asarray(x)
    model = Sequential([layers_mod.InputLayer(shape=x.shape[1:])] + list(layer_list))
    return model(x, training=training)


def _assemble(kind, name, input_shape, layer_list, input_name=None):
    """A model (kind 'Sequential' or 'Functional', as in configs) of new layers on per-sample
    `input_shape` (None: a Sequential built when it first sees data)."""
    if kind == "Sequential":
        model = Sequential(name=name)
        if input_shape is not None:
            model.add(layers_mod.InputLayer(shape=tuple(input_shape)))
        for layer in layer_list:
            model.add(layer)
        return model
    t = inputs = layers_mod.Input(shape=tuple(input_shape), name=input_name)
    for layer in layer_list:
        t = layer(t)
    return Model(inputs, t, name=name)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive=False,
                **kwargs):
    """A new model of the same structure: each layer made anew from its config (same names and
    settings, fresh weights), not compiled. Works for Sequential and functional models.

    Args:
        clone_function: layer -> new layer, in place of the config round trip (Keras's hook).
    Raises:
        ValueError: `model` is not a mnistc model, or an unsupported argument was given.
    """
    if kwargs:
        raise ValueError(f"Arguments not recognized: {kwargs}")
    no_unsupported(input_tensors=input_tensors, call_function=call_function)
    if not isinstance(model, Model):
        raise ValueError(f"Expected `model` to be a mnistc Model instance. Received: model={model!r}")
    clone = clone_function or (lambda layer: layers_mod.deserialize(layers_mod.serialize(layer)))
    input_name = model._input_layer.name if model._input_layer is not None else None
    return _assemble(model._kind, model.name, model._input_shape, [clone(l) for l in model._layers], input_name)


def model_from_json(json_string, custom_objects=None):
    """The model `model.to_json()` described: same structure and names, fresh weights, not compiled.

    Raises:
        ValueError: the string is not JSON (mnistc.FormatError, a ValueError: not a model description).
    """
    from mnistc import saving
    try:
        config = json.loads(json_string)
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"model_from_json: expected the JSON string of model.to_json(), got {e}") from None
    kind, name, shape, layer_list = saving._layers_from_config(config)
    return _assemble(kind, name, shape, layer_list, config["config"].get("input_name"))
