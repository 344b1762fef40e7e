"""Reading a data set from a NumPy .npz archive laid out as Keras's mnist.npz: uint8 arrays x_train
(N, rows, cols), y_train (N,), x_test (M, rows, cols), y_test (M,).

Nothing in the archive is trusted: no pickles (allow_pickle=False), and each member's .npy header is
checked (dtype, rank, size against max_bytes and against the member's stored size) before the array
is allocated, so a malformed or bomb-like archive raises FormatError naming the file and what was
expected versus found.
"""
import math
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

from mnistc._C import FormatError

KEYS = ("x_train", "y_train", "x_test", "y_test")
RANKS = {"x_train": 3, "y_train": 1, "x_test": 3, "y_test": 1}
LAYOUT = ("a NumPy .npz archive like Keras's mnist.npz, holding uint8 arrays x_train (N, rows, cols), "
          "y_train (N,), x_test (M, rows, cols) and y_test (M,)")
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _bad(path, found):
    return FormatError(f"{path}: {found}; expected {LAYOUT}")


def _member_name(names, key):
    for cand in (key + ".npy", key):
        if cand in names:
            return cand
    return None


def _read_header(member):
    version = npy_format.read_magic(member)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(member)
    if version == (2, 0):
        return npy_format.read_array_header_2_0(member)
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def _read_array(path, archive, name, key, max_bytes):
    info = archive.getinfo(name)
    with archive.open(info) as member:
        shape, fortran_order, dtype = _read_header(member)
        header_len = member.tell()
    if dtype != np.uint8 or len(shape) != RANKS[key] or min(shape) < 0:
        raise _bad(path, f"{key} is {dtype} with shape {shape}")
    nbytes = math.prod(shape)
    if nbytes > max_bytes:
        raise _bad(path, f"{key} declares {nbytes} bytes, above the limit of {max_bytes}")
    if info.file_size != header_len + nbytes:
        raise _bad(path, f"{key} holds {info.file_size - header_len} bytes of data, its header "
                         f"{shape} says {nbytes}")
    with archive.open(info) as member:
        a = npy_format.read_array(member, allow_pickle=False)
        member.read(1)  # reaching the end checks the member's CRC
    return np.ascontiguousarray(a)


def read_npz(path, max_bytes):
    """((x_train, y_train), (x_test, y_test)) from a Keras-style .npz archive; see the module docstring.

    Raises:
        FormatError (a ValueError): not a zip archive, a key missing, a wrong dtype or rank,
            corrupt data, or image and label counts that disagree.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in ZIP_MAGICS:
        raise _bad(path, f"not a zip archive (starts with {magic.hex(' ') or 'nothing: empty file'})")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            members = {k: _member_name(names, k) for k in KEYS}
            missing = [k for k, n in members.items() if n is None]
            if missing:
                raise _bad(path, f"lacks {', '.join(missing)} (it holds {', '.join(names) or 'nothing'})")
            arrays = {k: _read_array(path, archive, members[k], k, max_bytes) for k in KEYS}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise _bad(path, f"corrupt archive ({type(e).__name__}: {e})") from None
    except ValueError as e:
        if isinstance(e, FormatError):
            raise
        raise _bad(path, f"corrupt .npy member ({e})") from None
    for part in ("train", "test"):
        x, y = arrays["x_" + part], arrays["y_" + part]
        if len(x) != len(y):
            raise _bad(path, f"x_{part} holds {len(x)} images but y_{part} {len(y)} labels")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
