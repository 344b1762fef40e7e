"""The part of keras.backend that applies to mnistc: clear_session()."""
from mnistc import layers as _layers


def clear_session(free_memory=True):
    """Reset the automatic names: the next Dense is 'dense' again, the next Sequential 'sequential'.
    Models and layers made before keep their names and weights (nothing else is global here)."""
    _layers._name_counts.clear()
