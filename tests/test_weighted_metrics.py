"""compile(weighted_metrics=[...]): the metrics of `metrics` weighted by the sample weights of fit,
evaluate and the on-batch calls (sample_weight, class_weight, validation_data's own weights),
sum(w * value) / sum(w) as Keras 3's Mean metrics, computed in C inside the batch loops. Checked
against float64 NumPy on the model's outputs, for Keras's names (weighted_<name> when a metric is
in both lists) and result order, and against Keras itself where it is installed."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mnistc
from mnistc import _C, metrics

N, D, K = 83, 6, 4


def data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D)).astype(np.float32)
    y = rng.integers(0, K, n)
    w = rng.uniform(0.0, 3.0, n).astype(np.float32)
    w[:3] = 0.0  # rows that count nowhere in the weighted means
    return x, y, w


def model(units=K, activation="softmax", seed=1, frozen=False):
    """A small MLP; frozen: no layer trains, so fit's outputs are predict's (no dropout)."""
    mnistc.utils.set_random_seed(seed)
    m = mnistc.Sequential([mnistc.Input((D,)), mnistc.layers.Dense(8, activation="tanh"),
                           mnistc.layers.Dense(units, activation=activation)])
    for layer in m.layers:
        layer.trainable = not frozen
    return m


def in_top_k(labels, p, k):
    kth = -np.sort(-p, axis=1)[:, k - 1]
    return (p[np.arange(len(labels)), labels] >= kth).astype(np.float64)


def per_sample(p, y, one_hot=False):
    """float64 per-sample values of the metrics used here; y class ids."""
    p = np.asarray(p, np.float64)
    t = np.eye(p.shape[1])[y] if one_hot else y[:, None].astype(np.float64)
    return {"accuracy": (p.argmax(1) == y).astype(np.float64), "top3": in_top_k(y, p, 3),
            "mse": ((p - t) ** 2).mean(1), "mae": np.abs(p - t).mean(1)}


def wmean(values, w=None):
    w = np.ones(len(values)) if w is None else np.asarray(w, np.float64)
    return float(np.sum(w * values) / np.sum(w))


def test_evaluate_weighs_the_weighted_metrics_only():
    x, y, w = data()
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "mse"],
              weighted_metrics=["accuracy", metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"), "mae"])
    assert m.metrics_names == ["loss", "accuracy", "mse", "weighted_accuracy", "top3", "mae"]
    logs = m.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0, return_dict=True)
    assert list(logs) == sorted(logs) == ["accuracy", "loss", "mae", "mse", "top3", "weighted_accuracy"]
    v = per_sample(m.predict(x, verbose=0), y)
    assert logs["accuracy"] == pytest.approx(wmean(v["accuracy"]), rel=1e-12)
    assert logs["mse"] == pytest.approx(wmean(v["mse"]), rel=1e-12)
    assert logs["weighted_accuracy"] == pytest.approx(wmean(v["accuracy"], w), rel=1e-12)
    assert logs["top3"] == pytest.approx(wmean(v["top3"], w), rel=1e-12)
    assert logs["mae"] == pytest.approx(wmean(v["mae"], w), rel=1e-12)
    assert logs["weighted_accuracy"] != logs["accuracy"]  # the weights matter for these data
    # the unweighted metrics and the loss are those of a model compiled without weighted metrics, bits included
    plain = model()
    plain.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "mse"])
    ref = plain.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0, return_dict=True)
    assert {k: logs[k] for k in ref} == ref


def test_without_weights_the_weighted_metrics_equal_the_unweighted_bit_for_bit():
    x, y, _ = data(1)
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "mse"],
              weighted_metrics=["accuracy", "mse"])
    logs = m.evaluate(x, y, batch_size=10, verbose=0, return_dict=True)
    assert logs["weighted_accuracy"] == logs["accuracy"] and logs["weighted_mse"] == logs["mse"]
    h = m.fit(x, y, batch_size=10, epochs=2, verbose=0, validation_data=(x, y))
    for key in ("accuracy", "mse", "val_accuracy", "val_mse"):
        weighted = key.replace("accuracy", "weighted_accuracy").replace("mse", "weighted_mse")
        assert h.history[weighted] == h.history[key]
    # all-ones weights: the same sums, the same bits
    ones = np.ones(N, np.float32)
    assert m.evaluate(x, y, sample_weight=ones, batch_size=10, verbose=0, return_dict=True) == \
        m.evaluate(x, y, batch_size=10, verbose=0, return_dict=True)


def test_evaluate_list_follows_keras_order():
    """Keras's _flatten_metrics_in_order: 'loss' and the metrics' own names in compile order, then the
    remaining keys sorted; a metric in both lists shows its unweighted value twice (Keras 3.15.1)."""
    x, y, w = data(2)
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy", "mae"])
    logs = m.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert m.evaluate(x, y, sample_weight=w, verbose=0) == \
        [logs["loss"], logs["accuracy"], logs["accuracy"], logs["mae"], logs["weighted_accuracy"]]
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["mse"], weighted_metrics=["accuracy"])
    logs = m.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert m.evaluate(x, y, sample_weight=w, verbose=0) == [logs["loss"], logs["mse"], logs["accuracy"]]
    m.compile("adam", "sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    logs = m.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert m.evaluate(x, y, sample_weight=w, verbose=0) == [logs["loss"], logs["accuracy"]]


def test_fit_epoch_and_batch_logs_are_running_weighted_means():
    """Frozen layers: every batch sees predict's outputs, so the running values after each batch are
    cumulative weighted means in row order (shuffle=False), and the epoch's are over all rows
    (shuffled: the weights travel with their rows)."""
    x, y, w = data(3)
    m = model(frozen=True)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy", "mse"])
    v = per_sample(m.predict(x, verbose=0), y)
    seen = []
    cb = mnistc.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(dict(logs)))
    m.fit(x, y, sample_weight=w, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[cb])
    assert len(seen) == 6
    for k, logs in enumerate(seen):
        end = min(16 * (k + 1), N)
        assert logs["weighted_accuracy"] == pytest.approx(wmean(v["accuracy"][:end], w[:end]), rel=1e-6)
        assert logs["mse"] == pytest.approx(wmean(v["mse"][:end], w[:end]), rel=1e-6)
        assert logs["accuracy"] == pytest.approx(wmean(v["accuracy"][:end]), rel=1e-6)
    h = m.fit(x, y, sample_weight=w, batch_size=16, epochs=2, verbose=0)
    for e in range(2):
        assert h.history["weighted_accuracy"][e] == pytest.approx(wmean(v["accuracy"], w), rel=1e-6)
        assert h.history["mse"][e] == pytest.approx(wmean(v["mse"], w), rel=1e-6)
        assert h.history["accuracy"][e] == pytest.approx(wmean(v["accuracy"]), rel=1e-6)


def test_training_metrics_are_measured_before_each_update():
    """One batch per epoch while training: epoch e's weighted metrics are those of the weights it
    started from."""
    x, y, w = data(4)
    m = model()
    m.compile(mnistc.optimizers.SGD(0.5), "sparse_categorical_crossentropy", weighted_metrics=["accuracy", "mse"])
    starts = []
    cb = mnistc.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: starts.append(m.predict(x, verbose=0)))
    h = m.fit(x, y, sample_weight=w, batch_size=N, epochs=3, verbose=0, callbacks=[cb])
    for e, p in enumerate(starts):
        v = per_sample(p, y)
        assert h.history["accuracy"][e] == pytest.approx(wmean(v["accuracy"], w), rel=1e-6)
        assert h.history["mse"][e] == pytest.approx(wmean(v["mse"], w), rel=1e-6)
    assert h.history["mse"][0] != h.history["mse"][2]


def test_validation_reads_its_own_weights_and_never_class_weight():
    x, y, w = data(5)
    xv, yv, wv = data(6, n=41)
    m = model(frozen=True)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy"])
    vv = per_sample(m.predict(xv, verbose=0), yv)
    v = per_sample(m.predict(x, verbose=0), y)
    h = m.fit(x, y, sample_weight=w, validation_data=(xv, yv, wv), epochs=1, verbose=0)
    assert h.history["val_weighted_accuracy"][0] == pytest.approx(wmean(vv["accuracy"], wv), rel=1e-12)
    assert h.history["val_accuracy"][0] == pytest.approx(wmean(vv["accuracy"]), rel=1e-12)
    # class_weight weighs the training rows' weighted metrics, not the validation rows'
    cw = {0: 3.0, 1: 0.25, 2: 1.5}
    cw_rows = np.array([cw.get(int(c), 1.0) for c in y])
    h = m.fit(x, y, class_weight=cw, validation_data=(xv, yv), epochs=1, verbose=0)
    assert h.history["weighted_accuracy"][0] == pytest.approx(wmean(v["accuracy"], cw_rows), rel=1e-6)
    assert h.history["val_weighted_accuracy"] == h.history["val_accuracy"]
    h = m.fit(x, y, class_weight=cw, validation_data=(xv, yv, wv), epochs=1, verbose=0)
    assert h.history["val_weighted_accuracy"][0] == pytest.approx(wmean(vv["accuracy"], wv), rel=1e-12)
    # validation_split: the last rows keep their sample weights, and class weights stay off them
    split = int(N * 0.75)
    h = m.fit(x, y, sample_weight=w, validation_split=0.25, epochs=1, verbose=0)
    assert h.history["val_weighted_accuracy"][0] == pytest.approx(
        wmean(v["accuracy"][split:], w[split:]), rel=1e-12)
    assert h.history["weighted_accuracy"][0] == pytest.approx(wmean(v["accuracy"][:split], w[:split]), rel=1e-6)
    h = m.fit(x, y, class_weight=cw, validation_split=0.25, epochs=1, verbose=0)
    assert h.history["val_weighted_accuracy"] == h.history["val_accuracy"]


def test_on_batch_calls_weigh_the_weighted_metrics():
    x, y, w = data(7)
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy", "mae"])
    v = per_sample(m.predict(x, verbose=0), y)
    logs = m.test_on_batch(x, y, sample_weight=w, return_dict=True)
    assert logs["weighted_accuracy"] == pytest.approx(wmean(v["accuracy"], w), rel=1e-12)
    assert logs["mae"] == pytest.approx(wmean(v["mae"], w), rel=1e-12)
    assert m.test_on_batch(x, y, sample_weight=w) == \
        [logs["loss"], logs["accuracy"], logs["accuracy"], logs["mae"], logs["weighted_accuracy"]]
    logs = m.train_on_batch(x, y, sample_weight=w, return_dict=True)  # measured before the update
    assert logs["weighted_accuracy"] == pytest.approx(wmean(v["accuracy"], w), rel=1e-6)
    assert logs["mae"] == pytest.approx(wmean(v["mae"], w), rel=1e-6)
    cw = {1: 4.0, 3: 0.5}
    v = per_sample(m.predict(x, verbose=0), y)
    logs = m.train_on_batch(x, y, class_weight=cw, return_dict=True)
    cw_rows = np.array([cw.get(int(c), 1.0) for c in y])
    assert logs["weighted_accuracy"] == pytest.approx(wmean(v["accuracy"], cw_rows), rel=1e-6)
    assert logs["accuracy"] == pytest.approx(wmean(v["accuracy"]), rel=1e-6)


def test_one_hot_and_binary_targets():
    x, y, w = data(8)
    onehot = np.eye(K, dtype=np.float32)[y]
    m = model()
    m.compile("adam", "categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy", "mse", metrics.TopKCategoricalAccuracy(k=3, name="top3")])
    logs = m.evaluate(x, onehot, sample_weight=w, verbose=0, return_dict=True)
    v = per_sample(m.predict(x, verbose=0), y, one_hot=True)
    assert logs["weighted_accuracy"] == pytest.approx(wmean(v["accuracy"], w), rel=1e-12)
    assert logs["mse"] == pytest.approx(wmean(v["mse"], w), rel=1e-12)
    assert logs["top3"] == pytest.approx(wmean(v["top3"], w), rel=1e-12)
    yb = (y % 2).astype(np.float32)
    b = model(units=1, activation="sigmoid")
    b.compile("adam", "binary_crossentropy", weighted_metrics=["accuracy"])
    p = b.predict(x, verbose=0)[:, 0].astype(np.float64)
    logs = b.evaluate(x, yb, sample_weight=w, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(wmean(((p > 0.5) == (yb > 0.5)).astype(np.float64), w), rel=1e-12)


def test_weights_summing_to_zero_give_zero_as_keras():
    x, y, _ = data(9)
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy"])
    logs = m.evaluate(x, y, sample_weight=np.zeros(N, np.float32), verbose=0, return_dict=True)
    assert logs["weighted_accuracy"] == 0.0 and logs["loss"] == 0.0 and logs["accuracy"] > 0


def test_batch_streams_add_up_the_weights():
    x, y, w = data(10)
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy", "mse"])

    def batches():
        for i in range(0, N, 20):
            yield x[i:i + 20], y[i:i + 20], w[i:i + 20]

    streamed = m.evaluate(batches(), verbose=0, return_dict=True)
    whole = m.evaluate(x, y, sample_weight=w, batch_size=20, verbose=0, return_dict=True)
    assert streamed == pytest.approx(whole, rel=1e-12)
    h = m.fit(batches(), epochs=1, verbose=0)
    assert sorted(h.history) == ["accuracy", "loss", "mse", "weighted_accuracy"]


def test_progress_bar_and_csv_logger_show_the_weighted_values(tmp_path, capsys):
    x, y, w = data(11)
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], weighted_metrics=["accuracy"])
    path = tmp_path / "log.csv"
    h = m.fit(x, y, sample_weight=w, epochs=2, verbose=2, callbacks=[mnistc.callbacks.CSVLogger(str(path))])
    out = capsys.readouterr().out
    assert f"weighted_accuracy: {h.history['weighted_accuracy'][1]:.4f}" in out
    header, *rows = path.read_text().splitlines()
    assert header.split(",") == ["epoch", "accuracy", "loss", "weighted_accuracy", "val_accuracy", "val_loss",
                                 "val_weighted_accuracy"]  # Keras's CSVLogger adds the val_ columns
    assert float(rows[1].split(",")[3]) == pytest.approx(h.history["weighted_accuracy"][1], rel=1e-12)


def test_saved_models_keep_their_weighted_metrics(tmp_path):
    x, y, w = data(12)
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy", metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    m.fit(x, y, sample_weight=w, epochs=1, verbose=0)
    m.save(tmp_path / "m.keras")
    loaded = mnistc.load_model(tmp_path / "m.keras")
    assert loaded.metrics_names == m.metrics_names == ["loss", "accuracy", "weighted_accuracy", "top2"]
    assert loaded.evaluate(x, y, sample_weight=w, verbose=0) == m.evaluate(x, y, sample_weight=w, verbose=0)


def test_unweighted_training_is_unchanged_bit_for_bit():
    """Adding weighted metrics changes no loss, unweighted metric or weight, with or without sample
    weights (the same C sums, shuffled order and seeds)."""
    x, y, w = data(13)
    for sw in (None, w):
        runs = []
        for weighted in ([], ["accuracy", "mse"]):
            m = model(seed=5)
            m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "mse"],
                      weighted_metrics=weighted)
            h = m.fit(x, y, sample_weight=sw, batch_size=8, epochs=2, verbose=0, validation_split=0.2)
            runs.append((h.history, m.get_weights()))
        (h0, w0), (h1, w1) = runs
        assert {k: h1[k] for k in h0} == h0
        for a, b in zip(w0, w1):
            np.testing.assert_array_equal(a, b)


def test_errors_name_both_lists():
    m = model()
    with pytest.raises(ValueError, match="Expected `weighted_metrics` argument to be a list or tuple"):
        m.compile("adam", "sparse_categorical_crossentropy", weighted_metrics="accuracy")
    with pytest.raises(ValueError, match=rf"at most {metrics.MAX_METRICS} metrics per model inside fit, `metrics` "
                                         r"and `weighted_metrics` together; received 5 \+ 4"):
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"] + ["mse"] * 4,
                  weighted_metrics=["mae"] * 4)
    with pytest.raises(ValueError, match=r"both be logged as 'weighted_accuracy' \(metrics \['accuracy'\], "
                                         r"weighted_metrics \['accuracy', 'accuracy'\]"):
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy", "accuracy"])
    with pytest.raises(ValueError, match="both be logged as 'loss'"):
        m.compile("adam", "sparse_categorical_crossentropy", weighted_metrics=[metrics.MeanSquaredError(name="loss")])
    with pytest.raises(ValueError, match="Unsupported metric"):
        m.compile("adam", "sparse_categorical_crossentropy", weighted_metrics=[metrics.Precision()])
    # a failed compile leaves the previous one in place
    m.compile("adam", "sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    with pytest.raises(ValueError):
        m.compile("sgd", "mse", weighted_metrics="accuracy")
    assert m.metrics_names == ["loss", "accuracy"] and m.loss.name == "sparse_categorical_crossentropy"
    # the engine's own checks
    x, y, _ = data(14)
    plan = m._get_plan()
    spec = m.loss.c_spec()
    with pytest.raises(ValueError, match=r"metric: weighted must be 0 or 1, got 2 \(metric 0\)"):
        _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y.astype(np.int32), 8, spec,
                    ((_C.METRIC_SPARSE_CATEGORICAL, 0, 2),))
    with pytest.raises(TypeError, match=r"metric\[0\]: expected an int code or a \(code, k\) pair"):
        _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y.astype(np.int32), 8, spec, ((1, 0, 1, 0),))


def test_engine_returns_a_weighted_metric_as_its_two_sums():
    x, y, w = data(15)
    m = model()
    m.compile("adam", "sparse_categorical_crossentropy")
    plan = m._get_plan()
    spec = m.loss.c_spec()
    y32 = y.astype(np.int32)
    codes = (_C.METRIC_SPARSE_CATEGORICAL, (_C.METRIC_SPARSE_CATEGORICAL, 0, 1), (_C.METRIC_MSE, 0, 1))
    seen = []
    loss_sum, sums, n = _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y32, 16, spec, codes,
                                    lambda batch, loss_sum, s, n: seen.append(s), sample_weight=w)
    v = per_sample(m.predict(x, verbose=0), y)
    assert n == N and isinstance(sums[0], float)
    assert sums[0] == pytest.approx(v["accuracy"].sum(), rel=1e-12)
    assert sums[1] == pytest.approx((np.sum(w * v["accuracy"]), np.sum(w.astype(np.float64))), rel=1e-12)
    assert sums[2] == pytest.approx((np.sum(w * v["mse"]), np.sum(w.astype(np.float64))), rel=1e-12)
    assert seen[-1] == sums
    no_w = _C.evaluate(plan.layers, plan.lfloats, plan.params, x, y32, 16, spec, codes)[1]
    assert no_w[1] == (no_w[0], float(N))


# --- Keras itself, where installed (a subprocess on the JAX backend: fit needs gradients) ---

KERAS_SCRIPT = r"""
import json, sys
import numpy as np
import keras
a = np.load(sys.argv[1])
x, y, w, xv, yv, wv = (a[k] for k in ("x", "y", "w", "xv", "yv", "wv"))
m = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="tanh"),
                      keras.layers.Dense(int(a["k"]), activation="softmax")])
m.set_weights([a[f"w{i}"] for i in range(4)])
for layer in m.layers:
    layer.trainable = False
m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
          weighted_metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
out = {"evaluate": m.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0),
       "evaluate_dict": m.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0, return_dict=True),
       "test_on_batch": m.test_on_batch(x, y, sample_weight=w, return_dict=True)}
cw = {0: 3.0, 1: 0.25, 2: 1.5}
out["fit_cw"] = m.fit(x, y, class_weight=cw, batch_size=16, epochs=1, shuffle=False, verbose=0,
                      validation_data=(xv, yv, wv)).history
out["fit_sw"] = m.fit(x, y, sample_weight=w, batch_size=16, epochs=1, shuffle=False, verbose=0,
                      validation_data=(xv, yv)).history
print(json.dumps(out, default=float))
"""


def keras_available():
    return importlib.util.find_spec("keras") is not None and importlib.util.find_spec("jax") is not None


@pytest.mark.skipif(not keras_available(), reason="keras and jax are not installed (optional comparison)")
def test_matches_keras_logs(tmp_path):
    x, y, w = data(16)
    xv, yv, wv = data(17, n=29)
    m = model(frozen=True)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    path = tmp_path / "case.npz"
    np.savez(path, x=x, y=y, w=w, xv=xv, yv=yv, wv=wv, k=K, **{f"w{i}": a for i, a in enumerate(m.get_weights())})
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(path)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    ref = json.loads(run.stdout.strip().splitlines()[-1])
    ours = {"evaluate": m.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0),
            "evaluate_dict": m.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0, return_dict=True),
            "test_on_batch": m.test_on_batch(x, y, sample_weight=w, return_dict=True)}
    cw = {0: 3.0, 1: 0.25, 2: 1.5}
    ours["fit_cw"] = m.fit(x, y, class_weight=cw, batch_size=16, epochs=1, shuffle=False, verbose=0,
                           validation_data=(xv, yv, wv)).history
    ours["fit_sw"] = m.fit(x, y, sample_weight=w, batch_size=16, epochs=1, shuffle=False, verbose=0,
                           validation_data=(xv, yv)).history
    assert len(ours["evaluate"]) == len(ref["evaluate"]) == 5
    assert ours["evaluate"] == pytest.approx(ref["evaluate"], rel=2e-6)
    for key in ("evaluate_dict", "test_on_batch"):
        assert list(ours[key]) == list(ref[key]), key
        assert ours[key] == pytest.approx(ref[key], rel=2e-6), key
    for key in ("fit_cw", "fit_sw"):
        assert list(ours[key]) == list(ref[key]), key
        for name, values in ours[key].items():
            assert values == pytest.approx(ref[key][name], rel=2e-6), (key, name)
