"""Faults: allocation failure at every C allocation, Ctrl-C during fit, SIGKILL during save, a full
disk, and unwritable targets (RELIABILITY.md section 2, F1 and F3-F6).

Allocation failures use the test hook `mnistc._C.testing.fail_alloc_after(k)`: the (k+1)-th following
mc_malloc/mc_calloc fails. Each sweep raises k from 0 until the call succeeds; every failure must
be a MemoryError that leaves the model usable (and, before the first optimizer step, unchanged).
"""
import contextlib
import errno
import gzip
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import _thread
from pathlib import Path

import numpy as np
import pytest

import mnistc
from mnistc import _C, layers, saving
from mnistc.datasets import idx

IN_CI = os.environ.get("CI", "").lower() == "true"


@contextlib.contextmanager
def failing_alloc(k):
    _C.testing.fail_alloc_after(k)
    try:
        yield
    finally:
        _C.testing.fail_alloc_after(-1)


def sweep(call, limit=400):
    """Run call() with the k-th C allocation failing, k = 0, 1, ... until it succeeds.

    Returns (k at which it succeeded, [messages of the MemoryErrors]). Any other exception fails.
    """
    messages = []
    for k in range(limit):
        try:
            with failing_alloc(k):
                result = call()
        except MemoryError as e:
            messages.append(str(e))
            continue
        return k, messages, result
    raise AssertionError(f"still failing after {limit} injected allocation failures")


def make_model(seed=0, n_in=8, units=5):
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input((n_in,)), layers.Dense(units, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile(mnistc.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_data(n=40, n_in=8, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in), dtype=np.float32), rng.integers(0, 3, n)


def weights_bytes(model):
    return [w.tobytes() for w in model.get_weights()]


# --- F1: allocation failures ---

def _idx_files(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    f = rng.standard_normal((7, 5)).astype(np.float32)
    paths = {}
    for name, arr in (("u8", a), ("f32", f)):
        for suffix in ("", ".gz"):
            p = tmp_path / f"{name}{suffix or '.idx'}"
            idx.save(p, arr)
            paths[p.name] = (p, arr)
    two = tmp_path / "two-members.gz"
    raw = gzip.decompress((tmp_path / "u8.gz").read_bytes())
    two.write_bytes(gzip.compress(raw[:5000], mtime=0) + gzip.compress(raw[5000:], mtime=0))
    paths[two.name] = (two, a)
    return paths


def test_idx_reading_survives_a_failure_at_every_allocation(tmp_path):
    points = {}
    for name, (p, expect) in _idx_files(tmp_path).items():
        blob = p.read_bytes()
        for door, call in (("file", lambda: idx.load(p)), ("bytes", lambda: _C.read_idx_bytes(blob)),
                           ("header", lambda: idx.read_header(p))):
            k, messages, result = sweep(call)
            points[(name, door)] = k
            if door == "header":
                assert result == (expect.dtype, expect.shape)
            else:
                assert result.tobytes() == expect.tobytes()
            assert k >= 1, (name, door)  # at least the reader itself is allocated
        # A failure leaves nothing behind that breaks the next call.
        assert idx.load(p).tobytes() == expect.tobytes()
    assert points[("u8.gz", "file")] > points[("u8.idx", "file")]  # zlib state and buffers


def test_idx_saving_survives_a_failure_at_every_allocation(tmp_path):
    for name, (p, expect) in _idx_files(tmp_path).items():
        target = tmp_path / ("out-" + name)
        idx.save(target, expect[:1])
        old = target.read_bytes()
        for k in range(400):
            try:
                with failing_alloc(k):
                    idx.save(target, expect)
            except MemoryError:
                assert target.read_bytes() == old, f"{name}: target changed by a failed save (k={k})"
                assert not [f for f in os.listdir(tmp_path) if ".tmp" in f], f"{name}: temp file left (k={k})"
                continue
            break
        else:
            raise AssertionError("save never succeeded")
        assert idx.load(target).tobytes() == expect.tobytes()


def fit_survives_a_failure_at_every_allocation(make, x, y, steps, min_points):
    """A failed allocation at each point of a 2-epoch fit: MemoryError between optimizer steps only,
    no change without a step (the moving statistics too: they move only in a step), finite weights,
    the model usable afterwards, and no trace in a later successful fit."""
    epochs = 2
    ref = make(seed=2)
    ref.fit(x, y, epochs=epochs, batch_size=8, shuffle=False, verbose=0)
    failures = 0
    for k in range(400):
        model = make(seed=2)
        before = weights_bytes(model)
        try:
            with failing_alloc(k):
                model.fit(x, y, epochs=epochs, batch_size=8, shuffle=False, verbose=0)
        except MemoryError:
            failures += 1
            it = model.optimizer.iterations
            assert it % steps == 0, f"k={k}: stopped inside an epoch ({it} steps)"
            if it == 0:
                assert weights_bytes(model) == before, f"k={k}: weights changed without an optimizer step"
            assert all(np.all(np.isfinite(w)) for w in model.get_weights())
            # usable afterwards: the lock is released and the rest of training runs
            model.fit(x, y, epochs=1, batch_size=8, verbose=0)
            assert np.all(np.isfinite(model.predict(x, verbose=0)))
            continue
        assert weights_bytes(model) == weights_bytes(ref), "an injected failure changed a later successful fit"
        break
    assert failures >= min_points, f"only {failures} allocation points in a 2-epoch fit"


def test_fit_survives_a_failure_at_every_allocation():
    x, y = make_data()
    fit_survives_a_failure_at_every_allocation(make_model, x, y, steps=5, min_points=2 * 3)


@pytest.mark.parametrize("entry", ["predict", "predict_on_batch", "evaluate", "train_on_batch", "test_on_batch"])
def test_inference_and_single_steps_survive_a_failure_at_every_allocation(entry):
    x, y = make_data()
    model = make_model()
    calls = {"predict": lambda: model.predict(x, verbose=0), "predict_on_batch": lambda: model.predict_on_batch(x),
             "evaluate": lambda: model.evaluate(x, y, verbose=0), "train_on_batch": lambda: model.train_on_batch(x, y),
             "test_on_batch": lambda: model.test_on_batch(x, y)}
    before = weights_bytes(model)
    expect = calls[entry]() if entry != "train_on_batch" else None
    model.set_weights([np.frombuffer(b, np.float32).reshape(w.shape) for b, w in zip(before, model.weights)])
    if entry == "train_on_batch":
        model.optimizer._iterations[0] = 0
    k, messages, result = sweep(calls[entry])
    assert k >= 1 and len(messages) == k
    if expect is not None:
        assert np.asarray(result).tobytes() == np.asarray(expect).tobytes()
    else:
        assert model.optimizer.iterations == 1  # the failed attempts took no step


def test_saving_never_reaches_the_c_allocator_and_survives_python_level_failures(tmp_path, monkeypatch):
    """Model files are written by Python (zip + npz): no C allocation to fail (k=0 succeeds). Failures
    injected at each step of the atomic write leave the old file and no temporary file."""
    model = make_model()
    for path, save in ((tmp_path / "m.keras", model.save), (tmp_path / "m.weights.npz", model.save_weights)):
        k, _, _ = sweep(lambda: save(path))
        assert k == 0
        old = path.read_bytes()
        other = make_model(seed=7)
        osave = other.save if path.suffix == ".keras" else other.save_weights

        def boom(*a, **kw):
            raise MemoryError("injected")

        for target in ("os.fsync", "os.replace", "os.fdopen", "tempfile.mkstemp", "numpy.savez"):
            mod_name, attr = target.rsplit(".", 1)
            mod = {"os": os, "tempfile": tempfile, "numpy": np}[mod_name]
            with monkeypatch.context() as m:
                m.setattr(mod, attr, boom)
                with pytest.raises(MemoryError):
                    osave(path)
            assert path.read_bytes() == old, target
            assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in tmp_path.iterdir()
                                                          if not p.name.startswith(".tmp-")), target
            assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")], target
        osave(path)
        assert path.read_bytes() != old


def make_convnet(seed=0):
    """Conv2D, BatchNormalization, both poolings, Dropout and a Dense head: every convolutional kind's
    scratch (pooling argmax, batch statistics) and inference's Winograd kernel (the second conv's)
    are allocated somewhere in the sweep."""
    mnistc.utils.set_random_seed(seed)
    model = mnistc.Sequential([mnistc.Input((10, 10, 1)), layers.Conv2D(16, 3, activation="relu"),
                               layers.BatchNormalization(), layers.MaxPooling2D(2),
                               layers.Conv2D(16, 3, padding="same"), layers.AveragePooling2D(2),
                               layers.Flatten(), layers.Dropout(0.5), layers.Dense(3, activation="softmax")])
    model.compile(mnistc.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_images(n=24, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 10, 10, 1), dtype=np.float32), rng.integers(0, 3, n)


def test_convnet_fit_survives_a_failure_at_every_allocation():
    x, y = make_images()
    fit_survives_a_failure_at_every_allocation(make_convnet, x, y, steps=3, min_points=2 * 2)


@pytest.mark.parametrize("entry", ["predict", "predict_on_batch", "evaluate", "train_on_batch", "test_on_batch"])
def test_convnet_inference_and_single_steps_survive_a_failure_at_every_allocation(entry):
    x, y = make_images()
    model = make_convnet()
    calls = {"predict": lambda: model.predict(x, batch_size=8, verbose=0),
             "predict_on_batch": lambda: model.predict_on_batch(x),
             "evaluate": lambda: model.evaluate(x, y, batch_size=8, verbose=0),
             "train_on_batch": lambda: model.train_on_batch(x, y), "test_on_batch": lambda: model.test_on_batch(x, y)}
    before = weights_bytes(model)
    expect = calls[entry]() if entry != "train_on_batch" else None
    k, messages, result = sweep(calls[entry])
    assert k >= 1 and len(messages) == k
    if expect is not None:
        assert np.asarray(result).tobytes() == np.asarray(expect).tobytes()
        assert weights_bytes(model) == before
    else:
        assert model.optimizer.iterations == 1  # the failed attempts took no step


# --- F5: Ctrl-C during fit ---

def _long_fit_model():
    mnistc.utils.set_random_seed(0)
    model = mnistc.Sequential([mnistc.Input((64,)), layers.Dense(256, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    return model, rng.random((20000, 64), dtype=np.float32), rng.integers(0, 10, 20000)


@pytest.mark.parametrize("batch_size", [32, 1024])
def test_ctrl_c_stops_fit_within_a_second(batch_size):
    model, x, y = _long_fit_model()
    fired = []

    def interrupt():
        fired.append(time.perf_counter())
        _thread.interrupt_main()

    timer = threading.Timer(0.3, interrupt)
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, epochs=1000, batch_size=batch_size, verbose=0)
            time.sleep(5)  # fit finished before the timer: the interrupt lands here and the check below fails
        stopped = time.perf_counter()
    finally:
        timer.cancel()
        timer.join()
    assert fired and fired[0] - t0 < 1.0
    assert stopped - fired[0] < 1.0, f"KeyboardInterrupt took {stopped - fired[0]:.2f} s"
    assert model.optimizer.iterations > 0
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    # usable: not locked, trains and predicts
    it = model.optimizer.iterations
    model.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    assert model.optimizer.iterations == it + 4
    assert np.all(np.isfinite(model.predict(x[:100], verbose=0)))


# --- F4: SIGKILL during save ---

KILL_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import mnistc
    from mnistc import layers
    from mnistc.datasets import idx
    folder = sys.argv[1]
    model = mnistc.Sequential([mnistc.Input((64,)), layers.Dense(256), layers.Dense(10)])
    shapes = [w.shape for w in model.weights]
    r = 0
    while True:
        r += 1
        model.set_weights([np.full(s, r, np.float32) for s in shapes])
        model.save(folder + "/m.keras")
        model.save_weights(folder + "/m.weights.npz")
        idx.save(folder + "/m.idx.gz", np.full((64, 256), r, np.float32))
        print(r, flush=True)
""")


def _single_round(arrays):
    """The round number if every value of every array is the same round, else None (torn)."""
    values = {float(v) for a in arrays for v in np.unique(a)}
    return int(values.pop()) if len(values) == 1 else None


def kill_during_save(rounds, tmp_path, seed=0):
    """Run the saving child `rounds` times, SIGKILL it at a random moment; returns (loads, torn)."""
    rng = random.Random(seed)
    template = mnistc.Sequential([mnistc.Input((64,)), layers.Dense(256), layers.Dense(10)])
    loads = torn = 0
    for i in range(rounds):
        child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            # wait for the first complete round, then kill at a random moment of a later one
            assert child.stdout.readline().strip() != "", child.stderr.read()
            time.sleep(rng.uniform(0.0, 0.2))
        finally:
            child.send_signal(signal.SIGKILL)
            child.communicate()
        assert child.returncode == -signal.SIGKILL
        for check in ("keras", "weights", "idx"):
            try:
                if check == "keras":
                    arrays = mnistc.load_model(tmp_path / "m.keras").get_weights()
                elif check == "weights":
                    template.load_weights(tmp_path / "m.weights.npz")
                    arrays = template.get_weights()
                else:
                    arrays = [idx.load(tmp_path / "m.idx.gz")]
            except (ValueError, OSError) as e:
                torn += 1
                print(f"round {i}: {check} does not load: {e}")
                continue
            if _single_round(arrays) is None:
                torn += 1
            loads += 1
        # leftovers of a killed save are temp files only, never a damaged target
        names = set(os.listdir(tmp_path))
        assert {"m.keras", "m.weights.npz", "m.idx.gz"} <= names
        for extra in names - {"m.keras", "m.weights.npz", "m.idx.gz"}:
            assert extra.startswith(".tmp") or ".tmp" in extra, extra
            os.unlink(tmp_path / extra)
    return loads, torn


def test_sigkill_during_save_never_tears_the_target(tmp_path):
    loads, torn = kill_during_save(4, tmp_path)
    assert torn == 0 and loads == 12


@pytest.mark.slow
def test_sigkill_during_save_never_tears_the_target_30_rounds(tmp_path):
    loads, torn = kill_during_save(30, tmp_path, seed=1)
    assert torn == 0 and loads == 90


# --- F3: full disk ---

@pytest.fixture
def small_tmpfs():
    """A 64 KiB tmpfs mounted for the test (root only). Under CI=true (root) it must work."""
    folder = tempfile.mkdtemp(prefix="mnistc-tmpfs-")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder], capture_output=True,
                           text=True)
    except FileNotFoundError as e:
        r = subprocess.CompletedProcess([], 1, "", str(e))
    if r.returncode != 0:
        os.rmdir(folder)
        if IN_CI:
            pytest.fail(f"CI=true but mounting a tmpfs failed: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield Path(folder)
    finally:
        subprocess.run(["umount", folder], check=False)
        os.rmdir(folder)


def test_full_disk_raises_enospc_and_keeps_the_old_file(small_tmpfs):
    small = make_model()
    big = make_model(n_in=784, units=64)  # ~200 KB of weights
    for name, save_small, save_big in (
            ("m.keras", small.save, big.save),
            ("m.weights.npz", lambda p: make_model().save_weights(p),
             lambda p: make_model(n_in=784, units=64).save_weights(p)),
            ("m.idx", lambda p: idx.save(p, np.zeros(100, np.float32)),
             lambda p: idx.save(p, np.ones((300, 100), np.float32))),
            ("m.idx.gz", lambda p: idx.save(p, np.zeros(100, np.float32)),
             lambda p: idx.save(p, np.random.default_rng(0).standard_normal((300, 100)).astype(np.float32)))):
        target = small_tmpfs / name
        save_small(target)
        old = target.read_bytes()
        with pytest.raises(OSError) as info:
            save_big(target)
        assert info.value.errno == errno.ENOSPC, (name, info.value)
        assert target.read_bytes() == old, name
        assert os.listdir(small_tmpfs) == [name], (name, os.listdir(small_tmpfs))
        target.unlink()


# --- F6: unwritable targets ---

def test_save_onto_a_directory_or_into_a_missing_folder(tmp_path):
    model = make_model()
    (tmp_path / "d.keras").mkdir()
    (tmp_path / "d.weights.npz").mkdir()
    (tmp_path / "d.idx").mkdir()
    for exc, call in ((IsADirectoryError, lambda: model.save(tmp_path / "d.keras")),
                      (IsADirectoryError, lambda: model.save_weights(tmp_path / "d.weights.npz")),
                      (IsADirectoryError, lambda: idx.save(tmp_path / "d.idx", np.zeros(3, np.uint8))),
                      (FileNotFoundError, lambda: model.save(tmp_path / "missing" / "m.keras")),
                      (FileNotFoundError, lambda: model.save_weights(tmp_path / "missing" / "m.weights.npz")),
                      (FileNotFoundError, lambda: idx.save(tmp_path / "missing" / "m.idx", np.zeros(3, np.uint8)))):
        with pytest.raises(exc):
            call()
    assert sorted(os.listdir(tmp_path)) == ["d.idx", "d.keras", "d.weights.npz"]
    assert all(os.listdir(tmp_path / d) == [] for d in os.listdir(tmp_path))


def test_save_into_a_read_only_folder_is_a_permission_error(tmp_path):
    """Root ignores directory modes, so as root the save runs in a forked child that dropped to
    uid/gid 65534 (the module is already imported there; nothing else needs reading)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    model = make_model()
    model.save(folder / "m.keras")
    old = (folder / "m.keras").read_bytes()
    folder.chmod(0o555)
    tmp_path.chmod(0o755)

    def attempt():
        out = {}
        for name, call in (("keras", lambda: model.save(folder / "m.keras")),
                           ("weights", lambda: model.save_weights(folder / "m.weights.npz")),
                           ("idx", lambda: idx.save(folder / "m.idx", np.zeros(3, np.uint8)))):
            try:
                call()
                out[name] = "saved"
            except Exception as e:  # reported to the parent
                out[name] = type(e).__name__
        return out

    try:
        if os.geteuid() != 0:
            result = attempt()
        else:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: drop privileges, try, report, exit without cleanup
                try:
                    os.close(r)
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                    os.write(w, repr(attempt()).encode())
                finally:
                    os._exit(0)
            os.close(w)
            with os.fdopen(r) as f:
                text = f.read()
            os.waitpid(pid, 0)
            result = eval(text, {})  # a dict literal of str written by our own child
        assert result == {"keras": "PermissionError", "weights": "PermissionError", "idx": "PermissionError"}
    finally:
        folder.chmod(0o755)
    assert (folder / "m.keras").read_bytes() == old
    assert os.listdir(folder) == ["m.keras"]


def test_save_onto_a_read_only_filesystem_is_erofs(small_tmpfs):
    model = make_model()
    model.save(small_tmpfs / "m.keras")
    old = (small_tmpfs / "m.keras").read_bytes()
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        for call in (lambda: model.save(small_tmpfs / "m.keras"),
                     lambda: model.save_weights(small_tmpfs / "m.weights.npz"),
                     lambda: idx.save(small_tmpfs / "m.idx", np.zeros(3, np.uint8))):
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == errno.EROFS
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_tmpfs)], check=False)
    assert (small_tmpfs / "m.keras").read_bytes() == old
    assert os.listdir(small_tmpfs) == ["m.keras"]
