"""Standalone metrics (update_state / result / reset_state / call) and their function forms against
float64 formulas written here from Keras 3's definitions, the seed tutorial's Mean(name='train_loss')
pattern, and compile() still taking the accuracy metrics it computes in C."""
import numpy as np
import pytest

import mnistc
from mnistc import metrics

rng = np.random.default_rng(0)
P = rng.random((30, 6))
LAB = rng.integers(0, 6, 30)
OH = np.eye(6)[LAB]
YB = rng.integers(0, 2, (30, 3)).astype(float)
PB = rng.random((30, 3))
SW = rng.random(30)


def weighted_mean(values, sw=None):
    return np.average(values, weights=sw) if sw is not None else np.mean(values)


def topk(labels, scores, k):
    kth = -np.sort(-scores, axis=1)[:, k - 1]
    return (scores[np.arange(len(labels)), labels] >= kth).astype(float)


def confusion(y, p, thr, sw=None):
    w = np.ones_like(y) if sw is None else np.broadcast_to(sw[:, None], y.shape)
    pos = p > thr
    return (w * (pos & (y == 1))).sum(), (w * (pos & (y == 0))).sum(), (w * (~pos & (y == 1))).sum()


CASES = {
    "sparse_categorical": (metrics.SparseCategoricalAccuracy, {}, (LAB, P), (LAB == P.argmax(1)).astype(float)),
    "sparse_categorical_column": (metrics.SparseCategoricalAccuracy, {}, (LAB[:, None], P),
                                  (LAB == P.argmax(1)).astype(float)),
    "categorical": (metrics.CategoricalAccuracy, {}, (OH, P), (LAB == P.argmax(1)).astype(float)),
    "accuracy": (metrics.Accuracy, {}, (LAB, np.where(SW > 0.5, LAB, 0)), (SW > 0.5) | (LAB == 0)),
    "binary": (metrics.BinaryAccuracy, {}, (YB, PB), ((PB > 0.5) == YB).mean(1)),
    "binary_threshold": (metrics.BinaryAccuracy, {"threshold": 0.3}, (YB, PB), ((PB > 0.3) == YB).mean(1)),
    "top_k": (metrics.TopKCategoricalAccuracy, {}, (OH, P), topk(LAB, P, 5)),
    "top_2": (metrics.TopKCategoricalAccuracy, {"k": 2}, (OH, P), topk(LAB, P, 2)),
    "sparse_top_k": (metrics.SparseTopKCategoricalAccuracy, {}, (LAB, P), topk(LAB, P, 5)),
    "sparse_top_1": (metrics.SparseTopKCategoricalAccuracy, {"k": 1}, (LAB, P), topk(LAB, P, 1)),
    "mse": (metrics.MeanSquaredError, {}, (YB, PB), ((YB - PB) ** 2).mean(1)),
    "mae": (metrics.MeanAbsoluteError, {}, (YB, PB), np.abs(YB - PB).mean(1)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_mean_metrics_accumulate_over_batches(name, weighted):
    cls, kw, (y, p), per_sample = CASES[name]
    m = cls(**kw)
    sw = SW if weighted else None
    for lo, hi in ((0, 7), (7, 30)):  # two batches of different sizes: a mean over samples, not batches
        m.update_state(y[lo:hi], p[lo:hi], sample_weight=None if sw is None else sw[lo:hi])
    assert float(m.result()) == pytest.approx(weighted_mean(np.asarray(per_sample, float), sw), rel=1e-6)
    assert m.result().dtype == np.float32 and m.result().shape == ()
    m.reset_state()
    assert float(m.result()) == 0.0


def test_function_forms_give_the_per_sample_values():
    for fn, cls in ((metrics.sparse_categorical_accuracy, "sparse_categorical"),
                    (metrics.categorical_accuracy, "categorical"),
                    (metrics.top_k_categorical_accuracy, "top_k"),
                    (metrics.sparse_top_k_categorical_accuracy, "sparse_top_k"),
                    (metrics.mse, "mse"), (metrics.mae, "mae")):
        _, _, args, want = CASES[cls]
        got = fn(*args)
        assert got.dtype == np.float32 and got.shape == (30,)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # elementwise, as Keras's binary_accuracy (the metric object then averages per sample)
    np.testing.assert_array_equal(metrics.binary_accuracy(YB, PB), (PB > 0.5) == YB)
    assert metrics.mean_squared_error is metrics.mse is metrics.MSE
    np.testing.assert_allclose(metrics.top_k_categorical_accuracy(OH, P, k=2), topk(LAB, P, 2))
    assert metrics.top_k_categorical_accuracy(OH, P).numpy().tolist() == topk(LAB, P, 5).tolist()


def test_mean_and_sum():
    m = metrics.Mean()
    assert m.name == "mean" and float(m([1, 3, 5, 7])) == 4.0
    m.update_state([2.0, 0.0], sample_weight=[1.0, 3.0])  # weighted: total 4 + 2, count 4 + 4
    assert float(m.result()) == pytest.approx(18 / 8)
    v = rng.random((4, 3))
    m2 = metrics.Mean()
    m2.update_state(v)  # one value per sample: the mean over the last axis
    assert float(m2.result()) == pytest.approx(v.mean(), rel=1e-6)
    s = metrics.Sum(name="total")
    s([1.0, 2.0]), s(3.5)
    assert s.name == "total" and float(s.result()) == 6.5
    s.reset_state()
    assert float(s.result()) == 0.0


def test_the_tutorial_pattern_mean_of_losses():
    """train_loss = Mean(name='train_loss'); train_loss(loss) with the loss object's 0-d result."""
    train_loss = metrics.Mean(name="train_loss")
    train_acc = metrics.SparseCategoricalAccuracy(name="train_accuracy")
    loss_fn = mnistc.losses.SparseCategoricalCrossentropy()
    probs = P / P.sum(1, keepdims=True)
    losses = []
    for lo in range(0, 30, 10):
        loss = loss_fn(LAB[lo:lo + 10], probs[lo:lo + 10])
        losses.append(float(loss))
        out = train_loss(loss)
        train_acc(LAB[lo:lo + 10], probs[lo:lo + 10])
    assert float(out) == pytest.approx(np.mean(losses), rel=1e-6)
    assert f"{train_loss.result():.4f}" == f"{np.mean(losses):.4f}"
    assert train_loss.result().numpy() == train_loss.result()
    assert float(train_acc.result()) == pytest.approx((LAB == P.argmax(1)).mean())
    assert train_loss.name == "train_loss" and train_acc.name == "train_accuracy"


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("thr", [0.5, 0.2])
def test_precision_and_recall(weighted, thr):
    sw = SW if weighted else None
    p, r = metrics.Precision(thresholds=thr), metrics.Recall(thresholds=thr)
    for lo, hi in ((0, 11), (11, 30)):
        w = None if sw is None else sw[lo:hi]
        p.update_state(YB[lo:hi], PB[lo:hi], sample_weight=w)
        r.update_state(YB[lo:hi], PB[lo:hi], sample_weight=w)
    tp, fp, fn = confusion(YB, PB, thr, sw)
    assert float(p.result()) == pytest.approx(tp / (tp + fp), rel=1e-6)
    assert float(r.result()) == pytest.approx(tp / (tp + fn), rel=1e-6)


def test_precision_recall_options():
    many = metrics.Precision(thresholds=[0.2, 0.7])
    many.update_state(YB, PB)
    want = [confusion(YB, PB, t)[0] / sum(confusion(YB, PB, t)[:2]) for t in (0.2, 0.7)]
    np.testing.assert_allclose(many.result(), want, rtol=1e-6)
    cls1 = metrics.Recall(class_id=1)
    cls1.update_state(YB, PB)
    tp, _, fn = confusion(YB[:, 1:2], PB[:, 1:2], 0.5)
    assert float(cls1.result()) == pytest.approx(tp / (tp + fn))
    top1 = metrics.Precision(top_k=1)  # each row's highest score is the one positive prediction
    top1.update_state(YB, PB)
    assert float(top1.result()) == pytest.approx(YB[np.arange(30), PB.argmax(1)].mean())
    empty = metrics.Precision()
    empty.update_state([0, 0], [0.1, 0.2])
    assert float(empty.result()) == 0.0  # nothing predicted positive: 0, not NaN
    assert metrics.Recall().name == "recall" and metrics.Precision(name="p").name == "p"


def test_configs_round_trip():
    for m in (metrics.Mean(name="x"), metrics.TopKCategoricalAccuracy(k=3), metrics.BinaryAccuracy(threshold=0.2),
              metrics.Precision(thresholds=[0.1, 0.9], class_id=2), metrics.Recall(top_k=2)):
        twin = type(m).from_config(m.get_config())
        assert twin.get_config() == m.get_config()


def test_compile_still_takes_the_accuracy_metrics_and_refuses_the_rest():
    x = rng.random((40, 4), dtype=np.float32)
    y = rng.integers(0, 3, 40)
    for metric, key in (("accuracy", "accuracy"), (metrics.SparseCategoricalAccuracy(name="acc2"), "acc2"),
                        ("sparse_categorical_accuracy", "sparse_categorical_accuracy")):
        model = mnistc.Sequential([mnistc.Input((4,)), mnistc.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=[metric])
        h = model.fit(x, y, epochs=1, verbose=0)
        standalone = metrics.SparseCategoricalAccuracy()
        standalone.update_state(y, model.predict(x, verbose=0))
        assert key in h.history
        assert model.evaluate(x, y, verbose=0)[1] == pytest.approx(float(standalone.result()), abs=1e-6)
    model = mnistc.Sequential([mnistc.Input((4,)), mnistc.layers.Dense(3, activation="softmax")])
    for bad, match in ((metrics.Precision(), "Unsupported metric"), ("categorical_crossentropy", "Unsupported metric"),
                       (metrics.BinaryAccuracy(threshold=0.7), "threshold 0.5")):
        with pytest.raises(ValueError, match=match):
            model.compile("adam", "sparse_categorical_crossentropy", metrics=[bad])


@pytest.mark.parametrize("make, exc, match", [
    (lambda: metrics.TopKCategoricalAccuracy(k=0), ValueError, "`k` must be a positive integer"),
    (lambda: metrics.BinaryAccuracy(threshold=2), ValueError, r"`threshold` must be a number in \[0, 1\]"),
    (lambda: metrics.Precision(thresholds=[0.5, 1.5]), ValueError, r"threshold values must be in \[0, 1\]"),
    (lambda: metrics.Mean().update_state(["a"]), TypeError, "values: expected numbers"),
    (lambda: metrics.Mean().update_state([1.0, 2.0], sample_weight=[1.0, 2.0, 3.0]), ValueError,
     "does not broadcast"),
    (lambda: metrics.Recall(class_id=0).update_state([1, 0], [0.2, 0.9]), ValueError, "class_id is provided"),
    (lambda: metrics.Precision().update_state(YB, PB[:, :2]), ValueError, "does not match y_pred"),
    (lambda: metrics.sparse_top_k_categorical_accuracy([7], P[:1]), ValueError, r"labels must be in \[0, 6\)"),
])
def test_errors_name_what_was_expected(make, exc, match):
    with pytest.raises(exc, match=match):
        make()
