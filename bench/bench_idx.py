"""Load MNIST's gzip'd training images (47 MB of pixels) with mnistc and with the common pure-Python
recipe, `np.frombuffer(gzip.open(p).read(), np.uint8, offset=16)`, side by side.

Each way runs in fresh child processes, alternating which goes first, several rounds. A child imports
numpy, gzip and mnistc (the same baseline for both), then times one load and reports its peak RSS
(ru_maxrss) before and after. Printed: median load time, median peak RSS and peak growth of each way,
and the ratios pure-Python / mnistc. Both must give the same bytes (md5 compared).

    python bench/bench_idx.py                  # 7 rounds
    python bench/bench_idx.py --quick          # CI: 2 rounds
    python bench/bench_idx.py --file path/to/train-images-idx3-ubyte.gz
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WAYS = ("mnistc", "pure-python")


def default_file():
    root = os.environ.get("MNISTC_DATA_DIR", os.path.join(HERE, "..", "..", "shared", "data"))
    return os.path.join(root, "mnist", "train-images-idx3-ubyte.gz")


def child(way, path):
    import gzip
    import hashlib
    import resource
    import time

    import numpy as np

    import mnistc
    from mnistc.datasets import idx

    def peak_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    assert mnistc.__version__
    before = peak_kib()
    t0 = time.perf_counter()
    if way == "mnistc":
        a = idx.load(path)
    else:
        a = np.frombuffer(gzip.open(path).read(), np.uint8, offset=16)
    seconds = time.perf_counter() - t0
    peak = peak_kib()
    print(json.dumps({"way": way, "seconds": seconds, "rss_before_kib": before, "rss_peak_kib": peak,
                      "md5": hashlib.md5(a.tobytes()).hexdigest(), "nbytes": int(a.nbytes)}))


def run_child(way, path):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", way, "--file", path],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SystemExit(f"{way} child failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds (CI smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 7, --quick 2)")
    ap.add_argument("--file", default=None, help="gzip'd IDX file (default $MNISTC_DATA_DIR/mnist/...)")
    ap.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    path = args.file or default_file()
    if args.child:
        child(args.child, path)
        return 0
    if not os.path.isfile(path):
        print(f"bench_idx: {path} not found; set MNISTC_DATA_DIR or pass --file", file=sys.stderr)
        return 2
    rounds = args.rounds or (2 if args.quick else 7)
    res = {w: [] for w in WAYS}
    for i in range(rounds):
        order = WAYS if i % 2 == 0 else WAYS[::-1]
        for w in order:
            res[w].append(run_child(w, path))
    digests = {r["md5"] for w in WAYS for r in res[w]}
    if len(digests) != 1:
        raise SystemExit(f"the two ways disagree: md5s {digests}")

    def med(w, key):
        return statistics.median(r[key] for r in res[w])

    def growth(w):
        return statistics.median(r["rss_peak_kib"] - r["rss_before_kib"] for r in res[w])

    nbytes = res["mnistc"][0]["nbytes"]
    print(f"{os.path.basename(path)}: {nbytes / 1e6:.2f} MB of payload, {rounds} rounds, fresh process per "
          f"load, alternating order; median over rounds")
    print(f"{'way':<12} {'load s':>8} {'MB/s':>8} {'peak RSS MiB':>13} {'peak growth MiB':>16}")
    for w in WAYS:
        t = med(w, "seconds")
        print(f"{w:<12} {t:8.3f} {nbytes / t / 1e6:8.1f} {med(w, 'rss_peak_kib') / 1024:13.1f} "
              f"{growth(w) / 1024:16.1f}")
    t_ratio = med("pure-python", "seconds") / med("mnistc", "seconds")
    m_ratio = med("pure-python", "rss_peak_kib") / med("mnistc", "rss_peak_kib")
    g_ratio = growth("pure-python") / max(growth("mnistc"), 1)
    print(f"pure-python / mnistc: time x{t_ratio:.2f}, peak RSS x{m_ratio:.2f}, peak growth x{g_ratio:.2f}")
    print("all loads: " + ", ".join(f"{w} " + " ".join(f"{r['seconds']:.3f}" for r in res[w]) for w in WAYS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
