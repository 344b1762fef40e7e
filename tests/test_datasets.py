"""Data sets: real MNIST and Fashion-MNIST figures, the lookup order, downloading (against a local
HTTP server), and to_categorical.

Real figures are checked against an independent pure-Python reader (gzip + np.frombuffer) and
against published values (label histograms, the md5s in shared/data/mnist/README.md).
"""
import functools
import gzip
import hashlib
import http.server
import os
import re
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

import mnistc
from mnistc.datasets import _lookup, fashion_mnist, mnist
from conftest import missing_data

FILES = _lookup.FILES

# md5 of the uncompressed files (header included), from shared/data/mnist/README.md.
MNIST_FILE_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# Published class counts of MNIST (LeCun et al.); Fashion-MNIST is balanced by construction.
MNIST_TRAIN_HIST = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_HIST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def pure_python_idx(path):
    """Independent reader: the common gzip + np.frombuffer recipe, header parsed with struct."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and code == 0x08
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_header(a):
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)


def file_in(folder, name):
    p = Path(folder) / (name + ".gz")
    return p if p.exists() else Path(folder) / name


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No data anywhere the lookup goes, no downloads, no proxies; returns the cache root."""
    monkeypatch.delenv("MNISTC_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("MNISTC_MIRRORS", "")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [str(tmp_path / "system")])
    return tmp_path / "xdg" / "mnistc"


# --- real MNIST ---

@pytest.fixture(scope="module")
def mnist_real(mnist_dir):
    return mnist.load_data(mnist_dir)


def test_mnist_shapes_and_dtypes(mnist_real):
    (x_train, y_train), (x_test, y_test) = mnist_real
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8 and a.flags.c_contiguous and a.flags.owndata
    assert y_train.max() == 9 and y_test.max() == 9 and x_train.max() == 255


def test_mnist_equals_independent_reader_and_published_histograms(mnist_real, mnist_dir):
    (x_train, y_train), (x_test, y_test) = mnist_real
    ours = dict(zip(FILES, (x_train, y_train, x_test, y_test)))
    for name, a in ours.items():
        np.testing.assert_array_equal(a, pure_python_idx(file_in(mnist_dir, name)))
    ref_train = np.bincount(pure_python_idx(file_in(mnist_dir, FILES[1])), minlength=10)
    ref_test = np.bincount(pure_python_idx(file_in(mnist_dir, FILES[3])), minlength=10)
    assert np.bincount(y_train, minlength=10).tolist() == ref_train.tolist() == MNIST_TRAIN_HIST
    assert np.bincount(y_test, minlength=10).tolist() == ref_test.tolist() == MNIST_TEST_HIST
    assert sum(MNIST_TRAIN_HIST) == 60000 and sum(MNIST_TEST_HIST) == 10000


def test_mnist_bytes_match_readme_md5(mnist_real):
    (x_train, y_train), (x_test, y_test) = mnist_real
    for name, a in zip(FILES, (x_train, y_train, x_test, y_test)):
        assert hashlib.md5(idx_header(a) + a.tobytes()).hexdigest() == MNIST_FILE_MD5[name], name


def test_mnist_pixel_statistics(mnist_real):
    (x_train, _), _ = mnist_real
    counts = np.bincount(x_train.ravel(), minlength=256)  # exact, and cheaper than float arrays
    v = np.arange(256) / 255.0
    mean = (counts * v).sum() / counts.sum()
    std = np.sqrt((counts * (v - mean) ** 2).sum() / counts.sum())
    assert round(float(mean), 4) == 0.1307 and round(float(std), 4) == 0.3081


# --- real Fashion-MNIST, found through the lookup order (Debian's dataset-fashion-mnist) ---

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def test_fashion_mnist_from_the_debian_package_through_lookup(monkeypatch, tmp_path):
    found, missing = _lookup._find(DEBIAN_FASHION)
    if missing:
        missing_data(f"{DEBIAN_FASHION} lacks {missing} (apt-get install dataset-fashion-mnist)")
    monkeypatch.setenv("MNISTC_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("MNISTC_MIRRORS", "")
    assert fashion_mnist.SYSTEM_DIRS == [DEBIAN_FASHION]
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert all(a.dtype == np.uint8 for a in (x_train, y_train, x_test, y_test))
    for name, a in zip(FILES, (x_train, y_train, x_test, y_test)):
        np.testing.assert_array_equal(a, pure_python_idx(found[name]))
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10
    assert len(fashion_mnist.CLASS_NAMES) == 10


# --- lookup order on small fake sets ---

def make_set(folder, fill, n=3, gz=True, n_labels=None):
    """Four small IDX files: n images of 28x28 filled with `fill`, labels 0..n-1."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_labels = n if n_labels is None else n_labels
    x = np.full((n, 28, 28), fill, np.uint8)
    y = (np.arange(n_labels) % 10).astype(np.uint8)
    for name, a in zip(FILES, (x, y, x, y)):
        data = idx_header(a) + a.tobytes()
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / name).write_bytes(data)
    return folder


def fill_of(result):
    (x_train, _), _ = result
    return int(x_train[0, 0, 0])


def test_path_beats_env_beats_cache(isolated, tmp_path, monkeypatch):
    p = make_set(tmp_path / "given", 1)
    make_set(tmp_path / "env" / "mnist", 2)
    make_set(isolated / "mnist", 3)
    monkeypatch.setenv("MNISTC_DATA_DIR", str(tmp_path / "env"))
    assert fill_of(mnist.load_data(p)) == 1
    assert fill_of(mnist.load_data(str(p))) == 1
    assert fill_of(mnist.load_data()) == 2
    assert fill_of(mnist.load_data(tmp_path / "not-there")) == 2
    monkeypatch.delenv("MNISTC_DATA_DIR")
    assert fill_of(mnist.load_data()) == 3


def test_incomplete_folder_is_skipped_and_raw_files_count(isolated, tmp_path, monkeypatch):
    p = make_set(tmp_path / "given", 1)
    (p / (FILES[3] + ".gz")).unlink()
    make_set(tmp_path / "env" / "mnist", 2, gz=False)
    monkeypatch.setenv("MNISTC_DATA_DIR", str(tmp_path / "env"))
    assert fill_of(mnist.load_data(p)) == 2


def test_cache_honours_xdg_cache_home_and_home(isolated, tmp_path, monkeypatch):
    make_set(tmp_path / "xdg" / "mnistc" / "fashion-mnist", 4)
    assert fill_of(fashion_mnist.load_data()) == 4
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    make_set(tmp_path / "home" / ".cache" / "mnistc" / "fashion-mnist", 5)
    assert fill_of(fashion_mnist.load_data()) == 5
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the XDG spec: ignored
    assert fill_of(fashion_mnist.load_data()) == 5


def test_system_folder_comes_after_the_cache(isolated, tmp_path):
    make_set(tmp_path / "system", 6)
    assert fill_of(fashion_mnist.load_data()) == 6
    make_set(isolated / "fashion-mnist", 7)
    assert fill_of(fashion_mnist.load_data()) == 7


def test_error_lists_every_place_and_how_to_provide_files(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTC_DATA_DIR", str(tmp_path / "data"))
    given = make_set(tmp_path / "given", 1)
    (given / (FILES[0] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError) as ei:
        fashion_mnist.load_data(given)
    msg = str(ei.value)
    for needle in (f"path argument: {given} lacks {FILES[0]}[.gz]",
                   f"$MNISTC_DATA_DIR/fashion-mnist: {tmp_path / 'data' / 'fashion-mnist'} does not exist",
                   f"user cache: {isolated / 'fashion-mnist'} does not exist",
                   f"system folder: {tmp_path / 'system'} does not exist",
                   "downloading is disabled ($MNISTC_MIRRORS is set and empty)",
                   'load_data(path="that/folder")', "set MNISTC_DATA_DIR",
                   "apt-get install dataset-fashion-mnist", *FILES):
        assert needle in msg, (needle, msg)
    monkeypatch.delenv("MNISTC_DATA_DIR")
    with pytest.raises(FileNotFoundError) as ei:
        mnist.load_data()
    msg = str(ei.value)
    assert "path argument: not given" in msg and "MNISTC_DATA_DIR is not set" in msg
    assert msg.startswith("MNIST not found") and "apt-get" not in msg


def test_image_and_label_counts_must_agree(isolated, tmp_path):
    p = make_set(tmp_path / "given", 1, n=3, n_labels=2)
    with pytest.raises(ValueError, match=r"3 images but 2 labels: .*train-images-idx3-ubyte.gz and "
                                         r".*train-labels-idx1-ubyte.gz") as ei:
        mnist.load_data(p)
    assert isinstance(ei.value, mnistc.FormatError)


@pytest.mark.parametrize("name, array, found", [
    (FILES[1], np.zeros((3, 2, 2), np.uint8), r"bad magic 0x00000803 \(uint8, 3 dims\), expected 0x00000801"),
    (FILES[0], np.zeros(3, np.uint8), r"bad magic 0x00000801 \(uint8, 1 dims\), expected 0x00000803"),
    (FILES[0], np.zeros((3, 28, 28), np.int8), r"bad magic 0x00000903 \(int8, 3 dims\), expected 0x00000803"),
    (FILES[3], np.zeros(3, np.float32), r"bad magic 0x00000d01 \(float32, 1 dims\), expected 0x00000801"),
])
def test_labels_must_be_1d_uint8_and_images_3d_uint8(isolated, tmp_path, name, array, found):
    p = make_set(tmp_path / "given", 1)
    (p / (name + ".gz")).unlink()
    mnistc.datasets.idx.save(p / name, array)
    with pytest.raises(mnistc.FormatError, match=name + ": " + found):
        mnist.load_data(p)


def test_corrupt_file_in_a_complete_folder_is_reported_not_skipped(isolated, tmp_path):
    p = make_set(tmp_path / "given", 1)
    f = p / (FILES[2] + ".gz")
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(mnistc.FormatError, match="t10k-images-idx3-ubyte.gz: gzip stream truncated"):
        mnist.load_data(p)


def test_system_folder_comes_after_the_keras_cache(isolated, tmp_path):
    make_set(tmp_path / "system", 6)
    make_set(tmp_path / "keras" / "datasets" / "fashion-mnist", 10)   # where Keras's fashion_mnist keeps them
    assert fill_of(fashion_mnist.load_data()) == 10
    make_set(isolated / "fashion-mnist", 7)
    assert fill_of(fashion_mnist.load_data()) == 7


# --- a relative MNISTC_DATA_DIR (a Jupyter kernel runs in notebooks/) ---

@pytest.fixture
def checkout(isolated, tmp_path, monkeypatch):
    """A fake source checkout tmp_path/work/repo with notebooks/, and data in tmp_path/work/shared/data."""
    root = tmp_path / "work" / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    monkeypatch.setattr(_lookup, "PROJECT_ROOT", str(root))
    monkeypatch.setenv("MNISTC_DATA_DIR", "../shared/data")
    return root


def test_relative_data_dir_works_from_the_root_and_from_notebooks(checkout, tmp_path, monkeypatch):
    make_set(tmp_path / "work" / "shared" / "data" / "mnist", 11)
    monkeypatch.chdir(checkout)
    assert fill_of(mnist.load_data()) == 11
    monkeypatch.chdir(checkout / "notebooks")
    assert fill_of(mnist.load_data()) == 11
    assert mnist.locate()[FILES[0]] == str(tmp_path / "work" / "shared" / "data" / "mnist" / (FILES[0] + ".gz"))
    make_set(checkout / "shared" / "data" / "mnist", 12)   # the current folder comes first
    assert fill_of(mnist.load_data()) == 12


def test_relative_data_dir_error_names_both_places(checkout, monkeypatch):
    monkeypatch.chdir(checkout / "notebooks")
    with pytest.raises(FileNotFoundError) as ei:
        mnist.load_data()
    msg = str(ei.value)
    here = checkout / "notebooks"
    assert (f"$MNISTC_DATA_DIR/mnist (../shared/data from {here}): "
            f"{checkout / 'shared' / 'data' / 'mnist'} does not exist") in msg
    assert (f"$MNISTC_DATA_DIR/mnist (../shared/data from the project root {checkout}): "
            f"{checkout.parent / 'shared' / 'data' / 'mnist'} does not exist") in msg


def test_relative_data_dir_outside_a_checkout_is_taken_from_the_current_folder(isolated, tmp_path, monkeypatch):
    monkeypatch.setattr(_lookup, "PROJECT_ROOT", str(tmp_path / "site-packages"))   # no pyproject.toml
    monkeypatch.setenv("MNISTC_DATA_DIR", "data")
    assert _lookup.data_dir_candidates("data") == [(str(Path.cwd() / "data"), f"data from {Path.cwd()}")]
    make_set(tmp_path / "data" / "mnist", 13)
    monkeypatch.chdir(tmp_path)
    assert fill_of(mnist.load_data()) == 13


# --- Keras's mnist.npz ---

def keras_arrays(n=4, m=3, fill=5):
    x_train = np.full((n, 28, 28), fill, np.uint8)
    x_train[:, 0, 0] = np.arange(n)
    return dict(x_train=x_train, y_train=(np.arange(n) % 10).astype(np.uint8),
                x_test=np.full((m, 28, 28), fill + 1, np.uint8), y_test=(np.arange(m) % 10).astype(np.uint8))


def write_npz(path, compressed=False, **arrays):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def assert_loads(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for name, a in zip(("x_train", "y_train", "x_test", "y_test"), (x_train, y_train, x_test, y_test)):
        np.testing.assert_array_equal(a, arrays[name])
        assert a.dtype == np.uint8 and a.flags.c_contiguous, name


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_file_as_path(isolated, tmp_path, compressed):
    arrays = keras_arrays()
    p = write_npz(tmp_path / "given" / "mnist.npz", compressed, **arrays)
    assert_loads(mnist.load_data(p), arrays)
    assert_loads(mnist.load_data(str(p)), arrays)
    assert mnist.locate(p) == {"npz": str(p)}
    assert_loads(fashion_mnist.load_data(p), arrays)   # the same layout serves any data set


def test_npz_name_is_looked_for_in_the_keras_cache(isolated, tmp_path, monkeypatch):
    arrays = keras_arrays(fill=7)
    write_npz(tmp_path / "keras" / "datasets" / "mnist.npz", **arrays)
    monkeypatch.chdir(tmp_path)
    assert_loads(mnist.load_data("mnist.npz"), arrays)        # Keras's default path argument
    here = keras_arrays(fill=8)
    write_npz(tmp_path / "mnist.npz", **here)                 # the current folder comes first
    assert_loads(mnist.load_data("mnist.npz"), here)
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = keras_arrays(fill=9)
    write_npz(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz", **home)
    assert_loads(mnist.load_data("~/.keras/datasets/mnist.npz"), home)


def test_keras_cache_is_looked_at_without_a_path(isolated, tmp_path, monkeypatch):
    arrays = keras_arrays(fill=3)
    write_npz(tmp_path / "keras" / "datasets" / "mnist.npz", **arrays)
    assert_loads(mnist.load_data(), arrays)
    make_set(isolated / "mnist", 4)             # the mnistc cache comes first
    assert fill_of(mnist.load_data()) == 4
    make_set(tmp_path / "env" / "mnist", 2)
    monkeypatch.setenv("MNISTC_DATA_DIR", str(tmp_path / "env"))
    assert fill_of(mnist.load_data()) == 2


def test_missing_npz_falls_through_and_is_listed(isolated, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_set(tmp_path / "env" / "mnist", 2)
    monkeypatch.setenv("MNISTC_DATA_DIR", str(tmp_path / "env"))
    assert fill_of(mnist.load_data("mnist.npz")) == 2
    monkeypatch.delenv("MNISTC_DATA_DIR")
    with pytest.raises(FileNotFoundError) as ei:
        mnist.load_data("mnist.npz")
    msg = str(ei.value)
    assert "path argument: mnist.npz does not exist" in msg
    assert f"path argument in the Keras cache: {tmp_path / 'keras' / 'datasets' / 'mnist.npz'} does not exist" in msg
    assert f"Keras cache: {tmp_path / 'keras' / 'datasets' / 'mnist.npz'} does not exist" in msg


def npy_member(shape, data, descr="|u1"):
    """The bytes of a .npy file whose header says shape/descr, followed by data (unchecked)."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def zip_members(path, members, compression=None):
    import zipfile
    with zipfile.ZipFile(path, "w", compression or zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def good_members():
    return {f"{k}.npy": npy_member(a.shape, a.tobytes()) for k, a in keras_arrays().items()}


def malformed_npz(tmp_path, kind):
    p = tmp_path / "bad.npz"
    a = keras_arrays()
    if kind == "not a zip":
        p.write_bytes(b"\x93NUMPY not an archive")
    elif kind == "empty file":
        p.write_bytes(b"")
    elif kind == "npy":
        np.save(tmp_path / "bad.npy", a["x_train"])
        (tmp_path / "bad.npy").rename(p)
    elif kind == "missing key":
        write_npz(p, x_train=a["x_train"], y_train=a["y_train"], x_test=a["x_test"])
    elif kind == "float32":
        write_npz(p, **dict(a, x_train=a["x_train"].astype(np.float32) / 255))
    elif kind == "object":
        write_npz(p, **dict(a, y_train=np.array([None, 1, "2", 3.0], dtype=object)))
    elif kind == "rank":
        write_npz(p, **dict(a, x_test=a["x_test"].reshape(3, 784)))
    elif kind == "counts":
        write_npz(p, **dict(a, y_train=a["y_train"][:3]))
    elif kind == "truncated":
        write_npz(p, **a)
        p.write_bytes(p.read_bytes()[:-40])
    elif kind == "crc":
        zip_members(p, good_members())
        data = bytearray(p.read_bytes())
        data[200] ^= 0xFF          # inside x_train's pixels, stored uncompressed
        p.write_bytes(bytes(data))
    elif kind == "short member":
        zip_members(p, dict(good_members(), **{"x_train.npy": npy_member((4, 28, 28), b"\0" * 100)}))
    elif kind == "bomb":
        import zipfile
        zip_members(p, dict(good_members(), **{"x_train.npy": npy_member((1 << 20, 1 << 20, 28), b"\0" * 64)}),
                    zipfile.ZIP_DEFLATED)
    elif kind == "bad header":
        zip_members(p, dict(good_members(), **{"y_test.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}  \n"}))
    return p


@pytest.mark.parametrize("kind, found", [
    ("not a zip", r"not a zip archive \(starts with 93 4e 55 4d\)"),
    ("empty file", r"not a zip archive \(starts with nothing: empty file\)"),
    ("npy", r"not a zip archive \(starts with 93 4e 55 4d\)"),
    ("missing key", r"lacks y_test \(it holds x_train.npy, y_train.npy, x_test.npy\)"),
    ("float32", r"x_train is float32 with shape \(4, 28, 28\)"),
    ("object", r"y_train is object with shape \(4,\)"),
    ("rank", r"x_test is uint8 with shape \(3, 784\)"),
    ("counts", r"x_train holds 4 images but y_train 3 labels"),
    ("truncated", r"corrupt archive \(BadZipFile: "),
    ("crc", r"corrupt archive \(BadZipFile: Bad CRC-32 for file 'x_train.npy'\)"),
    ("short member", r"x_train holds 100 bytes of data, its header \(4, 28, 28\) says 3136"),
    ("bomb", r"x_train declares 30786325577728 bytes, above the limit of 1073741824"),
    ("bad header", r"corrupt .npy member \("),
])
def test_malformed_npz_is_a_clear_format_error(isolated, tmp_path, kind, found):
    p = malformed_npz(tmp_path, kind)
    with pytest.raises(mnistc.FormatError, match=f"^{re.escape(str(p))}: {found}.*; expected a NumPy .npz "
                                                 r"archive like Keras's mnist.npz, holding uint8 arrays") as ei:
        mnist.load_data(p)
    assert isinstance(ei.value, ValueError)


def test_a_file_that_is_neither_folder_nor_npz_is_reported(isolated, tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\0"))
    with pytest.raises(mnistc.FormatError, match=r"train-images-idx3-ubyte.gz: not a zip archive \(starts with 1f 8b"):
        mnist.load_data(p)


# --- downloads, against a local HTTP server ---

class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base_url, list of request paths)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(_Handler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Handler, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join()


def published(folder):
    """{name: md5 of the .gz} for a folder made by make_set."""
    return {f: hashlib.md5((Path(folder) / (f + ".gz")).read_bytes()).hexdigest() for f in FILES}


def test_download_into_cache_with_md5_check(isolated, server, monkeypatch, capsys):
    base, root, requests = server
    served = make_set(root / "good", 8, n=5)
    monkeypatch.setattr(mnist, "MD5", published(served))
    monkeypatch.setattr(mnist, "MIRRORS", [base + "/missing/", base + "/good/"])
    monkeypatch.delenv("MNISTC_MIRRORS")
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert x_train.shape == (5, 28, 28) and (x_train == 8).all() and y_test.tolist() == [0, 1, 2, 3, 4]
    cache = isolated / "mnist"
    assert sorted(os.listdir(cache)) == sorted(f + ".gz" for f in FILES)  # no .part left
    for f in FILES:
        assert (cache / (f + ".gz")).read_bytes() == (served / (f + ".gz")).read_bytes()
    err = capsys.readouterr().err
    assert f"Downloading data from {base}/good/train-images-idx3-ubyte.gz" in err
    assert "100.0%" in err and "HTTP Error 404" in err  # progress bar; first mirror failed
    assert len(requests) == 8  # each file: 404 on the first mirror, then 200
    mnist.load_data()  # now from the cache
    assert len(requests) == 8


def test_download_rejects_md5_mismatch(isolated, server, monkeypatch):
    base, root, requests = server
    make_set(root / "fake", 9)
    monkeypatch.setenv("MNISTC_MIRRORS", base + "/fake/")  # the env var replaces MIRRORS
    with pytest.raises(FileNotFoundError) as ei:
        mnist.load_data()
    msg = str(ei.value)
    assert f"{base}/fake/train-images-idx3-ubyte.gz: ValueError: md5 mismatch: expected " \
           f"{mnist.MD5[FILES[0]]}, got " in msg
    assert "MNIST not found" in msg and "set MNISTC_DATA_DIR" in msg
    assert os.listdir(isolated / "mnist") == []  # nothing kept, not even a partial file
    assert requests == ["/fake/train-images-idx3-ubyte.gz"]  # stops at the first file nobody has


def test_download_fetches_only_missing_files(isolated, server, monkeypatch):
    base, root, requests = server
    served = make_set(root / "good", 2)
    make_set(isolated / "mnist", 2)
    for f in FILES[2:]:
        (isolated / "mnist" / (f + ".gz")).unlink()
    monkeypatch.setattr(mnist, "MD5", published(served))
    monkeypatch.setenv("MNISTC_MIRRORS", base + "/good")
    (x_train, _), (x_test, _) = mnist.load_data()
    assert x_test.shape == (3, 28, 28)
    assert sorted(requests) == sorted(f"/good/{f}.gz" for f in FILES[2:])


def test_unreachable_mirror_is_reported(isolated, monkeypatch):
    monkeypatch.setenv("MNISTC_MIRRORS", "http://127.0.0.1:9/")  # discard port: refused
    with pytest.raises(FileNotFoundError, match=r"http://127.0.0.1:9/train-images-idx3-ubyte.gz: "
                                                r"URLError: .*refused"):
        mnist.load_data()


# --- to_categorical (Keras semantics) ---

def test_to_categorical_matches_keras_semantics():
    from mnistc._categorical import to_categorical
    y = np.array([0, 2, 1, 2])
    out = to_categorical(y)
    assert out.dtype == np.float64 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, np.eye(3)[y])
    assert to_categorical([1, 0], 5).tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert to_categorical(np.array([[1], [2]], np.uint8)).shape == (2, 3)  # trailing 1 squeezed
    assert to_categorical(np.array([2])).shape == (1, 3)                  # a lone dim is kept
    y2 = np.array([[0, 1, 2], [2, 1, 0]])
    np.testing.assert_array_equal(to_categorical(y2, 4), np.eye(4)[y2])
    assert to_categorical([-1], 3).tolist() == [[0, 0, 1]]  # NumPy indexing, as in Keras
    with pytest.raises(IndexError):
        to_categorical([3], 3)
    np.testing.assert_array_equal(mnistc.utils.to_categorical(y, 3), out)


def test_to_categorical_on_real_labels(mnist_real):
    (_, y_train), _ = mnist_real
    one_hot = mnistc.utils.to_categorical(y_train, 10)
    assert one_hot.shape == (60000, 10) and one_hot.dtype == np.float64
    assert one_hot.sum(axis=0).tolist() == MNIST_TRAIN_HIST
    assert (one_hot.argmax(axis=1) == y_train).all()
