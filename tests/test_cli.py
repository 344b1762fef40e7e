"""`python -m mnistc`: every argument is checked before training, --help shows the defaults, --data-dir
and MNISTC_DATA_DIR name the same folder, the default output stays out of the current folder, the
report marks both phases, a failed save keeps the model, and `--model cnn` trains and fine-tunes
Keras's MNIST convnet."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mnistc
from mnistc import __main__ as cli
from mnistc.datasets import idx

ROOT = Path(__file__).resolve().parents[1]


def small_set(data_dir, n=256, m=64):
    """data_dir/mnist/ with four small IDX files: random images, a label the pixels decide."""
    rng = np.random.default_rng(0)
    folder = Path(data_dir) / "mnist"
    folder.mkdir(parents=True)
    for prefix, count in (("train", n), ("t10k", m)):
        x = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        y = (x[:, 14, :10].argmax(axis=1)).astype(np.uint8)
        idx.save(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        idx.save(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
    return Path(data_dir)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No data set anywhere, no downloads; the current folder an empty tmp_path/cwd."""
    monkeypatch.setenv("MNISTC_DATA_DIR", "unset")
    monkeypatch.delenv("MNISTC_DATA_DIR")       # recorded, so a value main() sets is undone too
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("MNISTC_MIRRORS", "")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


@pytest.fixture
def no_training(monkeypatch):
    """Loading the data (the step before training) fails the test."""
    def refuse(*args, **kwargs):
        pytest.fail("the data was loaded: an argument was not checked before training")
    monkeypatch.setattr(mnistc.datasets.mnist, "load_data", refuse)
    monkeypatch.setattr(mnistc.datasets.fashion_mnist, "load_data", refuse)


@pytest.mark.parametrize("args, message", [
    (["--output", "{tmp}/missing/model.keras"], "--output {tmp}/missing/model.keras: the folder {tmp}/missing "
                                                 "does not exist (create it first)"),
    (["--output", "model.h5"], "--output must name a .keras file (the model format), got 'model.h5'"),
    (["--output", "{tmp}/folder.keras"], "--output {tmp}/folder.keras is a folder; name a file in it"),
    (["--output", "/proc/model.keras"], "--output /proc/model.keras: cannot write in /proc"),
    (["--fine-tune-learning-rate", "0"], "argument --fine-tune-learning-rate: expected a finite number > 0 "
                                         "such as 1e-3, got 0"),
    (["--learning-rate", "nan"], "argument --learning-rate: expected a finite number > 0 such as 1e-3, got nan"),
    (["--learning-rate", "inf"], "argument --learning-rate: expected a finite number > 0 such as 1e-3, got inf"),
    (["--learning-rate=-1e-3"], "argument --learning-rate: expected a finite number > 0"),
    (["--learning-rate", "fast"], "argument --learning-rate: expected a number > 0 such as 1e-3, got 'fast'"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    (["--batch-size", "-3"], "argument --batch-size: expected an integer >= 1, got -3"),
    (["--hidden", "many"], "argument --hidden: expected an integer >= 1, got 'many'"),
    (["--fine-tune-epochs", "-1"], "argument --fine-tune-epochs: expected an integer >= 0, got -1"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    (["--verbose", "3"], "argument --verbose: invalid choice: 3"),
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet' (choose from"),
    (["--model", "cnn", "--hidden", "64"], "--hidden sizes the MLP's hidden layer; --model cnn has none "
                                           "(drop --hidden)"),
    (["--train-samples", "0"], "argument --train-samples: expected an integer >= 1, got 0"),
    (["--data-dir", "{tmp}/nowhere"], "--data-dir {tmp}/nowhere: {tmp}/nowhere is not a folder"),
    (["--data-dir", "{tmp}/data/mnist"], "--data-dir is the folder holding mnist/ (as MNISTC_DATA_DIR), but "
                                         "{tmp}/data/mnist holds the IDX files themselves: pass --data-dir {tmp}/data"),
])
def test_bad_arguments_stop_before_training(isolated, no_training, capsys, args, message):
    tmp = isolated
    (tmp / "folder.keras").mkdir()
    small_set(tmp / "data", n=4, m=2)
    with pytest.raises(SystemExit) as ei:
        cli.main([a.format(tmp=tmp) for a in args])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert f"mnistc: error: {message.format(tmp=tmp)}" in err, err
    assert os.listdir(tmp / "cwd") == []


def test_help_shows_every_default_and_the_data_lookup():
    r = subprocess.run([sys.executable, "-m", "mnistc", "--help"], capture_output=True, text=True, cwd=ROOT,
                       check=True)
    text = " ".join(r.stdout.split())   # argparse wraps to the terminal width
    for option, default in (("--model", "mlp"), ("--dataset", "mnist"),
                            ("--epochs", "5 for --model mlp, 3 for cnn"), ("--fine-tune-epochs", "2"),
                            ("--batch-size", "128"), ("--learning-rate", "0.001"),
                            ("--fine-tune-learning-rate", "0.0001"), ("--train-samples", "all"),
                            ("--hidden", "128"), ("--seed", "0"),
                            ("--verbose", "1"), ("--output", cli.DEFAULT_OUTPUT + ", folder created")):
        i = text.index(f" {option} ", text.index("options:"))
        assert f"(default: {default})" in text[i:i + 260], option
    assert "--data-dir DIR folder holding mnist/ and fashion-mnist/, as MNISTC_DATA_DIR" in text
    assert "$MNISTC_DATA_DIR/mnist/" in text and "apt-get install dataset-fashion-mnist" in text


def run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_data_dir_and_the_environment_name_the_same_folder(isolated, capsys, monkeypatch):
    data = small_set(isolated / "data")
    common = ["--epochs", "1", "--fine-tune-epochs", "1", "--verbose", "0", "--hidden", "8"]
    by_flag = run(["--data-dir", str(data), "--output", str(isolated / "a.keras"), *common], capsys)
    monkeypatch.setenv("MNISTC_DATA_DIR", str(data))
    by_env = run(["--output", str(isolated / "b.keras"), *common], capsys)
    assert "mnist: train (256, 28, 28) uint8, test (64, 28, 28)" in by_flag
    accuracies = [line for line in by_flag.splitlines() if "test accuracy" in line]
    assert len(accuracies) == 2 and accuracies == [line for line in by_env.splitlines() if "test accuracy" in line]
    a, b = mnistc.load_model(isolated / "a.keras"), mnistc.load_model(isolated / "b.keras")
    for wa, wb in zip(a.weights, b.weights):
        assert np.array_equal(wa, wb)


def test_default_output_goes_to_the_user_cache_not_the_current_folder(isolated, capsys, monkeypatch):
    monkeypatch.setattr(cli, "DEFAULT_OUTPUT", str(isolated / "xdg" / "mnistc" / "mnistc_model.keras"))
    data = small_set(isolated / "data")
    out = run(["--data-dir", str(data), "--epochs", "1", "--fine-tune-epochs", "0", "--verbose", "0"], capsys)
    assert os.listdir(isolated / "cwd") == []
    assert (isolated / "xdg" / "mnistc" / "mnistc_model.keras").is_file()
    assert f"model saved to:                      {isolated / 'xdg' / 'mnistc' / 'mnistc_model.keras'}" in out
    assert cli.DEFAULT_OUTPUT != str(ROOT / "mnistc_model.keras")


def test_report_marks_the_training_and_fine_tuning_phases(isolated, capsys):
    data = small_set(isolated / "data")
    out = run(["--data-dir", str(data), "--epochs", "2", "--fine-tune-epochs", "1", "--verbose", "2",
               "--learning-rate", "2e-3", "--output", str(isolated / "m.keras")], capsys)
    lines = out.splitlines()
    train = lines.index("training: 2 epoch(s), all layers, Adam(learning_rate=0.002)")
    tune = lines.index("fine-tuning: 1 epoch(s), the head only (body frozen), Adam(learning_rate=0.0001)")
    report = lines.index("report")
    assert train < tune < report
    assert sum(1 for line in lines[train:tune] if line.startswith("2/2 - ")) == 2      # 256 / 128: 2 steps
    assert sum(1 for line in lines[tune:report] if line.startswith("2/2 - ")) == 1
    keys = [line.split(":")[0].rstrip() for line in lines[report + 1:]]
    assert keys == ["  training", "    test accuracy", "  fine-tuning the head", "    test accuracy",
                    "    frozen body weights bit-identical", "  model saved to"]
    assert "frozen body weights bit-identical: yes" in out


def test_a_failed_save_keeps_the_model(isolated, capsys, monkeypatch):
    data = small_set(isolated / "data")
    target = isolated / "m.keras"
    save = mnistc.models.Model.save

    def failing_save(self, filepath, *args, **kwargs):
        if Path(filepath) == target:
            raise OSError(28, "No space left on device")
        return save(self, filepath, *args, **kwargs)
    monkeypatch.setattr(mnistc.models.Model, "save", failing_save)
    monkeypatch.setattr("tempfile.tempdir", str(isolated))
    code = cli.main(["--data-dir", str(data), "--epochs", "1", "--fine-tune-epochs", "0", "--verbose", "0",
                     "--output", str(target)])
    captured = capsys.readouterr()
    assert code == 1
    kept = list(isolated.glob("mnistc_model-*.keras"))
    assert len(kept) == 1 and mnistc.load_model(kept[0]).count_params() > 0
    assert f"could not save to {target} ([Errno 28] No space left on device); saved to {kept[0]} instead" \
        in captured.err
    assert f"model saved to:" in captured.out and str(kept[0]) in captured.out


@pytest.mark.slow
def test_real_mnist_end_to_end(mnist_dir, tmp_path):
    """The main job on the real data, as a user runs it (one epoch of each phase)."""
    out_file = tmp_path / "model.keras"
    tested = str(Path(mnistc.__file__).resolve().parents[1])   # this mnistc, not another install
    env = dict(os.environ, MNISTC_DATA_DIR=str(mnist_dir.parent),
               PYTHONPATH=os.pathsep.join(p for p in (tested, os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run([sys.executable, "-m", "mnistc", "--epochs", "1", "--fine-tune-epochs", "1", "--verbose", "2",
                        "--output", str(out_file)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "mnist: train (60000, 28, 28) uint8, test (10000, 28, 28)" in r.stdout
    acc = [float(line.split()[-1]) for line in r.stdout.splitlines() if "test accuracy:" in line]
    assert len(acc) == 2 and acc[0] > 0.9 and acc[1] > 0.9, r.stdout
    model = mnistc.load_model(out_file)
    assert model.count_params() == 101_770
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


def test_cnn_trains_and_fine_tunes_the_keras_convnet(isolated, capsys):
    """--model cnn: Keras's MNIST convnet, 3 epochs by default, the conv body frozen for fine-tuning;
    on a subset (--train-samples) of a small synthetic set, so it runs in a second or two."""
    data = small_set(isolated / "data")
    target = isolated / "cnn.keras"
    out = run(["--model", "cnn", "--data-dir", str(data), "--train-samples", "64", "--fine-tune-epochs", "1",
               "--verbose", "2", "--output", str(target)], capsys)
    lines = out.splitlines()
    assert "mnist: train (256, 28, 28) uint8, test (64, 28, 28)" in out
    assert "training on the first 64 training images (--train-samples)" in lines
    assert "Total params: 34,826" in out      # keras-io mnist_convnet's count
    train = lines.index("training: 3 epoch(s), all layers, Adam(learning_rate=0.001)")
    tune = lines.index("fine-tuning: 1 epoch(s), the head only (body frozen), Adam(learning_rate=0.0001)")
    report = lines.index("report")
    assert sum(1 for line in lines[train:tune] if line.startswith("1/1 - ")) == 3      # 64 images: 1 step
    assert sum(1 for line in lines[tune:report] if line.startswith("1/1 - ")) == 1
    assert "frozen body weights bit-identical: yes" in out
    model = mnistc.load_model(target)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dropout", "Dense"]
    assert model.count_params() == 34_826
    assert [layer.trainable for layer in model.layers if layer.weights] == [False, False, True]
    x = np.random.default_rng(1).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    p = model.predict(x, verbose=0)
    assert p.shape == (5, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_cnn_is_deterministic_for_a_seed(isolated, capsys):
    data = small_set(isolated / "data")
    common = ["--model", "cnn", "--data-dir", str(data), "--train-samples", "32", "--epochs", "1",
              "--fine-tune-epochs", "1", "--verbose", "0", "--batch-size", "16"]
    run([*common, "--output", str(isolated / "a.keras")], capsys)
    run([*common, "--output", str(isolated / "b.keras")], capsys)
    run([*common, "--seed", "1", "--output", str(isolated / "c.keras")], capsys)
    a, b, c = (mnistc.load_model(isolated / f"{n}.keras").get_weights() for n in "abc")
    assert all(np.array_equal(wa, wb) for wa, wb in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_more_train_samples_than_images_stops_before_training(isolated, capsys, monkeypatch):
    data = small_set(isolated / "data", n=8, m=4)
    monkeypatch.setattr(mnistc.models.Model, "fit", lambda *a, **k: pytest.fail("fit ran"))
    with pytest.raises(SystemExit) as ei:
        cli.main(["--model", "cnn", "--data-dir", str(data), "--train-samples", "9",
                  "--output", str(isolated / "m.keras")])
    assert ei.value.code == 2
    assert "mnistc: error: --train-samples 9: mnist has 8 training images" in capsys.readouterr().err
    assert not (isolated / "m.keras").exists()


@pytest.mark.slow
def test_real_mnist_cnn_on_a_subset(mnist_dir, tmp_path):
    """`--model cnn` as a user runs it, on the first 6000 images (the full run takes minutes)."""
    out_file = tmp_path / "cnn.keras"
    tested = str(Path(mnistc.__file__).resolve().parents[1])
    env = dict(os.environ, MNISTC_DATA_DIR=str(mnist_dir.parent),
               PYTHONPATH=os.pathsep.join(p for p in (tested, os.environ.get("PYTHONPATH")) if p))
    r = subprocess.run([sys.executable, "-m", "mnistc", "--model", "cnn", "--train-samples", "6000", "--epochs", "1",
                        "--fine-tune-epochs", "1", "--verbose", "2", "--output", str(out_file)],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "training on the first 6000 training images" in r.stdout and "Total params: 34,826" in r.stdout
    acc = [float(line.split()[-1]) for line in r.stdout.splitlines() if "test accuracy:" in line]
    assert len(acc) == 2 and acc[0] > 0.8 and acc[1] > 0.8, r.stdout
    assert "frozen body weights bit-identical: yes" in r.stdout
    assert mnistc.load_model(out_file).count_params() == 34_826
