"""A name mnistc lacks: the AttributeError lists what the module has; dir() shows public names only."""
import types

import pytest

import mnistc
from mnistc import _public

HOOKED = [mnistc, mnistc.callbacks, mnistc.optimizers, mnistc.losses, mnistc.metrics, mnistc.datasets,
          mnistc.utils]


@pytest.mark.parametrize("module", HOOKED, ids=lambda m: m.__name__)
def test_dir_lists_public_names_that_all_resolve(module):
    names = dir(module)
    assert names == sorted(_public.public_names(module)) and names
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    for n in names:
        assert not isinstance(getattr(module, n), types.ModuleType) or getattr(module, n).__name__.startswith("mnistc")
    assert not {"np", "math", "warnings", "as_tensor", "Progbar"} & set(names)  # imported helpers stay out


@pytest.mark.parametrize("module", HOOKED, ids=lambda m: m.__name__)
def test_missing_name_lists_what_the_module_has(module):
    with pytest.raises(AttributeError) as ei:
        module.NoSuchThing
    msg = str(ei.value)
    assert msg.startswith(f"module {module.__name__!r} has no attribute 'NoSuchThing'; ")
    assert f"{module.__name__} has: " + ", ".join(_public.public_names(module)) in msg
    assert ei.value.name == "NoSuchThing"
    assert not hasattr(module, "NoSuchThing")


@pytest.mark.parametrize("expr, module, expected", [
    ("Conv3D", mnistc, "mnistc has: __version__, activations, backend, callbacks, datasets, FormatError"),
    ("Conv3D", mnistc.layers, "did you mean 'Conv2D'?"),
    ("Lion", mnistc.optimizers, "mnistc.optimizers has: Adagrad, Adam, Adamax, AdamW, get"),
    ("TensorBoard", mnistc.callbacks, "EarlyStopping, History"),
    ("cifar10", mnistc.datasets, "mnistc.datasets has: fashion_mnist, idx, mnist"),
    ("plot_model", mnistc.utils, "plot_history, PyDataset, Sequence, set_random_seed, show_digits, to_categorical"),
    ("F1Score", mnistc.metrics, "Precision, Recall"),
    ("Huber", mnistc.losses, "SparseCategoricalCrossentropy"),
])
def test_keras_names_mnistc_lacks(expr, module, expected):
    with pytest.raises(AttributeError, match=f"has no attribute '{expr}'") as ei:
        getattr(module, expr)
    assert expected in str(ei.value)


def test_close_names_and_names_in_another_module_are_pointed_at():
    with pytest.raises(AttributeError, match=r"did you mean 'Adam' or 'Nadam' or 'AdamW'\?"):
        mnistc.optimizers.adam
    with pytest.raises(AttributeError, match=r"no attribute 'Dense'; it is mnistc.layers.Dense; mnistc has:"):
        mnistc.Dense
    with pytest.raises(AttributeError, match=r"no attribute 'Adam'; it is mnistc.optimizers.Adam;"):
        mnistc.losses.Adam
    with pytest.raises(ImportError, match="cannot import name 'Huber'"):
        from mnistc.losses import Huber  # noqa: F401


def test_protocol_probes_get_a_plain_error():
    with pytest.raises(AttributeError) as ei:
        mnistc.losses.__wrapped__
    assert str(ei.value) == "module 'mnistc.losses' has no attribute '__wrapped__'"
    assert getattr(mnistc.losses, "__path__", None) is None   # what the import system asks a module


def test_names_added_later_count(monkeypatch):
    class Lion:
        pass
    Lion.__module__ = "mnistc.optimizers"
    monkeypatch.setattr(mnistc.optimizers, "Lion", Lion, raising=False)
    assert "Lion" in dir(mnistc.optimizers)
    with pytest.raises(AttributeError, match="did you mean 'Lion'"):
        mnistc.optimizers.Lio
