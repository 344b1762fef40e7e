"""The tutorial notebooks, executed top to bottom in a Jupyter kernel on the real data.

Each notebook ends with a cell printing a JSON dict of its key results; the tests check those
against floors, count the figures, and check the fit progress bar redraws in place. Without
nbclient/ipykernel/matplotlib or the data the tests are skipped, except under CI=true, where
they fail. Marked slow (several epochs of training each): not run under the sanitizers.
"""
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

import mnistc

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = ["01_data_preparation", "02_build_and_train", "03_fine_tuning", "04_custom_training_loop",
             "05_convnet"]
IN_CI = os.environ.get("CI") == "true"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def _unavailable(reason):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the notebooks must run in CI)")
    pytest.skip(reason)


def _has_idx_files(folder):
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    return all((folder / n).is_file() or (folder / (n + ".gz")).is_file() for n in names)


def test_committed_notebooks_carry_no_outputs():
    found = sorted(p.stem for p in NB_DIR.glob("*.ipynb"))
    assert found == NOTEBOOKS
    for name in NOTEBOOKS:
        nb = json.loads((NB_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))
        assert nb["metadata"]["kernelspec"]["name"] == "python3"
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, \
                    f"{name}: a code cell has saved outputs; strip them before committing"


@pytest.fixture(scope="module")
def run_env(tmp_path_factory):
    """Checks the tools and the data, and returns (kernel env, Jupyter env for this process)."""
    for mod in ("nbformat", "nbclient", "ipykernel", "matplotlib"):
        try:
            __import__(mod)
        except ImportError:
            _unavailable(f"{mod} is not installed (pip install mnistc[notebooks])")
    data = os.environ.get("MNISTC_DATA_DIR")
    if not data:
        _unavailable("MNISTC_DATA_DIR is not set (the folder holding mnist/)")
    given = data
    data = Path(data).resolve()
    if not _has_idx_files(data / "mnist"):
        _unavailable(f"MNIST not found in {data / 'mnist'}")
    if not (_has_idx_files(data / "fashion-mnist") or _has_idx_files(FASHION_SYSTEM_DIR)):
        _unavailable(f"Fashion-MNIST not found in {data / 'fashion-mnist'} nor {FASHION_SYSTEM_DIR} "
                     "(apt-get install dataset-fashion-mnist)")

    # A kernel spec "python3" that runs this interpreter, first on the Jupyter path.
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (mnistc tests)", "language": "python"}))
    jupyter_env = {"JUPYTER_PATH": str(jupyter), "JUPYTER_PLATFORM_DIRS": "1"}
    # The kernel runs in notebooks/. Run from the root (the README's command), a relative value
    # goes as set, as when a user starts Jupyter there; mnistc takes it from the project root.
    kernel_data = given if Path(given).is_absolute() or Path.cwd() == ROOT else str(data)
    kernel_env = dict(os.environ, MNISTC_DATA_DIR=kernel_data, **jupyter_env)
    kernel_env.pop("MPLBACKEND", None)
    # The kernel imports the mnistc under test, not another install on the path.
    tested = str(Path(mnistc.__file__).resolve().parents[1])
    kernel_env["PYTHONPATH"] = os.pathsep.join(p for p in (tested, os.environ.get("PYTHONPATH")) if p)
    return kernel_env, jupyter_env


def _execute(name, run_env, monkeypatch):
    """Runs the notebook; returns (executed notebook, seconds). Raises on the first error cell."""
    import nbformat
    from nbclient import NotebookClient

    kernel_env, jupyter_env = run_env
    for k, v in jupyter_env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    probe = nbformat.v4.new_code_cell("import sys, mnistc; print(sys.executable); print(mnistc.__file__)")
    nb.cells.insert(0, probe)
    client = NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=False,
                            resources={"metadata": {"path": str(NB_DIR)}})
    t0 = time.perf_counter()
    client.execute(env=kernel_env)
    seconds = time.perf_counter() - t0
    ran_by, imported = nb.cells.pop(0).outputs[0]["text"].split()
    assert os.path.realpath(ran_by) == os.path.realpath(sys.executable), \
        f"the kernel ran {ran_by}, not the test interpreter {sys.executable}"
    assert os.path.realpath(imported) == os.path.realpath(mnistc.__file__), \
        f"the kernel imported {imported}, not the mnistc under test {mnistc.__file__}"
    return nb, seconds


def _stream(cell, name="stdout"):
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o["output_type"] == "stream" and o["name"] == name)


def _images(nb):
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if o["output_type"] in ("display_data", "execute_result") and "image/png" in o.get("data", {}))


def _results(nb):
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "json.dumps(results" in last.source
    return json.loads(_stream(last))


def _check_clean(nb, name):
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert not any(o["output_type"] == "error" for o in cell.outputs), f"{name} cell {i} raised"
        err = _stream(cell, "stderr")
        assert not re.search(r"warning|error|traceback", err, re.I), f"{name} cell {i} wrote to stderr:\n{err}"


def _screen_lines(text):
    """The lines a terminal (or Jupyter) shows for text with '\\r' redraws."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line.rsplit("\r", 1)[-1].strip()]


@pytest.fixture(scope="module")
def executed(run_env):
    cache = {}

    def get(name):
        if name not in cache:
            with pytest.MonkeyPatch.context() as mp:
                nb, seconds = _execute(name, run_env, mp)
            print(f"{name}: {seconds:.1f} s")
            _check_clean(nb, name)
            cache[name] = (nb, seconds)
        return cache[name]
    return get


@pytest.mark.slow
def test_01_data_preparation(executed):
    nb, seconds = executed("01_data_preparation")
    r = _results(nb)
    assert r["x_train_shape"] == [60000, 28, 28] and r["x_test_shape"] == [10000, 28, 28]
    assert r["dtype"] == "uint8"
    assert r["header_images"] == ["uint8", [60000, 28, 28]]
    assert r["idx_load_equal"] is True
    assert abs(r["mean"] - 0.1307) < 5e-4 and abs(r["std"] - 0.3081) < 5e-4   # MNIST's known statistics
    assert r["split"] == [54000, 6000] and r["split_class_gap"] < 0.01
    assert 0.08 < r["class_fraction_range"][0] < r["class_fraction_range"][1] < 0.12
    assert _images(nb) == 3   # sample grid, class means, label histogram


@pytest.mark.slow
def test_02_build_and_train(executed):
    nb, seconds = executed("02_build_and_train")
    r = _results(nb)
    h = r["history"]
    assert sorted(h) == ["accuracy", "loss", "val_accuracy", "val_loss"] and all(len(v) == 5 for v in h.values())
    assert h["loss"] == sorted(h["loss"], reverse=True)
    assert h["val_accuracy"][-1] >= 0.96
    assert r["test_accuracy"] >= 0.97, r
    assert r["errors"] == round((1 - r["test_accuracy"]) * 10000)
    assert _images(nb) == 3   # curves, confusion matrix, most-confused digits

    summary = next(c for c in nb.cells if c.cell_type == "code" and "model.summary()" in c.source)
    assert "Total params: 101,770" in _stream(summary)

    # The progress bar redraws in place: many '\r' updates, one line per epoch left on screen.
    fit_cell = next(c for c in nb.cells if c.cell_type == "code" and "model.fit(" in c.source)
    text = _stream(fit_cell)
    bars = [line for line in _screen_lines(text) if "━" in line]
    assert len(bars) == 5, _screen_lines(text)
    assert all(line.lstrip().startswith("422/422") and "val_accuracy" in line for line in bars)
    assert [line for line in _screen_lines(text) if line.startswith("Epoch")] == \
        [f"Epoch {e}/5" for e in range(1, 6)]
    redraws = [line.count("\r") for line in text.split("\n") if "━" in line]
    assert len(redraws) == 5 and sum(redraws) > 5   # several updates drawn over each other per epoch


@pytest.mark.slow
def test_03_fine_tuning(executed):
    nb, seconds = executed("03_fine_tuning")
    r = _results(nb)
    assert r["pretrain_accuracy_0_4"] >= 0.98
    assert r["n_labelled"] == 294   # 1% of the 29,404 training images of digits 5-9
    assert r["digits_frozen_unchanged"] is True and r["fashion_frozen_unchanged"] is True
    # What the notebook's closing text says about the comparison, on both tasks:
    for task, floor in (("digits", 0.85), ("fashion", 0.70)):
        acc = r[task]
        frozen, every, scratch = acc["frozen body + new head"], acc["fine-tune all layers"], acc["from scratch"]
        assert scratch >= floor and every >= floor, (task, acc)
        assert every >= scratch - 0.015, (task, acc)              # level with or ahead of scratch
        assert frozen < min(every, scratch) - 0.01, (task, acc)  # the frozen body falls behind
        assert frozen >= floor - 0.1, (task, acc)
        curves = r[f"{task}_val_curves"]
        assert all(len(v) == 10 for v in curves.values())         # every 5 of 50 epochs
        assert curves["frozen body + new head"][-1] > curves["frozen body + new head"][0] + 0.05
    assert r["digits"]["from scratch"] < 0.95                       # "about 90% from scratch"
    assert _images(nb) == 3   # Fashion samples, results (bars and curves), predictions

    frozen_summary = next(c for c in nb.cells if c.cell_type == "code" and "show_trainable=True" in c.source)
    out = _stream(frozen_summary)
    assert "Trainable params: 645" in out and "Non-trainable params: 100,480" in out


@pytest.mark.slow
def test_04_custom_training_loop(executed):
    nb, seconds = executed("04_custom_training_loop")
    r = _results(nb)
    loop = r["loop"]
    assert all(len(v) == 5 for v in loop.values())
    assert loop["loss"] == sorted(loop["loss"], reverse=True)
    assert loop["val_accuracy"][-1] >= 0.955 and r["test_accuracy"] >= 0.965, r
    assert r["evaluate_matches_loop"] is True
    assert r["loop_images_per_second"] > 0 and r["fit_images_per_second"] > 0
    loop_cell = next(c for c in nb.cells if c.cell_type == "code" and "train_on_batch" in c.source)
    lines = [line for line in _stream(loop_cell).splitlines() if line.startswith("epoch ")]
    assert len(lines) == 5 and all("images/s" in line for line in lines)
    assert "lr 2.5e-04" in lines[-1]
    assert _images(nb) == 1


@pytest.mark.slow
def test_05_convnet(executed):
    nb, seconds = executed("05_convnet")
    r = _results(nb)
    assert r["n_train"] == 10_000 and r["epochs"] == 2   # the shortened run the notebook announces
    assert r["params"] == 34_826                        # keras-io mnist_convnet's count
    h = r["history"]
    assert sorted(h) == ["accuracy", "loss", "val_accuracy", "val_loss"] and all(len(v) == 2 for v in h.values())
    assert h["loss"][1] < h["loss"][0]
    assert r["test_accuracy"] >= 0.9, r
    assert r["filters_shape"] == [3, 3, 1, 32]
    assert r["feature_map_shapes"] == [[1, 26, 26, 32], [1, 11, 11, 64]]
    assert r["maps_match_predict"] is True
    # fine-tuning on Fashion-MNIST: chance before, well above it after, the body untouched
    assert r["frozen_bit_identical"] is True
    assert r["trainable_params"] == 16_010
    assert r["fashion_accuracy_digit_model"] < 0.3 and r["fashion_accuracy_before"] < 0.3, r
    assert r["fashion_accuracy_after"] >= 0.7, r
    assert _images(nb) == 4   # filters, first- and second-layer feature maps, Fashion predictions

    summary = next(c for c in nb.cells if c.cell_type == "code" and "model.summary()" in c.source)
    assert "Total params: 34,826" in _stream(summary)
    frozen_summary = next(c for c in nb.cells if c.cell_type == "code" and "show_trainable=True" in c.source)
    out = _stream(frozen_summary)
    assert "Trainable params: 16,010" in out and "Non-trainable params: 18,816" in out
