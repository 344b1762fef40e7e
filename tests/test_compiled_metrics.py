"""Several metrics per model: compile(metrics=[...]) with names, functions and objects, computed in
C inside the batch loops (one running sum per metric), logged under Keras's names in History, the
progress bar and evaluate's results. Checked against the metric objects' own results on
model.predict's outputs and against float64 formulas written here."""
import re

import numpy as np
import pytest

import mnistc
from mnistc import _C, metrics

N, D, K = 97, 12, 10


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, D)).astype(np.float32), rng.integers(0, K, N)


def softmax_model(seed=1):
    mnistc.utils.set_random_seed(seed)
    return mnistc.Sequential([mnistc.Input((D,)), mnistc.layers.Dense(16, activation="tanh"),
                              mnistc.layers.Dense(K, activation="softmax")])


def in_top_k(labels, p, k):
    """float64: the label's score is at least the k-th largest of its row (ties count inside)."""
    p = np.asarray(p, np.float64)
    kth = -np.sort(-p, axis=1)[:, k - 1]
    return (p[np.arange(len(labels)), labels] >= kth).astype(np.float64)


def formulas(labels, p, t):
    """Per-sample float64 values of the metrics, t the target each score is compared with."""
    p = np.asarray(p, np.float64)
    return {"accuracy": (p.argmax(1) == labels).astype(np.float64),
            "top3": in_top_k(labels, p, 3), "top5": in_top_k(labels, p, 5),
            "mse": ((p - t) ** 2).mean(1), "mae": np.abs(p - t).mean(1)}


def test_sparse_targets_several_metrics_match_the_objects_and_the_formulas():
    x, y = data()
    model = softmax_model()
    compiled = ["accuracy", "mse", metrics.SparseTopKCategoricalAccuracy(k=3), metrics.mean_absolute_error,
                "sparse_top_k_categorical_accuracy"]
    # two metrics may not share a name: the second top-k gets its own
    with pytest.raises(ValueError, match="both be logged as 'sparse_top_k_categorical_accuracy'"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=compiled)
    compiled[-1] = metrics.SparseTopKCategoricalAccuracy(name="top5")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=compiled)
    assert model.metrics_names == ["loss", "accuracy", "mse", "sparse_top_k_categorical_accuracy",
                                   "mean_absolute_error", "top5"]
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    result = model.evaluate(x, y, batch_size=16, verbose=0)
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert result == [logs[n] for n in model.metrics_names]   # loss first, then compile order
    p = model.predict(x, batch_size=16, verbose=0)
    # the objects' own results (Keras broadcasts a (N, 1) class id over the row for mse and mae)
    for name, obj, y_true in (("accuracy", metrics.SparseCategoricalAccuracy(), y),
                              ("mse", metrics.MeanSquaredError(), y[:, None]),
                              ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy(k=3), y),
                              ("mean_absolute_error", metrics.MeanAbsoluteError(), y[:, None]),
                              ("top5", metrics.SparseTopKCategoricalAccuracy(), y)):
        obj.update_state(y_true, p)
        assert logs[name] == pytest.approx(float(obj.result()), rel=1e-6), name
    f = formulas(y, p, y[:, None])
    for name, key in (("accuracy", "accuracy"), ("mse", "mse"), ("sparse_top_k_categorical_accuracy", "top3"),
                      ("mean_absolute_error", "mae"), ("top5", "top5")):
        assert logs[name] == pytest.approx(f[key].mean(), rel=1e-12, abs=1e-12), name


def test_one_hot_targets_several_metrics_match_the_formulas():
    x, y = data(2)
    onehot = np.eye(K, dtype=np.float32)[y]
    model = softmax_model(3)
    model.compile("rmsprop", "categorical_crossentropy",
                  metrics=["accuracy", metrics.TopKCategoricalAccuracy(k=2, name="top2"), "top_k_categorical_accuracy",
                           metrics.MeanSquaredError(), "mae"])
    model.fit(x, onehot, epochs=2, batch_size=16, verbose=0)
    logs = model.evaluate(x, onehot, batch_size=32, verbose=0, return_dict=True)
    p = model.predict(x, batch_size=32, verbose=0)
    f = formulas(y, p, onehot)
    expected = {"accuracy": f["accuracy"], "top2": in_top_k(y, p, 2), "top_k_categorical_accuracy": f["top5"],
                "mean_squared_error": f["mse"], "mae": f["mae"]}
    assert sorted(logs) == sorted(["loss", *expected])
    for name, values in expected.items():
        assert logs[name] == pytest.approx(values.mean(), rel=1e-12, abs=1e-12), name
    for name, obj in (("top2", metrics.TopKCategoricalAccuracy(k=2)), ("mean_squared_error", metrics.MeanSquaredError()),
                      ("mae", metrics.MeanAbsoluteError())):
        obj.update_state(onehot, p)
        assert logs[name] == pytest.approx(float(obj.result()), rel=1e-6), name


def test_history_and_progress_bar_show_every_metric_with_keras_names(capsys):
    x, y = data(4)
    model = softmax_model(5)
    model.trainable = False     # nothing changes in fit: an epoch's sums are evaluate's, in another order
    model.compile("sgd", "sparse_categorical_crossentropy",
                  metrics=["acc", "mse", metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")])
    h = model.fit(x, y, epochs=2, batch_size=10, validation_data=(x[:40], y[:40]), verbose=2)
    assert sorted(h.history) == ["acc", "loss", "mse", "top3", "val_acc", "val_loss", "val_mse", "val_top3"]
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("10/10 ")][-1]
    assert re.search(r" - acc: \S+ - loss: \S+ - mse: \S+ - top3: \S+ - val_acc: \S+ - val_loss: \S+ - "
                     r"val_mse: \S+ - val_top3: \S+$", line), line
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    val = model.evaluate(x[:40], y[:40], verbose=0, return_dict=True)
    for name in ("acc", "loss", "mse", "top3"):
        assert h.history[name] == pytest.approx([logs[name]] * 2, rel=1e-12), name
        assert h.history["val_" + name] == pytest.approx([val[name]] * 2, rel=1e-12), name


def test_top_k_counts_ties_with_the_kth_score_as_keras_does():
    # an identity model: the outputs are the rows of x themselves
    x = np.array([[1, 1, 1, 0], [0, 2, 2, 1], [3, 0, 0, 0], [np.float32(0.5)] * 4], np.float32)
    y = np.array([2, 3, 1, 0])
    model = mnistc.Sequential([mnistc.Input((4,)), mnistc.layers.Activation("linear")])
    for k in (1, 2, 3):
        model.compile("adam", mnistc.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[metrics.SparseTopKCategoricalAccuracy(k=k)])
        got = model.evaluate(x, y, verbose=0)[1]
        obj = metrics.SparseTopKCategoricalAccuracy(k=k)
        obj.update_state(y, x)
        assert got == pytest.approx(float(obj.result()), abs=1e-7) == in_top_k(y, x, k).mean(), k


def test_the_engine_takes_one_code_or_a_tuple_of_codes():
    x, y = data(6)
    model = softmax_model(7)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    plan = model._get_plan()
    spec = model.loss.c_spec()
    y32 = y.astype(np.int32)
    one = _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y32, 8, spec, _C.METRIC_SPARSE_CATEGORICAL)
    many = _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y32, 8, spec,
                       (_C.METRIC_SPARSE_CATEGORICAL, (_C.METRIC_SPARSE_TOP_K, 3), _C.METRIC_MSE))
    none = _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y32, 8, spec, ())
    assert isinstance(one[1], float) and many[1][0] == one[1] and len(many[1]) == 3
    assert none[1] == () and none[0] == one[0] == many[0] and one[2] == N
    seen = []
    _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y32, 8, spec, (_C.METRIC_MAE, _C.METRIC_MSE),
                lambda batch, loss_sum, sums, n: seen.append(sums))
    assert seen and all(isinstance(s, tuple) and len(s) == 2 for s in seen)
    for metric, exc, match in (
            (((_C.METRIC_SPARSE_TOP_K, 0),), ValueError, r"top-k accuracy \(4\) needs k >= 1, got k = 0"),
            ((_C.METRIC_SPARSE_TOP_K,), ValueError, "needs k >= 1"),
            ((1, 2.5), TypeError, r"metric\[1\]: expected an int code or a \(code, k\) pair"),
            ((99,), ValueError, rf"metric: expected a code in \[0, {_C.METRIC_COUNT}\), got 99"),
            ((1,) * (_C.MAX_METRICS + 1), ValueError, f"at most {_C.MAX_METRICS} metrics"),
            ("accuracy", TypeError, "expected an int code")):
        with pytest.raises(exc, match=match):
            _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y32, 8, spec, metric)
    onehot = np.eye(K, dtype=np.float32)[y]
    with pytest.raises(ValueError, match=r"sparse top-k accuracy \(4\) needs int32 class ids"):
        _C.evaluate(plan.layers, plan.lfloats, plan.params, x, onehot, 8, (mnistc.losses.CCE, 0, 0.0),
                    ((_C.METRIC_SPARSE_TOP_K, 3),))


def test_compile_errors_name_the_fix():
    model = softmax_model()
    with pytest.raises(ValueError, match=f"at most {metrics.MAX_METRICS} metrics"):
        model.compile("adam", "sparse_categorical_crossentropy",
                      metrics=[metrics.MeanSquaredError(name=f"m{i}") for i in range(metrics.MAX_METRICS + 1)])
    with pytest.raises(ValueError, match="both be logged as 'loss'"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=[metrics.MeanSquaredError(name="loss")])
    with pytest.raises(ValueError, match="Unsupported metric"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", metrics.Precision()])


def test_several_metrics_survive_save_and_load(tmp_path):
    x, y = data(8)
    model = softmax_model(9)
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["accuracy", "mse", metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = mnistc.load_model(tmp_path / "m.keras")
    assert loaded.metrics_names == model.metrics_names == ["loss", "accuracy", "mse", "top3"]
    assert loaded._metrics[2].k == 3
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_batch_streams_add_up_every_metric():
    x, y = data(10)
    model = softmax_model(11)
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["accuracy", "mse", metrics.SparseTopKCategoricalAccuracy(k=3)])

    def batches():
        for i in range(0, N, 20):
            yield x[i:i + 20], y[i:i + 20]

    streamed = model.evaluate(batches(), verbose=0, return_dict=True)
    whole = model.evaluate(x, y, batch_size=20, verbose=0, return_dict=True)
    assert streamed == pytest.approx(whole, rel=1e-12)
    h = model.fit(batches(), epochs=1, verbose=0)
    assert sorted(h.history) == ["accuracy", "loss", "mse", "sparse_top_k_categorical_accuracy"]
