"""CSVLogger writes what Keras 3's does: epoch first, keys sorted, val_ columns always, header once,
append mode, custom separator; the values are fit's epoch logs."""
import csv

import numpy as np
import pytest

import mnistc


def model_and_data():
    rng = np.random.default_rng(0)
    x = rng.random((64, 5), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    mnistc.utils.set_random_seed(1)
    model = mnistc.Sequential([mnistc.Input((5,)), mnistc.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, x, y


def test_rows_hold_the_epoch_logs(tmp_path):
    model, x, y = model_and_data()
    path = tmp_path / "log.csv"
    h = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0,
                  callbacks=[mnistc.callbacks.CSVLogger(path)])
    raw = path.read_bytes()
    assert raw.startswith(b"epoch,accuracy,loss,val_accuracy,val_loss\r\n") and raw.count(b"\r\n") == 4
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    for key in ("accuracy", "loss", "val_accuracy", "val_loss"):
        assert [float(r[key]) for r in rows] == h.history[key]  # written with repr: exact


def test_without_validation_the_val_columns_say_na(tmp_path):
    model, x, y = model_and_data()
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, verbose=0, callbacks=[mnistc.callbacks.CSVLogger(path)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1"]
    assert all(line.endswith(",NA,NA") for line in lines[1:])


def test_append_writes_the_header_once_and_overwrite_starts_afresh(tmp_path):
    model, x, y = model_and_data()
    path = tmp_path / "log.csv"
    for _ in range(2):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[mnistc.callbacks.CSVLogger(path, append=True)])
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and lines.count(lines[0]) == 1 and lines[0].startswith("epoch,")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[mnistc.callbacks.CSVLogger(path)])
    assert len(path.read_text().splitlines()) == 2


def test_append_to_an_empty_file_writes_the_header(tmp_path):
    model, x, y = model_and_data()
    path = tmp_path / "log.csv"
    path.write_text("")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[mnistc.callbacks.CSVLogger(path, append=True)])
    assert path.read_text().splitlines()[0] == "epoch,accuracy,loss,val_accuracy,val_loss"


def test_separator_and_callback_driven_values(tmp_path):
    path = tmp_path / "log.tsv"
    cb = mnistc.callbacks.CSVLogger(str(path), separator="\t")
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.25, "sizes": [1, 2], "lr": np.float32(0.5)})
    cb.on_epoch_end(1, {"loss": 0.125})
    cb.on_train_end()
    assert path.read_bytes() == (b'epoch\tloss\tlr\tsizes\tval_loss\r\n0\t0.5\t0.5\t"""[1, 2]"""\t0.25\r\n'
                                 b"1\t0.125\tNA\tNA\tNA\r\n")
    assert cb.csv_file.closed


def test_bad_separator_is_refused():
    with pytest.raises(ValueError, match="`separator` must be a single character"):
        mnistc.callbacks.CSVLogger("x.csv", separator=", ")
