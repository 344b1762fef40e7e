"""Pictures for training runs: learning curves, confusion matrices and grids of digits.

The plots need matplotlib, an optional extra (`pip install mnistc[notebooks]`); it is imported
only when a plot function is called. `confusion_matrix` is pure NumPy.

Example:
    history = model.fit(x_train, y_train, validation_split=0.1, epochs=3)
    plot_history(history)
    y_pred = model.predict(x_test).argmax(axis=1)
    plot_confusion_matrix(y_test, y_pred, normalize=True)
    show_digits(x_test[:20], labels=y_test[:20], predictions=y_pred[:20])
"""
import math
import numbers

import numpy as np

__all__ = ["confusion_matrix", "plot_confusion_matrix", "plot_history", "show_digits"]


def _pyplot(caller):
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"mnistc.plotting.{caller} needs matplotlib, which is not installed: "
                          "pip install mnistc[notebooks]  (or: pip install matplotlib)") from e
    return plt


def _class_ids(a, what):
    """Integer class ids (N,) from ids (N,) or from one-hot / score rows (N, C) (argmax)."""
    a = np.asarray(a)
    if a.ndim == 2:
        if a.shape[1] == 0:
            raise ValueError(f"{what}: score rows of shape {a.shape} have no classes")
        return a.argmax(axis=1), a.shape[1]
    if a.ndim != 1:
        raise ValueError(f"{what}: expected class ids of shape (N,) or scores of shape (N, classes), "
                         f"got shape {a.shape}")
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise TypeError(f"{what}: expected integer class ids, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        if a.size and not (np.isfinite(a).all() and np.array_equal(a, np.round(a))):
            raise ValueError(f"{what}: expected integer class ids, got non-integer values")
    ids = a.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError(f"{what}: class ids must be >= 0, found {int(ids.min())}")
    return ids, None


def confusion_matrix(y_true, y_pred, num_classes=None):
    """Counts of (true class, predicted class) pairs.

    Args:
        y_true: class ids (N,), or one-hot rows (N, classes).
        y_pred: class ids (N,), or scores / probabilities (N, classes) such as `model.predict(x)`
            (the argmax of each row is the prediction).
        num_classes: size of the matrix; by default the number of score columns, else
            1 + the largest class id seen.
    Returns:
        int64 array (num_classes, num_classes): row i = true class i, column j = predicted
        class j (so the diagonal holds the correct predictions and each row sums to the number
        of samples of that class).
    Raises:
        ValueError: different lengths, ids that are negative, non-integer or >= num_classes.
        TypeError: non-numeric input.
    """
    t, t_cols = _class_ids(y_true, "y_true")
    p, p_cols = _class_ids(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred must have the same length, got {len(t)} and {len(p)}")
    if num_classes is None:
        seen = max(int(t.max()) if t.size else -1, int(p.max()) if p.size else -1) + 1
        num_classes = max(c for c in (t_cols, p_cols, seen) if c is not None)
        if num_classes == 0:
            raise ValueError("confusion_matrix: empty inputs; pass num_classes to get an empty matrix")
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        num_classes = int(num_classes)
        for ids, what in ((t, "y_true"), (p, "y_pred")):
            if ids.size and ids.max() >= num_classes:
                raise ValueError(f"{what} holds class id {int(ids.max())}, but num_classes={num_classes} "
                                 f"allows ids 0..{num_classes - 1}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _history_dict(history):
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise TypeError("plot_history expects the History returned by fit (or its .history dict), "
                        f"got {type(history).__name__}")
    if not logs or not any(len(v) for v in logs.values()):
        raise ValueError("plot_history: the history is empty (no epoch was recorded)")
    return logs


def plot_history(history, metrics=None, ax=None):
    """Learning curves from `fit`: one panel per metric, training and validation per epoch.

    Args:
        history: the History returned by `model.fit` (or its `.history` dict).
        metrics: names to plot, e.g. ["loss", "accuracy"]; by default every recorded metric
            that is not a `val_` entry, loss first. The `val_<name>` curve is drawn with each
            name when it was recorded.
        ax: a matplotlib Axes (one metric) or a sequence of Axes (one per metric) to draw
            into; by default a new figure with the panels side by side.
    Returns:
        The matplotlib Figure.
    Raises:
        ValueError: a requested metric is not in the history, or ax has the wrong length.
    """
    logs = _history_dict(history)
    if metrics is None:
        metrics = [k for k in logs if not k.startswith("val_")]
        metrics.sort(key=lambda k: (k != "loss", k))
        if not metrics:
            metrics = sorted(logs)
    elif isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise ValueError("plot_history: `metrics` is empty")
    for m in metrics:
        if m not in logs:
            raise ValueError(f"plot_history: metric {m!r} is not in the history; recorded: {sorted(logs)}")
    plt = _pyplot("plot_history")
    from matplotlib.ticker import MaxNLocator
    if ax is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) != len(metrics):
            raise ValueError(f"plot_history: got {len(axes)} Axes for {len(metrics)} metrics {metrics}")
        fig = axes[0].figure
    epochs = getattr(history, "epoch", None)
    for a, m in zip(axes, metrics):
        curves = [(m, "train")] + ([("val_" + m, "validation")] if "val_" + m in logs else [])
        if m.startswith("val_"):
            curves = [(m, "validation")]
        for key, label in curves:
            values = logs[key]
            xs = [e + 1 for e in epochs] if epochs and len(epochs) == len(values) else range(1, len(values) + 1)
            a.plot(list(xs), values, marker="o", label=label)
        a.set_title(m)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("epoch")
        a.set_ylabel(m)
        a.grid(True, alpha=0.3)
        a.legend()
    if ax is None:
        fig.tight_layout()
    return fig


def plot_confusion_matrix(y_true, y_pred, labels=None, normalize=False, ax=None):
    """The confusion matrix as a heat map with the count (or fraction) written in each cell.

    Args:
        y_true, y_pred: as for `confusion_matrix` (class ids, or score rows for y_pred).
        labels: names of the classes, in class-id order (default "0", "1", ...); their count
            sets the number of classes.
        normalize: if True, each row is divided by its total, so a cell is the fraction of the
            true class predicted as the column's class (the diagonal is the per-class recall).
        ax: a matplotlib Axes to draw into; by default a new figure.
    Returns:
        The matplotlib Figure (the heat map and its colour bar are its two Axes when ax is None).
    """
    cm = confusion_matrix(y_true, y_pred, num_classes=None if labels is None else len(labels))
    n = cm.shape[0]
    labels = [str(i) for i in range(n)] if labels is None else [str(lab) for lab in labels]
    values = cm.astype(np.float64)
    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    plt = _pyplot("plot_confusion_matrix")
    new_figure = ax is None
    if new_figure:
        size = max(4.0, 0.5 * n + 2.0)
        fig, ax = plt.subplots(figsize=(size + 1.0, size))
    fig = ax.figure
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels, rotation=45 if max(map(len, labels)) > 2 else 0,
                  ha="right" if max(map(len, labels)) > 2 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if n <= 20:
        threshold = values.max() / 2.0
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else str(cm[i, j])
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > threshold else "black")
    if new_figure:
        fig.tight_layout()
    return fig


def _as_images(images):
    x = np.asarray(images)
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"show_digits: flat images of {x.shape[1]} pixels are not square; pass "
                             "(N, height, width) images (one image: images[None])")
        x = x.reshape(len(x), side, side)
    elif x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"show_digits: expected images of shape (N, height, width) or (N, pixels), "
                         f"got shape {np.asarray(images).shape}")
    if len(x) == 0:
        raise ValueError("show_digits: no images to show")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"show_digits: images must be numeric, got dtype {x.dtype}")
    return x


def show_digits(images, labels=None, predictions=None, ncols=10, class_names=None, fig=None):
    """A grid of images, each titled with its label (and prediction: red when it is wrong).

    Args:
        images: (N, 28, 28) or (N, 784) arrays, uint8 0..255 or float (any range; each image
            is shown in grey levels, dark ink on white).
        labels: true class ids (N,) or one-hot rows, optional.
        predictions: predicted class ids (N,) or score rows such as `model.predict(x)`, optional.
        ncols: images per row.
        class_names: names to show instead of the class ids (e.g. Fashion-MNIST's).
        fig: a matplotlib Figure to draw into (cleared first); by default a new figure.
    Returns:
        The matplotlib Figure, one Axes per image.
    """
    x = _as_images(images)
    n = len(x)
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"show_digits: ncols must be a positive integer, got {ncols!r}")
    lab = pred = None
    if labels is not None:
        lab, _ = _class_ids(labels, "labels")
        if len(lab) != n:
            raise ValueError(f"show_digits: {n} images but {len(lab)} labels")
    if predictions is not None:
        pred, _ = _class_ids(predictions, "predictions")
        if len(pred) != n:
            raise ValueError(f"show_digits: {n} images but {len(pred)} predictions")

    def name(c):
        return str(class_names[c]) if class_names is not None else str(int(c))

    plt = _pyplot("show_digits")
    ncols = min(int(ncols), n)
    nrows = math.ceil(n / ncols)
    titled = lab is not None or pred is not None
    if fig is None:
        fig = plt.figure(figsize=(1.2 * ncols, (1.45 if titled else 1.2) * nrows))
    else:
        fig.clear()
    for i in range(n):
        a = fig.add_subplot(nrows, ncols, i + 1)
        a.imshow(x[i], cmap="gray_r", interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        if titled:
            if lab is not None and pred is not None:
                wrong = lab[i] != pred[i]
                title = f"{name(lab[i])}→{name(pred[i])}" if wrong else name(lab[i])
                a.set_title(title, fontsize=9 if len(title) <= 14 else 7, color="red" if wrong else "black")
            else:
                title = name(lab[i] if lab is not None else pred[i])
                a.set_title(title, fontsize=9 if len(title) <= 14 else 7)
    fig.tight_layout(pad=0.3)
    return fig
