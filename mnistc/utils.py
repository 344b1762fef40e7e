"""Utilities with Keras names: to_categorical, set_random_seed."""
from mnistc._random import set_random_seed


def to_categorical(x, num_classes=None):
    """One-hot encode integer labels (Keras's `to_categorical`); see mnistc._categorical."""
    from mnistc._categorical import to_categorical as impl
    return impl(x, num_classes)


__all__ = ["to_categorical", "set_random_seed"]
