"""One-hot encoding with Keras's semantics (keras.utils.to_categorical)."""
import numpy as np


def to_categorical(x, num_classes=None):
    """Convert integer class labels to a one-hot float64 matrix, exactly as Keras does.

    Args:
        x: array-like of integer labels, any shape. A trailing dimension of size 1 is dropped
            (shape (N, 1) gives (N, num_classes)), unless it is the only dimension.
        num_classes: number of classes; None (or 0) means max(x) + 1.

    Returns:
        float64 array of shape x.shape (less a trailing 1) + (num_classes,).

    Raises:
        IndexError: a label >= num_classes (from NumPy's indexing, as in Keras). As in Keras, a
            negative label counts from the end (-1 sets the last class).
        ValueError: x is empty and num_classes is not given (max of an empty array).

    Example:
        >>> to_categorical([0, 2, 1], 3)
        array([[1., 0., 0.], [0., 0., 1.], [0., 1., 0.]])
    """
    x = np.array(x, dtype="int64")
    input_shape = x.shape
    if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
        input_shape = tuple(input_shape[:-1])
    x = x.reshape(-1)
    if not num_classes:
        num_classes = np.max(x) + 1
    batch_size = x.shape[0]
    categorical = np.zeros((batch_size, num_classes))
    categorical[np.arange(batch_size), x] = 1
    return np.reshape(categorical, input_shape + (num_classes,))
