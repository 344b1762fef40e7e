"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

    from mnistc.datasets import idx
    x = idx.load("train-images-idx3-ubyte.gz")      # uint8 (60000, 28, 28)
    idx.save("copy-idx3-ubyte.gz", x)

The parsing is done in C (csrc/idx.c) and trusts nothing in the file: sizes are overflow-checked and
bounded by `max_bytes` before anything is allocated, and the data must end exactly where the header
says. gzip compression is recognised by the magic bytes 1f 8b, whatever the file is called.
Supported: type codes 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64,
and 1 to 8 dimensions (the format allows up to 255; 8 keeps the parser's header fixed-size).
"""
import operator
import sys

import numpy as np

from mnistc import _C
from mnistc._C import FormatError

MAX_NDIM = 8
DEFAULT_MAX_BYTES = 1 << 30

_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64))


def _check_max_bytes(max_bytes):
    try:
        max_bytes = operator.index(max_bytes)
    except TypeError:
        raise TypeError(f"max_bytes must be an integer, got {type(max_bytes).__name__}") from None
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    return min(max_bytes, sys.maxsize)


def load(path, *, max_bytes=DEFAULT_MAX_BYTES):
    """Read an IDX file, gzip-compressed or raw, into a new NumPy array.

    Args:
        path: str, bytes or os.PathLike.
        max_bytes: largest payload accepted, checked against the header before allocating
            (default 1 GiB; MNIST's training images are 47 MB).

    Returns:
        A C-contiguous array in native byte order that owns its memory, with the dtype and shape
        the header declares.

    Raises:
        FormatError (a ValueError): bad content; the message names the file and what was
            expected versus found (bad magic, unknown type code, truncated or trailing data,
            corrupt gzip stream, size above max_bytes, ...).
        FileNotFoundError, IsADirectoryError, PermissionError, OSError: the path cannot be read.
        ValueError: the path contains a NUL byte, or max_bytes < 0.
        MemoryError: the array cannot be allocated.
    """
    return _C.read_idx(path, _check_max_bytes(max_bytes))


def read_header(path):
    """Read and validate only the header of an IDX file.

    Args:
        path: str, bytes or os.PathLike.

    Returns:
        (dtype, shape): a numpy.dtype and a tuple of ints. For a raw file the file size is checked
        against the declared payload too; a gzip stream is decompressed only as far as the header.

    Raises:
        FormatError, OSError subclasses: as for load().
    """
    return _C.read_idx_header(path)


def save(path, array):
    """Write an array as an IDX file, atomically; gzip-compressed when path ends in ".gz".

    Data is written big-endian whatever the host or array byte order. The file appears complete or
    not at all: it is written to a temporary file beside it, fsync'd, then renamed over path.

    Args:
        path: str, bytes or os.PathLike.
        array: array-like of dtype uint8, int8, int16, int32, float32 or float64 (either byte
            order) with 1 to 8 dimensions, each < 2**32. A non-contiguous array is copied once.

    Raises:
        TypeError: unsupported dtype (e.g. int64, bool, float16).
        ValueError: 0 or more than 8 dimensions, or a dimension >= 2**32.
        OSError subclasses: the file cannot be written (missing folder, no permission, disk full).
    """
    a = np.asarray(array)
    native = a.dtype.newbyteorder("=")
    if native not in _DTYPES:
        raise TypeError(f"IDX has no type code for dtype {a.dtype}; supported: "
                        + ", ".join(str(d) for d in _DTYPES))
    if not 1 <= a.ndim <= MAX_NDIM:
        raise ValueError(f"IDX holds arrays with 1 to {MAX_NDIM} dimensions, got shape {a.shape}")
    if any(d >= 1 << 32 for d in a.shape):
        raise ValueError(f"IDX dimensions must be < 2**32, got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=native)
    _C.write_idx(path, a)


__all__ = ["FormatError", "load", "read_header", "save"]
