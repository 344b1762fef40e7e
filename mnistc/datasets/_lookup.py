"""Finding, and when need be downloading, the files of an MNIST-style data set.

One place for MNIST and Fashion-MNIST. The data is looked for, in order, in:
  1. the `path` argument of load_data: a folder holding the four IDX files, or a Keras-style .npz
     archive (Keras's mnist.npz); a relative .npz path not found from the current folder is also
     looked for in Keras's cache, $KERAS_HOME/datasets (default ~/.keras/datasets);
  2. $MNISTC_DATA_DIR/<name>/ (name: "mnist" or "fashion-mnist"); a relative MNISTC_DATA_DIR is
     taken from the current folder and then, in a source checkout, from the project root, so the
     same value works in a Jupyter kernel started in notebooks/;
  3. the user cache, $XDG_CACHE_HOME/mnistc/<name>/ (default ~/.cache/mnistc/<name>/);
  4. Keras's download cache (MNIST: ~/.keras/datasets/mnist.npz; Fashion-MNIST: the four .gz files
     in ~/.keras/datasets/fashion-mnist/);
  5. system folders of the data set (Fashion-MNIST: /usr/share/datasets/fashion-mnist, from
     Debian's dataset-fashion-mnist package).
A folder counts only if it holds all four files, each gzip'd (`.gz`) or raw. Otherwise the files
missing from the cache are downloaded there from the data set's mirrors (or from the
space-separated base URLs in $MNISTC_MIRRORS, which replace them; set it empty to never
download), each checked against its published md5 and moved into place atomically.
"""
import os
import sys
import tempfile
import time

from mnistc import _C
from mnistc._C import FormatError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGES_MAGIC = 0x00000803  # uint8, 3 dims
LABELS_MAGIC = 0x00000801  # uint8, 1 dim
TIMEOUT = 30.0             # seconds, per network operation
MAX_BYTES = 1 << 30
# The folder holding the mnistc package: the project root when running from a source checkout.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cache_dir(name):
    """The user cache folder of a data set: $XDG_CACHE_HOME/mnistc/<name> or ~/.cache/mnistc/<name>.

    A relative XDG_CACHE_HOME is ignored, as the XDG base directory specification requires.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mnistc", name)


def mirrors(default):
    """Base URLs to download from: $MNISTC_MIRRORS (space-separated) when set, else default."""
    env = os.environ.get("MNISTC_MIRRORS")
    if env is not None:
        return env.split()
    return list(default)


def _find(folder):
    """(paths, missing): the path of each of FILES found in folder (.gz preferred), and the rest."""
    found, missing = {}, []
    for f in FILES:
        for cand in (f + ".gz", f):
            p = os.path.join(folder, cand)
            if os.path.isfile(p):
                found[f] = p
                break
        else:
            missing.append(f)
    return found, missing


def keras_datasets_dir():
    """Keras's download cache: $KERAS_HOME/datasets, default ~/.keras/datasets."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "datasets")


def data_dir_candidates(env):
    """[(absolute folder, how it was reached)] that MNISTC_DATA_DIR=env may mean.

    An absolute value means itself. A relative one is taken from the current folder and, in a source
    checkout, also from the project root: a Jupyter kernel runs in notebooks/, where the value the
    README sets at the root (../shared/data) would otherwise point one level too deep.
    """
    env = os.path.expanduser(env)
    if os.path.isabs(env):
        return [(os.path.normpath(env), "")]
    found = [(os.path.abspath(env), f"{env} from {os.getcwd()}")]
    if os.path.isfile(os.path.join(PROJECT_ROOT, "pyproject.toml")):
        from_root = os.path.normpath(os.path.join(PROJECT_ROOT, env))
        if from_root != found[0][0]:
            found.append((from_root, f"{env} from the project root {PROJECT_ROOT}"))
    return found


def _path_places(path):
    """The places the path argument names: a folder of IDX files or an .npz archive."""
    given = os.path.expanduser(os.fsdecode(os.fspath(path)))
    if os.path.isdir(given) or not (os.path.isfile(given) or given.endswith(".npz")):
        return [("path argument", "idx", given, "")]
    places = [("path argument", "npz", given, "")]
    if not os.path.isabs(given):  # Keras's load_data(path="mnist.npz") names a file in its cache
        places.append(("path argument in the Keras cache", "npz",
                       os.path.join(keras_datasets_dir(), given), ""))
    return places


def _places(name, path, system_dirs, keras_cache):
    """[(label, "idx" or "npz" or None, folder or file, why it is None)] in lookup order."""
    places = _path_places(path) if path is not None else [("path argument", None, None, "not given")]
    label = "$MNISTC_DATA_DIR/" + name
    env = os.environ.get("MNISTC_DATA_DIR")
    if env:
        for folder, how in data_dir_candidates(env):
            places.append((f"{label} ({how})" if how else label, "idx", os.path.join(folder, name), ""))
    else:
        places.append((label, None, None, "MNISTC_DATA_DIR is not set"))
    places.append(("user cache", "idx", cache_dir(name), ""))
    if keras_cache is not None:
        kind, rel = keras_cache
        places.append(("Keras cache", kind, os.path.join(keras_datasets_dir(), rel), ""))
    for d in system_dirs:
        places.append(("system folder", "idx", d, ""))
    return places


def _describe(folder, missing):
    if not os.path.exists(folder):
        return "does not exist"
    if not os.path.isdir(folder):
        return "is not a folder (nor an .npz archive)"
    if len(missing) == len(FILES):
        return "holds none of the files"
    return "lacks " + ", ".join(m + "[.gz]" for m in missing)


def _progress(label, done, total, t0, final=False):
    mb = done / 1e6
    if total:
        frac = min(done / total, 1.0)
        bar = "=" * int(frac * 30)
        line = f"\r{label}: {frac * 100:5.1f}% [{bar:<30}] {mb:.1f}/{total / 1e6:.1f} MB"
    else:
        line = f"\r{label}: {mb:.1f} MB"
    if final:
        line += f" in {time.monotonic() - t0:.1f} s\n"
    sys.stderr.write(line)
    sys.stderr.flush()


def _download(url, dest, md5):
    """Fetch url into dest through a temporary file beside it; raise OSError/ValueError on failure."""
    import hashlib  # only when downloading: keeps `import mnistc` fast
    import urllib.request
    folder = os.path.dirname(dest)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(dest) + ".", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        sys.stderr.write(f"Downloading data from {url}\n")
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done, t0, last = 0, time.monotonic(), 0.0
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                now = time.monotonic()
                if now - last >= 0.1:
                    _progress(os.path.basename(dest), done, total, t0)
                    last = now
            _progress(os.path.basename(dest), done, total, t0, final=True)
            if total and done != total:
                raise OSError(f"download cut short: got {done} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != md5:
            raise ValueError(f"md5 mismatch: expected {md5}, got {got} ({done} bytes)")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fetch_missing(folder, missing, urls, md5s):
    """Download each missing file into folder; returns [] or the list of failure lines."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        return [f"cannot create {folder}: {e}"]
    for f in missing:
        errors = []
        for base in urls:
            url = base.rstrip("/") + "/" + f + ".gz"
            try:
                _download(url, os.path.join(folder, f + ".gz"), md5s[f])
                break
            except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
                sys.stderr.write(f"  failed: {e}\n")
                errors.append(f"{url}: {type(e).__name__}: {e}")
        else:
            return errors or [f"{f}.gz: no mirror configured ($MNISTC_MIRRORS is empty)"]
    return []


def locate(name, title, path, default_mirrors, md5s, system_dirs=(), hint="", keras_cache=None):
    """What load_data reads: {file name: path} of the four IDX files, or {"npz": path} of an .npz
    archive; downloads the IDX files into the cache if need be.

    Raises:
        FileNotFoundError: nowhere to be found and not downloadable; the message lists every
            place looked at, every failed download and how to provide the files.
    """
    looked = []
    for label, kind, where, why in _places(name, path, system_dirs, keras_cache):
        if where is None:
            looked.append(f"  - {label}: {why}")
        elif kind == "npz":
            if os.path.isfile(where):
                return {"npz": where}
            looked.append(f"  - {label}: {where} " + ("is not a file" if os.path.exists(where) else "does not exist"))
        else:
            found, missing = _find(where)
            if not missing:
                return found
            looked.append(f"  - {label}: {where} {_describe(where, missing)}")

    cache = cache_dir(name)
    _, missing = _find(cache)
    urls = mirrors(default_mirrors)
    failures = _fetch_missing(cache, missing, urls, md5s) if urls else [
        "downloading is disabled ($MNISTC_MIRRORS is set and empty)"]
    if not failures:
        found, missing = _find(cache)
        if not missing:
            return found
        failures = [f"{cache} still lacks " + ", ".join(missing)]
    names = ", ".join(FILES)
    msg = [f"{title} not found: looked for its four IDX files ({names}; each raw or .gz) in:",
           *looked,
           f"and could not download them into {cache}:",
           *("  - " + f for f in failures),
           "To provide the files: put the four files in a folder and pass load_data(path=\"that/folder\") "
           "(or pass the path of a Keras-style .npz archive), "
           f"or set MNISTC_DATA_DIR to a folder holding {name}/ with them, or copy them into {cache}/."]
    if hint:
        msg.append(hint)
    raise FileNotFoundError("\n".join(msg))


def read_pair(images_path, labels_path, max_bytes=MAX_BYTES):
    """(images, labels) from two IDX files: uint8 (N, rows, cols) and uint8 (N,), counts checked.

    Raises:
        FormatError: wrong type or rank (bad magic), bad content, or counts that disagree.
    """
    x = _C.read_idx(images_path, max_bytes, IMAGES_MAGIC)
    y = _C.read_idx(labels_path, max_bytes, LABELS_MAGIC)
    if len(x) != len(y):
        raise FormatError(f"{len(x)} images but {len(y)} labels: {images_path} and {labels_path} "
                          "must hold the same number of items")
    return x, y


def load_data(name, title, path, default_mirrors, md5s, system_dirs=(), hint="", keras_cache=None):
    """((x_train, y_train), (x_test, y_test)) of an MNIST-style data set; see the module docstring."""
    files = locate(name, title, path, default_mirrors, md5s, system_dirs, hint, keras_cache)
    if "npz" in files:
        from mnistc.datasets import _npz  # zipfile and numpy.lib.format only when needed
        return _npz.read_npz(files["npz"], MAX_BYTES)
    train = read_pair(files[FILES[0]], files[FILES[1]])
    test = read_pair(files[FILES[2]], files[FILES[3]])
    return train, test
