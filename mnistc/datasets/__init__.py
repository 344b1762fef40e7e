"""Data sets with Keras's interface (`load_data()`), and the IDX reader/writer they use."""
from mnistc import _public
from mnistc.datasets import fashion_mnist, idx, mnist

__all__ = ["fashion_mnist", "idx", "mnist"]
__getattr__, __dir__ = _public.hooks(__name__)
