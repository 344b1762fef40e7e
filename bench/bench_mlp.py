"""Train the seed MLP (784-128-10, ReLU, softmax cross-entropy, Adam 1e-3, batch 128) on MNIST with
mnistc and, when installed, PyTorch and TensorFlow/Keras, side by side.

Each framework runs in fresh child processes, alternating, on the same preloaded float32 data with
the same thread count. A small FMA probe measures this machine's peak first. Printed per framework:
median epoch time, samples/s, GFLOP/s, % of peak, test accuracy, peak RSS, import time, predict time
on the 10k test set and on one image, and each ratio to mnistc.

    python bench/bench_mlp.py                 # 5 epochs, 3 rounds
    python bench/bench_mlp.py --quick         # CI: 1 epoch on 6000 images, 1 round
    python bench/bench_mlp.py --write bench/RESULTS.md

"mnistc-uint8" is mnistc fed the uint8 images as stored, with a Rescaling(1/255) first layer;
"mnistc-dense" is mnistc with the products' zero skipping off (MNISTC_SPARSE=0). GFLOP/s and % of
peak count the dense work of an epoch for everyone; mnistc skips the products by zero pixels, so
for it they are that work over its time, not the operations it ran.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


ADAM_FLOPS_PER_PARAM = 12  # m += (g - m)(1 - b1): 3; v += (g g - v)(1 - b2): 4; w -= m a / (sqrt(v) + eps): 5


def flops_per_epoch(n, n_in=784, hidden=128, n_out=10, batch=128):
    """(products, optimizer) floating-point operations of one epoch: the forward pass (2 GEMMs), the
    weight gradients (2 GEMMs) and the hidden layer's input gradient; Adam's update of every
    parameter at every step."""
    fwd = 2 * n * (n_in * hidden + hidden * n_out)
    wgrad = 2 * n * (n_in * hidden + hidden * n_out)
    dinp = 2 * n * hidden * n_out
    params = (n_in + 1) * hidden + (hidden + 1) * n_out
    steps = -(-n // batch)
    return fwd + wgrad + dinp, ADAM_FLOPS_PER_PARAM * params * steps


def load(n_train, raw=False):
    """float32 in [0, 1] (the form every framework is fed), or with raw=True the uint8 pixels as
    stored, flattened (mnistc's own form, scaled inside its C core by a Rescaling layer)."""
    import gzip
    import numpy as np
    root = os.path.join(os.environ.get("MNISTC_DATA_DIR", os.path.join(HERE, "..", "..", "shared", "data")),
                        "mnist")

    def idx(name, offset):
        with gzip.open(os.path.join(root, name + ".gz")) as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    def scaled(u8):  # float32 straight away: no float64 temporary inflating every peak RSS
        return u8.copy() if raw else np.multiply(u8, np.float32(1 / 255), dtype=np.float32)

    x = scaled(idx("train-images-idx3-ubyte", 16).reshape(-1, 784)[:n_train])
    y = idx("train-labels-idx1-ubyte", 8)[:n_train].astype(np.int64)
    xt = scaled(idx("t10k-images-idx3-ubyte", 16).reshape(-1, 784))
    yt = idx("t10k-labels-idx1-ubyte", 8).astype(np.int64)
    return x, y, xt, yt


# Calls timed for predict on the 10k test set, for every framework: the median of a few calls moved
# with this VM's speed swings by up to 1.5x between runs.
PREDICT_REPEATS = 20


def _median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def epoch_timer(callback_base, sink):
    """A Keras-style callback appending each epoch's wall time to sink."""
    class EpochTimer(callback_base):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            sink.append(time.perf_counter() - self.t)

    return EpochTimer()


def child_mnistc(args, uint8=False):
    import numpy  # noqa: F401  (preloaded: the data is NumPy for every framework; time the framework alone)
    t = time.perf_counter()
    import mnistc
    import_s = time.perf_counter() - t
    if hasattr(mnistc, "set_num_threads"):
        mnistc.set_num_threads(args.threads)
    x, y, xt, yt = load(args.n_train, raw=uint8)
    mnistc.utils.set_random_seed(0)
    scale = [mnistc.layers.Rescaling(1 / 255)] if uint8 else []
    model = mnistc.Sequential([mnistc.Input((784,)), *scale, mnistc.layers.Dense(128, activation="relu"),
                               mnistc.layers.Dense(10, activation="softmax")])
    model.compile(mnistc.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    epoch_times = []
    model.fit(x, y, batch_size=128, epochs=args.epochs, verbose=0,
              callbacks=[epoch_timer(mnistc.callbacks.Callback, epoch_times)])
    acc = float((model.predict(xt, batch_size=1000, verbose=0).argmax(1) == yt).mean())
    predict_s = _median_time(lambda: model.predict(xt, batch_size=1000, verbose=0), PREDICT_REPEATS)
    one = xt[:1]
    model.predict_on_batch(one)
    one_s = _median_time(lambda: model.predict_on_batch(one), 2000)
    return dict(import_s=import_s, epoch_times=epoch_times, acc=acc, predict_s=predict_s, one_s=one_s)


def child_torch(args):
    import numpy  # noqa: F401
    t = time.perf_counter()
    import torch
    import_s = time.perf_counter() - t
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y, xt, yt = load(args.n_train)
    x, y, xt_t = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xt)
    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    epoch_times = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        epoch_times.append(time.perf_counter() - t)

    def predict():
        with torch.no_grad():
            return torch.cat([net(xt_t[i:i + 1000]) for i in range(0, len(xt_t), 1000)])

    acc = float((predict().argmax(1).numpy() == yt).mean())
    predict_s = _median_time(predict, PREDICT_REPEATS)
    one = xt_t[:1]

    def predict_one():
        with torch.no_grad():
            return net(one)

    one_s = _median_time(predict_one, 2000)
    return dict(import_s=import_s, epoch_times=epoch_times, acc=acc, predict_s=predict_s, one_s=one_s)


def child_tensorflow(args):
    import numpy  # noqa: F401
    t = time.perf_counter()
    import keras
    import_s = time.perf_counter() - t
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    x, y, xt, yt = load(args.n_train)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    epoch_times = []
    model.fit(x, y, batch_size=128, epochs=args.epochs, verbose=0,
              callbacks=[epoch_timer(keras.callbacks.Callback, epoch_times)])
    acc = float((model.predict(xt, batch_size=1000, verbose=0).argmax(1) == yt).mean())
    predict_s = _median_time(lambda: model.predict(xt, batch_size=1000, verbose=0), PREDICT_REPEATS)
    one = xt[:1]
    one_s = _median_time(lambda: model(one, training=False), 200)
    return dict(import_s=import_s, epoch_times=epoch_times, acc=acc, predict_s=predict_s, one_s=one_s)


def child_mnistc_uint8(args):
    return child_mnistc(args, uint8=True)


CHILDREN = {"mnistc": child_mnistc, "mnistc-uint8": child_mnistc_uint8, "mnistc-dense": child_mnistc,
            "pytorch": child_torch, "tensorflow": child_tensorflow}
MODULES = {"mnistc": "mnistc", "mnistc-uint8": "mnistc", "mnistc-dense": "mnistc", "pytorch": "torch",
           "tensorflow": "tensorflow"}
CHILD_ENV = {"mnistc-dense": {"MNISTC_SPARSE": "0"}}


def available(name):
    import importlib.util
    return importlib.util.find_spec(MODULES[name]) is not None


def run_child(name, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--epochs", str(args.epochs),
           "--threads", str(args.threads), "--n-train", str(args.n_train)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               **CHILD_ENV.get(name, {}))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{name} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def byte_compile_mnistc():
    """Compile mnistc's modules into __pycache__, as pip does when it installs a package, so that
    its import is timed as installed even where PYTHONDONTWRITEBYTECODE stops Python caching them
    (compiling ~3,500 lines at every import took 75-80 ms of an import that is 12-14 ms from the
    cache); PyTorch and TensorFlow come byte-compiled from pip."""
    import compileall
    import importlib.util
    spec = importlib.util.find_spec("mnistc")
    if spec and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


def fma_peak_per_core():
    try:
        from mnistc import _C
    except ImportError:
        return None
    probe = getattr(_C, "fma_probe", None)
    return probe(0.3) if probe else None


def kernel_variant():
    from mnistc import _C
    return _C.kernel_info()["variant"]


def machine_line():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {len(os.sched_getaffinity(0))} CPUs usable, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=CHILDREN)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--quick", action="store_true", help="1 epoch on 6000 images, 1 round (CI)")
    ap.add_argument("--only", nargs="*", choices=CHILDREN, help="frameworks to run (default: all installed)")
    ap.add_argument("--write", help="also write the results table (markdown) to this file")
    args = ap.parse_args()
    if args.child:
        res = CHILDREN[args.child](args)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return 0
    if args.quick:
        args.epochs, args.rounds, args.n_train = 1, 1, 6000
    names = [n for n in (args.only or CHILDREN) if available(n)]
    byte_compile_mnistc()
    peak_core = fma_peak_per_core()
    peak = peak_core * args.threads if peak_core else None
    results = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:                               # alternate frameworks round by round
            results[n].append(run_child(n, args))
    products, optimizer = flops_per_epoch(args.n_train)
    flop = products + optimizer
    rows = {}
    for n, runs in results.items():
        epochs = [t for r in runs for t in r["epoch_times"]]
        med = statistics.median(epochs)
        rows[n] = dict(epoch=med, sps=args.n_train / med, gflops=flop / med / 1e9,
                       acc=statistics.median(r["acc"] for r in runs),
                       rss=max(r["peak_rss_mb"] for r in runs),
                       imp=statistics.median(r["import_s"] for r in runs),
                       pred=statistics.median(r["predict_s"] for r in runs),
                       one=statistics.median(r["one_s"] for r in runs))
    lines = [f"Machine: {machine_line()}; threads: {args.threads}",
             f"Seed MLP 784-128-10, Adam 1e-3, batch 128, {args.n_train} images, {args.epochs} epoch(s) x "
             f"{args.rounds} round(s); {flop / 1e9:.2f} GFLOP per epoch ({products / 1e9:.2f} in the products, "
             f"{optimizer / 1e9:.2f} in Adam's updates)",
             (f"FMA probe: {peak_core:.1f} GFLOP/s per core, {peak:.1f} GFLOP/s on {args.threads} thread(s); "
              f"mnistc kernels: {kernel_variant()}" if peak else "FMA probe: not available in this build"),
             "",
             "| framework | epoch (median) | samples/s | GFLOP/s | % of peak | test acc | peak RSS | import | "
             "predict 10k | predict 1 image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = rows.get("mnistc")
    for n, r in rows.items():
        def ratio(key, lower_is_better=True):
            if not base or n.startswith("mnistc"):
                return ""
            v = r[key] / base[key] if lower_is_better else base[key] / r[key]
            return f" ({v:.1f}x)"
        pct = f"{100 * r['gflops'] / peak:.0f}%" if peak else "n/a"
        lines.append(f"| {n} | {r['epoch']:.3f} s{ratio('epoch')} | {r['sps']:,.0f} | {r['gflops']:.1f} | {pct} | "
                     f"{r['acc']:.4f} | {r['rss']:.0f} MB{ratio('rss')} | {r['imp'] * 1e3:.0f} ms{ratio('imp')} | "
                     f"{r['pred'] * 1e3:.1f} ms{ratio('pred')} | {r['one'] * 1e6:.1f} us{ratio('one')} |")
    lines.append("")
    lines.append("Ratios in parentheses: the framework's figure divided by mnistc's (higher = mnistc better).")
    lines.append("mnistc-uint8: the same model with a Rescaling(1/255) first layer fed the uint8 images as stored,")
    lines.append("scaled inside the C core (no float copy of the data set). mnistc-dense: mnistc with the products'")
    lines.append("zero skipping off (MNISTC_SPARSE=0), every product computed in full.")
    lines.append("GFLOP/s and % of peak: the epoch's dense work over its time, for every framework; mnistc skips")
    lines.append("the products by zero pixels (81% of MNIST's), so for mnistc and mnistc-uint8 they exceed the")
    lines.append("operations actually run.")
    lines.append("import: in a fresh process with NumPy already loaded, mnistc byte-compiled as pip installs it.")
    small = rows.get("mnistc-uint8")
    for n, r in rows.items():
        if small and not n.startswith("mnistc"):
            lines.append(f"{n} / mnistc-uint8: epoch {r['epoch'] / small['epoch']:.1f}x, "
                         f"peak RSS {r['rss'] / small['rss']:.1f}x")
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write, "w") as f:
            f.write("# Benchmark results\n\nProduced by `python bench/bench_mlp.py --write bench/RESULTS.md`.\n\n")
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
