"""IDX reader/writer: round trips for every dtype and rank, and hostile files built here.

Every hostile file asserts the exception class and the substance of its message; the huge
declarations are also run in a child process whose peak RSS growth is measured.
"""
import ctypes
import ctypes.util
import gzip
import os
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

import mnistc
from mnistc import _C
from mnistc.datasets import idx

DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32,
          0x0E: np.float64}
SHAPES = {1: (5,), 2: (3, 4), 3: (2, 3, 4), 4: (2, 1, 3, 2), 5: (1, 2, 1, 3, 2),
          6: (2, 1, 1, 2, 1, 3), 7: (1, 1, 2, 1, 2, 1, 2), 8: (1, 2, 1, 1, 2, 1, 1, 3)}


def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def gz(data):
    return gzip.compress(data, mtime=0)


def sample(dtype, shape, seed):
    """Values spanning the dtype's range; floats include -0.0, inf and NaN."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    if dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=dt)
        a[:2] = [info.min, info.max][: min(2, n)]
    else:
        a = (rng.standard_normal(n) * 1e3).astype(dt)
        specials = np.array([-0.0, np.inf, -np.inf, np.nan, np.finfo(dt).tiny], dtype=dt)
        a[: min(n, 5)] = specials[: min(n, 5)]
    return a.reshape(shape)


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- round trips ---

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("ndim", sorted(SHAPES))
@pytest.mark.parametrize("code", sorted(DTYPES))
def test_round_trip_every_dtype_and_ndim(tmp_path, code, ndim, suffix):
    a = sample(DTYPES[code], SHAPES[ndim], seed=code * 10 + ndim)
    p = tmp_path / f"a-idx{ndim}{suffix}"
    idx.save(p, a)
    # On disk: the big-endian IDX bytes, gzip'd when the name ends in .gz.
    raw = p.read_bytes()
    if suffix:
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert raw == header(code, a.shape) + a.astype(a.dtype.newbyteorder(">")).tobytes()
    b = idx.load(p)
    assert b.dtype == a.dtype and b.dtype.isnative and b.shape == a.shape
    assert b.tobytes() == a.tobytes()  # bitwise: -0.0 and NaN included
    assert b.flags.c_contiguous and b.flags.owndata and b.flags.writeable and b.base is None
    assert idx.read_header(p) == (a.dtype, a.shape)
    assert sorted(os.listdir(tmp_path)) == [p.name]  # no temporary file left
    assert _C.read_idx_bytes(p.read_bytes()).tobytes() == a.tobytes()


def test_save_accepts_big_endian_strided_and_fortran_arrays(tmp_path):
    base = sample(np.int32, (6, 8), seed=1)
    for i, a in enumerate([base.astype(">i4"), base[::2, ::3], np.asfortranarray(base),
                           base.astype(">f8")[1:]]):
        p = tmp_path / f"x{i}.idx"
        idx.save(p, a)
        b = idx.load(p)
        assert b.dtype == a.dtype.newbyteorder("=") and b.dtype.isnative
        np.testing.assert_array_equal(b, a)


def test_zero_item_file_gives_empty_array(tmp_path):
    p = write(tmp_path, "empty-idx3-ubyte", header(0x08, (0, 28, 28)))
    a = idx.load(p)
    assert a.shape == (0, 28, 28) and a.dtype == np.uint8
    idx.save(tmp_path / "e.gz", a)
    assert idx.load(tmp_path / "e.gz").shape == (0, 28, 28)


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros(3, np.int64), TypeError, "no type code for dtype int64"),
    (np.zeros(3, bool), TypeError, "no type code for dtype bool"),
    (np.zeros(3, np.float16), TypeError, "float16"),
    (np.zeros(3, np.uint16), TypeError, "uint16"),
    (np.array(5, np.uint8), ValueError, "1 to 8 dimensions, got shape \\(\\)"),
    (np.zeros((1,) * 9, np.uint8), ValueError, "1 to 8 dimensions"),
])
def test_save_rejects_what_idx_cannot_hold(tmp_path, bad, exc, match):
    with pytest.raises(exc, match=match):
        idx.save(tmp_path / "x.idx", bad)
    assert os.listdir(tmp_path) == []


def test_save_is_atomic_and_cleans_up(tmp_path):
    p = tmp_path / "x-idx1-ubyte"
    idx.save(p, np.arange(5, dtype=np.uint8))
    idx.save(p, np.arange(7, dtype=np.uint8))  # replaces
    assert idx.load(p).tolist() == list(range(7))
    with pytest.raises(FileNotFoundError) as ei:
        idx.save(tmp_path / "no-such-dir" / "x.gz", np.zeros(3, np.uint8))
    assert ei.value.filename == str(tmp_path / "no-such-dir" / "x.gz")
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError):
        idx.save(tmp_path / "adir", np.zeros(3, np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["adir", "x-idx1-ubyte"]
    assert os.listdir(tmp_path / "adir") == []


# --- hostile files ---

HTML = b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n" * 4
SMALL = header(0x08, (10, 28, 28)) + bytes(range(256)) * 30 + bytes(range(160))  # 7840 payload
GZ = gz(SMALL)


def corrupt_at(data, i, value):
    b = bytearray(data)
    b[i] = value
    return bytes(b)


def flip_trailer(data, offset):
    b = bytearray(data)
    b[len(b) - 8 + offset] ^= 0xFF
    return bytes(b)


BAD = [
    # name, bytes, exception, message pattern
    ("empty", b"", mnistc.FormatError, r"truncated header \(0 of 4 bytes\)"),
    ("three-bytes", b"\x00\x00\x08", mnistc.FormatError, r"truncated header \(3 of 4 bytes\)"),
    ("empty.gz", gz(b""), mnistc.FormatError, r"truncated header \(0 of 4 bytes\)"),
    ("three-bytes.gz", gz(b"\x00\x00\x08"), mnistc.FormatError, r"truncated header \(3 of 4 bytes\)"),
    ("page.html", HTML, mnistc.FormatError, r"not an IDX file: starts with 3c 21 44 4f"),
    ("page.gz", gz(HTML), mnistc.FormatError, r"not an IDX file: starts with 3c 21 44 4f"),
    ("type-00", header(0x00, (4,)) + bytes(4), mnistc.FormatError, r"unknown IDX type code 0x00"),
    ("type-07", header(0x07, (4,)) + bytes(4), mnistc.FormatError, r"unknown IDX type code 0x07"),
    ("type-0a", header(0x0A, (4,)) + bytes(4), mnistc.FormatError, r"unknown IDX type code 0x0a"),
    ("type-ff", header(0xFF, (4,)) + bytes(4), mnistc.FormatError, r"unknown IDX type code 0xff"),
    ("ndim-0", bytes([0, 0, 8, 0]), mnistc.FormatError, r"IDX ndim 0 outside 1\.\.8"),
    ("ndim-9", header(0x08, (1,) * 9) + b"\x00", mnistc.FormatError, r"IDX ndim 9 outside 1\.\.8"),
    ("ndim-255", bytes([0, 0, 8, 255]) + bytes(1020), mnistc.FormatError, r"IDX ndim 255 outside"),
    ("dims-cut", header(0x08, (10, 28, 28))[:8], mnistc.FormatError,
     r"truncated header: 3 dims need 12 bytes, got 4"),
    ("dims-cut.gz", gz(header(0x08, (10, 28, 28))[:10]), mnistc.FormatError,
     r"truncated header: 3 dims need 12 bytes, got 6"),
    ("overflow-ffffffff-x4", header(0x08, (0xFFFFFFFF,) * 4), mnistc.FormatError,
     r"declared size overflows"),
    ("overflow-zero-first", header(0x08, (0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)),
     mnistc.FormatError, r"declared size overflows"),
    ("overflow-float64", header(0x0E, (0xFFFFFFFF, 0xFFFFFFFF)), mnistc.FormatError,
     r"declared size overflows"),
    ("multi-tb", header(0x08, (0xFFFFFFFF, 28, 28)), mnistc.FormatError,
     r"declares 4294967295 x 28 x 28 uint8 = 3367254359280 bytes > max_bytes 1073741824"),
    ("multi-tb.gz", gz(header(0x08, (0xFFFFFFFF, 28, 28))), mnistc.FormatError,
     r"3367254359280 bytes > max_bytes"),
    ("raw-900mb-no-payload", header(0x08, (900, 1000, 1000)), mnistc.FormatError,
     r"truncated data: expected 900000000 bytes, got 0"),
    ("gz-900mb-no-payload", gz(header(0x08, (900, 1000, 1000))), mnistc.FormatError,
     r"truncated data: a \d+-byte gzip file cannot hold the declared 900000000-byte payload"),
    ("raw-one-short", SMALL[:-1], mnistc.FormatError, r"truncated data: expected 7840 bytes, got 7839"),
    ("raw-one-long", SMALL + b"\x00", mnistc.FormatError,
     r"trailing data: 1 extra bytes after the 16-byte header and 7840-byte payload"),
    ("gz-payload-one-short", gz(SMALL[:-1]), mnistc.FormatError,
     r"truncated data: expected 7840 bytes, got 7839"),
    ("gz-payload-one-long", gz(SMALL + b"\x00"), mnistc.FormatError,
     r"trailing data: the gzip stream holds more than the declared"),
    ("gz-cut-mid-stream", GZ[: len(GZ) // 2], mnistc.FormatError, r"gzip stream truncated"),
    ("gz-cut-after-header", GZ[:10], mnistc.FormatError, r"gzip stream truncated"),
    ("gz-trailer-cut", GZ[:-4], mnistc.FormatError, r"gzip stream truncated"),
    ("gz-trailer-gone", GZ[:-8], mnistc.FormatError, r"gzip stream truncated"),
    ("gz-bad-crc", flip_trailer(GZ, 0), mnistc.FormatError, r"corrupt gzip data: incorrect data check"),
    ("gz-bad-isize", flip_trailer(GZ, 4), mnistc.FormatError,
     r"corrupt gzip data: incorrect length check"),
    ("gz-bad-block-type", corrupt_at(GZ, 10, 0xFF), mnistc.FormatError,
     r"corrupt gzip data: invalid block type"),
    ("gz-bad-method", corrupt_at(GZ, 2, 0x07), mnistc.FormatError,
     r"corrupt gzip data: unknown compression method"),
    ("gz-trailing-garbage", GZ + b"GARBAGE!!", mnistc.FormatError,
     r"trailing garbage after gzip member: byte 0x47"),
    ("gz-trailing-zeros", GZ + bytes(16), mnistc.FormatError, r"trailing garbage after gzip member"),
    ("gz-trailing-lone-1f", GZ + b"\x1f", mnistc.FormatError, r"trailing garbage after gzip member"),
    ("gz-second-member-bad", GZ + b"\x1f\x8b\x07\x00", mnistc.FormatError, r"corrupt gzip data"),
    ("gz-second-member-cut", GZ + gz(b"")[:12], mnistc.FormatError, r"gzip stream truncated"),
    ("double.gz", gz(GZ), mnistc.FormatError, r"not an IDX file: starts with 1f 8b \(compressed twice\?\)"),
]


@pytest.mark.parametrize("name, data, exc, match", BAD, ids=[b[0] for b in BAD])
def test_hostile_file_is_rejected(tmp_path, name, data, exc, match):
    p = write(tmp_path, name, data)
    with pytest.raises(exc, match=match) as ei:
        idx.load(p)
    assert type(ei.value) is mnistc.FormatError and isinstance(ei.value, ValueError)
    assert str(ei.value).startswith(str(p) + ": ")  # names the file
    # The memory door (used by fuzz targets) is the same parser and says the same.
    with pytest.raises(exc, match=match) as em:
        _C.read_idx_bytes(data)
    assert str(em.value) == str(ei.value).replace(str(p), "<memory>")


# Faults that only reading the payload can find: read_header accepts these files.
PAYLOAD_PHASE = {"gz-payload-one-short", "gz-payload-one-long", "gz-cut-mid-stream", "gz-trailer-cut",
                 "gz-trailer-gone", "gz-bad-crc", "gz-bad-isize", "gz-trailing-garbage",
                 "gz-trailing-zeros", "gz-trailing-lone-1f", "gz-second-member-bad",
                 "gz-second-member-cut"}


def test_hostile_headers_are_rejected_by_read_header_too(tmp_path):
    for name, data, _exc, match in BAD:
        p = write(tmp_path, name, data)
        if name in PAYLOAD_PHASE:
            assert idx.read_header(p) == (np.dtype(np.uint8), (10, 28, 28))
            continue
        if name == "multi-tb":  # read_header has no max_bytes: the raw size check catches it
            match = r"truncated data: expected 3367254359280 bytes, got 0"
        elif name == "multi-tb.gz":  # nor can a 32-byte gzip file hold 3 TB
            match = r"truncated data: a 32-byte gzip file cannot hold the declared 3367254359280-byte"
        with pytest.raises(mnistc.FormatError, match=match):
            idx.read_header(p)


def bomb_bytes(declared=(10000, 28, 28), inflated=50 << 20):
    """A ~50 KB gzip stream whose header declares `declared` uint8 but that inflates to 50 MB."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(header(0x08, declared))]
    zeros = bytes(1 << 20)
    for _ in range(inflated >> 20):
        parts.append(c.compress(zeros))
    parts.append(c.flush())
    return b"".join(parts)


def test_gzip_bomb_stops_after_declared_size(tmp_path):
    data = bomb_bytes()
    assert len(data) < 100_000
    p = write(tmp_path, "bomb-idx3-ubyte.gz", data)
    with pytest.raises(mnistc.FormatError, match=r"trailing data: the gzip stream holds more than "
                                                 r"the declared 16-byte header \+ 7840000-byte payload"):
        idx.load(p)


def test_maximally_compressed_file_still_loads(tmp_path):
    # zlib reaches ~1027:1 on zeros; the pre-allocation bound (deflate's 1032:1) must let it through.
    data = gzip.compress(header(0x08, (20000, 1000)) + bytes(20_000_000), compresslevel=9, mtime=0)
    assert 20_000_016 / len(data) > 1020
    a = idx.load(write(tmp_path, "zeros.gz", data))
    assert a.shape == (20000, 1000) and not a.any()


def test_expected_magic_is_checked_before_reading(tmp_path):
    p = write(tmp_path, "f.idx", gz(header(0x0D, (2, 3, 4)) + bytes(96)))
    with pytest.raises(mnistc.FormatError,
                       match=r"bad magic 0x00000d03 \(float32, 3 dims\), expected 0x00000803 \(uint8, 3 dims\)"):
        _C.read_idx(str(p), 1 << 30, 0x0803)
    assert _C.read_idx(str(p), 1 << 30, 0x0D03).shape == (2, 3, 4)


def test_two_members_and_an_empty_member_are_accepted(tmp_path):
    whole = idx.load(write(tmp_path, "one.gz", GZ))
    cut = 1000
    two = gz(SMALL[:cut]) + gz(SMALL[cut:])
    assert gzip.decompress(two) == SMALL  # CPython agrees it is one stream
    np.testing.assert_array_equal(idx.load(write(tmp_path, "two.gz", two)), whole)
    three = gz(SMALL[:cut]) + gz(b"") + gz(SMALL[cut:]) + gz(b"")
    np.testing.assert_array_equal(idx.load(write(tmp_path, "three.gz", three)), whole)


def test_compression_is_sniffed_not_taken_from_the_name(tmp_path):
    expect = np.frombuffer(SMALL, np.uint8, offset=16).reshape(10, 28, 28)
    np.testing.assert_array_equal(idx.load(write(tmp_path, "raw-named.gz", SMALL)), expect)
    np.testing.assert_array_equal(idx.load(write(tmp_path, "gzip-named.idx", GZ)), expect)


def test_paths_str_bytes_and_pathlike(tmp_path):
    p = write(tmp_path, "a.gz", GZ)
    for arg in (p, str(p), os.fsencode(p)):
        assert idx.load(arg).shape == (10, 28, 28)


def test_os_errors_carry_errno_class_and_filename(tmp_path):
    missing = tmp_path / "nope-idx3-ubyte.gz"
    with pytest.raises(FileNotFoundError) as ei:
        idx.load(missing)
    assert ei.value.filename == str(missing)  # as open() sets it
    with pytest.raises(FileNotFoundError) as ei:
        idx.read_header(str(missing))
    assert ei.value.filename == str(missing)
    with pytest.raises(IsADirectoryError) as ei:
        idx.load(str(tmp_path))
    assert ei.value.filename == str(tmp_path)
    with pytest.raises(ValueError, match="embedded null byte"):
        idx.load(str(tmp_path) + "/a\0b")
    with pytest.raises(TypeError):
        idx.load(42)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_raises_permission_error(tmp_path):
    p = write(tmp_path, "locked.gz", GZ)
    p.chmod(0)
    try:
        with pytest.raises(PermissionError) as ei:
            idx.load(p)
        assert ei.value.filename == str(p)
    finally:
        p.chmod(0o644)


def test_devices_fail_fast():
    with pytest.raises(mnistc.FormatError, match=r"/dev/zero: unknown IDX type code 0x00"):
        idx.load("/dev/zero")
    # Random bytes: whatever the header says, at most max_bytes is ever allocated or read.
    with pytest.raises(mnistc.FormatError):
        idx.load("/dev/urandom", max_bytes=1 << 16)


def test_max_bytes_argument_is_validated(tmp_path):
    p = write(tmp_path, "a.gz", GZ)
    with pytest.raises(mnistc.FormatError, match=r"7840 bytes > max_bytes 7839"):
        idx.load(p, max_bytes=7839)
    assert idx.load(p, max_bytes=7840).shape == (10, 28, 28)
    with pytest.raises(ValueError, match="max_bytes must be >= 0, got -1"):
        idx.load(p, max_bytes=-1)
    with pytest.raises(TypeError, match="max_bytes must be an integer"):
        idx.load(p, max_bytes=1.5)
    assert idx.load(p, max_bytes=1 << 80).shape == (10, 28, 28)


def test_max_bytes_on_real_training_images(mnist_dir):
    p = mnist_dir / "train-images-idx3-ubyte.gz"
    with pytest.raises(mnistc.FormatError,
                       match=r"60000 x 28 x 28 uint8 = 47040000 bytes > max_bytes 16777216"):
        idx.load(p, max_bytes=16 << 20)


# --- memory: nothing the header asks for is allocated before it is proven ---

RSS_CHILD = textwrap.dedent("""
    import resource, sys, time
    import mnistc
    from mnistc.datasets import idx
    def peak_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base = peak_kib()
    for p in sys.argv[1:]:
        t0 = time.perf_counter()
        try:
            a = idx.load(p)
            print("LOADED", a.shape, round(time.perf_counter() - t0, 3), flush=True)
            del a
        except mnistc.FormatError as e:
            print("ERR", round(time.perf_counter() - t0, 3), e, flush=True)
    print("GROWTH_KIB", peak_kib() - base)
""")


def run_rss_child(paths):
    r = subprocess.run([sys.executable, "-c", RSS_CHILD, *map(str, paths)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    growth = int(lines[-1].split()[1])
    return lines[:-1], growth


def test_huge_declarations_keep_memory_small(tmp_path):
    paths = [write(tmp_path, "x4.idx", header(0x08, (0xFFFFFFFF,) * 4)),
             write(tmp_path, "tb.idx", header(0x08, (0xFFFFFFFF, 28, 28))),
             write(tmp_path, "tb.gz", gz(header(0x08, (0xFFFFFFFF, 28, 28)))),
             write(tmp_path, "900mb.idx", header(0x08, (900, 1000, 1000))),
             write(tmp_path, "900mb.gz", gz(header(0x08, (900, 1000, 1000)))),
             write(tmp_path, "bomb.gz", bomb_bytes())]
    lines, growth = run_rss_child(paths)
    assert len(lines) == len(paths) and all(line.startswith("ERR") for line in lines), lines
    assert all(float(line.split()[1]) < 2.0 for line in lines), lines  # seconds each
    assert growth < 64 * 1024, f"peak RSS grew by {growth} KiB: {lines}"


def test_real_load_allocates_only_the_result(mnist_dir):
    # 47,040,000 bytes of pixels; a reader that buffers the decompressed file would need twice that.
    lines, growth = run_rss_child([mnist_dir / "train-images-idx3-ubyte.gz"])
    assert lines[0].startswith("LOADED (60000, 28, 28)"), lines
    assert growth < (47_040_000 >> 10) + 8 * 1024, f"peak RSS grew by {growth} KiB"


# --- leaks, refcounts, allocation failures, threads ---

def _c_heap_in_use():
    libc = ctypes.util.find_library("c")
    if not libc:
        return None
    lib = ctypes.CDLL(libc)
    if not hasattr(lib, "mallinfo2"):
        return None

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")]
    lib.mallinfo2.restype = Mallinfo2
    return lambda: lib.mallinfo2().uordblks + lib.mallinfo2().hblkhd


def test_repeated_loads_keep_refcounts_and_heap_stable(tmp_path):
    good = str(write(tmp_path, "good.gz", GZ))
    bad = str(write(tmp_path, "bad.gz", GZ + b"junk"))
    missing = str(tmp_path / "missing.gz")
    pathlike = Path(good)

    def rounds(n):
        for _ in range(n):
            idx.load(good)
            idx.load(pathlike)
            for p, exc in ((bad, mnistc.FormatError), (missing, FileNotFoundError)):
                try:
                    idx.load(p)
                except exc:
                    pass
            idx.read_header(good)
            _C.read_idx_bytes(blob)
            try:
                _C.read_idx_bytes(blob[:-1])
            except mnistc.FormatError:
                pass

    blob = GZ
    rounds(20)  # warm-up
    counts = [sys.getrefcount(o) for o in (good, bad, missing, pathlike, blob)]
    heap = _c_heap_in_use()
    before = heap() if heap else 0
    rounds(200)
    after = heap() if heap else 0
    assert [sys.getrefcount(o) for o in (good, bad, missing, pathlike, blob)] == counts
    # A leaked reader (with its buffer and zlib state) would be >= 7 KiB per load: 200 loads >> 64 KiB.
    assert after - before < 64 * 1024


def test_allocation_failures_raise_memory_error_and_leave_no_trace(tmp_path):
    src = write(tmp_path, "src.gz", GZ)
    expect = idx.load(src)
    failures = 0
    try:
        for k in range(12):
            _C.testing.fail_alloc_after(k)
            try:
                a = idx.load(src)
            except MemoryError:
                failures += 1
            else:
                np.testing.assert_array_equal(a, expect)
            _C.testing.fail_alloc_after(k)
            out = tmp_path / f"out{k}.gz"
            try:
                idx.save(out, expect)
            except MemoryError:
                failures += 1
                assert not out.exists()
            else:
                _C.testing.fail_alloc_after(-1)
                np.testing.assert_array_equal(idx.load(out), expect)
    finally:
        _C.testing.fail_alloc_after(-1)
    assert failures >= 5  # reader, buffer and zlib state, writer buffers all go through mc_malloc
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    np.testing.assert_array_equal(idx.load(src), expect)


def test_concurrent_loads_agree(tmp_path):
    data = sample(np.float32, (200, 50), seed=3)
    p = tmp_path / "f.gz"
    idx.save(p, data)
    results, errors = [], []
    barrier = threading.Barrier(4)

    def work():
        try:
            barrier.wait()
            for _ in range(10):
                results.append(idx.load(p))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 40 and all(r.tobytes() == data.tobytes() for r in results)
