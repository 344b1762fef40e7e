"""mnistc: Keras-style neural networks for MNIST-sized data on a small, fast C11 core."""
from mnistc._C import FormatError, __version__

__all__ = ["FormatError", "__version__"]
