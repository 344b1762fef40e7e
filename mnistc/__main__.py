"""`python -m mnistc` / `mnistc`: the whole workflow on real data.

Load, summarise, train with the progress bar, evaluate, freeze all but the head, fine-tune,
evaluate again, save the model, and print a short report. The model is the 784-128-10 MLP
(`--model mlp`) or Keras's MNIST convnet (`--model cnn`). Every argument is checked before any
training, so a typo costs nothing.
"""
import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np

from mnistc.datasets import _lookup

DEFAULT_OUTPUT = os.path.join(os.path.dirname(_lookup.cache_dir("mnist")), "mnistc_model.keras")
EPILOG = """\
data: MNIST (or Fashion-MNIST) is looked for in --data-dir/mnist/ or, without --data-dir, in
$MNISTC_DATA_DIR/mnist/ (both name the folder holding mnist/ and fashion-mnist/; a relative
MNISTC_DATA_DIR is taken from the current folder, then from the project root), then in
~/.cache/mnistc/, in Keras's ~/.keras/datasets/ and, for Fashion-MNIST, in
/usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist); otherwise it is
downloaded into ~/.cache/mnistc/.
examples:
  MNISTC_DATA_DIR=../shared/data python -m mnistc --epochs 3 --output /tmp/model.keras
  MNISTC_DATA_DIR=../shared/data python -m mnistc --model cnn --train-samples 10000"""

# Default training epochs per model: the convnet's epoch costs about 40x the MLP's.
DEFAULT_EPOCHS = {"mlp": 5, "cnn": 3}
DEFAULT_HIDDEN = 128


def _int_at_least(lowest):
    """An argparse type: an integer >= lowest."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lowest}, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lowest}, got {value}")
        return value
    return parse


_positive_int, _count = _int_at_least(1), _int_at_least(0)


def _learning_rate(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 such as 1e-3, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0 such as 1e-3, got {text}")
    return value


def _parser():
    p = argparse.ArgumentParser(prog="mnistc", description="Train a 784-128-10 MLP or Keras's MNIST convnet "
                                "(Conv2D 32, MaxPooling2D, Conv2D 64, MaxPooling2D, Flatten, Dropout 0.5, "
                                "Dense 10) on MNIST with mnistc, fine-tune its head with the body frozen, "
                                "save it, and report.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="mlp: Flatten, Dense(--hidden, relu), Dense(10); cnn: Keras's MNIST convnet, "
                        "34,826 parameters, trained on one-hot labels as Keras's example does (default: mlp)")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist",
                   help="data set to train on (default: mnist)")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder holding mnist/ and fashion-mnist/, as MNISTC_DATA_DIR, which it replaces "
                        "(default: $MNISTC_DATA_DIR, then the lookup order below)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"training epochs (default: {DEFAULT_EPOCHS['mlp']} for --model mlp, "
                        f"{DEFAULT_EPOCHS['cnn']} for cnn)")
    p.add_argument("--fine-tune-epochs", type=_count, default=2,
                   help="epochs with the body frozen, 0 to skip (default: 2)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="(default: 128)")
    p.add_argument("--learning-rate", type=_learning_rate, default=1e-3,
                   help="Adam's learning rate for training (default: 0.001)")
    p.add_argument("--fine-tune-learning-rate", type=_learning_rate, default=1e-4,
                   help="Adam's learning rate for fine-tuning (default: 0.0001)")
    p.add_argument("--train-samples", metavar="N", type=_positive_int, default=None,
                   help="train on the first N training images only, for a quick run (default: all)")
    p.add_argument("--hidden", type=_positive_int, default=None,
                   help=f"units of the MLP's hidden layer (default: {DEFAULT_HIDDEN})")
    p.add_argument("--seed", type=_count, default=0, help="random seed (default: 0)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0 silent, 1 progress bars, 2 one line per epoch (default: 1)")
    p.add_argument("--output", metavar="FILE.keras", default=None,
                   help="where the trained model is saved; its folder must exist "
                        f"(default: {DEFAULT_OUTPUT}, folder created)")
    return p


def _check_output(parser, output):
    """The absolute output path, after checking it can be written; exits through parser.error."""
    if not output.endswith(".keras"):
        parser.error(f"--output must name a .keras file (the model format), got {output!r}")
    path = os.path.abspath(os.path.expanduser(output))
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        parser.error(f"--output {output} is a folder; name a file in it, such as {os.path.join(output, 'model.keras')}")
    if not os.path.isdir(folder):
        parser.error(f"--output {output}: the folder {folder} does not exist (create it first)")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mnistc-write-test-"):
            pass
    except OSError as e:
        parser.error(f"--output {output}: cannot write in {folder} ({e.strerror or e})")
    return path


def _check_data_dir(parser, data_dir, dataset):
    """The absolute --data-dir after checking it is the folder holding <dataset>/."""
    path = os.path.abspath(os.path.expanduser(data_dir))
    if not os.path.isdir(path):
        parser.error(f"--data-dir {data_dir}: {path} is not a folder")
    found, _ = _lookup._find(path)
    if found and not os.path.isdir(os.path.join(path, dataset)):
        parser.error(f"--data-dir is the folder holding {dataset}/ (as MNISTC_DATA_DIR), but {path} holds "
                     f"the IDX files themselves: pass --data-dir {os.path.dirname(path)}")
    return path


def _save(model, path):
    """Saves the model; when that fails, into a temporary file instead, so the training is kept."""
    try:
        model.save(path)
        return path, None
    except OSError as e:
        fd, fallback = tempfile.mkstemp(prefix="mnistc_model-", suffix=".keras")
        os.close(fd)
        model.save(fallback)
        return fallback, f"could not save to {path} ({e}); saved to {fallback} instead"


def _mlp(mnistc, sample_shape, hidden):
    return mnistc.Sequential([
        mnistc.Input(shape=sample_shape, dtype="uint8"),
        mnistc.layers.Rescaling(1 / 255),
        mnistc.layers.Flatten(),
        mnistc.layers.Dense(hidden, activation="relu"),
        mnistc.layers.Dense(10, activation="softmax"),
    ])


def _cnn(mnistc, sample_shape):
    """Keras's MNIST convnet (keras-io mnist_convnet), fed the uint8 images with a channel axis."""
    L = mnistc.layers
    return mnistc.Sequential([
        mnistc.Input(shape=(*sample_shape, 1), dtype="uint8"),
        L.Rescaling(1 / 255),
        L.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Flatten(),
        L.Dropout(0.5),
        L.Dense(10, activation="softmax"),
    ])


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    # every argument is checked before minutes of training are spent
    if args.hidden is not None and args.model != "mlp":
        parser.error(f"--hidden sizes the MLP's hidden layer; --model {args.model} has none (drop --hidden)")
    hidden = DEFAULT_HIDDEN if args.hidden is None else args.hidden
    epochs = DEFAULT_EPOCHS[args.model] if args.epochs is None else args.epochs
    if args.output is None:
        os.makedirs(os.path.dirname(DEFAULT_OUTPUT), exist_ok=True)
        args.output = DEFAULT_OUTPUT
    output = _check_output(parser, args.output)
    if args.data_dir is not None:
        os.environ["MNISTC_DATA_DIR"] = _check_data_dir(parser, args.data_dir, args.dataset)
    import mnistc
    mnistc.utils.set_random_seed(args.seed)
    train_optimizer = mnistc.optimizers.Adam(args.learning_rate)
    tune_optimizer = mnistc.optimizers.Adam(args.fine_tune_learning_rate)

    loader = mnistc.datasets.mnist if args.dataset == "mnist" else mnistc.datasets.fashion_mnist
    t0 = time.perf_counter()
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except (OSError, ValueError) as e:
        print(f"mnistc: cannot load {args.dataset}: {e}", file=sys.stderr)
        return 1
    t_load = time.perf_counter() - t0
    if args.train_samples is not None and args.train_samples > len(x_train):
        parser.error(f"--train-samples {args.train_samples}: {args.dataset} has {len(x_train)} training images")
    print(f"{args.dataset}: train {x_train.shape} {x_train.dtype}, test {x_test.shape}, "
          f"loaded in {t_load:.2f} s")
    if args.train_samples is not None:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]
        print(f"training on the first {len(x_train)} training images (--train-samples)")

    if args.model == "cnn":
        model = _cnn(mnistc, x_train.shape[1:])
        # as Keras's example: a channel axis (a view, no copy) and one-hot labels
        x_train, x_test = x_train[..., None], x_test[..., None]
        y_train, y_test = (mnistc.utils.to_categorical(y, 10) for y in (y_train, y_test))
        loss = "categorical_crossentropy"
    else:
        model = _mlp(mnistc, x_train.shape[1:], hidden)
        loss = "sparse_categorical_crossentropy"
    model.summary()
    model.compile(optimizer=train_optimizer, loss=loss, metrics=["accuracy"])
    print(f"\ntraining: {epochs} epoch(s), all layers, Adam(learning_rate={args.learning_rate:g})")
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=args.batch_size,
              validation_data=(x_test, y_test), verbose=args.verbose)
    t_train = time.perf_counter() - t0
    _, acc = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)

    for layer in model.layers[:-1]:
        layer.trainable = False
    frozen_before = [w.copy() for layer in model.layers[:-1] for w in layer.weights]
    model.compile(optimizer=tune_optimizer, loss=loss, metrics=["accuracy"])
    t0 = time.perf_counter()
    if args.fine_tune_epochs > 0:
        print(f"\nfine-tuning: {args.fine_tune_epochs} epoch(s), the head only (body frozen), "
              f"Adam(learning_rate={args.fine_tune_learning_rate:g})")
        model.fit(x_train, y_train, epochs=args.fine_tune_epochs, batch_size=args.batch_size,
                  validation_data=(x_test, y_test), verbose=args.verbose)
    t_tune = time.perf_counter() - t0
    _, acc_tuned = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    frozen_after = [w for layer in model.layers[:-1] for w in layer.weights]
    unchanged = all(np.array_equal(a, b) for a, b in zip(frozen_before, frozen_after))
    saved_to, save_problem = _save(model, output)

    rows = [
        ("training", f"{epochs} epoch(s), {t_train:.2f} s ({t_train / epochs:.2f} s/epoch)"),
        ("  test accuracy", f"{acc:.4f}"),
        ("fine-tuning the head", f"{args.fine_tune_epochs} epoch(s), {t_tune:.2f} s"),
        ("  test accuracy", f"{acc_tuned:.4f}"),
        ("  frozen body weights bit-identical", "yes" if unchanged else "NO"),
        ("model saved to", saved_to),
    ]
    width = max(len(k) for k, _ in rows) + 1
    print("\nreport")
    for key, value in rows:
        print(f"  {key + ':':<{width}} {value}")
    if save_problem:
        print(f"mnistc: {save_problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
