"""Train the seed MLP (784-128-10, ReLU, softmax cross-entropy, Adam 1e-3, batch 128) on MNIST with
mnistc and, when installed, PyTorch, Keras 3 on TensorFlow and Keras 3 on JAX, side by side.

Each framework runs in fresh child processes, alternating, on the same preloaded float32 data with
the same thread count; one that is not installed is reported as skipped. A small FMA probe measures
this machine's peak before and after. Printed per framework: median epoch time, samples/s, GFLOP/s
(of the dense work, and of the operations run), % of peak, test accuracy, peak RSS, import time, predict time on
the 10k test set and on one image (predict_on_batch for the Keras code), and each ratio to mnistc;
then the CPU time other processes took while it ran.

    python bench/bench_mlp.py                 # 5 epochs, 3 rounds
    python bench/bench_mlp.py --quick         # CI: 1 epoch on 6000 images, 1 round
    python bench/bench_mlp.py --write bench/RESULTS.md

"mnistc-uint8" is mnistc fed the uint8 images as stored, with a Rescaling(1/255) first layer;
"mnistc-dense" is mnistc with the products' zero skipping off (MNISTC_SPARSE=0).
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


def skipped_flops(nonzero_pixels, n, n_in=784, hidden=128):
    """The products' floating-point operations of one epoch that skipping the zero pixels leaves out:
    the first layer's forward pass and weight gradient, each an FMA per zero pixel and hidden unit."""
    return 2 * 2 * (n * n_in - nonzero_pixels) * hidden


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
    import numpy  # preloaded: the data is NumPy for every framework; time the framework alone
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
    info = mnistc._C.testing.kernel_info()
    skips = info["sparse"] and info["variant"] != "portable"  # the portable kernels have no skipping path
    return dict(import_s=import_s, epoch_times=epoch_times, acc=acc, predict_s=predict_s, one_s=one_s,
                nonzero_pixels=int(numpy.count_nonzero(x)) if skips else None)


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


def child_keras(args):
    """Keras 3 on the backend named by KERAS_BACKEND (set by run_child): the code a Keras user writes."""
    import numpy  # noqa: F401
    t = time.perf_counter()
    import keras
    import_s = time.perf_counter() - t
    if keras.backend.backend() == "tensorflow":
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
    model.predict_on_batch(one)  # traced and compiled for this shape before the timing
    one_s = _median_time(lambda: model.predict_on_batch(one), 200)
    return dict(import_s=import_s, epoch_times=epoch_times, acc=acc, predict_s=predict_s, one_s=one_s)


def child_mnistc_uint8(args):
    return child_mnistc(args, uint8=True)


CHILDREN = {"mnistc": child_mnistc, "mnistc-uint8": child_mnistc_uint8, "mnistc-dense": child_mnistc,
            "pytorch": child_torch, "keras-tensorflow": child_keras, "keras-jax": child_keras}
MODULES = {"mnistc": ["mnistc"], "mnistc-uint8": ["mnistc"], "mnistc-dense": ["mnistc"], "pytorch": ["torch"],
           "keras-tensorflow": ["keras", "tensorflow"], "keras-jax": ["keras", "jax"]}
CHILD_ENV = {"mnistc-dense": {"MNISTC_SPARSE": "0"}, "keras-tensorflow": {"KERAS_BACKEND": "tensorflow"},
             "keras-jax": {"KERAS_BACKEND": "jax"}}


def missing_modules(name):
    """The modules framework `name` needs that are not installed."""
    import importlib.util
    return [m for m in MODULES[name] if importlib.util.find_spec(m) is None]


def run_child(name, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--epochs", str(args.epochs),
           "--threads", str(args.threads), "--n-train", str(args.n_train)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               **CHILD_ENV.get(name, {}))
    # JAX has no thread-count setting: its pool spans the CPUs the process may run on.
    cpus = sorted(os.sched_getaffinity(0))[:args.threads] if name == "keras-jax" else None
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                         preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    if out.returncode != 0:
        raise RuntimeError(f"{name} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def byte_compile_mnistc():
    """Compile mnistc's modules into __pycache__, as pip does when it installs a package, so that
    its import is timed as installed even where PYTHONDONTWRITEBYTECODE stops Python caching them
    (compiling ~3,500 lines at every import took 75-80 ms of an import that is 12-14 ms from the
    cache); the other frameworks come byte-compiled from pip."""
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
    probe = getattr(_C.testing, "fma_probe", None)
    return probe(0.3) if probe else None


def busy_cpu_s():
    """CPU seconds the whole machine has run (all processes, all CPUs) since boot, from /proc/stat;
    None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_s():
    """CPU seconds this process and its finished children have run."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def kernel_variant():
    from mnistc import _C
    return _C.testing.kernel_info()["variant"]


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
    wanted = args.only or list(CHILDREN)
    skipped = {n: missing_modules(n) for n in wanted if missing_modules(n)}
    names = [n for n in wanted if n not in skipped]
    for n, missing in skipped.items():
        print(f"{n}: skipped, not installed ({', '.join(missing)})", file=sys.stderr)
    byte_compile_mnistc()
    load_before = os.getloadavg()[0]
    wall0, busy0, own0 = time.perf_counter(), busy_cpu_s(), own_cpu_s()
    peak_core = fma_peak_per_core()
    results = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:                               # alternate frameworks round by round
            results[n].append(run_child(n, args))
    if peak_core:  # probed again after the rounds: a probe slowed by other work gives a peak too low
        peak_core = max(peak_core, fma_peak_per_core())
    wall, busy1, own1 = time.perf_counter() - wall0, busy_cpu_s(), own_cpu_s()
    others = (busy1 - busy0 - (own1 - own0)) / wall if busy0 is not None and busy1 is not None else None
    peak = peak_core * args.threads if peak_core else None
    products, optimizer = flops_per_epoch(args.n_train)
    flop = products + optimizer
    nonzero = None
    rows = {}
    for n, runs in results.items():
        epochs = [t for r in runs for t in r["epoch_times"]]
        med = statistics.median(epochs)
        nz = runs[0].get("nonzero_pixels")
        done = flop - skipped_flops(nz, args.n_train) if nz is not None else flop
        nonzero = nz if nz is not None else nonzero
        rows[n] = dict(epoch=med, sps=args.n_train / med, gflops=flop / med / 1e9, done=done / med / 1e9,
                       acc=statistics.median(r["acc"] for r in runs),
                       rss=max(r["peak_rss_mb"] for r in runs),
                       imp=statistics.median(r["import_s"] for r in runs),
                       pred=statistics.median(r["predict_s"] for r in runs),
                       one=statistics.median(r["one_s"] for r in runs))
    variant = kernel_variant() if peak else None
    lines = [f"Machine: {machine_line()}; threads: {args.threads}",
             f"Seed MLP 784-128-10, Adam 1e-3, batch 128, {args.n_train} images, {args.epochs} epoch(s) x "
             f"{args.rounds} round(s); {flop / 1e9:.2f} GFLOP per epoch ({products / 1e9:.2f} in the products, "
             f"{optimizer / 1e9:.2f} in Adam's updates)" +
             (f"; {(flop - skipped_flops(nonzero, args.n_train)) / 1e9:.2f} GFLOP without the terms of zero "
              f"pixels ({100 * (1 - nonzero / (784 * args.n_train)):.0f}% of the pixels)" if nonzero is not None else ""),
             (f"FMA probe: {peak_core:.1f} GFLOP/s per core (best before and after the rounds), {peak:.1f} GFLOP/s "
              f"on {args.threads} thread(s); mnistc kernels: {variant}" if peak else
              "FMA probe: not available in this build"),
             ]
    if others is not None:
        lines.append(("The run shared the machine" if others >= 0.1 else "The machine was otherwise idle") +
                     f": during its {wall:.0f} s other processes kept {others:.2f} of the {os.cpu_count()} CPUs "
                     f"busy on average (1-minute load average {load_before:.2f} at the start); compare ratios "
                     "within this run only.")
    if skipped:
        lines.append("Skipped, not installed: " +
                     "; ".join(f"{n} ({', '.join(m)})" for n, m in skipped.items()) + ".")
    lines += ["",
              "| framework | epoch (median) | samples/s | GFLOP/s dense-equiv. | GFLOP/s run | % of peak | test acc | "
              "peak RSS | import | predict 10k | predict 1 image |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = rows.get("mnistc")
    over_peak = False
    for n, r in rows.items():
        def ratio(key, lower_is_better=True):
            if not base or n.startswith("mnistc"):
                return ""
            v = r[key] / base[key] if lower_is_better else base[key] / r[key]
            return f" ({v:.1f}x)"
        if not peak:
            pct = "n/a"
        elif r["done"] > peak:
            pct, over_peak = "n/a*", True
        else:
            pct = f"{100 * r['done'] / peak:.0f}%"
        lines.append(f"| {n} | {r['epoch']:.3f} s{ratio('epoch')} | {r['sps']:,.0f} | {r['gflops']:.1f} | "
                     f"{r['done']:.1f} | {pct} | {r['acc']:.4f} | {r['rss']:.0f} MB{ratio('rss')} | "
                     f"{r['imp'] * 1e3:.0f} ms{ratio('imp')} | {r['pred'] * 1e3:.1f} ms{ratio('pred')} | "
                     f"{r['one'] * 1e6:.1f} us{ratio('one')} |")
    lines += ["",
              "Ratios in parentheses: the framework's figure divided by mnistc's (higher = mnistc better).",
              "mnistc-uint8: the same model with a Rescaling(1/255) first layer fed the uint8 images as stored,",
              "scaled inside the C core (no float copy of the data set). mnistc-dense: mnistc with the products'",
              "zero skipping off (MNISTC_SPARSE=0), every product computed in full.",
              "GFLOP/s dense-equiv.: the epoch's dense work over its time, the same count for every framework.",
              "It compares speeds; it is not a hardware rate for a framework that skips work.",
              "GFLOP/s run: the operations the framework ran over the epoch's time. mnistc and mnistc-uint8 skip",
              "the first layer's terms of zero pixels (in its forward pass and weight gradient), so theirs is",
              "the dense work less those terms, counted from the training images; the others run the dense work.",
              "% of peak: GFLOP/s run over the FMA probe's peak for the threads used."]
    if variant == "avx2":
        lines += ["The avx2 kernels' forward pass runs over the pixels that are not zero in any of three rows,",
                  "more than counted: for mnistc, GFLOP/s run and % of peak are lower bounds."]
    if over_peak:
        lines.append("n/a*: above the probe's peak, which other work on the CPUs must have slowed.")
    lines += ["import: in a fresh process with NumPy already loaded, mnistc byte-compiled as pip installs it.",
              "predict 1 image: predict_on_batch for mnistc and the Keras code, a no_grad call for PyTorch."]
    small = rows.get("mnistc-uint8")
    for n, r in rows.items():
        if small and not n.startswith("mnistc"):
            lines.append(f"{n} / mnistc-uint8: epoch {r['epoch'] / small['epoch']:.1f}x, "
                         f"peak RSS {r['rss'] / small['rss']:.1f}x")
    text = "\n".join(lines)
    print(text)
    if args.write:
        from _results import write_section
        write_section(args.write, "bench_mlp", f"## The seed MLP\n\nProduced by `python {' '.join(sys.argv)}`.\n\n"
                      + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
