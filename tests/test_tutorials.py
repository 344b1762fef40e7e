"""Tutorial programs run on mnistc with only their import lines changed.

Each program below is kept as its tutorial has it; `port` swaps its import lines (and nothing else)
for mnistc's, and the result runs in a fresh interpreter on the real MNIST ($MNISTC_DATA_DIR), as
a user would run it. Notebook tutorials run cell by cell the way a notebook shows them: the value
of a bare expression statement is displayed (here as one `Out[i]: <json>` line), so the test can
check what the tutorial's reader is shown.
"""
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mnistc

# tensorflow.org/tutorials/quickstart/beginner ("TensorFlow 2 quickstart for beginners"), its code
# cells in order
TF_QUICKSTART = """\
import tensorflow as tf
print("TensorFlow version:", tf.__version__)

mnist = tf.keras.datasets.mnist

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train, x_test = x_train / 255.0, x_test / 255.0

model = tf.keras.models.Sequential([
  tf.keras.layers.Flatten(input_shape=(28, 28)),
  tf.keras.layers.Dense(128, activation='relu'),
  tf.keras.layers.Dropout(0.2),
  tf.keras.layers.Dense(10)
])

predictions = model(x_train[:1]).numpy()
predictions

tf.nn.softmax(predictions).numpy()

loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

loss_fn(y_train[:1], predictions).numpy()

model.compile(optimizer='adam',
              loss=loss_fn,
              metrics=['accuracy'])

model.fit(x_train, y_train, epochs=5)

model.evaluate(x_test,  y_test, verbose=2)

probability_model = tf.keras.Sequential([
  model,
  tf.keras.layers.Softmax()
])

probability_model(x_test[:5])
"""

# Keras 2 (keras-team/keras 2.2.x), examples/mnist_mlp.py
KERAS2_MNIST_MLP = """\
'''Trains a simple deep NN on the MNIST dataset.

Gets to 98.40% test accuracy after 20 epochs
(there is *a lot* of margin for parameter tuning).
2 seconds per epoch on a K520 GPU.
'''

from __future__ import print_function

import keras
from keras.datasets import mnist
from keras.models import Sequential
from keras.layers import Dense, Dropout
from keras.optimizers import RMSprop

batch_size = 128
num_classes = 10
epochs = 20

# the data, split between train and test sets
(x_train, y_train), (x_test, y_test) = mnist.load_data()

x_train = x_train.reshape(60000, 784)
x_test = x_test.reshape(10000, 784)
x_train = x_train.astype('float32')
x_test = x_test.astype('float32')
x_train /= 255
x_test /= 255
print(x_train.shape[0], 'train samples')
print(x_test.shape[0], 'test samples')

# convert class vectors to binary class matrices
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = Sequential()
model.add(Dense(512, activation='relu', input_shape=(784,)))
model.add(Dropout(0.2))
model.add(Dense(512, activation='relu'))
model.add(Dropout(0.2))
model.add(Dense(num_classes, activation='softmax'))

model.summary()

model.compile(loss='categorical_crossentropy',
              optimizer=RMSprop(),
              metrics=['accuracy'])

history = model.fit(x_train, y_train,
                    batch_size=batch_size,
                    epochs=epochs,
                    verbose=1,
                    validation_data=(x_test, y_test))
score = model.evaluate(x_test, y_test, verbose=0)
print('Test loss:', score[0])
print('Test accuracy:', score[1])
"""

# mnistc's seed workflow (the README's example) as TensorFlow code: train the 784-128-10 MLP with
# integer labels and the sparse loss, freeze the body with layer.trainable = False, compile again
# and fine-tune the head
TF_SEED_WORKFLOW = """\
import numpy as np
import tensorflow as tf

(x_train, y_train), (x_test, y_test) = tf.keras.datasets.mnist.load_data()
x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255
model = tf.keras.Sequential([
    tf.keras.layers.Flatten(input_shape=(28, 28)),
    tf.keras.layers.Dense(128, activation="relu"),
    tf.keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=tf.keras.optimizers.Adam(), loss=tf.keras.losses.SparseCategoricalCrossentropy(),
              metrics=["accuracy"])
model.fit(x_train, y_train, epochs=5, batch_size=128, validation_data=(x_test, y_test), verbose=2)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print("trained: test accuracy", accuracy)

body = [w for layer in model.layers[:-1] for w in layer.get_weights()]
head = model.layers[-1].get_weights()
for layer in model.layers[:-1]:
    layer.trainable = False
model.compile(optimizer=tf.keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x_train, y_train, epochs=2, batch_size=128, validation_data=(x_test, y_test), verbose=2)
print("fine-tuned: test accuracy", history.history["val_accuracy"][-1])
print("body unchanged:", all(np.array_equal(a, b) for a, b in
                             zip(body, [w for layer in model.layers[:-1] for w in layer.get_weights()])))
print("head changed:", not all(np.array_equal(a, b) for a, b in zip(head, model.layers[-1].get_weights())))
"""

# A notebook's way of running a program: statement by statement in one namespace, showing the
# value of each bare expression statement that is not None (arrays as JSON lists).
NOTEBOOK_RUNNER = textwrap.dedent("""\
    import ast, json, sys
    import numpy as np
    source = open(sys.argv[1]).read()
    namespace = {"__name__": "__main__"}
    shown = 0
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), sys.argv[1], "eval"), namespace)
            if value is not None:
                if hasattr(value, "shape") or isinstance(value, (list, tuple, float, int)):
                    value = np.asarray(value, dtype=np.float64).tolist()
                else:
                    value = repr(value)
                print(f"Out[{shown}]: {json.dumps(value)}", flush=True)
                shown += 1
        else:
            exec(compile(ast.Module([node], []), sys.argv[1], "exec"), namespace)
""")


def port(program, imports):
    """program with each line that is a key of `imports` replaced by its value: only import lines."""
    lines = program.splitlines(keepends=True)
    for old, new in imports.items():
        assert re.fullmatch(r"(import|from) \S+( import .+| as \w+)?", old), old
        assert old + "\n" in lines, f"{old!r} is not a line of the program"
        lines = [new + "\n" if line == old + "\n" else line for line in lines]
    return "".join(lines)


def run(source, tmp_path, data_dir, notebook=False, timeout=600):
    """Run the program in a fresh interpreter on this mnistc; (stdout, stderr), exit code 0 checked."""
    program = tmp_path / "program.py"
    program.write_text(source)
    argv = [sys.executable, str(program)]
    if notebook:
        runner = tmp_path / "notebook_runner.py"
        runner.write_text(NOTEBOOK_RUNNER)
        argv = [sys.executable, str(runner), str(program)]
    tested = str(Path(mnistc.__file__).resolve().parents[1])   # this mnistc, not another install
    env = dict(os.environ, MNISTC_DATA_DIR=str(data_dir),
               PYTHONPATH=os.pathsep.join(p for p in (tested, os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stdout, r.stderr


def shown_values(stdout):
    return [json.loads(line.split(": ", 1)[1]) for line in stdout.splitlines() if re.match(r"Out\[\d+\]: ", line)]


def progress_lines(stdout):
    """The progress bar's lines as a terminal leaves them (each '\\r' redraw overwrites the line)."""
    return [line.rsplit("\r", 1)[-1] for line in stdout.splitlines()]


def reference_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_tensorflow_beginner_quickstart(mnist_dir, tmp_path):
    source = port(TF_QUICKSTART, {"import tensorflow as tf": "import mnistc as tf"})
    stdout, _ = run(source, tmp_path, mnist_dir.parent, notebook=True)
    assert stdout.startswith(f"TensorFlow version: {mnistc.__version__}\n")
    predictions, probabilities, initial_loss, history, evaluated, final_probabilities = shown_values(stdout)
    # the untrained model's logits, their softmax and the loss of the first label
    assert np.shape(predictions) == (1, 10) and np.all(np.isfinite(predictions))
    np.testing.assert_allclose(probabilities, reference_softmax(predictions), rtol=1e-6, atol=1e-7)
    (_, y_train), (x_test, y_test) = mnistc.datasets.mnist.load_data(mnist_dir)
    expected_loss = -np.log(reference_softmax(predictions)[0, y_train[0]])
    assert np.shape(initial_loss) == () and abs(initial_loss - expected_loss) < 1e-5 * max(1, expected_loss)
    assert 0.5 < initial_loss < 6.0    # about -log(1/10) = 2.3 for an untrained model
    assert history.startswith("<mnistc.callbacks.History")
    # training: five epochs of 1875 steps with loss and accuracy, then evaluate's verbose=2 line
    lines = progress_lines(stdout)
    epochs = [i for i, line in enumerate(lines) if re.fullmatch(r"Epoch [1-5]/5", line)]
    assert len(epochs) == 5
    ends = [lines[i + 1] for i in epochs]
    assert all(re.match(r"1875/1875 .* - accuracy: 0\.\d{4} - loss: \d\.\d{4}$", end) for end in ends), ends
    train_accuracy = [float(re.search(r"accuracy: (\S+)", end).group(1)) for end in ends]
    assert train_accuracy[-1] > train_accuracy[0]
    loss, accuracy = evaluated
    line = next(line for line in lines if line.startswith("313/313 - "))
    assert re.search(rf"- accuracy: {accuracy:.4f} - loss: {loss:.4f}$", line), line
    assert accuracy >= 0.97 and loss < 0.1    # the tutorial: "about 98% accuracy"
    # the probability model: the trained model's softmax, rows summing to 1, the first five digits right
    final_probabilities = np.asarray(final_probabilities)
    assert final_probabilities.shape == (5, 10)
    np.testing.assert_allclose(final_probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert list(final_probabilities.argmax(axis=1)) == list(y_test[:5])


@pytest.mark.slow
def test_keras2_mnist_mlp_example(mnist_dir, tmp_path):
    source = port(KERAS2_MNIST_MLP, {
        "import keras": "import mnistc as keras",
        "from keras.datasets import mnist": "from mnistc.datasets import mnist",
        "from keras.models import Sequential": "from mnistc.models import Sequential",
        "from keras.layers import Dense, Dropout": "from mnistc.layers import Dense, Dropout",
        "from keras.optimizers import RMSprop": "from mnistc.optimizers import RMSprop",
    })
    stdout, _ = run(source, tmp_path, mnist_dir.parent, timeout=1200)
    assert stdout.startswith("60000 train samples\n10000 test samples\n")
    assert "Total params: 669,706" in stdout     # 784*512+512 + 512*512+512 + 512*10+10
    lines = progress_lines(stdout)
    assert [line for line in lines if line.startswith("Epoch ")] == [f"Epoch {e}/20" for e in range(1, 21)]
    last = lines[lines.index("Epoch 20/20") + 1]
    assert re.match(r"469/469 .* - accuracy: \S+ - loss: \S+ - val_accuracy: \S+ - val_loss: \S+$", last), last
    test_loss = float(re.search(r"^Test loss: (\S+)$", stdout, re.M).group(1))
    test_accuracy = float(re.search(r"^Test accuracy: (\S+)$", stdout, re.M).group(1))
    # evaluate after the last epoch sees the model the last validation saw
    assert f"val_accuracy: {test_accuracy:.4f} - val_loss: {test_loss:.4f}" in last
    assert test_accuracy >= 0.978 and test_loss < 0.12     # the example: "98.40% after 20 epochs"


def test_seed_workflow_in_tensorflow_form(mnist_dir, tmp_path):
    source = port(TF_SEED_WORKFLOW, {"import tensorflow as tf": "import mnistc as tf"})
    stdout, _ = run(source, tmp_path, mnist_dir.parent)
    lines = progress_lines(stdout)
    assert [line for line in lines if line.startswith("Epoch ")] == \
        [f"Epoch {e}/5" for e in range(1, 6)] + [f"Epoch {e}/2" for e in range(1, 3)]
    trained = float(re.search(r"^trained: test accuracy (\S+)$", stdout, re.M).group(1))
    fine_tuned = float(re.search(r"^fine-tuned: test accuracy (\S+)$", stdout, re.M).group(1))
    # unseeded, as the tutorial is: the test accuracy after 5 epochs varies from run to run (Keras's
    # own runs of this code too) with a standard deviation of about 0.0013 around 0.973
    assert trained >= 0.965 and fine_tuned >= trained - 0.002, stdout
    assert "body unchanged: True" in stdout and "head changed: True" in stdout


# --- what the import swap relies on ---

def test_mnistc_is_its_own_keras_with_the_same_module_objects():
    import mnistc as tf
    import mnistc.keras.layers
    from mnistc.keras.datasets import mnist
    from mnistc.keras.layers import Dense
    assert tf.keras is mnistc and mnistc.keras.layers is mnistc.layers and Dense is mnistc.layers.Dense
    assert mnist is mnistc.datasets.mnist and tf.keras.optimizers.Adam is mnistc.optimizers.Adam
    assert {"keras", "nn"} <= set(dir(mnistc))
    with pytest.raises(AttributeError, match="no attribute 'Sequential'; it is mnistc.models.Sequential; "):
        mnistc.layers.Sequential          # mnistc.keras (mnistc itself) is not offered as another place


def test_nn_softmax_and_log_softmax_against_float64():
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((4, 10)) * 30).astype(np.float32)
    z[0] = [1000.0] * 10                 # no overflow: the maximum is subtracted
    p = mnistc.nn.softmax(z)
    assert p.dtype == np.float32 and p.numpy().dtype == np.float32 and type(p.numpy()) is np.ndarray
    np.testing.assert_allclose(p, reference_softmax(z), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(mnistc.nn.log_softmax(z), np.log(reference_softmax(z.astype(np.float64))),
                               rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(mnistc.nn.softmax(z, axis=0), reference_softmax(z.T).T, rtol=1e-6, atol=1e-30)
    assert mnistc.nn.softmax(z.astype(np.float64)).dtype == np.float64
    np.testing.assert_array_equal(mnistc.nn.softmax(mnistc.nn.softmax(z)), mnistc.nn.softmax(p.numpy()))
    with pytest.raises(TypeError, match=r"softmax: expected floating-point logits .* got int64"):
        mnistc.nn.softmax(np.arange(3))
    with pytest.raises(ValueError, match=r"axis 2 is out of range for logits of shape \(4, 10\)"):
        mnistc.nn.softmax(z, axis=2)
    with pytest.raises(AttributeError, match="mnistc.nn has: log_softmax, softmax"):
        mnistc.nn.relu


def test_a_loss_object_called_on_arrays_gives_a_scalar_tensor():
    logits = np.array([[2.0, -1.0, 0.5]], np.float32)
    value = mnistc.losses.SparseCategoricalCrossentropy(from_logits=True)(np.array([2], np.uint8), logits)
    assert value.shape == () and value.numpy().dtype == np.float32
    assert float(value.numpy()) == pytest.approx(-np.log(reference_softmax(logits)[0, 2]), rel=1e-6)
