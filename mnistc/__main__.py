"""`python -m mnistc` / `mnistc`: the whole workflow on real data.

Load, summarise, train with the progress bar, evaluate, freeze all but the head, fine-tune,
evaluate again, save the model, and print a short report.
"""
import argparse
import os
import sys
import time

import numpy as np


def _parser():
    p = argparse.ArgumentParser(prog="mnistc", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    p.add_argument("--data-dir", default=None, help="folder holding the four IDX files (default: lookup order)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    p.add_argument("--fine-tune-epochs", type=int, default=2, help="epochs with the body frozen (default 2)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--fine-tune-learning-rate", type=float, default=1e-4)
    p.add_argument("--hidden", type=int, default=128, help="units of the hidden layer (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--output", default="mnistc_model.keras", help="where the trained model goes")
    return p


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    # every argument is checked before minutes of training are spent
    if args.epochs < 1 or args.batch_size < 1 or args.hidden < 1:
        parser.error("--epochs, --batch-size and --hidden must be >= 1")
    if args.fine_tune_epochs < 0:
        parser.error("--fine-tune-epochs must be >= 0")
    if not args.output.endswith(".keras"):
        parser.error(f"--output must name a .keras file (the model format), got {args.output!r}")
    import mnistc
    mnistc.utils.set_random_seed(args.seed)
    loader = mnistc.datasets.mnist if args.dataset == "mnist" else mnistc.datasets.fashion_mnist
    t0 = time.perf_counter()
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data(args.data_dir)
    except (OSError, ValueError) as e:
        print(f"mnistc: cannot load {args.dataset}: {e}", file=sys.stderr)
        return 1
    t_load = time.perf_counter() - t0
    print(f"{args.dataset}: train {x_train.shape} {x_train.dtype}, test {x_test.shape}, "
          f"loaded in {t_load:.2f} s")

    model = mnistc.Sequential([
        mnistc.Input(shape=(28, 28), dtype="uint8"),
        mnistc.layers.Rescaling(1 / 255),
        mnistc.layers.Flatten(),
        mnistc.layers.Dense(args.hidden, activation="relu"),
        mnistc.layers.Dense(10, activation="softmax"),
    ])
    model.summary()
    model.compile(optimizer=mnistc.optimizers.Adam(args.learning_rate),
                  loss=mnistc.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              validation_data=(x_test, y_test), verbose=args.verbose)
    t_train = time.perf_counter() - t0
    _, acc = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)

    for layer in model.layers[:-1]:
        layer.trainable = False
    frozen_before = [w.copy() for layer in model.layers[:-1] for w in layer.weights]
    model.compile(optimizer=mnistc.optimizers.Adam(args.fine_tune_learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    if args.fine_tune_epochs > 0:
        model.fit(x_train, y_train, epochs=args.fine_tune_epochs, batch_size=args.batch_size,
                  validation_data=(x_test, y_test), verbose=args.verbose)
    t_tune = time.perf_counter() - t0
    _, acc_tuned = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    frozen_after = [w for layer in model.layers[:-1] for w in layer.weights]
    unchanged = all(np.array_equal(a, b) for a, b in zip(frozen_before, frozen_after))
    model.save(args.output)

    rows = [
        (f"test accuracy after {args.epochs} epoch(s)",
         f"{acc:.4f}  ({t_train:.2f} s training, {t_train / args.epochs:.2f} s/epoch)"),
        (f"after fine-tuning the head {args.fine_tune_epochs} epoch(s)", f"{acc_tuned:.4f}  ({t_tune:.2f} s)"),
        ("frozen body weights bit-identical", "yes" if unchanged else "NO"),
        ("model saved to", os.path.abspath(args.output)),
    ]
    width = max(len(k) for k, _ in rows) + 1
    print("\nreport")
    for key, value in rows:
        print(f"  {key + ':':<{width}} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
