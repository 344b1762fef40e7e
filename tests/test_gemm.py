"""GEMM kernel variants against a float64 NumPy reference, thread-count independence, and the
thread/kernel configuration (set/get_num_threads, MNISTC_KERNEL, MNISTC_NUM_THREADS, fork)."""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from mnistc import _C

INFO = _C.testing.kernel_info()
VARIANTS = INFO["supported"]
SIMD = [v for v in VARIANTS if v != "portable"]
ROOT = Path(__file__).resolve().parents[1]
U = 2.0 ** -24  # float32 unit roundoff


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


@pytest.fixture(autouse=True)
def restore_threads():
    n = _C.get_num_threads()
    yield
    _C.set_num_threads(n)


def op(x, t):
    return x.T if t else x


def make(rng, rows, cols, pad=0, fill=None):
    """A (rows, cols) float32 matrix; with pad > 0, a view with row stride cols + pad."""
    base = rng.standard_normal((rows, cols + pad)).astype(np.float32)
    if fill is not None:
        base[...] = fill
    return base[:, :cols] if pad else base


def reference(ta, tb, alpha, A, B, beta, C):
    """float64 result and the elementwise error bound 2 (K+2) u (|alpha| |A||B| + |beta| |C|)."""
    a, b = op(A.astype(np.float64), ta), op(B.astype(np.float64), tb)
    c = np.zeros(C.shape) if beta == 0 else C.astype(np.float64)
    K = a.shape[1]
    want = alpha * (a @ b) + beta * c
    bound = 2 * (K + 2) * U * (abs(alpha) * (np.abs(a) @ np.abs(b)) + abs(beta) * np.abs(c)) + 1e-30
    return want, bound


def run_case(rng, variant, ta, tb, M, N, K, alpha=1.0, beta=0.0, pad=0):
    A = make(rng, *((K, M) if ta else (M, K)), pad=pad)
    B = make(rng, *((N, K) if tb else (K, N)), pad=pad)
    C = make(rng, M, N, pad=pad, fill=np.nan if beta == 0 else None)
    A0, B0, C0 = A.copy(), B.copy(), C.copy()
    full = C.base if C.base is not None else C
    full0 = full.copy()
    want, bound = reference(ta, tb, alpha, A, B, beta, C)
    _C.testing.gemm_variant(ta, tb, alpha, A, B, beta, C, variant)
    err = np.abs(C.astype(np.float64) - want)
    assert np.all(err <= bound), (
        f"{variant} ta={ta} tb={tb} M={M} N={N} K={K} alpha={alpha} beta={beta}: "
        f"{int(np.sum(~(err <= bound)))} elements out of bound, worst error {np.nanmax(err):.3g}")
    assert np.array_equal(A, A0) and np.array_equal(B, B0), "inputs were modified"
    if pad:  # the padding columns of C's buffer are untouched
        np.testing.assert_array_equal(full[:, N:], full0[:, N:])
    return C, C0


SIZES = [1, 2, 3, 5, 6, 7, 12, 13, 16, 17, 31, 33, 64, 65]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_matches_float64_reference(rng, variant, ta, tb):
    for i, M in enumerate(SIZES):
        for N in SIZES[i % 3::3]:
            for K in (1, 4, 17, 100, 300):
                alpha = (1.0, -0.5, 2.0)[(M + N) % 3]
                beta = (0.0, 1.0, 0.25)[(M + K) % 3]
                run_case(rng, variant, ta, tb, M, N, K, alpha, beta)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("B", [128, 96, 1, 32])
def test_mlp_shapes(rng, variant, B):
    """The seed MLP (784-128-10): forward, input gradient, weight gradients (beta 0 and 1)."""
    run_case(rng, variant, 0, 0, B, 128, 784)        # X @ W1
    run_case(rng, variant, 0, 0, B, 10, 128)         # H @ W2
    run_case(rng, variant, 0, 1, B, 128, 10)         # dY @ W2^T
    run_case(rng, variant, 1, 0, 784, 128, B, beta=1.0)  # X^T @ dH, accumulated
    run_case(rng, variant, 1, 0, 128, 10, B)         # H^T @ dY


@pytest.mark.parametrize("variant", VARIANTS)
def test_large_and_blocked(rng, variant):
    """K spanning many chunks, M beyond one M block, N beyond one packed-B block, odd strides."""
    run_case(rng, variant, 0, 0, 3, 5, 5000, beta=0.5)
    run_case(rng, variant, 1, 1, 150, 70, 1000, alpha=-1.0, beta=1.0, pad=3)
    run_case(rng, variant, 0, 1, 9, 1500, 700, pad=5)
    run_case(rng, variant, 1, 0, 300, 33, 257, alpha=0.5, beta=0.25, pad=1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_strided_operands(rng, variant, ta, tb):
    for M, N, K in ((1, 7, 9), (4, 33, 20), (13, 17, 64), (40, 130, 270)):
        run_case(rng, variant, ta, tb, M, N, K, alpha=1.5, beta=0.5, pad=3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_sizes(rng, variant):
    for M, N, K in ((0, 5, 3), (4, 0, 3), (0, 0, 0)):
        run_case(rng, variant, 0, 0, M, N, K, beta=0.5)
    # K == 0: C = beta*C; beta == 0 overwrites NaN with zeros
    C, _ = run_case(rng, variant, 0, 0, 3, 4, 0, beta=0.0)
    assert np.array_equal(C, np.zeros((3, 4), np.float32))
    C, C0 = run_case(rng, variant, 1, 1, 3, 4, 0, beta=2.0)
    assert np.array_equal(C, 2 * C0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_beta_zero_does_not_read_c(rng, variant):
    for M, N, K in ((1, 10, 784), (5, 5, 5), (128, 128, 784), (96, 10, 128)):
        C, _ = run_case(rng, variant, 0, 0, M, N, K, beta=0.0)
        assert np.all(np.isfinite(C))


@pytest.mark.parametrize("variant", VARIANTS)
def test_alpha_zero_scales_c_only(rng, variant):
    """alpha == 0: A and B are not read (BLAS rule), so a NaN in them does not propagate."""
    A = np.full((6, 7), np.nan, np.float32)
    B = np.full((7, 5), np.inf, np.float32)
    C = rng.standard_normal((6, 5)).astype(np.float32)
    C0 = C.copy()
    _C.testing.gemm_variant(0, 0, 0.0, A, B, 0.5, C, variant)
    assert np.array_equal(C, np.float32(0.5) * C0)
    _C.testing.gemm_variant(0, 0, 0.0, A, B, 0.0, C, variant)
    assert np.array_equal(C, np.zeros_like(C))


@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_in_inputs_propagates(rng, variant):
    A = rng.standard_normal((20, 30)).astype(np.float32)
    B = rng.standard_normal((30, 40)).astype(np.float32)
    A[3, 7] = np.nan
    C = np.zeros((20, 40), np.float32)
    _C.testing.gemm_variant(0, 0, 1.0, A, B, 0.0, C, variant)
    assert np.all(np.isnan(C[3])) and np.isfinite(np.delete(C, 3, axis=0)).all()


@pytest.mark.skipif(not SIMD, reason="this CPU runs only the portable kernels")
@pytest.mark.parametrize("variant", SIMD)
@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_simd_agrees_with_portable(rng, variant, ta, tb):
    for M, N, K in ((128, 128, 784), (1, 128, 784), (784, 128, 128), (37, 51, 300)):
        A = make(rng, *((K, M) if ta else (M, K)))
        B = make(rng, *((N, K) if tb else (K, N)))
        C0 = make(rng, M, N)
        Cp, Cs = C0.copy(), C0.copy()
        _C.testing.gemm_variant(ta, tb, 1.0, A, B, 1.0, Cp, "portable")
        _C.testing.gemm_variant(ta, tb, 1.0, A, B, 1.0, Cs, variant)
        _, bound = reference(ta, tb, 1.0, A, B, 1.0, C0)
        assert np.all(np.abs(Cp.astype(np.float64) - Cs) <= 2 * bound)


SPLIT_SHAPES = [  # (ta, tb, M, N, K): parallel on the packed path and on the few-rows path
    (0, 0, 128, 128, 784), (1, 0, 784, 128, 128), (0, 1, 128, 128, 10),
    (0, 0, 32, 512, 784), (0, 0, 3, 4096, 300), (1, 1, 200, 300, 257), (0, 0, 96, 10, 128),
    (1, 1, 60, 70, 900),  # K summed in two halves on the packed path
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("M,N,K", [(128, 96, 784), (50, 192, 300), (40, 960, 600)])
def test_b_read_in_place_equals_packed(rng, variant, ta, M, N, K):
    """An untransposed B whose width is a multiple of the register tile (96 and 960 are multiples of
    12, 16 and 32) is read where it lies; one extra column forces packing. Same bits either way,
    on both compute paths (the last shape's K chunks of B exceed the L2 budget)."""
    A = make(rng, *((K, M) if ta else (M, K)))
    wide = make(rng, K, N + 1)
    B = np.ascontiguousarray(wide[:, :N])
    C_in_place = np.zeros((M, N), np.float32)
    C_packed = np.zeros((M, N + 1), np.float32)
    _C.testing.gemm_variant(ta, 0, 1.0, A, B, 0.0, C_in_place, variant)
    _C.testing.gemm_variant(ta, 0, 1.0, A, wide, 0.0, C_packed, variant)
    assert np.array_equal(C_in_place.view(np.uint32), C_packed[:, :N].view(np.uint32))
    want, bound = reference(ta, 0, 1.0, A, B, 0.0, C_in_place)
    assert np.all(np.abs(C_in_place - want) <= bound)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("M,K", [(128, 128), (37, 300), (200, 784)])
def test_narrow_products_equal_the_wide_tile(rng, variant, ta, M, K):
    """Products with few columns (the 10-class layer) may take a tile shaped for them; each
    column's bits are still those of the same column in a wider product."""
    A = make(rng, *((K, M) if ta else (M, K)))
    wide = make(rng, K, 40)
    C_wide = np.zeros((M, 40), np.float32)
    _C.testing.gemm_variant(ta, 0, 1.0, A, wide, 0.0, C_wide, variant)
    for n in (10, 16, 1):
        C = np.zeros((M, n), np.float32)
        _C.testing.gemm_variant(ta, 0, 1.0, A, np.ascontiguousarray(wide[:, :n]), 0.0, C, variant)
        assert np.array_equal(C.view(np.uint32), C_wide[:, :n].view(np.uint32)), f"N={n}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_bit_identical_for_any_thread_count(rng, variant):
    for ta, tb, M, N, K in SPLIT_SHAPES:
        A = make(rng, *((K, M) if ta else (M, K)))
        B = make(rng, *((N, K) if tb else (K, N)))
        C0 = make(rng, M, N)
        results = []
        for n in (1, 2, 3, 1):
            _C.set_num_threads(n)
            C = C0.copy()
            _C.testing.gemm_variant(ta, tb, 1.0, A, B, 0.5, C, variant)
            results.append(C)
        for n, C in zip((2, 3, 1), results[1:]):
            assert np.array_equal(C.view(np.uint32), results[0].view(np.uint32)), (
                f"{variant} {M}x{N}x{K}: {n} threads differ from 1")


def test_concurrent_callers_get_correct_results(rng):
    """Two Python threads in GEMMs at once (the GIL is released): one may own the pool, the other
    runs alone; both must get the single-thread bits."""
    _C.set_num_threads(2)
    A = make(rng, 128, 784)
    B = make(rng, 784, 128)
    want = np.zeros((128, 128), np.float32)
    _C.testing.gemm_variant(0, 0, 1.0, A, B, 0.0, want, INFO["variant"])
    outs = [np.zeros((128, 128), np.float32) for _ in range(4)]
    errors = []

    def work(C):
        try:
            for _ in range(20):
                _C.testing.gemm_variant(0, 0, 1.0, A, B, 0.0, C, INFO["variant"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(C,)) for C in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for C in outs:
        assert np.array_equal(C, want)


def test_num_threads_roundtrip():
    _C.set_num_threads(3)
    assert _C.get_num_threads() == 3
    assert _C.testing.kernel_info()["threads"] == 3
    assert _C.testing.kernel_info()["threads_source"] == "set"
    _C.set_num_threads(1)
    assert _C.get_num_threads() == 1


@pytest.mark.parametrize("bad,exc,msg", [
    (0, ValueError, "num_threads must be >= 1, got 0"),
    (-3, ValueError, "num_threads must be >= 1, got -3"),
    (257, ValueError, "num_threads must be <= 256, got 257"),
    (10 ** 30, ValueError, "num_threads must be <= 256"),
    (-(10 ** 30), ValueError, "num_threads must be >= 1"),
    (2.0, TypeError, "num_threads must be an int, got float"),
    ("2", TypeError, "num_threads must be an int, got str"),
    (True, TypeError, "num_threads must be an int, got bool"),
    (None, TypeError, "num_threads must be an int, got NoneType"),
])
def test_set_num_threads_rejects(bad, exc, msg):
    before = _C.get_num_threads()
    with pytest.raises(exc, match=msg):
        _C.set_num_threads(bad)
    assert _C.get_num_threads() == before


def test_kernel_info_shape():
    info = _C.testing.kernel_info()
    assert info["variant"] in info["supported"]
    assert "portable" in info["supported"]
    assert set(info["supported"]) <= {"portable", "avx2", "avx512"}
    assert info["default_threads"] >= 1 and info["threads"] >= 1
    assert info["threads_source"] in ("default", "env", "set")


def expected_default_threads():
    n = len(os.sched_getaffinity(0))
    quota = None
    cg = "/"
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                cg = line[3:] or "/"
    except OSError:
        pass
    path = Path("/sys/fs/cgroup" + ("" if cg == "/" else cg))
    while True:
        try:
            q, period = (path / "cpu.max").read_text().split()
            if q != "max":
                limit = -(-int(q) // int(period))
                quota = limit if quota is None else min(quota, limit)
        except (OSError, ValueError):
            pass
        if path == Path("/sys/fs/cgroup") or path == path.parent:
            break
        path = path.parent
    return min(n, quota) if quota else n


def child_info(env_extra, code="import json; from mnistc import _C; print(json.dumps(_C.testing.kernel_info()))"):
    env = dict(os.environ)
    env.pop("MNISTC_KERNEL", None)
    env.pop("MNISTC_NUM_THREADS", None)
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    import json
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_threads_follow_affinity_and_cgroup():
    info = child_info({})
    assert info["default_threads"] == expected_default_threads()
    assert info["threads"] == info["default_threads"] and info["threads_source"] == "default"


def test_num_threads_env():
    info = child_info({"MNISTC_NUM_THREADS": "3"})
    assert info["threads"] == 3 and info["threads_source"] == "env"
    for bad in ("0", "abc", "-2", "1000", ""):
        info = child_info({"MNISTC_NUM_THREADS": bad})
        assert info["threads"] == info["default_threads"] and info["threads_source"] == "default"


def test_affinity_bounds_default_threads():
    if not shutil.which("taskset"):
        pytest.skip("taskset not installed")
    cpu = sorted(os.sched_getaffinity(0))[0]
    env = dict(os.environ)
    env.pop("MNISTC_NUM_THREADS", None)
    out = subprocess.run(["taskset", "-c", str(cpu), sys.executable, "-c",
                          "from mnistc import _C; print(_C.testing.kernel_info()['default_threads'])"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize("variant", ["portable", "avx2", "avx512"])
def test_kernel_env_is_honoured(variant):
    info = child_info({"MNISTC_KERNEL": variant})
    assert info["requested"] == variant
    if variant in VARIANTS:
        assert info["variant"] == variant
    else:  # unsupported here: the best supported one runs, and kernel_info says so
        assert info["variant"] == VARIANTS[-1]


def test_kernel_env_unknown_falls_back_to_best():
    info = child_info({"MNISTC_KERNEL": "sse9"})
    assert info["requested"] == "sse9" and info["variant"] == VARIANTS[-1]
    assert child_info({})["requested"] is None


def test_forced_kernel_is_what_mc_gemm_runs():
    """variant=None runs mc_gemm, the engine's entry point: under MNISTC_KERNEL=portable it gives
    exactly the portable variant's bits."""
    code = textwrap.dedent("""
        import json
        import numpy as np
        from mnistc import _C
        rng = np.random.default_rng(0)
        A = rng.standard_normal((64, 300)).astype(np.float32)
        B = rng.standard_normal((300, 50)).astype(np.float32)
        C = {}
        for v in [None] + _C.testing.kernel_info()["supported"]:
            C[v] = np.zeros((64, 50), np.float32)
            _C.testing.gemm_variant(0, 0, 1.0, A, B, 0.0, C[v], v)
        same = {v: bool(np.array_equal(C[None], C[v])) for v in _C.testing.kernel_info()["supported"]}
        print(json.dumps({"variant": _C.testing.kernel_info()["variant"], "same": same}))
    """)
    for variant in VARIANTS:
        info = child_info({"MNISTC_KERNEL": variant}, code)
        assert info["variant"] == variant and info["same"][variant]


def test_pool_survives_fork(rng):
    """A child forked after the pool started must not hang on it (pthread_atfork resets it)."""
    _C.set_num_threads(2)
    A = make(rng, 128, 784)
    B = make(rng, 784, 128)
    want = np.zeros((128, 128), np.float32)
    _C.testing.gemm_variant(0, 0, 1.0, A, B, 0.0, want, INFO["variant"])  # workers exist now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # child: parallel GEMMs again, exit status says whether the bits match
        code = 1
        try:
            C = np.zeros((128, 128), np.float32)
            for _ in range(5):
                _C.testing.gemm_variant(0, 0, 1.0, A, B, 0.0, C, INFO["variant"])
            code = 0 if np.array_equal(C, want) else 2
        finally:
            os._exit(code)
    import time
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child hung in the thread pool")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"A": [[1.0]]}, TypeError, "A must be a numpy.ndarray, got list"),
    ({"B": np.zeros((3, 2))}, TypeError, "B must have dtype float32, got float64"),
    ({"A": np.zeros((2, 3, 1), np.float32)}, ValueError, "A must be 2-D, got 3-D"),
    ({"B": np.zeros((4, 2), np.float32)}, ValueError, r"shapes do not match: op\(A\) is \(2, 3\), op\(B\) is \(4, 2\)"),
    ({"C": np.zeros((2, 3), np.float32)}, ValueError, r"C is \(2, 3\)"),
    ({"A": np.zeros((3, 2), np.float32, order="F").T.copy(order="F")}, ValueError, "A must have adjacent columns"),
    ({"variant": "sse9"}, ValueError, "variant must be one of 'portable', 'avx2', 'avx512', got 'sse9'"),
])
def test_gemm_variant_rejects(kwargs, exc, msg):
    args = {"trans_a": 0, "trans_b": 0, "alpha": 1.0, "A": np.zeros((2, 3), np.float32),
            "B": np.zeros((3, 2), np.float32), "beta": 0.0, "C": np.zeros((2, 2), np.float32),
            "variant": "portable"}
    args.update(kwargs)
    with pytest.raises(exc, match=msg):
        _C.testing.gemm_variant(**args)


def test_gemm_variant_rejects_readonly_and_overlap():
    A = np.zeros((2, 3), np.float32)
    B = np.zeros((3, 2), np.float32)
    C = np.zeros((2, 2), np.float32)
    C.flags.writeable = False
    with pytest.raises(ValueError, match="C must be writeable"):
        _C.testing.gemm_variant(0, 0, 1.0, A, B, 0.0, C, "portable")
    buf = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="C must not share memory with A or B"):
        _C.testing.gemm_variant(0, 0, 1.0, buf, B, 0.0, buf[:, :2], "portable")


@pytest.mark.skipif("avx512" in VARIANTS, reason="this CPU has AVX-512F")
def test_unsupported_variant_is_refused():
    with pytest.raises(ValueError, match="variant 'avx512' is not supported by this CPU"):
        _C.testing.gemm_variant(0, 0, 1.0, np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32),
                        0.0, np.zeros((1, 1), np.float32), "avx512")


def test_fma_probe():
    peak = _C.testing.fma_probe(0.05)
    assert isinstance(peak, float) and peak > 0.5  # GFLOP/s of one core: any FPU does better
    for bad in (0, -1, 11, float("nan")):
        with pytest.raises(ValueError, match="seconds must be in"):
            _C.testing.fma_probe(bad)
    with pytest.raises(TypeError):
        _C.testing.fma_probe("1")


def c_compiler():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("gcc") or shutil.which("cc")


@pytest.mark.parametrize("mode", ["asan", "tsan"])
def test_c_level_checks(tmp_path, mode):
    """csrc/tests/gemm_internals.c: every variant (AVX-512 through the intrinsics shim), the on-stack
    path, the pool; under ASan+UBSan, and the pool and parallel GEMMs under ThreadSanitizer."""
    cc = c_compiler()
    if not cc:
        pytest.skip("no C compiler")
    exe = tmp_path / "gemm_internals"
    san = (["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"] if mode == "asan"
           else ["-fsanitize=thread"])
    cmd = [cc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes",
           "-Werror", "-DMC_AVX512_SHIM", f"-I{ROOT / 'csrc' / 'tests'}", *san,
           str(ROOT / "csrc" / "tests" / "gemm_internals.c"), "-o", str(exe), "-pthread", "-lm"]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "sanitize" in build.stderr and "cannot find" in build.stderr:
        pytest.skip(f"sanitizer runtime missing: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr[-3000:]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", TSAN_OPTIONS="halt_on_error=1")
    env.pop("LD_PRELOAD", None)
    run = subprocess.run([str(exe)] + (["threads"] if mode == "tsan" else []), capture_output=True,
                         text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " 0 failed" in run.stdout
