"""Utilities with Keras names: to_categorical, set_random_seed, and plotting helpers
(matplotlib is imported only when a plot is drawn)."""
from mnistc import _public
from mnistc._categorical import to_categorical
from mnistc._random import set_random_seed
from mnistc.plotting import confusion_matrix, plot_confusion_matrix, plot_history, show_digits

__all__ = ["to_categorical", "set_random_seed", "confusion_matrix", "plot_confusion_matrix",
           "plot_history", "show_digits"]
__getattr__, __dir__ = _public.hooks(__name__)
