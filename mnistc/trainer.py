"""Training and inference for models (Keras 3's `Trainer`, mixed into Model): compile, fit, evaluate,
predict and the on-batch calls, their logs and callbacks.

Python checks arguments, keeps callbacks and prints; every per-batch step (gather, forward, loss,
backward, optimizer update, running sums of the loss and the compiled metrics) happens in C with
the GIL released: one call per epoch for arrays, one per batch for batch streams (generators,
PyDataset). Each C entry point is called from one function below.
"""
import contextlib
import math
import threading
from typing import NamedTuple

import numpy as np

from mnistc import _C, _data, _random, callbacks as callbacks_mod, layers as layers_mod
from mnistc import losses, metrics as metrics_mod, optimizers

_VERBOSE = (0, 1, 2, "auto")


class Data(NamedTuple):
    """A call's arrays as C reads them: x (N, d) float32 or uint8; y int32 class ids (N,) or float32
    rows (N, units); the compiled metrics' (C code, k, weighted) triples, `metrics` then
    `weighted_metrics` in compile order; whether x looked like unscaled 0..255 pixels; sw float32 (N,)
    weights of the per-sample losses and of the weighted metrics, or None; whether sw came from
    class_weight (which weighs the training rows only)."""
    x: np.ndarray
    y: np.ndarray
    metrics: tuple
    unscaled: bool = False
    sw: np.ndarray = None
    class_weighted: bool = False

    def split(self, at):
        """(rows [0, at), rows [at, N)) as views, for validation_split. Keras splits x, y and
        sample_weight before class_weight is applied: validation rows keep only sample weights."""
        sw = self.sw
        return (self._replace(x=self.x[:at], y=self.y[:at], sw=None if sw is None else sw[:at]),
                Data(self.x[at:], self.y[at:], self.metrics,
                     sw=None if sw is None or self.class_weighted else sw[at:]))


class Training(NamedTuple):
    """The model side of a training call: the plan (weights, gradients, layer table), the layer table
    with the compiled trainable flags and its trainable segments, the optimizer and the loss."""
    plan: object
    table: np.ndarray
    segments: np.ndarray
    optimizer: object
    loss: object


class Epochs(NamedTuple):
    """fit's schedule: batch sizes, the epoch range, shuffling and how often to validate."""
    batch_size: int
    initial_epoch: int
    epochs: int
    shuffle: bool
    val_batch_size: int
    validation_freq: int


def _c_train_epoch(training, data, batch_size, perm, seed, hook=None, every_batch=False):
    """Optimizer steps over data in batches of batch_size (rows in `perm` order, or as they stand
    for None), in one C call; (loss_sum, metric_sums, count) measured before each batch's update,
    metric_sums a tuple in data.metrics' order: a float per metric, for a weighted one the pair
    (sum(w * value), sum(w)). hook(batch, loss_sum, metric_sums, count) -> stop runs
    after every batch when every_batch, else at most every 0.05 s (the progress bar's pace)."""
    plan, opt = training.plan, training.optimizer
    loss_sum, metric_sums, count, _ = _C.train_epoch(
        training.table, plan.lfloats, plan.params, plan.grads, data.x, data.y, perm, batch_size,
        training.loss.c_spec(), data.metrics, opt.kind, opt.c_hyper(), opt._slots,
        opt._iterations, seed, hook, every_batch, data.sw)
    return loss_sum, metric_sums, count


def _c_evaluate(plan, flags, loss, data, batch_size, hook=None):
    """(loss_sum, metric_sums, count) of the model over data, as _c_train_epoch's; no dropout, nothing
    updated. With sample weights loss_sum is sum(w * loss); only the weighted metrics read them. The
    loss includes the weight penalties of the layers trainable by `flags`."""
    return _C.evaluate(plan.tables(flags)[0], plan.lfloats, plan.params, data.x, data.y, batch_size,
                       loss.c_spec(), data.metrics, hook, data.sw)


def _add_sums(total, sums):
    """Two C calls' (loss_sum, metric_sums, count) added up, the metric sums one by one."""
    def add(a, b):
        return (a[0] + b[0], a[1] + b[1]) if isinstance(a, tuple) else a + b
    return total[0] + sums[0], tuple(add(a, b) for a, b in zip(total[1], sums[1])), total[2] + sums[2]


def _c_predict(plan, x, out, batch_size, hook=None):
    """Fill out (N, n_out) with the outputs for x (N, d). Float rows holding NaN or Inf raise
    ValueError, found in C as each batch is reached (check_finite)."""
    _C.predict(plan.layers, plan.lfloats, plan.params, x, out, batch_size, hook, True)


def _verbose(v):
    if v not in _VERBOSE or isinstance(v, bool):
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto', got {v!r}")
    return 1 if v == "auto" else v


def _batch_size(bs):
    return 32 if bs is None else _data.check_int(bs, "batch_size", 1)


def _progbar(verbose_level, steps):
    if not verbose_level:
        return None
    from mnistc.progbar import Progbar
    return Progbar(steps, verbose=verbose_level)


def _stream_only_args(**kwargs):
    """ValueError naming the array-only arguments given with a generator or PyDataset input."""
    for k, v in kwargs.items():
        if v is not None:
            shown = f"an array of shape {v.shape}" if isinstance(v, np.ndarray) else repr(v)
            raise ValueError(f"`{k}` cannot be used when `x` is a generator or PyDataset: its batches carry "
                             "the targets, sample weights and batch size ((x, y) or (x, y, sample_weight) "
                             f"tuples); received {k}={shown}")


def _metric_list(metrics, argument):
    """The metric objects of compile's `metrics` or `weighted_metrics` (None: none)."""
    if metrics is None:
        return []
    if not isinstance(metrics, (list, tuple)):
        raise ValueError(f"Expected `{argument}` argument to be a list or tuple. Received: {argument}={metrics!r}")
    return [metrics_mod.get(m) for m in metrics]


def _log_names(metric_objs, weighted_objs):
    """The logged names of the metrics then the weighted metrics. As Keras's CompileMetrics.result: a
    weighted metric whose name is taken is logged as weighted_<name>. Names that would still collide
    (with each other or 'loss'; Keras would append _1) are refused."""
    names = [m.name for m in metric_objs]
    for m in weighted_objs:
        names.append(m.name if m.name not in names else f"weighted_{m.name}")
    given = [m.name for m in metric_objs + weighted_objs]
    for i, name in enumerate(names):
        if name == "loss" or names.count(name) > 1:
            lists = f"metrics {given[:len(metric_objs)]!r}"
            if weighted_objs:
                lists += f", weighted_metrics {given[len(metric_objs):]!r}"
            cls = type((metric_objs + weighted_objs)[i]).__name__
            example = "SparseCategoricalAccuracy(name=...) for 'accuracy'" if cls == "_Auto" else f"{cls}(name=...)"
            raise ValueError(f"Two of the compiled values would both be logged as {name!r} ({lists}, and "
                             f"'loss'); give the metric objects distinct names, e.g. {example}")
    return names


def no_unsupported(**kwargs):
    for k, v in kwargs.items():
        if v is not None:
            raise ValueError(f"`{k}` is not supported by mnistc (received {k}={v!r})")


class Trainer:
    """compile / fit / evaluate / predict for a Model; the model supplies the structure (`_layers`,
    `_get_plan`, `_adapt`, `_out_units`, `_output_shape`)."""

    def __init__(self):
        self.optimizer = None
        self.loss = None
        self._metrics = []
        self._weighted_metrics = []
        self._log_names = []
        self._compiled_flags = None
        self._compile_count = 0
        self.stop_training = False
        self.history = None
        self._busy = threading.Lock()

    # --- compile ---
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Configure training: optimizer, loss and metrics (strings or objects, Keras names).

        `metrics` are means over the samples; `weighted_metrics` (the same kinds) are weighted by
        fit's and evaluate's `sample_weight` or `class_weight`, sum(w * value) / sum(w), and logged
        as `weighted_<name>` when a metric of `metrics` already has their name (Keras's rule).

        The trainable flags of the layers are recorded now: a later change of `layer.trainable`
        takes effect at the next compile (Keras's contract); fit warns if they changed.
        """
        no_unsupported(loss_weights=loss_weights)
        opt = optimizers.get(optimizer)
        loss_obj = losses.get(loss) if loss is not None else None
        metric_objs = _metric_list(metrics, "metrics")
        weighted_objs = _metric_list(weighted_metrics, "weighted_metrics")
        if len(metric_objs) + len(weighted_objs) > metrics_mod.MAX_METRICS:
            raise ValueError(f"mnistc computes at most {metrics_mod.MAX_METRICS} metrics per model inside fit, "
                             "`metrics` and `weighted_metrics` together; received "
                             f"{len(metric_objs)} + {len(weighted_objs)}: metrics={list(metrics or [])!r}, "
                             f"weighted_metrics={list(weighted_metrics or [])!r}")
        log_names = _log_names(metric_objs, weighted_objs)
        self.optimizer = opt
        self.loss = loss_obj
        self._metrics = metric_objs
        self._weighted_metrics = weighted_objs
        self._log_names = log_names
        self._compiled_flags = [layer.trainable for layer in self._layers]
        self._compile_count += 1

    @property
    def compiled(self):
        return self._compiled_flags is not None

    @property
    def metrics_names(self):
        return ["loss"] + self._log_names

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

    def _eval_flags(self):
        """The trainable flags whose layers' weight penalties evaluate adds: those of compile (as fit's),
        or the current ones when the layers changed since."""
        flags = self._compiled_flags
        return flags if len(flags) == len(self._layers) else [layer.trainable for layer in self._layers]

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

    def _metric_specs(self, y):
        """The compiled metrics' (C code, k, weighted) triples for targets y (resolving "accuracy" by
        y's shape): `metrics`, then `weighted_metrics`."""
        y_last = y.shape[-1] if y.ndim else 1
        return tuple((*metrics_mod.resolve(m, y.ndim, y_last, self._out_units), int(weighted))
                     for ms, weighted in ((self._metrics, False), (self._weighted_metrics, True)) for m in ms)

    # --- data and logs ---
    def _prepare(self, x, y, what="x", training=False, sample_weight=None, class_weight=None):
        """(x, y) checked and converted for C as a Data, x's values read once: for NaN/Inf and, when
        training without a Rescaling or Normalization first layer, for looking like unscaled pixels.
        sample_weight (N,) or class_weight {class id: weight} (not both) become the Data's per-sample
        weights."""
        if sample_weight is not None and class_weight is not None:
            raise ValueError("You cannot `class_weight` and `sample_weight` at the same time. Multiply the class "
                             "weights into `sample_weight` instead.")
        _data.check_single(x, what, "input")
        _data.check_single(y, "y" if what == "x" else what.replace("x", "y", 1), "output")
        x2 = self._adapt(x, what)
        if len(self._output_shape) > 1 and self.loss.kind in (losses.CCE, losses.SCCE):
            raise ValueError(
                f"The model's output has shape {(None, *self._output_shape)}, but `{self.loss.name}` reads one "
                "distribution over the classes per sample, shape (None, classes). Add a Flatten() layer before "
                "the last Dense layer.")
        scales = (layers_mod.Rescaling, layers_mod.Normalization)
        rescales = bool(self._layers) and isinstance(self._layers[0], scales)
        unscaled = _data.scan_input(x2, what, scale=training and not rescales)
        y_arr = _data._as_array(y, "y" if what == "x" else what.replace("x", "y"))
        _data.check_cardinality(x2, y_arr)
        specs = self._metric_specs(y_arr)
        y_c = _data.adapt_target(y_arr, self.loss, self._out_units)
        sw = None
        if class_weight is not None:
            sw = _data.class_weight_to_sample_weights(y_arr, class_weight, self._out_units)
        elif sample_weight is not None:
            sw = _data.adapt_sample_weight(sample_weight, len(x2), what.replace("x", "sample_weight", 1))
        return Data(x2, y_c, specs, unscaled, sw, class_weight is not None)

    def _no_sums(self):
        """(loss_sum, metric_sums, count) before any batch."""
        return 0.0, (0.0,) * len(self._metrics) + ((0.0, 0.0),) * len(self._weighted_metrics), 0

    def _logs(self, sums, prefix=""):
        """Keras logs (keys sorted) from a C call's (loss_sum, metric_sums, count): the means, a
        weighted metric's sum(w * value) / sum(w) (0 when the weights sum to 0, as Keras's
        divide_no_nan)."""
        loss_sum, metric_sums, count = sums
        count = max(count, 1)
        logs = {prefix + "loss": loss_sum / count}
        for name, total in zip(self._log_names, metric_sums):
            if isinstance(total, tuple):
                logs[prefix + name] = total[0] / total[1] if total[1] else 0.0
            else:
                logs[prefix + name] = total / count
        return dict(sorted(logs.items()))

    def _result(self, logs, return_dict):
        """What evaluate and the on-batch calls return: the logs, the loss alone, or a list as Keras's
        _flatten_metrics_in_order makes it: the values of 'loss' and of the metrics' own names, in
        compile order, then the other keys sorted. So a metric of both lists shows its unweighted
        value twice before its weighted_ value, as in Keras 3.15."""
        if return_dict:
            return logs
        names = ["loss"] + [m.name for m in self._metrics + self._weighted_metrics]
        result = [logs[n] for n in names if n in logs] + [logs[k] for k in sorted(logs) if k not in names]
        return result[0] if len(result) == 1 else result

    @contextlib.contextmanager
    def _exclusive(self):
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("fit() is already running on this model")
        try:
            yield
        finally:
            self._busy.release()

    def _training(self, data):
        """The Training for a call on data: plan, compiled flags' table and segments, optimizer built."""
        plan = self._get_plan()
        n_nan, n_inf, _, _ = _C.scan_floats(plan.params)
        if n_nan or n_inf:
            bad = [f"{layer.name}/{name}" for layer in self._layers
                   for name, w in zip(layer._weight_names, layer._weights) if not np.all(np.isfinite(w))]
            raise ValueError(f"Cannot train: the weights {bad} hold {n_nan} NaN and {n_inf} infinite value(s) "
                             "(from set_weights, load_weights or an earlier fit that diverged). Give them finite "
                             "values (set_weights, or a new model) and, if training diverged, a smaller "
                             "learning_rate.")
        table, segments = plan.tables(self._train_flags())
        self.optimizer.build(segments)
        self._check_loss_head(plan)
        if data.unscaled:
            _data.warn_once(self, "unscaled",
                            "The inputs look unscaled (values above 1, e.g. raw 0..255 pixels) and the model has "
                            "no Rescaling layer; training will be slow or fail. Divide by 255 (x / 255.0) or "
                            "add mnistc.layers.Rescaling(1 / 255) as the first layer.")
        return Training(plan, table, segments, self.optimizer, self.loss)

    # --- fit ---
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1):
        """Train up to epoch index `epochs` (exclusive), counting from `initial_epoch`.

        Args:
            x: (N, *input_shape) float or uint8 array; float64 is converted to float32 once per call.
            y: integer class ids (N,) for sparse losses, else (N, units) targets.
            sample_weight: (N,) weights of the per-sample losses: a batch's loss is sum(w * loss) / rows
                (Keras's "sum_over_batch_size"), and of the `weighted_metrics`, sum(w * value) / sum(w);
                `metrics` stay unweighted.
            class_weight: {class id: weight}, turned into sample weights from y (argmax of one-hot
                rows); classes not listed weigh 1. Validation rows are not class-weighted: their
                weighted metrics read validation_data's own weights (x, y, sample_weight), or ones.
        Returns:
            History: `history.history` maps 'loss', metric and 'val_*' names to per-epoch floats; empty
            when `epochs <= initial_epoch` (epochs=0, say), as in Keras.
        Raises:
            ValueError / TypeError: bad arguments, with the model and the arrays left unchanged.
            RuntimeError: fit is already running on this model.
        """
        self._assert_compiled()
        stream = _data.is_batch_stream(x)
        if x is None or (y is None and not stream):
            raise ValueError("fit() needs both `x` and `y` arrays, or `x` a generator or PyDataset of (x, y) batches")
        _verbose(verbose)
        epochs = _data.check_int(epochs, "epochs", 0)
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

        n_epochs = max(epochs - initial_epoch, 0)
        if stream:
            _stream_only_args(y=y, sample_weight=sample_weight, batch_size=batch_size,
                              validation_split=validation_split or None)
            data = _data.BatchStream(x, steps_per_epoch, "steps_per_epoch")
            data.check_repeatable(n_epochs, "steps_per_epoch")
            batch_size = None
        else:
            if steps_per_epoch is not None:
                raise ValueError("`steps_per_epoch` applies to generator and PyDataset inputs; arrays are "
                                 "split into ceil(N / batch_size) batches per epoch (set `batch_size`)")
            data = self._prepare(x, y, training=True, sample_weight=sample_weight, class_weight=class_weight)
            batch_size = _batch_size(batch_size)
        if _data.is_batch_stream(validation_data):
            val = _data.BatchStream(validation_data, validation_steps, "validation_steps")
            val.check_repeatable(sum((e + 1) % validation_freq == 0 for e in range(initial_epoch, epochs)),
                                 "validation_steps")
        elif validation_steps is not None:
            raise ValueError("`validation_steps` applies to a generator or PyDataset `validation_data`")
        elif stream:
            val = self._validation(None, validation_data, 0.0)[1]
        else:
            data, val = self._validation(data, validation_data, validation_split)
        val_bs = _batch_size(validation_batch_size if validation_batch_size is not None else batch_size)
        schedule = Epochs(batch_size, initial_epoch, epochs, bool(shuffle), val_bs, validation_freq)
        with self._exclusive():
            return self._fit_loop(data, val, schedule, cb_list, verbose, class_weight)

    def _validation(self, data, validation_data, validation_split):
        """(training data, validation Data or None) from fit's validation arguments."""
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("`validation_data` must be a tuple (x_val, y_val) or (x_val, y_val, "
                                 "val_sample_weight), or a generator or PyDataset of such batches")
            val_sw = validation_data[2] if len(validation_data) == 3 else None
            val = self._prepare(validation_data[0], validation_data[1], what="x_val", sample_weight=val_sw)
            return data, val if data is None else val._replace(metrics=data.metrics)
        if not validation_split:
            return data, None
        n = len(data.x)
        split_at = int(math.floor(n * (1.0 - validation_split)))
        if split_at == 0 or split_at == n:
            raise ValueError(f"Training data contains {n} samples, which is not sufficient to split it "
                             f"into a validation and training set as specified by `validation_split={validation_split}`. "
                             "Either provide more data, or a different value for the `validation_split` argument.")
        return data.split(split_at)

    def _fit_loop(self, data, val, schedule, cb_list, verbose, class_weight):
        stream = isinstance(data, _data.BatchStream)
        steps = data.known_steps if stream else math.ceil(len(data.x) / schedule.batch_size)
        params = {"verbose": verbose, "epochs": schedule.epochs, "steps": steps}
        history = callbacks_mod.History()
        all_cbs = cb_list + [history]       # Keras order: user callbacks, History, progress bar
        progbar = None
        verbose_level = _verbose(verbose)
        if verbose_level:
            progbar = callbacks_mod.ProgbarLogger(verbose_level)
            all_cbs.append(progbar)
        cbl = callbacks_mod.CallbackList(all_cbs, self, params)
        every_batch = cbl.every_batch
        fit_seed = _random.new_seed()
        self.stop_training = False
        training = None if stream else self._training(data)

        def hook(batch, *sums):
            logs = self._logs(sums)
            if every_batch:
                cbl.on_train_batch_end(batch, logs)
                if batch + 1 < steps and not self.stop_training:
                    cbl.on_train_batch_begin(batch + 1, {})
            if progbar is not None:
                progbar.update(batch + 1, logs)
            return self.stop_training

        # every hook gets its logs, as Keras's CallbackList passes them: LambdaCallback(on_train_begin=
        # lambda logs: ...) is the documented form
        cbl.on_train_begin({})
        logs = None
        for epoch in range(schedule.initial_epoch, schedule.epochs):
            cbl.on_epoch_begin(epoch, {})
            if stream:
                order = [fit_seed, epoch] if schedule.shuffle else None
                sums, training = self._stream_epoch(data, training, order, fit_seed, class_weight, cbl, progbar)
                if sums[2] == 0:
                    if data.exhausted:  # the input ran out at an epoch's start
                        data.warn_exhausted()
                        break
                    raise ValueError(f"The training data yielded no batches in epoch {epoch + 1}; a generator "
                                     "must yield at least one (x, y) batch")
            else:
                perm = np.random.default_rng([fit_seed, epoch]).permutation(len(data.x)) if schedule.shuffle else None
                if every_batch:
                    cbl.on_train_batch_begin(0, {})
                sums = _c_train_epoch(training, data, schedule.batch_size, perm, fit_seed, hook, bool(every_batch))
            logs = self._logs(sums)
            if val is not None and (epoch + 1) % schedule.validation_freq == 0:
                logs.update(self._logs(self._eval_sums(val, schedule.val_batch_size), prefix="val_"))
            logs = dict(sorted(logs.items()))
            cbl.on_epoch_end(epoch, logs)
            if stream and data.exhausted:
                data.warn_exhausted()
                break
            if self.stop_training:
                break
        cbl.on_train_end(logs)
        self.history = history
        history.params = params
        return history

    def _stream_epoch(self, stream, training, order, seed, class_weight, cbl, progbar):
        """One epoch over a stream's batches, one C call each (Keras's per-batch callbacks and bar);
        ((loss_sum, metric_sums, count) over the epoch, the Training, made at the first batch)."""
        total = self._no_sums()
        for k, batch in stream.epoch(order):
            bx, by, bsw = _data.unpack_batch(batch, k, "fit")
            data = self._prepare(bx, by, what=f"x of batch {k}", training=True, sample_weight=bsw,
                                 class_weight=class_weight)
            if training is None:
                training = self._training(data)
            cbl.on_train_batch_begin(k, {})
            sums = _c_train_epoch(training, data, len(data.x), None, seed)
            total = _add_sums(total, sums)
            logs = self._logs(total)
            cbl.on_train_batch_end(k, logs)
            if progbar is not None:
                progbar.update(k + 1, logs)
            if self.stop_training:
                break
        return total, training

    def _eval_sums(self, data, batch_size, bar=None):
        """(loss_sum, metric_sums, count) over a Data (batch_size rows per batch) or a BatchStream
        (one C call per batch); bar: a Progbar updated as batches finish."""
        hook = None
        if bar is not None:
            def hook(batch, *sums):
                bar.update(batch + 1, self._logs(sums))
        if not isinstance(data, _data.BatchStream):
            return _c_evaluate(self._get_plan(), self._eval_flags(), self.loss, data, batch_size, hook)
        total = self._no_sums()
        for k, batch in data.epoch():
            bx, by, bsw = _data.unpack_batch(batch, k, "evaluate")
            part = self._prepare(bx, by, what=f"x of batch {k}", sample_weight=bsw)
            sums = _c_evaluate(self._get_plan(), self._eval_flags(), self.loss, part, len(part.x))
            total = _add_sums(total, sums)
            if hook is not None:
                hook(k, *total)
        if total[2] == 0:
            raise ValueError("The evaluation data yielded no batches; a generator must yield at least one "
                             "(x, y) batch")
        return total

    # --- evaluate / predict ---
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """Loss and metrics over the whole data set, batch-size-weighted means, no dropout.

        Returns:
            The loss (no metric compiled), [loss, *metrics, *weighted_metrics] in compile order (Keras's
            order, see _result), or a dict with return_dict=True.
        """
        if kwargs:
            raise ValueError(f"Arguments not recognized: {kwargs}")
        self._assert_compiled()
        verbose_level = _verbose(verbose)
        if _data.is_batch_stream(x):
            _stream_only_args(y=y, sample_weight=sample_weight, batch_size=batch_size)
            data = _data.BatchStream(x, steps, "steps")
            bar = _progbar(verbose_level, data.known_steps)
        else:
            if steps is not None:
                raise ValueError("`steps` applies to generator and PyDataset inputs; arrays are split into "
                                 "ceil(N / batch_size) batches (set `batch_size`)")
            data = self._prepare(x, y, sample_weight=sample_weight)
            batch_size = _batch_size(batch_size)
            bar = _progbar(verbose_level, math.ceil(len(data.x) / batch_size))
        sums = self._eval_sums(data, batch_size, bar=bar)
        logs = self._logs(sums)
        if bar is not None:
            bar.update(sums[2] if bar.target is None else bar.target, logs, finalize=True)
        return self._result(logs, return_dict)

    def _forward(self, x2, batch_size, hook=None):
        """Outputs for x2 (N, d) from _adapt. C checks float rows for NaN/Inf as it reaches them (a
        dense first layer through its products), so x is read here only for the error's counts."""
        plan = self._get_plan()
        out = np.empty((len(x2), self._out_units), np.float32)
        if len(plan.layers) == 0:
            _data.scan_input(x2)
            out[...] = x2
        else:
            try:
                _c_predict(plan, x2, out, batch_size, hook)
            except ValueError:
                _data.scan_input(x2)  # C stops at the first bad batch: count over all of x
                raise
        return out.reshape((len(x2), *self._output_shape))

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Model outputs for x as one float32 array (N, *output_shape); needs no compile; no dropout.
        x may be a generator or PyDataset of batches (x alone, or (x, y) whose y is ignored), read
        until exhausted or for `steps` batches."""
        verbose_level = _verbose(verbose)
        if _data.is_batch_stream(x):
            _stream_only_args(batch_size=batch_size)
            return self._predict_stream(_data.BatchStream(x, steps, "steps"), verbose_level)
        if steps is not None:
            raise ValueError("`steps` applies to generator and PyDataset inputs; arrays are split into "
                             "ceil(N / batch_size) batches (set `batch_size`)")
        batch_size = _batch_size(batch_size)
        x2 = self._adapt(x)
        bar = _progbar(verbose_level, math.ceil(len(x2) / batch_size))
        hook = None
        if bar is not None:
            def hook(batch, *_):
                bar.update(batch + 1)
        out = self._forward(x2, batch_size, hook)
        if bar is not None:
            bar.update(bar.target, finalize=True)
        return out

    def _predict_stream(self, stream, verbose_level):
        bar = _progbar(verbose_level, stream.known_steps)
        outs = []
        for k, batch in stream.epoch():
            bx, _, _ = _data.unpack_batch(batch, k, "predict", need_y=False)
            x2 = self._adapt(bx, f"x of batch {k}")
            outs.append(self._forward(x2, len(x2)))
            if bar is not None:
                bar.update(k + 1)
        if not outs:
            raise ValueError("The input of predict yielded no batches")
        if bar is not None:
            bar.update(len(outs) if bar.target is None else bar.target, finalize=True)
        return np.concatenate(outs)

    def predict_on_batch(self, x):
        """predict() on one batch, without progress output."""
        x2 = self._adapt(x)
        return self._forward(x2, len(x2))

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on (x, y) as a single batch; returns the batch's loss (and metric) as
        measured before the update. sample_weight / class_weight weigh the per-sample losses and the
        weighted metrics as in fit."""
        self._assert_compiled()
        data = self._prepare(x, y, training=True, sample_weight=sample_weight, class_weight=class_weight)
        with self._exclusive():
            sums = _c_train_epoch(self._training(data), data, len(data.x), None, _random.new_seed())
        return self._result(self._logs(sums), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss and metrics on one batch, without updating anything; sample_weight as in evaluate."""
        self._assert_compiled()
        data = self._prepare(x, y, sample_weight=sample_weight)
        sums = _c_evaluate(self._get_plan(), self._eval_flags(), self.loss, data, len(data.x))
        return self._result(self._logs(sums), return_dict)
