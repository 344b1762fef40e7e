"""The array type returned where Keras returns a tensor (model(x), loss(y, p)): a NumPy array that
also answers `.numpy()`, so tutorial code written for TensorFlow runs unchanged."""
import numpy as np


class Tensor(np.ndarray):
    """An np.ndarray with `.numpy()` (returns a plain ndarray view)."""

    def numpy(self):
        return self.view(np.ndarray)


def as_tensor(a):
    return np.asarray(a).view(Tensor)
