"""Finding, and when need be downloading, the four IDX files of an MNIST-style data set.

One place for MNIST and Fashion-MNIST. The files are looked for, in order, in:
  1. the `path` argument of load_data (a folder);
  2. $MNISTC_DATA_DIR/<name>/ (name: "mnist" or "fashion-mnist");
  3. the user cache, $XDG_CACHE_HOME/mnistc/<name>/ (default ~/.cache/mnistc/<name>/);
  4. system folders of the data set (Fashion-MNIST: /usr/share/datasets/fashion-mnist, from
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


def _places(name, path, system_dirs):
    """[(label, folder or None, why it is None)] in lookup order."""
    places = []
    if path is None:
        places.append(("path argument", None, "not given"))
    else:
        places.append(("path argument", os.fspath(path), ""))
    env = os.environ.get("MNISTC_DATA_DIR")
    if env:
        places.append(("$MNISTC_DATA_DIR/" + name, os.path.join(env, name), ""))
    else:
        places.append(("$MNISTC_DATA_DIR/" + name, None, "MNISTC_DATA_DIR is not set"))
    places.append(("user cache", cache_dir(name), ""))
    for d in system_dirs:
        places.append(("system folder", d, ""))
    return places


def _describe(folder, missing):
    if not os.path.exists(folder):
        return "does not exist"
    if not os.path.isdir(folder):
        return "is not a folder"
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


def locate(name, title, path, default_mirrors, md5s, system_dirs=(), hint=""):
    """The four file paths of a data set {file name: path}, downloading into the cache if need be.

    Raises:
        FileNotFoundError: nowhere to be found and not downloadable; the message lists every
            place looked at, every failed download and how to provide the files.
    """
    places = _places(name, path, system_dirs)
    looked = []
    for label, folder, why in places:
        if folder is None:
            looked.append(f"  - {label}: {why}")
            continue
        found, missing = _find(folder)
        if not missing:
            return found
        looked.append(f"  - {label}: {folder} {_describe(folder, missing)}")

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
           "To provide the files: put the four files in a folder and pass load_data(path=\"that/folder\"), "
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


def load_data(name, title, path, default_mirrors, md5s, system_dirs=(), hint=""):
    """((x_train, y_train), (x_test, y_test)) of an MNIST-style data set; see the module docstring."""
    files = locate(name, title, path, default_mirrors, md5s, system_dirs, hint)
    train = read_pair(files[FILES[0]], files[FILES[1]])
    test = read_pair(files[FILES[2]], files[FILES[3]])
    return train, test
