"""Weights (.weights.npz) and whole models (.keras) round-trip, load without pickle, and bad files
raise FormatError leaving the model untouched."""
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import mnistc
from mnistc import layers


def trained(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((60, 6), dtype=np.float32)
    y = rng.integers(0, 3, 60)
    model = mnistc.Sequential([mnistc.Input((6,)), layers.Dense(5, activation="relu"), layers.Dropout(0.1),
                               layers.Dense(3, activation="softmax")])
    model.compile(mnistc.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model, x, y


def test_weights_round_trip_and_plain_numpy(tmp_path):
    model, x, _ = trained()
    path = tmp_path / "m.weights.npz"
    model.save_weights(path)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["layers/dense/vars/0", "layers/dense/vars/1",
                                   "layers/dense_1/vars/0", "layers/dense_1/vars/1"]
        np.testing.assert_array_equal(z["layers/dense/vars/0"], model.layers[0].kernel)
    twin, _, _ = trained(seed=1)
    twin.load_weights(path)
    np.testing.assert_array_equal(twin.predict(x, verbose=0), model.predict(x, verbose=0))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_weights_filename_must_end_in_weights_npz(tmp_path):
    model, _, _ = trained()
    with pytest.raises(ValueError, match="must end in `.weights.npz`"):
        model.save_weights(tmp_path / "m.h5")


def test_model_round_trip_restores_compile_and_optimizer(tmp_path):
    model, x, y = trained()
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = mnistc.models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == ["Dense", "Dropout", "Dense"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.optimizer.iterations == model.optimizer.iterations == 8
    assert loaded.optimizer.learning_rate == 0.01
    for a, b in zip(loaded.optimizer._slots, model.optimizer._slots):
        np.testing.assert_array_equal(a, b)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) == {"metadata.json", "config.json", "model.weights.npz"}
        json.loads(zf.read("config.json"))


def test_functional_model_round_trip(tmp_path):
    inputs = mnistc.Input((4,))
    out = layers.Dense(2, activation="softmax")(layers.Dense(3, activation="tanh")(inputs))
    model = mnistc.Model(inputs, out)
    model.save(tmp_path / "f.keras")
    loaded = mnistc.load_model(tmp_path / "f.keras")
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def _bad_weight_files(tmp_path, good):
    data = good.read_bytes()
    files = {
        "empty": b"",
        "seven bytes": data[:7],
        "truncated": data[: len(data) // 2],
        "not a zip": b"\x93NUMPY" + data[6:],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            blob = src.read(info)
            if info.filename == "layers/dense/vars/0.npy":
                arr = np.lib.format.read_array(io.BytesIO(blob))
                arr[0, 0] = np.nan
                out = io.BytesIO()
                np.lib.format.write_array(out, arr)
                blob = out.getvalue()
            dst.writestr(info.filename, blob)
    files["nan"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            if info.filename != "layers/dense_1/vars/1.npy":
                dst.writestr(info.filename, src.read(info))
    files["missing array"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        out = io.BytesIO()
        np.save(out, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        dst.writestr("layers/evil/vars/0.npy", out.getvalue())
    files["extra pickled entry"] = buf.getvalue()
    flipped = bytearray(data)
    flipped[len(flipped) // 3] ^= 0x10
    files["flipped bit"] = bytes(flipped)
    return files


def test_bad_weight_files_raise_format_error_and_leave_the_model(tmp_path):
    model, x, _ = trained()
    good = tmp_path / "good.weights.npz"
    model.save_weights(good)
    before = model.get_weights()
    for name, blob in _bad_weight_files(tmp_path, good).items():
        p = tmp_path / "bad.weights.npz"
        p.write_bytes(blob)
        with pytest.raises(ValueError) as info:
            model.load_weights(p)
        assert isinstance(info.value, mnistc.FormatError), name
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), name


def test_shape_mismatch_names_both_shapes(tmp_path):
    model, _, _ = trained()
    other = mnistc.Sequential([mnistc.Input((6,)), layers.Dense(7), layers.Dense(3)])
    p = tmp_path / "o.weights.npz"
    other.save_weights(p)
    with pytest.raises(ValueError, match=r"file shape \(6, 7\) vs model shape \(6, 5\)"):
        model.load_weights(p)


def test_a_pickle_under_the_expected_name_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "evil.keras"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(mnistc.FormatError, match="not a mnistc model file"):
        mnistc.load_model(p)
    p2 = tmp_path / "evil.weights.npz"
    p2.write_bytes(pickle.dumps(Evil()))
    model, _, _ = trained()
    with pytest.raises(mnistc.FormatError):
        model.load_weights(p2)
    assert not marker.exists()


def test_missing_file_is_file_not_found(tmp_path):
    model, _, _ = trained()
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "nope.weights.npz")
    with pytest.raises(FileNotFoundError):
        mnistc.load_model(tmp_path / "nope.keras")


def test_save_is_atomic_old_file_kept_on_failure(tmp_path, monkeypatch):
    model, _, _ = trained()
    p = tmp_path / "m.keras"
    model.save(p)
    old = p.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space left"):
        model.save(p)
    monkeypatch.undo()
    assert p.read_bytes() == old
    assert [f.name for f in tmp_path.iterdir()] == ["m.keras"]


def test_unbuilt_model_cannot_be_saved(tmp_path):
    model = mnistc.Sequential([layers.Dense(2)])
    with pytest.raises(ValueError, match="not yet been built"):
        model.save(tmp_path / "x.keras")
    with pytest.raises(ValueError, match="extension"):
        trained()[0].save(tmp_path / "x.pkl")
