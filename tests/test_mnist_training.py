"""The seed workflow on the real MNIST: 5 epochs of the 784-128-10 MLP, then fine-tuning the head,
and the main job `python -m mnistc` end to end."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import mnistc


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return mnistc.datasets.mnist.load_data(mnist_dir)


@pytest.mark.slow
def test_seed_mlp_reaches_97_3_percent_and_fine_tuning_keeps_frozen_weights(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    x_train, x_test = x_train / 255.0, x_test / 255.0
    mnistc.utils.set_random_seed(0)
    model = mnistc.Sequential([
        mnistc.layers.Flatten(input_shape=(28, 28)),
        mnistc.layers.Dense(128, activation="relu"),
        mnistc.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=mnistc.optimizers.Adam(), loss=mnistc.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    h = model.fit(x_train, y_train, epochs=5, batch_size=128, validation_data=(x_test, y_test), verbose=0)
    assert h.history["val_accuracy"][-1] >= 0.973, h.history
    assert h.history["loss"] == sorted(h.history["loss"], reverse=True)

    for layer in model.layers[:-1]:
        layer.trainable = False
    body = [w.copy() for layer in model.layers[:-1] for w in layer.weights]
    model.compile(optimizer=mnistc.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h2 = model.fit(x_train, y_train, epochs=2, batch_size=128, validation_data=(x_test, y_test), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(body, [w for l in model.layers[:-1] for w in l.weights]))
    assert h2.history["val_accuracy"][-1] >= 0.973


@pytest.mark.slow
def test_main_job_runs_end_to_end(tmp_path, mnist_dir):
    out = tmp_path / "model.keras"
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "mnistc", "--data-dir", str(mnist_dir.parent), "--epochs", "1",
                        "--fine-tune-epochs", "1", "--verbose", "2", "--output", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Total params: 101,770" in r.stdout
    assert re.search(r"frozen body weights bit-identical: +yes", r.stdout)
    acc = float(re.search(r"test accuracy: +([0-9.]+)", r.stdout).group(1))
    assert acc > 0.93
    model = mnistc.load_model(out)
    assert model.count_params() == 101_770


@pytest.mark.parametrize("args, message", [
    (["--output", "model.h5"], "--output must name a .keras file"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    (["--fine-tune-epochs", "-1"], "argument --fine-tune-epochs: expected an integer >= 0, got -1"),
])
def test_main_job_refuses_bad_arguments_before_training(args, message, tmp_path):
    """A bad argument is reported at once (usage error, exit 2), not after the training it would
    have wasted; nothing is written."""
    r = subprocess.run([sys.executable, "-m", "mnistc", "--data-dir", str(tmp_path), *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Epoch" not in r.stdout and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_readme_example_runs_as_written(mnist_dir, monkeypatch, capsys):
    """The README's workflow block, executed verbatim (data from $MNISTC_DATA_DIR, as the README's
    commands set it): it trains, fine-tunes, and the frozen body keeps its weights."""
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.setenv("MNISTC_DATA_DIR", str(Path(mnist_dir).parent))
    mnistc.utils.set_random_seed(0)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    model = scope["model"]
    assert [l.trainable for l in model.layers] == [False, False, True]
    assert model.evaluate(scope["x_test"], scope["y_test"], verbose=0)[1] >= 0.973
    assert "Epoch 5/5" in capsys.readouterr().out


def tutorial_convnet(mnist, seed):
    """Keras's "Simple MNIST convnet" (keras.io/examples/vision/mnist_convnet): its data preparation
    and model, compiled as it compiles them."""
    (x_train, y_train), (x_test, y_test) = mnist
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
    y_train = mnistc.utils.to_categorical(y_train, 10)
    y_test = mnistc.utils.to_categorical(y_test, 10)
    mnistc.utils.set_random_seed(seed)
    layers = mnistc.layers
    model = mnistc.Sequential([
        mnistc.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model, (x_train, y_train), (x_test, y_test)


# Keras 3.15.1 on TensorFlow, the same model and settings, seed 0: 97.52%, 98.38%, 98.65% test accuracy
# after epochs 1-3 (bench/RESULTS.md, "Design measurements").
EPOCHS, ACCURACY = 3, 0.983


@pytest.mark.slow
def test_keras_convnet_example_learns_mnist(mnist):
    """The tutorial's convnet for 3 epochs on the real MNIST, the test set as validation data."""
    model, (x_train, y_train), (x_test, y_test) = tutorial_convnet(mnist, seed=1)
    h = model.fit(x_train, y_train, batch_size=128, epochs=EPOCHS, validation_data=(x_test, y_test), verbose=0)
    assert h.history["loss"] == sorted(h.history["loss"], reverse=True)
    assert h.history["val_accuracy"][-1] >= ACCURACY, h.history


@pytest.mark.slow
def test_keras_convnet_example_as_written_reaches_99_percent(mnist):
    """The tutorial as it runs: 15 epochs of batch 128, a tenth of the training set held out for
    validation, then the test set evaluated: Keras on TensorFlow scored 99.22% and 99.06%, mnistc
    99.15% to 99.23% (bench/RESULTS.md, "Design measurements"). Neither reaches 99.0% in 3 epochs."""
    model, (x_train, y_train), (x_test, y_test) = tutorial_convnet(mnist, seed=0)
    h = model.fit(x_train, y_train, batch_size=128, epochs=15, validation_split=0.1, verbose=0)
    assert len(h.history["val_accuracy"]) == 15 and h.history["val_accuracy"][-1] >= 0.985, h.history
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.990, (loss, accuracy)
