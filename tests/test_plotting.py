"""mnistc.plotting: the NumPy confusion matrix against hand counts, and each plot helper's figure."""
import os
import subprocess
import sys

import numpy as np
import pytest

from mnistc import plotting
from mnistc.plotting import confusion_matrix


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("matplotlib is missing in CI: install mnistc[notebooks]")
        pytest.skip("matplotlib is not installed (pip install mnistc[notebooks])")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


@pytest.fixture
def plt():
    plt = _matplotlib()
    yield plt
    plt.close("all")


# --- confusion_matrix (no matplotlib needed) ---

def test_confusion_matrix_hand_computed():
    y_true = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 2, 0, 2, 2]
    # row = true class, column = predicted class
    expected = np.array([[1, 1, 0],
                         [0, 2, 1],
                         [1, 0, 3]])
    cm = confusion_matrix(y_true, y_pred)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == len(y_true)
    np.testing.assert_array_equal(cm.sum(axis=1), [2, 3, 4])


def test_confusion_matrix_accepts_scores_and_one_hot():
    y_true = np.array([2, 0, 1, 2])
    scores = np.array([[0.1, 0.2, 0.7],    # 2
                       [0.8, 0.1, 0.1],    # 0
                       [0.5, 0.3, 0.2],    # 0 (wrong)
                       [0.0, 1.0, 0.0]])   # 1 (wrong)
    expected = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(confusion_matrix(y_true, scores), expected)
    one_hot = np.eye(3)[y_true]
    np.testing.assert_array_equal(confusion_matrix(one_hot, scores), expected)
    # the score columns set the size even when a class never occurs
    assert confusion_matrix([0, 0], np.array([[0.9, 0.1, 0.0, 0.0]] * 2)).shape == (4, 4)


def test_confusion_matrix_num_classes_pads_and_checks():
    cm = confusion_matrix(np.array([1, 1], np.uint8), np.array([1, 0], np.uint8), num_classes=4)
    np.testing.assert_array_equal(cm, [[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="class id 5.*num_classes=4"):
        confusion_matrix([0, 5], [0, 1], num_classes=4)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        confusion_matrix([0], [0], num_classes=0)


def test_confusion_matrix_matches_a_loop_on_random_labels():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 10, 500)
    p = rng.integers(0, 10, 500)
    ref = np.zeros((10, 10), np.int64)
    for a, b in zip(t, p):
        ref[a, b] += 1
    np.testing.assert_array_equal(confusion_matrix(t, p, num_classes=10), ref)


@pytest.mark.parametrize("y_true, y_pred, err, msg", [
    ([0, 1, 2], [0, 1], ValueError, "same length, got 3 and 2"),
    ([0, -1], [0, 1], ValueError, "must be >= 0, found -1"),
    ([0.5, 1.0], [0, 1], ValueError, "non-integer"),
    (["a", "b"], [0, 1], TypeError, "integer class ids"),
    (np.zeros((2, 2, 2)), [0, 1], ValueError, r"shape \(2, 2, 2\)"),
    ([], [], ValueError, "empty inputs"),
])
def test_confusion_matrix_rejects_bad_input(y_true, y_pred, err, msg):
    with pytest.raises(err, match=msg):
        confusion_matrix(y_true, y_pred)


def test_import_does_not_load_matplotlib():
    code = "import sys, mnistc.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("call", [
    lambda: plotting.plot_history({"loss": [1.0, 0.5]}),
    lambda: plotting.plot_confusion_matrix([0, 1], [0, 1]),
    lambda: plotting.show_digits(np.zeros((2, 28, 28))),
])
def test_missing_matplotlib_names_the_extra(monkeypatch, call):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # makes `import matplotlib` raise ImportError
    with pytest.raises(ImportError, match=r"pip install mnistc\[notebooks\]"):
        call()


# --- plots (Agg backend) ---

class _History:
    """What fit returns: .history (dict of per-epoch lists) and .epoch."""

    def __init__(self, logs):
        self.history = logs
        self.epoch = list(range(len(next(iter(logs.values())))))


def test_plot_history_one_panel_per_metric_with_train_and_validation(plt):
    h = _History({"accuracy": [0.8, 0.9, 0.95], "loss": [0.6, 0.3, 0.2],
                  "val_accuracy": [0.85, 0.9, 0.93], "val_loss": [0.4, 0.3, 0.25]})
    fig = plotting.plot_history(h)
    assert len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_title() == "loss" and acc_ax.get_title() == "accuracy"
    assert [line.get_label() for line in loss_ax.lines] == ["train", "validation"]
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), [0.6, 0.3, 0.2])
    np.testing.assert_allclose(loss_ax.lines[1].get_ydata(), [0.4, 0.3, 0.25])
    np.testing.assert_allclose(acc_ax.lines[0].get_xdata(), [1, 2, 3])


def test_plot_history_selected_metric_dict_and_given_axes(plt):
    fig = plotting.plot_history({"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}, metrics="accuracy")
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 1   # no val_accuracy recorded
    fig2, axes = plt.subplots(1, 2)
    out = plotting.plot_history({"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}, metrics=["loss", "accuracy"],
                                ax=axes)
    assert out is fig2 and all(len(a.lines) == 1 for a in axes)
    with pytest.raises(ValueError, match="'val_loss' is not in the history"):
        plotting.plot_history({"loss": [1.0]}, metrics=["val_loss"])
    with pytest.raises(ValueError, match="got 2 Axes for 1 metrics"):
        plotting.plot_history({"loss": [1.0]}, ax=axes)
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_history({})
    with pytest.raises(TypeError, match="History returned by fit"):
        plotting.plot_history([0.5, 0.4])


def test_plot_confusion_matrix_image_and_cell_texts(plt):
    y_true = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 2, 0, 2, 2]
    fig = plotting.plot_confusion_matrix(y_true, y_pred, labels=["zero", "one", "two"])
    heat = fig.axes[0]
    assert len(fig.axes) == 2                      # heat map + colour bar
    assert len(heat.images) == 1
    np.testing.assert_array_equal(heat.images[0].get_array(), confusion_matrix(y_true, y_pred))
    assert [t.get_text() for t in heat.texts] == ["1", "1", "0", "0", "2", "1", "1", "0", "3"]
    assert [t.get_text() for t in heat.get_yticklabels()] == ["zero", "one", "two"]

    fig_n = plotting.plot_confusion_matrix(y_true, y_pred, normalize=True)
    rows = np.asarray(fig_n.axes[0].images[0].get_array())
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    np.testing.assert_allclose(rows[2], [0.25, 0.0, 0.75])

    _, ax = plt.subplots()
    assert plotting.plot_confusion_matrix([0, 1], [1, 1], ax=ax) is ax.figure


def test_show_digits_one_axes_per_image_with_titles(plt):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    preds = labels.copy()
    preds[3] = 8
    fig = plotting.show_digits(images, labels=labels, predictions=preds, ncols=5)
    assert len(fig.axes) == 12
    assert all(len(a.images) == 1 for a in fig.axes)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), images[0])
    assert fig.axes[0].get_subplotspec().get_geometry()[:2] == (3, 5)   # 12 images, 5 a row -> 3 rows
    assert fig.axes[3].get_title() == "3→8"
    assert fig.axes[3].title.get_color() == "red"
    assert fig.axes[4].get_title() == "4"

    flat = plotting.show_digits(images[:3].reshape(3, 784) / 255.0)
    assert len(flat.axes) == 3 and flat.axes[0].get_title() == ""
    np.testing.assert_allclose(flat.axes[1].images[0].get_array(), images[1] / 255.0)

    names = ["T-shirt", "Trouser"]
    named = plotting.show_digits(images[:2], labels=[0, 1], predictions=np.eye(2)[[0, 0]], class_names=names)
    assert [a.get_title() for a in named.axes] == ["T-shirt", "Trouser→T-shirt"]

    target = plt.figure()
    assert plotting.show_digits(images[:4], fig=target) is target and len(target.axes) == 4


@pytest.mark.parametrize("images, kwargs, msg", [
    (np.zeros((3, 30)), {}, "not square"),
    (np.zeros((28, 28)), {}, "not square"),
    (np.zeros((0, 28, 28)), {}, "no images"),
    (np.zeros((2, 28, 28)), {"labels": [1, 2, 3]}, "2 images but 3 labels"),
    (np.zeros((2, 28, 28)), {"ncols": 0}, "ncols must be a positive integer"),
])
def test_show_digits_rejects_bad_input(plt, images, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        plotting.show_digits(images, **kwargs)
