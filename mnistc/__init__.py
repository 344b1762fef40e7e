"""mnistc: Keras-style neural networks for MNIST-sized data on a small, fast C11 core.

    import mnistc as keras          # tutorial code runs with only this line changed
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
"""
from mnistc._C import FormatError, __version__, get_num_threads, set_num_threads
from mnistc import (_public, activations, backend, callbacks, datasets, initializers, layers, losses, metrics,
                    models, optimizers, utils)
from mnistc.layers import Input
from mnistc.models import Model, Sequential
from mnistc.saving import load_model

models.load_model = load_model

__all__ = ["FormatError", "Input", "Model", "Sequential", "activations", "backend", "callbacks", "datasets",
           "get_num_threads", "initializers", "layers", "load_model", "losses", "metrics", "models",
           "optimizers", "set_num_threads", "utils", "__version__"]
__getattr__, __dir__ = _public.hooks(__name__)
