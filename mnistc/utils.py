"""Utilities with Keras names: to_categorical, set_random_seed, PyDataset (Keras 2: Sequence), and plotting helpers
(matplotlib is imported only when a plot is drawn)."""
from mnistc import _public
from mnistc._categorical import to_categorical
from mnistc._data import PyDataset
from mnistc._random import set_random_seed
from mnistc.plotting import confusion_matrix, plot_confusion_matrix, plot_history, show_digits

Sequence = PyDataset  # the Keras 2 name

__all__ = ["to_categorical", "set_random_seed", "PyDataset", "Sequence", "confusion_matrix", "plot_confusion_matrix",
           "plot_history", "show_digits"]
__getattr__, __dir__ = _public.hooks(__name__)
