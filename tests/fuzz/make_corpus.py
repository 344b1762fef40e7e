"""Regenerate the committed seed corpora (IDX seeds byte-for-byte: gzip mtime 0, fixed seeds; the
weights seeds differ only in zip timestamps and the saved date).

    python tests/fuzz/make_corpus.py            # rewrites tests/fuzz/corpus_idx/ and corpus_weights/

corpus_idx/: a tiny valid file of each IDX dtype (raw and gzip), a 0-item file, a two-member gzip,
and the hostile headers and streams of RELIABILITY.md section 1 (kept small: no file over 8 KiB).
corpus_weights/: .weights.npz and .keras files for the fuzz model of fuzz_weights.py (valid ones
and damaged ones). Inputs are file contents, so every corpus file is also a test file on its own.
"""
import gzip
import io
import json
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def gz(data):
    return gzip.compress(data, mtime=0)


def idx_file(code, shape, seed):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    dt = np.dtype(CODES[code])
    if dt.kind == "f":
        a = (rng.standard_normal(n) * 100).astype(dt)
        a[:3] = [np.nan, np.inf, -0.0][: min(3, n)]
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, endpoint=True).astype(dt)
    return header(code, shape) + a.tobytes()


def idx_cases():
    out = {}
    shapes = {0x08: (3, 4, 4), 0x09: (7,), 0x0B: (2, 3), 0x0C: (2, 2, 1, 2), 0x0D: (3, 5), 0x0E: (2, 3)}
    for code, shape in shapes.items():
        raw = idx_file(code, shape, code)
        out[f"valid-{CODES[code].strip('<>')}-{len(shape)}d.idx"] = raw
        out[f"valid-{CODES[code].strip('<>')}-{len(shape)}d.gz"] = gz(raw)
    labels = header(0x08, (10,)) + bytes(range(10))
    out["valid-labels-10.idx"] = labels
    out["valid-labels-10.gz"] = gz(labels)
    small = header(0x08, (2, 28, 28)) + bytes((i * 7) % 256 for i in range(2 * 784))
    out["valid-images-2x28x28.gz"] = gz(small)
    out["valid-two-members.gz"] = gz(small[:100]) + gz(small[100:])
    out["valid-empty-member.gz"] = gz(small) + gz(b"")
    out["valid-zero-items.idx"] = header(0x08, (0, 28, 28))
    out["valid-8-dims.idx"] = header(0x08, (1,) * 8) + b"\x2a"
    out["valid-f4-3d-zeros.idx"] = header(0x0D, (2, 3, 4)) + bytes(96)
    g = gz(small)
    hostile = {
        "empty": b"",
        "three-bytes": b"\x00\x00\x08",
        "html.gz": gz(b"<!DOCTYPE html><html>404</html>"),
        "type-0a": header(0x0A, (4,)) + bytes(4),
        "type-ff": header(0xFF, (4,)) + bytes(4),
        "ndim-0": bytes([0, 0, 8, 0]),
        "ndim-9": header(0x08, (1,) * 9) + b"\x00",
        "ndim-255": bytes([0, 0, 8, 255]) + bytes(64),
        "dims-cut": header(0x08, (10, 28, 28))[:8],
        "overflow-x4": header(0x08, (0xFFFFFFFF,) * 4),
        "overflow-zero-first": header(0x08, (0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)),
        "multi-tb.gz": gz(header(0x08, (0xFFFFFFFF, 28, 28))),
        "900mb-no-payload": header(0x08, (900, 1000, 1000)),
        "one-short": small[:-1],
        "one-long": small + b"\x00",
        "gz-cut-mid.gz": g[: len(g) // 2],
        "gz-trailer-cut.gz": g[:-4],
        "gz-bad-crc.gz": g[:-8] + bytes([g[-8] ^ 0xFF]) + g[-7:],
        "gz-bad-isize.gz": g[:-4] + bytes([g[-4] ^ 0xFF]) + g[-3:],
        "gz-trailing-garbage.gz": g + b"GARBAGE!!",
        "gz-second-member-bad.gz": g + b"\x1f\x8b\x07\x00",
        "double.gz": gz(g),
    }
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    hostile["bomb-100x28x28-inflates-1mb.gz"] = (c.compress(header(0x08, (100, 28, 28)))
                                                 + c.compress(bytes(1 << 20)) + c.flush())
    for name, data in hostile.items():
        out["bad-" + name] = data
    return out


def _rezip(blob, mod, compression=zipfile.ZIP_STORED):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for info in src.infolist():
            name, data = mod(info.filename, src.read(info))
            if name is not None:
                dst.writestr(name, data)
    return out.getvalue()


def _npy(arr=None, header_dict=None, tail=b""):
    buf = io.BytesIO()
    if header_dict is not None:
        np.lib.format.write_array_header_1_0(buf, header_dict)
        buf.write(tail)
    else:
        np.lib.format.write_array(buf, arr)
    return buf.getvalue()


class _Marker:
    """A pickle whose loading would create a file: it must never be loaded."""

    def __reduce__(self):
        return (open, ("/tmp/mnistc-fuzz-pwned", "w"))


def weights_cases(tmp):
    sys.path.insert(0, str(HERE))
    from weights_check import fuzz_model
    model = fuzz_model()
    wpath = tmp / "w.weights.npz"
    model.save_weights(wpath)
    w = wpath.read_bytes()
    kpath = tmp / "m.keras"
    model.save(kpath)
    k = kpath.read_bytes()
    out = {"valid.weights.npz": w, "valid.keras": k}
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(kpath)
    out["valid-compiled.keras"] = kpath.read_bytes()
    k0 = "layers/dense/vars/0.npy"

    def swap(key, data):
        return lambda n, b: (n, data) if n == key else (n, b)

    def cfg(fn):
        def mod(n, b):
            if n == "config.json":
                c = json.loads(b)
                fn(c)
                return n, json.dumps(c).encode()
            return n, b
        return mod

    out["bad-nan.weights.npz"] = _rezip(w, swap(k0, _npy(np.full((6, 5), np.nan, np.float32))))
    out["bad-shape.weights.npz"] = _rezip(w, swap(k0, _npy(np.zeros((5, 6), np.float32))))
    out["bad-object.weights.npz"] = _rezip(w, swap(k0, _npy(header_dict={
        "descr": "|O", "fortran_order": False, "shape": (6, 5)}, tail=pickle.dumps(_Marker()))))
    out["bad-huge-shape.weights.npz"] = _rezip(w, swap(k0, _npy(header_dict={
        "descr": "<f4", "fortran_order": False, "shape": (2**40,)}, tail=bytes(32))))
    out["bad-header-syntax.weights.npz"] = _rezip(w, swap(k0, b"\x93NUMPY\x01\x00\x10\x00{'descr': __import__('os')}"))
    out["bad-missing.weights.npz"] = _rezip(w, lambda n, b: (None, b) if n == k0 else (n, b))
    out["bad-extra.weights.npz"] = _add_entry(w, "layers/evil/vars/0.npy", _npy(np.zeros(3, np.float32)))
    out["bad-pickle.weights.npz"] = pickle.dumps(_Marker())
    out["bad-truncated.weights.npz"] = w[: len(w) // 2]
    out["bad-trailing.weights.npz"] = w + b"\x00"
    flipped = bytearray(w)
    flipped[len(w) // 3] ^= 0x04
    out["bad-flipped.weights.npz"] = bytes(flipped)
    out["bad-compress-99.weights.npz"] = _central_dir_patch(w, method=99)
    out["bad-encrypted.weights.npz"] = _central_dir_patch(w, flag=1)
    out["bad-pickle.keras"] = pickle.dumps(_Marker())
    out["bad-config-units.keras"] = _rezip(k, cfg(lambda c: c["config"]["layers"][0]["config"].update(units=7)))
    out["bad-config-class.keras"] = _rezip(k, cfg(lambda c: c["config"]["layers"][0].update(class_name="Lambda")))
    out["bad-config-layers-20000.keras"] = _rezip(k, cfg(lambda c: c["config"].update(layers=[{}] * 20000)),
                                                  zipfile.ZIP_DEFLATED)
    out["bad-config-deep.keras"] = _rezip(k, swap("config.json", b"[" * 50000 + b"]" * 50000), zipfile.ZIP_DEFLATED)
    out["bad-compile-config.keras"] = _rezip(k, cfg(lambda c: c.update(compile_config="adam")))
    out["bad-no-config.keras"] = _rezip(k, lambda n, b: (None, b) if n == "config.json" else (n, b))
    return out


def _add_entry(blob, name, data):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr(name, data)
    return out.getvalue()


def _central_dir_patch(blob, method=None, flag=None):
    """Patch every central-directory record: compression method or general-purpose flag bits."""
    b = bytearray(blob)
    i = b.find(b"PK\x01\x02")
    while i >= 0:
        if method is not None:
            b[i + 10:i + 12] = struct.pack("<H", method)
        if flag is not None:
            b[i + 8] |= flag
        i = b.find(b"PK\x01\x02", i + 4)
    return bytes(b)


DICT = [
    ("idx_u8_1d", b"\x00\x00\x08\x01"), ("idx_u8_3d", b"\x00\x00\x08\x03"), ("idx_f32_2d", b"\x00\x00\x0d\x02"),
    ("idx_f64_1d", b"\x00\x00\x0e\x01"), ("idx_i16", b"\x00\x00\x0b\x02"), ("idx_i32", b"\x00\x00\x0c\x04"),
    ("gzip_magic", b"\x1f\x8b\x08"), ("gzip_head", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"),
    ("dim_max", b"\xff\xff\xff\xff"), ("dim_60000", b"\x00\x00\xea\x60"), ("dim_28", b"\x00\x00\x00\x1c"),
    ("dim_0", b"\x00\x00\x00\x00"), ("dim_1", b"\x00\x00\x00\x01"),
    ("deflate_stored", b"\x01\x00\x00\xff\xff"), ("deflate_empty_fixed", b"\x03\x00"),
]


def write_dict(path):
    lines = ["# IDX / gzip tokens for libFuzzer (-dict=tests/fuzz/idx.dict)"]
    for name, tok in DICT:
        lines.append(f'{name}="' + "".join(f"\\x{c:02x}" for c in tok) + '"')
    path.write_text("\n".join(lines) + "\n")


def main():
    import tempfile
    sys.path.insert(0, str(HERE.parents[1]))
    cidx = HERE / "corpus_idx"
    cw = HERE / "corpus_weights"
    for d in (cidx, cw):
        d.mkdir(exist_ok=True)
        for f in d.iterdir():
            f.unlink()
    for name, data in idx_cases().items():
        assert len(data) <= 8192, name
        (cidx / name).write_bytes(data)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in weights_cases(Path(tmp)).items():
            (cw / name).write_bytes(data)
    write_dict(HERE / "idx.dict")
    print(f"{len(list(cidx.iterdir()))} IDX seeds, {len(list(cw.iterdir()))} weights seeds")


if __name__ == "__main__":
    main()
