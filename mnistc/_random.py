"""The library's random state: one seeded NumPy generator behind initialisers, shuffling and dropout.

`mnistc.utils.set_random_seed(s)` resets it, so the same seed gives bit-identical weights and results.
Without a seed it starts from OS entropy, as Keras does.
"""
import random as _py_random

import numpy as np

_state = {"rng": None}  # created on first use: numpy.random costs import time


def generator():
    """The global np.random.Generator (initialisers draw from it)."""
    if _state["rng"] is None:
        _state["rng"] = np.random.default_rng()
    return _state["rng"]


def new_seed():
    """A 63-bit seed drawn from the global generator (one per fit: shuffling and dropout)."""
    return int(generator().integers(0, 2**63 - 1))


def set_random_seed(seed):
    """Seed Python's `random`, NumPy's global RNG and mnistc's generator (Keras's `set_random_seed`).

    Raises:
        ValueError: seed is not an int.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(
            f"Expected `seed` argument to be an integer. Received: seed={seed!r} (of type {type(seed)})")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"Expected `seed` to be a non-negative integer. Received: seed={seed}")
    _py_random.seed(seed)
    np.random.seed(seed % 2**32)
    _state["rng"] = np.random.default_rng(seed)
