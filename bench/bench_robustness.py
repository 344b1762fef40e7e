"""Robustness figures, one log line each (RELIABILITY.md section 5):

    python bench/bench_robustness.py            # full: all leak cases x1000, 30 kill rounds, 60 s of fuzzing
    python bench/bench_robustness.py --quick    # CI: a subset, 5 kill rounds, 5 s of fuzzing (< 60 s)

cases   test cases collected by pytest from the robustness files and tests/test_idx.py
crashes abnormal exits (signals, sanitizer reports) over the corpus replays, the fuzz run and the kill rounds
leaks   max C-heap (mallinfo2) and Python-heap (tracemalloc) growth per 1000 calls, refcount drift
fuzz    fuzz_idx executions, exec/s, coverage and new crash artifacts (needs clang + libclang-rt-14-dev)
kill    SIGKILL-during-save rounds and torn target files
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
FUZZ = TESTS / "fuzz"
sys.path[:0] = [str(TESTS), str(FUZZ)]

FILES = ["tests/test_robustness_inputs.py", "tests/test_faults.py", "tests/test_threads.py",
         "tests/test_leaks.py", "tests/test_fuzz_replay.py", "tests/test_idx.py"]


def log(key, text):
    print(f"{key:8s} {text}", flush=True)


def count_cases():
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *FILES],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    per_file = {}
    for line in r.stdout.splitlines():
        if "::" in line:
            f = line.split("::")[0]
            per_file[f] = per_file.get(f, 0) + 1
    return per_file


REPLAY_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import mnistc
from mnistc import _C
from mnistc.datasets import idx
import weights_check
n = 0
for p in sorted(Path(sys.argv[2]).iterdir()):
    for door in (lambda: idx.load(p), lambda: _C.read_idx_bytes(p.read_bytes())):
        try:
            door()
        except (mnistc.FormatError, OSError, MemoryError):
            pass
        n += 1
t = weights_check.WeightsTarget(tolerate_known=True)
for p in sorted(Path(sys.argv[3]).iterdir()):
    t.check(p.read_bytes())
    n += 2
t.close()
print(n)
"""


def replay_corpora():
    """Replay both corpora through Python in a child; returns (inputs run, abnormal exit?)."""
    r = subprocess.run([sys.executable, "-c", REPLAY_CHILD, str(FUZZ), str(FUZZ / "corpus_idx"),
                        str(FUZZ / "corpus_weights")], capture_output=True, text=True, timeout=300)
    runs = int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else 0
    return runs, r.returncode != 0


def fuzz(seconds, workdir):
    from test_fuzz_replay import build_fuzzers, clean_env
    os.makedirs(workdir, exist_ok=True)
    try:
        exe = build_fuzzers(workdir)["fuzz_idx"]
    except RuntimeError as e:
        return None, str(e).splitlines()[0]
    corpus = Path(workdir) / "corpus"
    corpus.mkdir()
    r = subprocess.run([str(exe), f"-max_total_time={seconds}", "-max_len=65536", "-malloc_limit_mb=256",
                        "-rss_limit_mb=2048", f"-dict={FUZZ / 'idx.dict'}", "-print_final_stats=1",
                        f"-artifact_prefix={workdir}/crash-", str(corpus), str(FUZZ / "corpus_idx")],
                       capture_output=True, text=True, env=clean_env(), timeout=seconds + 120)
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", r.stderr))
    cov = re.findall(r"cov: (\d+)", r.stderr)
    crashes = len(list(Path(workdir).glob("crash-*"))) + (r.returncode != 0)
    return {"executions": int(stats.get("number_of_executed_units", 0)),
            "exec_per_s": int(stats.get("average_exec_per_sec", 0)), "cov": int(cov[-1]) if cov else 0,
            "corpus": len(list(corpus.iterdir())), "crashes": crashes}, None


def leaks(quick, workdir):
    import test_leaks
    chosen = test_leaks.CASE_NAMES
    if quick:
        chosen = ["predict_on_batch", "train_on_batch", "idx.load gz", "idx.load bad CRC", "predict MemoryError",
                  "load_weights truncated"]
    table = test_leaks.cases(Path(workdir))
    worst_c, worst_py, drift, worst_case = -1.0, 0.0, 0, None
    for name in chosen:
        fn, watch, n = table[name]
        if quick:
            n = min(n, 300)
        r = test_leaks.measure(fn, watch, warmup=min(150, n), n=n)
        if r["c_heap"] is not None and r["c_heap"] > worst_c:
            worst_c, worst_case = r["c_heap"], name
        worst_py = max(worst_py, r["py_heap"])
        drift += sum(abs(d) for d in r["refcounts"])
    return len(chosen), worst_c if test_leaks.C_HEAP else None, worst_py, drift, worst_case


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run for CI (< 60 s)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    work = tempfile.mkdtemp(prefix="mnistc-bench-robustness-")
    crashes = 0
    try:
        per_file = count_cases()
        log("cases", f"{sum(per_file.values())} collected: " +
            ", ".join(f"{Path(f).stem} {n}" for f, n in sorted(per_file.items())))

        runs, abnormal = replay_corpora()
        crashes += abnormal
        log("replay", f"{runs} corpus loads through Python (IDX both doors, weights and model loaders), "
                      f"abnormal exit: {'yes' if abnormal else 'no'}")

        n_cases, c_heap, py_heap, drift, worst = leaks(args.quick, work)
        c_text = "n/a (no glibc mallinfo2)" if c_heap is None else f"{c_heap:.0f} B"
        log("leaks", f"max C heap {c_text}, max Python heap {py_heap:.0f} B per 1000 calls over {n_cases} cases "
                     f"(worst: {worst}); refcount drift {drift}")

        stats, why = fuzz(5 if args.quick else 60, os.path.join(work, "fuzz"))
        if stats is None:
            log("fuzz", f"skipped: {why}")
        else:
            crashes += stats["crashes"]
            log("fuzz", f"fuzz_idx {stats['executions']} executions, {stats['exec_per_s']} exec/s, cov "
                        f"{stats['cov']}, corpus {stats['corpus']} new, crashes {stats['crashes']}")

        import test_faults
        rounds = 5 if args.quick else 30
        kill_dir = Path(work) / "kill"
        kill_dir.mkdir()
        loads, torn = test_faults.kill_during_save(rounds, kill_dir, seed=int(time.time()))
        log("kill", f"{rounds} SIGKILL-during-save rounds, {loads} target loads (.keras, .weights.npz, "
                    f".idx.gz), torn files {torn}")
        crashes += torn
        log("crashes", f"{crashes}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log("time", f"{time.perf_counter() - t_start:.1f} s")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
