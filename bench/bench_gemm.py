"""GFLOP/s of mnistc's GEMM kernels (each variant this CPU runs, at several thread counts) on the
seed MLP's shapes (784-128-10, batch 128; plus batch 1 and 32 forward) and square 512/1024, and the
whole sequence of GEMM calls of one training epoch, next to the single-core FMA peak measured by
_C.testing.fma_probe and, optionally, NumPy's BLAS on the same shapes.

    python bench/bench_gemm.py                # all variants, 1 and all usable threads
    python bench/bench_gemm.py --quick        # CI: short timings, no 1024
    python bench/bench_gemm.py --numpy        # also NumPy matmul (its BLAS, same thread counts)
    python bench/bench_gemm.py --write bench/GEMM.md

Times are wall clock through the Python binding (about a microsecond of call overhead, visible only
on the batch-1 shapes). "% peak" is GFLOP/s over (probe GFLOP/s per core x threads).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# (label, trans_a, trans_b, M, N, K)
MLP = [
    ("fwd X@W1      B=128", 0, 0, 128, 128, 784),
    ("fwd H@W2      B=128", 0, 0, 128, 10, 128),
    ("dX dY@W2^T    B=128", 0, 1, 128, 128, 10),
    ("dW X^T@dH     B=128", 1, 0, 784, 128, 128),
    ("dW H^T@dY     B=128", 1, 0, 128, 10, 128),
    ("fwd X@W1      B=32", 0, 0, 32, 128, 784),
    ("fwd X@W1      B=1", 0, 0, 1, 128, 784),
]
SQUARE = [("square 512", 0, 0, 512, 512, 512), ("square 1024", 0, 0, 1024, 1024, 1024)]


def operands(ta, tb, M, N, K, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C = np.zeros((M, N), np.float32)
    return A, B, C


def time_call(fn, flops, min_time, rounds):
    """Median and best seconds per call over `rounds` rounds of at least min_time each."""
    fn()
    reps = 1
    while True:  # calibrate the number of calls per round
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        dt = time.perf_counter() - t
        if dt >= min_time / 4 or reps >= 1 << 20:
            break
        reps *= 4
    reps = max(1, int(reps * min_time / max(dt, 1e-9)))
    per_call = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        per_call.append((time.perf_counter() - t) / reps)
    return statistics.median(per_call), min(per_call)


def bench_mnistc(shapes, variants, threads, min_time, rounds):
    from mnistc import _C
    old = _C.get_num_threads()
    rows = []
    try:
        for variant in variants:
            for nt in threads:
                _C.set_num_threads(nt)
                for label, ta, tb, M, N, K in shapes:
                    A, B, C = operands(ta, tb, M, N, K)
                    flops = 2.0 * M * N * K
                    med, best = time_call(
                        lambda: _C.testing.gemm_variant(ta, tb, 1.0, A, B, 0.0, C, variant), flops, min_time, rounds)
                    rows.append({"impl": variant, "threads": nt, "shape": label, "M": M, "N": N, "K": K,
                                 "us": med * 1e6, "gflops": flops / med * 1e-9,
                                 "gflops_best": flops / best * 1e-9})
    finally:
        _C.set_num_threads(old)
    return rows


def epoch_gemms(n=60000, batch=128):
    """The GEMM calls of one training epoch of the seed MLP, in order: per batch, forward
    (X@W1, H@W2), backward (H^T@dY into dW2, dY@W2^T into dH, X^T@dH into dW1)."""
    calls = []
    for start in range(0, n, batch):
        B = min(batch, n - start)
        calls += [(0, 0, B, 128, 784, 0.0), (0, 0, B, 10, 128, 0.0), (1, 0, 128, 10, B, 0.0),
                  (0, 1, B, 128, 10, 0.0), (1, 0, 784, 128, B, 0.0)]
    return calls


def bench_epoch(variants, threads, rounds, n):
    """Seconds for the GEMMs of one epoch on n images (median of rounds), per variant/threads."""
    from mnistc import _C
    rng = np.random.default_rng(0)
    X = rng.standard_normal((128, 784)).astype(np.float32)
    W1 = rng.standard_normal((784, 128)).astype(np.float32)
    W2 = rng.standard_normal((128, 10)).astype(np.float32)
    H = np.zeros((128, 128), np.float32)
    dH = np.zeros((128, 128), np.float32)
    Y = np.zeros((128, 10), np.float32)
    dW1 = np.zeros((784, 128), np.float32)
    dW2 = np.zeros((128, 10), np.float32)
    calls = epoch_gemms(n)
    flops = sum(2.0 * M * N * K for _, _, M, N, K, _ in calls)
    old = _C.get_num_threads()
    rows = []
    try:
        for variant in variants:
            for nt in threads:
                _C.set_num_threads(nt)

                def epoch():
                    g = _C.testing.gemm_variant
                    for start in range(0, n, 128):
                        B = min(128, n - start)
                        x, h, dh, y = X[:B], H[:B], dH[:B], Y[:B]
                        g(0, 0, 1.0, x, W1, 0.0, h, variant)
                        g(0, 0, 1.0, h, W2, 0.0, y, variant)
                        g(1, 0, 1.0, h, y, 0.0, dW2, variant)
                        g(0, 1, 1.0, y, W2, 0.0, dh, variant)
                        g(1, 0, 1.0, x, dh, 0.0, dW1, variant)
                epoch()
                times = []
                for _ in range(rounds):
                    t = time.perf_counter()
                    epoch()
                    times.append(time.perf_counter() - t)
                med = statistics.median(times)
                rows.append({"impl": variant, "threads": nt, "images": n, "s": med,
                             "gflops": flops / med * 1e-9, "best_s": min(times)})
    finally:
        _C.set_num_threads(old)
    return rows, flops


def bench_numpy_child(shapes, min_time, rounds):
    rows = []
    for label, ta, tb, M, N, K in shapes:
        A, B, C = operands(ta, tb, M, N, K)
        a, b = (A.T if ta else A), (B.T if tb else B)
        flops = 2.0 * M * N * K
        med, best = time_call(lambda: np.matmul(a, b, out=C), flops, min_time, rounds)
        rows.append({"shape": label, "us": med * 1e6, "gflops": flops / med * 1e-9,
                     "gflops_best": flops / best * 1e-9})
    return rows


def bench_numpy(shapes, threads, min_time, rounds):
    """NumPy in a child per thread count: BLAS reads its thread count at import."""
    rows = []
    for nt in threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(nt), OPENBLAS_NUM_THREADS=str(nt),
                   MKL_NUM_THREADS=str(nt))
        cmd = [sys.executable, __file__, "--numpy-child", "--min-time", str(min_time),
               "--rounds", str(rounds), "--shapes", json.dumps(shapes)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        for r in json.loads(out.stdout.strip().splitlines()[-1]):
            r.update(impl="numpy", threads=nt)
            rows.append(r)
    return rows


def table(rows, peak_core):
    lines = ["| impl | threads | shape | M x N x K | us/call | GFLOP/s (median) | best | % peak |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        pct = f"{100 * r['gflops'] / (peak_core * r['threads']):.0f}" if peak_core else "-"
        lines.append(f"| {r['impl']} | {r['threads']} | {r['shape']} | {r['M']}x{r['N']}x{r['K']} | "
                     f"{r['us']:.1f} | {r['gflops']:.1f} | {r['gflops_best']:.1f} | {pct} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short timings, no square 1024 (CI)")
    ap.add_argument("--threads", type=int, nargs="*", help="thread counts (default: 1 and all usable)")
    ap.add_argument("--variants", nargs="*", help="kernel variants (default: all this CPU runs)")
    ap.add_argument("--numpy", action="store_true", help="also time NumPy matmul (its BLAS)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timing round")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--write", help="also write the results (markdown) to this file")
    ap.add_argument("--json", help="also write the raw results (JSON) to this file")
    ap.add_argument("--numpy-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shapes", help=argparse.SUPPRESS)
    args = ap.parse_args()
    min_time = args.min_time or (0.02 if args.quick else 0.2)
    rounds = args.rounds or (3 if args.quick else 7)
    if args.numpy_child:
        print(json.dumps(bench_numpy_child([tuple(s) for s in json.loads(args.shapes)], min_time, rounds)))
        return 0

    from mnistc import _C
    info = _C.testing.kernel_info()
    variants = args.variants or info["supported"]
    unknown = [v for v in variants if v not in info["supported"]]
    if unknown:
        ap.error(f"variants not supported by this CPU: {unknown} (supported: {info['supported']})")
    threads = args.threads or sorted({1, info["default_threads"]})
    shapes = MLP + (SQUARE[:1] if args.quick else SQUARE)

    peak_core = _C.testing.fma_probe(0.1 if args.quick else 0.5)
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    head = (f"{cpu}; {len(os.sched_getaffinity(0))} CPUs usable; kernels {info['supported']} "
            f"(default {info['variant']}); FMA probe {peak_core:.1f} GFLOP/s per core "
            f"({peak_core * max(threads):.1f} for {max(threads)} threads)")
    print(head, flush=True)

    n_images = 6000 if args.quick else 60000
    epoch_rows, epoch_flops = bench_epoch(variants, threads, 3 if args.quick else 5, n_images)
    lines = [f"GEMMs of one MLP epoch on {n_images} images ({len(epoch_gemms(n_images))} calls, "
             f"{epoch_flops * 1e-9:.2f} GFLOP; Python call overhead included):",
             "| impl | threads | seconds (median) | best | GFLOP/s | % peak |", "|---|---:|---:|---:|---:|---:|"]
    for r in epoch_rows:
        lines.append(f"| {r['impl']} | {r['threads']} | {r['s']:.3f} | {r['best_s']:.3f} | {r['gflops']:.1f} | "
                     f"{100 * r['gflops'] / (peak_core * r['threads']):.0f} |")
    epoch_text = "\n".join(lines)
    print(epoch_text, flush=True)

    rows = bench_mnistc(shapes, variants, threads, min_time, rounds)
    if args.numpy:
        rows += bench_numpy([list(s) for s in shapes], threads, min_time, rounds)
        for r in rows:
            if r["impl"] == "numpy":
                s = next(s for s in shapes if s[0] == r["shape"])
                r.update(M=s[3], N=s[4], K=s[5])
    text = table(rows, peak_core)
    print(text)
    if args.write:
        with open(args.write, "w") as f:
            f.write(f"# GEMM benchmark\n\n{head}\n\n`python bench/bench_gemm.py"
                    f"{' --quick' if args.quick else ''}{' --numpy' if args.numpy else ''}`\n\n"
                    f"{epoch_text}\n\nPer shape:\n\n{text}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak_core_gflops": peak_core, "info": info, "rows": rows, "epoch": epoch_rows},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
