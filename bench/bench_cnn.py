"""Train the Keras MNIST convnet with mnistc and, when installed, PyTorch and Keras 3 on TensorFlow and
on JAX, side by side.

    Input((28, 28, 1)) -> Conv2D(32, 3, relu) -> MaxPooling2D(2) -> Conv2D(64, 3, relu)
    -> MaxPooling2D(2) -> Flatten -> Dropout(0.5) -> Dense(10, softmax); Adam 1e-3, batch 128,
    categorical cross-entropy on one-hot labels.

Each framework runs in fresh child processes, alternating round after round, on the same float32
data with the same thread count. Printed per framework: the epoch time (the median over rounds of
each child's last epoch, after a first epoch that includes any compilation), GFLOP/s and % of the
two cores' FMA peak measured here (the dense work of an epoch over that time), test accuracy, predict
time on the 10k test set, and each time's ratio to mnistc's.

    python bench/bench_cnn.py                 # 2 epochs per child, 3 rounds
    python bench/bench_cnn.py --quick         # CI: 1 epoch on 2048 images, 1 round
    python bench/bench_cnn.py --write bench/RESULTS.md
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_mlp import _median_time, epoch_timer, fma_peak_per_core, machine_line  # noqa: E402

PREDICT_REPEATS = 5
BATCH = 128
ADAM_FLOPS_PER_PARAM = 12


def conv_flops(pixels_out, k, c_in, c_out):
    return 2 * pixels_out * k * k * c_in * c_out


def flops_per_epoch(n):
    """Floating-point operations of one epoch: the forward products (both convolutions, the dense
    layer), the weight gradients of the same size, the input gradients of the second convolution and
    the dense layer (the first convolution's is never needed), and Adam's update per parameter and
    step. Pooling, activations and dropout are left out (a few % at most)."""
    c1, c2, d = conv_flops(26 * 26, 3, 1, 32), conv_flops(11 * 11, 3, 32, 64), 2 * 1600 * 10
    products = n * ((c1 + c2 + d) * 2 + c2 + d)
    params = 320 + 18496 + 16010
    return products + ADAM_FLOPS_PER_PARAM * params * -(-n // BATCH)


def load(n_train):
    """(x (n, 28, 28, 1) float32 in [0, 1], one-hot y, x_test, test labels)."""
    import gzip
    import numpy as np
    root = os.path.join(os.environ.get("MNISTC_DATA_DIR", os.path.join(HERE, "..", "..", "shared", "data")),
                        "mnist")

    def idx(name, offset):
        with gzip.open(os.path.join(root, name + ".gz")) as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    def images(name):
        return np.multiply(idx(name, 16), np.float32(1 / 255), dtype=np.float32).reshape(-1, 28, 28, 1)

    x = images("train-images-idx3-ubyte")[:n_train]
    y = np.eye(10, dtype=np.float32)[idx("train-labels-idx1-ubyte", 8)[:n_train]]
    return x, y, images("t10k-images-idx3-ubyte"), idx("t10k-labels-idx1-ubyte", 8).astype(np.int64)


def keras_like(lib, args):
    """The convnet in mnistc or Keras (same code), trained; returns the child's figures."""
    layers = lib.layers
    lib.utils.set_random_seed(0)
    x, y, xt, yt = load(args.n_train)
    model = lib.Sequential([
        lib.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")])
    model.compile(lib.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    epoch_times = []
    model.fit(x, y, batch_size=BATCH, epochs=args.epochs, verbose=0,
              callbacks=[epoch_timer(lib.callbacks.Callback, epoch_times)])
    acc = float((model.predict(xt, batch_size=1000, verbose=0).argmax(1) == yt).mean())
    predict_s = _median_time(lambda: model.predict(xt, batch_size=1000, verbose=0), PREDICT_REPEATS)
    return dict(epoch_times=epoch_times, acc=acc, predict_s=predict_s)


def child_mnistc(args):
    import mnistc
    mnistc.set_num_threads(args.threads)
    return keras_like(mnistc, args)


def child_keras(args):
    import keras
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    return keras_like(keras, args)


def child_torch(args):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y, xt, yt = load(args.n_train)
    # NCHW, PyTorch's layout; the labels as class ids (the same loss as one-hot cross-entropy)
    x, y = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y.argmax(1))
    xt_t = torch.from_numpy(xt.transpose(0, 3, 1, 2).copy())
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    epoch_times = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        epoch_times.append(time.perf_counter() - t)
    net.eval()

    def predict():
        with torch.no_grad():
            return torch.cat([net(xt_t[i:i + 1000]) for i in range(0, len(xt_t), 1000)])

    acc = float((predict().argmax(1).numpy() == yt).mean())
    return dict(epoch_times=epoch_times, acc=acc, predict_s=_median_time(predict, PREDICT_REPEATS))


CHILDREN = {"mnistc": (child_mnistc, "mnistc", {}),
            "pytorch": (child_torch, "torch", {}),
            "keras-tensorflow": (child_keras, "tensorflow", {"KERAS_BACKEND": "tensorflow"}),
            "keras-jax": (child_keras, "jax", {"KERAS_BACKEND": "jax"})}


def available(name):
    import importlib.util
    module = CHILDREN[name][1]
    return importlib.util.find_spec(module) is not None and (
        module in ("mnistc", "torch") or importlib.util.find_spec("keras") is not None)


def run_child(name, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--epochs", str(args.epochs),
           "--threads", str(args.threads), "--n-train", str(args.n_train)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TF_CPP_MIN_LOG_LEVEL="2", **CHILDREN[name][2])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=CHILDREN)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--quick", action="store_true", help="1 epoch on 2048 images, 1 round (CI)")
    ap.add_argument("--only", nargs="*", choices=CHILDREN, help="frameworks to run (default: all installed)")
    ap.add_argument("--write", help="also write the results table (markdown) to this file")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child][0](args)))
        return
    if args.quick:
        args.epochs, args.rounds, args.n_train = 1, 1, 2048
    names = [n for n in (args.only or CHILDREN) if available(n)]
    skipped = [n for n in (args.only or CHILDREN) if n not in names]
    results = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:
            results[n].append(run_child(n, args))
    peak = fma_peak_per_core()
    peak_all = peak * args.threads if peak else None
    flops = flops_per_epoch(args.n_train)
    rows = []
    base = None
    for n in names:
        rs = results[n]
        epoch = statistics.median(r["epoch_times"][-1] for r in rs)
        predict = statistics.median(r["predict_s"] for r in rs)
        gflops = flops / epoch / 1e9
        if n == "mnistc":
            base = (epoch, predict)
        rows.append((n, epoch, gflops, 100 * gflops / peak_all if peak_all else float("nan"),
                     statistics.median(r["acc"] for r in rs), predict))
    lines = [f"Machine: {machine_line()}; {args.threads} threads; FMA peak {peak_all:.0f} GFLOP/s over the threads"
             if peak_all else f"Machine: {machine_line()}; {args.threads} threads",
             f"Convnet, {args.n_train} images, {args.epochs} epoch(s) per child (the last one timed), "
             f"{args.rounds} round(s); {flops / 1e12:.3f} TFLOP of dense work per epoch",
             "",
             "| framework | epoch s | GFLOP/s | % of peak | test acc | predict 10k s | epoch vs mnistc | "
             "predict vs mnistc |",
             "|---|---|---|---|---|---|---|---|"]
    for n, epoch, gflops, pct, acc, predict in rows:
        ratio = (f"{epoch / base[0]:.2f}x", f"{predict / base[1]:.2f}x") if base else ("", "")
        lines.append(f"| {n} | {epoch:.3f} | {gflops:.1f} | {pct:.1f} | {acc:.4f} | {predict:.3f} | {ratio[0]} | "
                     f"{ratio[1]} |")
    if skipped:
        lines += ["", f"Not installed, skipped: {', '.join(skipped)}"]
    text = "\n".join(lines)
    print(text)
    if args.write:
        from _results import write_section
        write_section(args.write, "bench_cnn", f"## The convnet\n\nProduced by `python {' '.join(sys.argv)}`.\n\n"
                      + text)


if __name__ == "__main__":
    main()
