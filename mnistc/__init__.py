"""mnistc: Keras-style neural networks for MNIST-sized data on a small, fast C11 core.

    import mnistc as keras          # tutorial code runs with only this line changed
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()

TensorFlow tutorials run with `import mnistc as tf`: `tf.keras` is mnistc itself (as tf.keras is
Keras) and `tf.nn.softmax` is mnistc.nn.softmax.
"""
import sys

from mnistc._C import FormatError, __version__, get_num_threads, set_num_threads
from mnistc import (_public, activations, backend, callbacks, datasets, initializers, layers, losses, metrics,
                    models, nn, optimizers, regularizers, utils)
from mnistc.layers import Input
from mnistc.models import Model, Sequential
from mnistc.saving import load_model

models.load_model = load_model

# tf.keras.layers.Dense after `import mnistc as tf`. Every public submodule is also registered under
# mnistc.keras., so that `import mnistc.keras.layers` and `from mnistc.keras.datasets.mnist import
# load_data` find the same module objects instead of loading them a second time.
keras = sys.modules[__name__]
for _name, _module in list(sys.modules.items()):
    if _name.startswith(__name__ + ".") and not any(p.startswith("_") for p in _name.split(".")):
        sys.modules[__name__ + ".keras" + _name[len(__name__):]] = _module
sys.modules[__name__ + ".keras"] = keras
del _name, _module

__all__ = ["FormatError", "Input", "Model", "Sequential", "activations", "backend", "callbacks", "datasets",
           "get_num_threads", "initializers", "keras", "layers", "load_model", "losses", "metrics", "models",
           "nn", "optimizers", "regularizers", "set_num_threads", "utils", "__version__"]
__getattr__, __dir__ = _public.hooks(__name__)
