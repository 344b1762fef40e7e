"""Sequential and functional models with the Keras training API, running on the C core.

Python checks arguments, infers shapes, keeps callbacks and prints; every per-batch step (gather,
forward, loss, backward, optimizer update, running loss and accuracy) happens in one C call per
epoch with the GIL released.
"""
import math
import threading
import warnings

import numpy as np

from mnistc import _C, _data, _random, callbacks as callbacks_mod, layers as layers_mod
from mnistc import losses, metrics as metrics_mod, optimizers
from mnistc._plan import Plan
from mnistc._tensor import as_tensor

_VERBOSE = (0, 1, 2, "auto")


def _verbose(v):
    if v not in _VERBOSE or isinstance(v, bool):
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto', got {v!r}")
    return 1 if v == "auto" else v


def _batch_size(bs, n):
    if bs is None:
        return 32
    return _data.check_int(bs, "batch_size", 1)


def _no_unsupported(**kwargs):
    for k, v in kwargs.items():
        if v is not None:
            raise ValueError(f"`{k}` is not supported by mnistc (received {k}={v!r})")


class Model:
    """A chain of layers with compile / fit / evaluate / predict (Keras's functional API).

    Example:
        inputs = mnistc.Input((28, 28))
        outputs = mnistc.layers.Dense(10)(mnistc.layers.Flatten()(inputs))
        model = mnistc.Model(inputs, outputs)
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to Model: {kwargs}")
        self._init_state(name)
        if isinstance(self, Sequential):
            return
        if not isinstance(inputs, layers_mod.KerasTensor) or not isinstance(outputs, layers_mod.KerasTensor):
            raise ValueError(
                "mnistc.Model needs `inputs` (from mnistc.Input) and `outputs` (layers called on them): "
                "Model(inputs, outputs). Subclassed models with a custom call() are not supported; "
                "use mnistc.Sequential or the functional API.")
        chain, t = [], outputs
        while t is not inputs:
            if t._parent is None:
                raise ValueError("Model: `outputs` is not computed from `inputs`; call each layer on the "
                                 "previous layer's output, starting from the Input")
            chain.append(t._layer)
            t = t._parent
        self._layers = chain[::-1]
        self._input_shape = tuple(inputs.shape[1:])
        self._check_names()
        self._build(self._input_shape)
        if not trainable:
            self.trainable = False

    def _init_state(self, name):
        base = "sequential" if isinstance(self, Sequential) else "functional"
        self.name = name or layers_mod._auto_name(base)
        self._layers = []
        self._input_shape = None
        self._output_shape = None
        self._plan = None
        self.optimizer = None
        self.loss = None
        self._metric = None
        self._compiled_flags = None
        self._compile_count = 0
        self.stop_training = False
        self.history = None
        self._busy = threading.Lock()

    # --- structure ---
    @property
    def layers(self):
        """The layers, InputLayer excluded (read-only)."""
        return list(self._layers)

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
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self._layers]}.")

    def _check_names(self):
        seen = set()
        for layer in self._layers:
            if layer.name in seen:
                raise ValueError(f"All layers added to a model must have unique names. Name '{layer.name}' "
                                 "is already the name of a layer in this model.")
            seen.add(layer.name)

    def _build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            layer._ensure_built(shape)
            shape = layer.output_shape
        self._input_shape = tuple(input_shape)
        self._output_shape = shape
        self._plan = None
        self._get_plan()      # weights become views into the model's block now

    def build(self, input_shape):
        """Build every layer for per-sample `input_shape` (a leading None batch axis is dropped)."""
        shape = tuple(input_shape)
        if shape and shape[0] is None:
            shape = shape[1:]
        self._build(shape)

    def _ensure_built_for(self, x):
        if self.built:
            return
        x = _data._as_array(x, "x")
        if x.ndim < 2:
            raise ValueError(f"Cannot build the model from input of shape {x.shape}: expected "
                             "(samples, features...)")
        self._build(x.shape[1:])

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

    # --- compile ---
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Configure training: optimizer, loss and metrics (strings or objects, Keras names).

        The trainable flags of the layers are recorded now: a later change of `layer.trainable`
        takes effect at the next compile (Keras's contract); fit warns if they changed.
        """
        _no_unsupported(loss_weights=loss_weights, weighted_metrics=weighted_metrics)
        opt = optimizers.get(optimizer)
        loss_obj = losses.get(loss) if loss is not None else None
        if metrics is None:
            metrics = []
        if isinstance(metrics, dict) or not isinstance(metrics, (list, tuple)):
            raise ValueError(f"Expected `metrics` argument to be a list or tuple. Received: metrics={metrics!r}")
        metric_objs = [metrics_mod.get(m) for m in metrics]
        if len(metric_objs) > 1:
            raise ValueError(f"mnistc computes one accuracy metric per model; received {list(metrics)!r}")
        self.optimizer = opt
        self.loss = loss_obj
        self._metric = metric_objs[0] if metric_objs else None
        self._compiled_flags = [layer.trainable for layer in self._layers]
        self._compile_count += 1

    @property
    def compiled(self):
        return self._compiled_flags is not None

    @property
    def metrics_names(self):
        return ["loss"] + ([self._metric.name] if self._metric else [])

    def _assert_compiled(self):
        if not self.compiled:
            raise ValueError("You must call `compile()` before using the model.")
        if self.loss is None:
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")

    def _train_flags(self):
        """The trainable flags recorded at compile, warning once if the layers' flags differ now."""
        flags = self._compiled_flags
        if len(flags) != len(self._layers):
            raise ValueError("The model's layers changed since compile(); call compile() again.")
        current = [layer.trainable for layer in self._layers]
        if current != flags:
            changed = [l.name for l, a, b in zip(self._layers, flags, current) if a != b]
            _data.warn_once(self, ("trainable", self._compile_count),
                            "A layer's `trainable` state has changed since the model was compiled; the change "
                            "takes effect only after you call `model.compile(...)` again. "
                            f"Changed layers: {changed}")
        return flags

    def _check_loss_head(self, plan):
        act = plan.last_activation
        loss = self.loss
        key = ("head", self._compile_count)
        if loss.kind in (losses.CCE, losses.SCCE, losses.BCE):
            prob_act = "sigmoid" if loss.kind == losses.BCE else "softmax"
            if loss.from_logits and act in ("softmax", "sigmoid"):
                _data.warn_once(self, key,
                                f"\"`{loss.name}` received `from_logits=True`, but the model's output was "
                                f"produced by a {act} activation and thus does not represent logits. Remove "
                                f"the {act} activation or use from_logits=False.")
            elif not loss.from_logits and act not in ("softmax", "sigmoid"):
                _data.warn_once(self, key,
                                f"`{loss.name}` has from_logits=False but the model's last layer has activation "
                                f"'{act}', so its outputs are not probabilities. Use "
                                f"{type(loss).__name__}(from_logits=True), or activation='{prob_act}' on the "
                                "last layer.")

    def _metric_code(self, y):
        if self._metric is None:
            return 0
        y_ndim = y.ndim
        y_last = y.shape[-1] if y.ndim else 1
        if self.loss.kind != losses.SCCE and y_ndim == 2 and y.shape[1] == self._out_units:
            y_ndim = 2
        return metrics_mod.resolve(self._metric, y_ndim, y_last, self._out_units)

    def _prepare(self, x, y, what="x"):
        """Check and convert (x, y) for C; returns (x2d, y_c, metric_code)."""
        self._ensure_built_for(x)
        if len(self._output_shape) > 1 and self.loss.kind in (losses.CCE, losses.SCCE):
            raise ValueError(
                f"The model's output has shape {(None, *self._output_shape)}, but `{self.loss.name}` reads one "
                "distribution over the classes per sample, shape (None, classes). Add a Flatten() layer before "
                "the last Dense layer.")
        x2 = _data.adapt_input(x, self._input_shape, what)
        y_arr = _data._as_array(y, "y" if what == "x" else what.replace("x", "y"))
        _data.check_cardinality(x2, y_arr)
        code = self._metric_code(y_arr)
        y_c = _data.adapt_target(y_arr, self.loss, self._out_units)
        return x2, y_c, code

    # --- fit ---
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1):
        """Train for `epochs` epochs (the last epoch index, counting from `initial_epoch`).

        Args:
            x: (N, *input_shape) float or uint8 array; float64 is converted to float32 once per call.
            y: integer class ids (N,) for sparse losses, else (N, units) targets.
        Returns:
            History: `history.history` maps 'loss', metric and 'val_*' names to per-epoch floats.
        Raises:
            ValueError / TypeError: bad arguments, with the model and the arrays left unchanged.
            RuntimeError: fit is already running on this model.
        """
        self._assert_compiled()
        _no_unsupported(class_weight=class_weight, sample_weight=sample_weight, steps_per_epoch=steps_per_epoch,
                        validation_steps=validation_steps)
        if x is None or y is None:
            raise ValueError("fit() needs both `x` and `y` arrays")
        verbose_level = _verbose(verbose)
        epochs = _data.check_int(epochs, "epochs", 1)
        initial_epoch = _data.check_int(initial_epoch, "initial_epoch", 0)
        validation_freq = _data.check_int(validation_freq, "validation_freq", 1)
        if shuffle not in (True, False):
            raise ValueError(f"`shuffle` must be True or False, got {shuffle!r}")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"`validation_split` must be a float in [0, 1), got {validation_split!r}")
        cb_list = list(callbacks or [])
        for cb in cb_list:
            if not isinstance(cb, callbacks_mod.Callback):
                raise TypeError(f"callbacks must be mnistc.callbacks.Callback instances, got {type(cb).__name__}")

        x2, y_c, code = self._prepare(x, y)
        batch_size = _batch_size(batch_size, len(x2))
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("`validation_data` must be a tuple (x_val, y_val)")
            if len(validation_data) == 3 and validation_data[2] is not None:
                raise ValueError("sample weights in `validation_data` are not supported by mnistc")
            xv, yv, _ = self._prepare(validation_data[0], validation_data[1], what="x_val")
            val = (xv, yv)
        elif validation_split:
            n = len(x2)
            split_at = int(math.floor(n * (1.0 - validation_split)))
            if split_at == 0 or split_at == n:
                raise ValueError(f"Training data contains {n} samples, which is not sufficient to split it "
                                 f"into a validation and training set as specified by `validation_split={validation_split}`. "
                                 "Either provide more data, or a different value for the `validation_split` argument.")
            x2, val = x2[:split_at], (x2[split_at:], y_c[split_at:])
            y_c = y_c[:split_at]
        val_bs = _batch_size(validation_batch_size, 0) if validation_batch_size is not None else batch_size

        if not self._busy.acquire(blocking=False):
            raise RuntimeError("fit() is already running on this model")
        try:
            return self._fit_loop(x2, y_c, code, batch_size, epochs, initial_epoch, verbose, verbose_level,
                                  cb_list, val, val_bs, validation_freq, shuffle)
        finally:
            self._busy.release()

    def _train_setup(self, x2):
        plan = self._get_plan()
        flags = self._train_flags()
        table, segments = plan.tables(flags)
        self.optimizer.build(segments)
        self._check_loss_head(plan)
        first = self._layers[0] if self._layers else None
        if not isinstance(first, layers_mod.Rescaling) and _data.looks_unscaled(x2):
            _data.warn_once(self, "unscaled",
                            "The inputs look unscaled (values above 1, e.g. raw 0..255 pixels) and the model has "
                            "no Rescaling layer; training will be slow or fail. Divide by 255 (x / 255.0) or "
                            "add mnistc.layers.Rescaling(1 / 255) as the first layer.")
        return plan, table, segments

    def _fit_loop(self, x2, y_c, code, batch_size, epochs, initial_epoch, verbose, verbose_level, cb_list,
                  val, val_bs, validation_freq, shuffle):
        plan, table, segments = self._train_setup(x2)
        opt = self.optimizer
        n = len(x2)
        steps = math.ceil(n / batch_size)
        history = callbacks_mod.History()
        all_cbs = cb_list + [history]       # Keras order: user callbacks, History, progress bar
        progbar = None
        if verbose_level:
            progbar = callbacks_mod.ProgbarLogger(verbose_level)
            all_cbs.append(progbar)
        cbl = callbacks_mod.CallbackList(all_cbs, self, {"verbose": verbose, "epochs": epochs, "steps": steps})
        every_batch = cbl.every_batch
        metric_name = self._metric.name if self._metric else None
        fit_seed = _random.new_seed()
        self.stop_training = False

        def logs_of(loss_sum, metric_sum, count):
            logs = {"loss": loss_sum / count}
            if metric_name:
                logs[metric_name] = metric_sum / count
            return logs

        def hook(batch, loss_sum, metric_sum, count):
            logs = logs_of(loss_sum, metric_sum, count)
            if every_batch:
                cbl.on_train_batch_end(batch, logs)
                if batch + 1 < steps and not self.stop_training:
                    cbl.on_train_batch_begin(batch + 1)
            if progbar is not None:
                progbar.update(batch + 1, logs)
            return self.stop_training

        cbl.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbl.on_epoch_begin(epoch)
            perm = np.random.default_rng([fit_seed, epoch]).permutation(n) if shuffle else None
            if every_batch:
                cbl.on_train_batch_begin(0)
            loss_sum, metric_sum, count, _ = _C.train_epoch(
                table, plan.lfloats, plan.params, plan.grads, x2, y_c, perm, batch_size, self.loss.c_spec(),
                code, opt.kind, opt.c_hyper(), segments, opt._slots, opt._iterations, fit_seed, hook,
                bool(every_batch))
            logs = logs_of(loss_sum, metric_sum, max(count, 1))
            if val is not None and (epoch + 1) % validation_freq == 0:
                vloss, vmetric, vn = _C.evaluate(table, plan.lfloats, plan.params, val[0], val[1], val_bs,
                                                 self.loss.c_spec(), code, None)
                logs.update({"val_" + k: v for k, v in logs_of(vloss, vmetric, vn).items()})
            logs = dict(sorted(logs.items()))
            cbl.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbl.on_train_end()
        self.history = history
        history.params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        return history

    # --- evaluate / predict ---
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """Loss (and metric) over the whole data set, batch-size-weighted means, no dropout.

        Returns:
            The loss (no metric compiled), [loss, metric], or a dict with return_dict=True.
        """
        if kwargs:
            raise ValueError(f"Arguments not recognized: {kwargs}")
        self._assert_compiled()
        _no_unsupported(sample_weight=sample_weight, steps=steps)
        verbose_level = _verbose(verbose)
        x2, y_c, code = self._prepare(x, y)
        batch_size = _batch_size(batch_size, len(x2))
        plan = self._get_plan()
        table, _ = plan.tables([l.trainable for l in self._layers])
        n_steps = math.ceil(len(x2) / batch_size)
        bar = None
        if verbose_level:
            from mnistc.progbar import Progbar
            bar = Progbar(n_steps, verbose=verbose_level)
        metric_name = self._metric.name if self._metric else None

        def logs_of(loss_sum, metric_sum, count):
            logs = {"loss": loss_sum / count}
            if metric_name:
                logs[metric_name] = metric_sum / count
            return dict(sorted(logs.items()))

        hook = None
        if bar is not None:
            def hook(batch, loss_sum, metric_sum, count):
                bar.update(batch + 1, logs_of(loss_sum, metric_sum, count))
        loss_sum, metric_sum, count = _C.evaluate(table, plan.lfloats, plan.params, x2, y_c, batch_size,
                                                  self.loss.c_spec(), code, hook)
        logs = logs_of(loss_sum, metric_sum, count)
        if bar is not None:
            bar.update(n_steps, logs, finalize=True)
        if return_dict:
            return logs
        if metric_name is None:
            return logs["loss"]
        return [logs["loss"], logs[metric_name]]

    def _forward(self, x2, batch_size, hook=None):
        """Outputs for input x2 (N, d) from _adapt. Float rows are checked for NaN/Inf in C, batch by
        batch as they are used (through a dense first layer's products): one pass over the data
        instead of a scan and then the products."""
        plan = self._get_plan()
        out = np.empty((len(x2), self._out_units), np.float32)
        if len(plan.layers) == 0:
            if x2.dtype != np.uint8:
                _data.require_finite(x2)
            out[...] = x2
        else:
            try:
                _C.predict(plan.layers, plan.lfloats, plan.params, x2, out, batch_size, hook, True)  # check_finite
            except ValueError:
                if x2.dtype != np.uint8:
                    _data.require_finite(x2)  # the usual message, with the counts over all of x
                raise
        return out.reshape((len(x2), *self._output_shape))

    def _adapt(self, x):
        self._ensure_built_for(x)
        return _data.adapt_input(x, self._input_shape, check_finite=False)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Model outputs for x as one float32 array (N, *output_shape); needs no compile; no dropout."""
        _no_unsupported(steps=steps)
        verbose_level = _verbose(verbose)
        batch_size = _batch_size(batch_size, 0)
        x2 = self._adapt(x)
        hook, bar = None, None
        if verbose_level:
            from mnistc.progbar import Progbar
            bar = Progbar(math.ceil(len(x2) / batch_size), verbose=verbose_level)

            def hook(batch, *_):
                bar.update(batch + 1)
        out = self._forward(x2, batch_size, hook)
        if bar is not None:
            bar.update(bar.target, finalize=True)
        return out

    def predict_on_batch(self, x):
        """predict() on one batch, without progress output."""
        x2 = self._adapt(x)
        return self._forward(x2, len(x2))

    def __call__(self, x, training=False):
        """Run the model on an array (inference mode) and return the outputs."""
        if isinstance(x, layers_mod.KerasTensor):
            raise ValueError("Calling a model on a symbolic input (nesting models) is not supported; "
                             "list the layers in one Sequential or functional model instead")
        if training and any(isinstance(l, layers_mod.Dropout) and l.rate > 0 for l in self._layers):
            raise ValueError("model(x, training=True) is not supported for models with Dropout; "
                             "use train_on_batch or fit to train")
        return as_tensor(self.predict_on_batch(x))

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on (x, y) as a single batch; returns the batch's loss (and metric) as
        measured before the update."""
        self._assert_compiled()
        _no_unsupported(sample_weight=sample_weight, class_weight=class_weight)
        x2, y_c, code = self._prepare(x, y)
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("fit() is already running on this model")
        try:
            plan, table, segments = self._train_setup(x2)
            opt = self.optimizer
            loss_sum, metric_sum, count, _ = _C.train_epoch(
                table, plan.lfloats, plan.params, plan.grads, x2, y_c, None, len(x2), self.loss.c_spec(), code,
                opt.kind, opt.c_hyper(), segments, opt._slots, opt._iterations, _random.new_seed(), None, False)
        finally:
            self._busy.release()
        return self._batch_result(loss_sum, metric_sum, count, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss (and metric) on one batch, without updating anything."""
        self._assert_compiled()
        _no_unsupported(sample_weight=sample_weight)
        x2, y_c, code = self._prepare(x, y)
        plan = self._get_plan()
        loss_sum, metric_sum, count = _C.evaluate(plan.layers, plan.lfloats, plan.params, x2, y_c, len(x2),
                                                  self.loss.c_spec(), code, None)
        return self._batch_result(loss_sum, metric_sum, count, return_dict)

    def _batch_result(self, loss_sum, metric_sum, count, return_dict):
        logs = {"loss": loss_sum / count}
        if self._metric:
            logs[self._metric.name] = metric_sum / count
        if return_dict:
            return dict(sorted(logs.items()))
        return logs["loss"] if not self._metric else [logs["loss"], logs[self._metric.name]]

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
        cfg = {"name": self.name, "layers": [layers_mod.serialize(l) for l in self._layers]}
        if self._input_shape is not None:
            cfg["input_shape"] = list(self._input_shape)
        return cfg

    def to_json(self):
        import json
        return json.dumps({"class_name": type(self).__name__, "config": self.get_config()})

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

    def add(self, layer):
        """Append a layer (or an Input as the first element)."""
        if isinstance(layer, layers_mod.KerasTensor) and isinstance(layer._layer, layers_mod.InputLayer) \
                and layer._parent is None:
            layer = layer._layer
        if isinstance(layer, Model):
            # A model inside a Sequential contributes its layers (shared, with their weights).
            if not self._layers and self._input_shape is None and layer._input_shape is not None:
                self.add(layers_mod.InputLayer(shape=layer._input_shape))
            for inner in layer.layers:
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
        self._plan = None
        if self.built:
            self._get_plan()  # weights become views into the model's block now

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise IndexError("There are no layers in the model.")
        layer = self._layers.pop()
        self._plan = None
        if self._input_shape is not None:
            self._output_shape = self._layers[-1].output_shape if self._layers else self._input_shape
        return layer


def _run_layers(layer_list, x, training=False):
    """Eager call of standalone layers on an array: a throwaway Sequential around them."""
    x = np.asarray(x)
    model = Sequential([layers_mod.InputLayer(shape=x.shape[1:])] + list(layer_list))
    return model(x, training=training)
