"""Callbacks and the progress output."""
import io
import re
import sys

import numpy as np
import pytest

import mnistc
from mnistc import callbacks, layers
from mnistc.progbar import Progbar


def data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 10), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64) + (x[:, 1] > 0.5)
    return x, y


def model_():
    m = mnistc.Sequential([mnistc.Input((10,)), layers.Dense(16, activation="relu"),
                           layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_batch_hooks_run_once_per_batch_with_running_logs():
    x, y = data()
    seen = []
    cb = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append((b, dict(logs))))
    model_().fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    assert [b for b, _ in seen] == list(range(7)) * 2
    assert all(set(l) == {"loss", "accuracy"} for _, l in seen)


def test_hook_order_and_model_attribute():
    x, y = data()
    calls = []

    class Rec(callbacks.Callback):
        def on_train_begin(self, logs=None): calls.append("train_begin")
        def on_epoch_begin(self, epoch, logs=None): calls.append(f"epoch_begin {epoch}")
        def on_epoch_end(self, epoch, logs=None): calls.append(f"epoch_end {epoch} {sorted(logs)}")
        def on_train_end(self, logs=None): calls.append("train_end")

    rec = Rec()
    m = model_()
    m.fit(x, y, epochs=2, verbose=0, validation_split=0.2, callbacks=[rec])
    assert rec.model is m
    keys = "['accuracy', 'loss', 'val_accuracy', 'val_loss']"
    assert calls == ["train_begin", "epoch_begin 0", f"epoch_end 0 {keys}", "epoch_begin 1",
                     f"epoch_end 1 {keys}", "train_end"]


def test_stop_training_from_a_batch_hook_stops_within_the_epoch():
    x, y = data()

    class StopAt3(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 3:
                self.model.stop_training = True

    m = model_()
    h = m.fit(x, y, epochs=5, batch_size=10, verbose=0, callbacks=[StopAt3()])
    assert len(h.epoch) == 1
    assert m.optimizer.iterations == 4


def test_early_stopping_with_restore_best_weights():
    x, y = data()
    m = model_()
    m.compile(mnistc.optimizers.SGD(1e-9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    es = callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=1.0, restore_best_weights=True)
    w0 = m.get_weights()
    h = m.fit(x, y, epochs=10, verbose=0, callbacks=[es])
    assert len(h.epoch) == 2                                # no improvement by 1.0: stop after epoch 2
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(w0, m.get_weights()))


def test_early_stopping_missing_monitor_warns():
    x, y = data()
    with pytest.warns(UserWarning, match="not available"):
        model_().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.EarlyStopping()])


def test_model_checkpoint_best_only(tmp_path):
    x, y = data()
    cb = callbacks.ModelCheckpoint(str(tmp_path / "ck_{epoch:02d}.keras"), monitor="loss", save_best_only=True)
    model_().fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "ck_01.keras" and len(files) >= 2
    with pytest.raises(ValueError, match="must end in `.weights.npz`"):
        callbacks.ModelCheckpoint("w.h5", save_weights_only=True)


def test_terminate_on_nan(capsys):
    x, y = data()
    m = mnistc.Sequential([mnistc.Input((10,)), layers.Dense(1)])
    m.compile(mnistc.optimizers.SGD(1e6), "mse")
    h = m.fit(x * 1e3 - 500, y.astype(np.float32) * 1e6, epochs=3, batch_size=8, verbose=0,
              callbacks=[callbacks.TerminateOnNaN()])
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    assert len(h.epoch) == 1


def test_learning_rate_scheduler_and_reduce_on_plateau():
    x, y = data()
    m = model_()
    h = m.fit(x, y, epochs=3, verbose=0,
              callbacks=[callbacks.LearningRateScheduler(lambda e, lr: 1e-3 / (e + 1))])
    assert h.history["learning_rate"] == pytest.approx([1e-3, 5e-4, 1e-3 / 3])
    m2 = model_()
    m2.compile(mnistc.optimizers.SGD(1e-9), "sparse_categorical_crossentropy")
    m2.fit(x, y, epochs=4, verbose=0,
           callbacks=[callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1.0)])
    assert m2.optimizer.learning_rate < 1e-9


def test_progress_output_when_not_a_terminal(capsys):
    x, y = data()
    model_().fit(x, y, epochs=2, batch_size=50, verbose=1, validation_split=0.5)
    out = capsys.readouterr().out
    assert "\r" not in out and "\b" not in out
    lines = out.strip().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert re.fullmatch(r"2/2 ━{20} \d+s \d+(ms|us|s)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4} - "
                        r"val_accuracy: \d\.\d{4} - val_loss: \d\.\d{4}", lines[1]), lines[1]


def test_verbose_2_one_line_per_epoch(capsys):
    x, y = data()
    model_().fit(x, y, epochs=1, batch_size=50, verbose=2)
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(r"4/4 - \d+s - \d+(ms|us|s)/step - accuracy: \d\.\d{4} - loss: \d\.\d{4}", out), out


def test_verbose_0_prints_nothing(capsys):
    x, y = data()
    m = model_()
    m.fit(x, y, epochs=2, verbose=0)
    m.evaluate(x, y, verbose=0)
    m.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_progbar_redraws_in_place_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    bar = Progbar(3, stream=s, interval=0)
    for i in range(1, 3):
        bar.update(i, {"loss": 0.5})
    bar.update(3, {"loss": 0.25}, finalize=True)
    text = s.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "3/3" in text and "loss: 0.2500" in text and "\33[32m" in text


def test_progbar_time_per_step_is_time_so_far_over_steps_so_far(monkeypatch):
    """Updates arrive every 50 ms, not every step (here first at step 40): the per-step time is the
    elapsed time over the steps done, not the time since the first update over all steps but one."""
    import mnistc.progbar as pb
    clock = iter([0.0, 0.006, 0.03])  # start, first update (step 40), final (step 100)
    monkeypatch.setattr(pb.time, "perf_counter", lambda: next(clock))
    s = io.StringIO()
    bar = Progbar(100, verbose=2, stream=s)
    bar.update(40, {"loss": 0.5})
    bar.update(100, {"loss": 0.25}, finalize=True)
    assert "300us/step" in s.getvalue(), s.getvalue()  # 400 since the first update, 242 over 99 steps


def test_value_format_switches_to_exponent_for_small_values():
    from mnistc.progbar import format_value
    assert format_value(0.25) == "0.2500" and format_value(0.0001) == "1.0000e-04"
