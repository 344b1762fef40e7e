"""Activation names, as Keras spells them, and their codes in the C core."""

_CODES = {
    "linear": 0, None: 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4, "elu": 5,
    "selu": 6, "gelu": 7, "silu": 8, "swish": 8, "softplus": 9, "leaky_relu": 10,
    "softsign": 11, "exponential": 12,
}
_NAMES = {0: "linear", 1: "relu", 2: "sigmoid", 3: "tanh", 4: "softmax", 5: "elu", 6: "selu",
          7: "gelu", 8: "silu", 9: "softplus", 10: "leaky_relu", 11: "softsign", 12: "exponential"}

SOFTMAX = 4
SIGMOID = 2
LINEAR = 0


def get(identifier):
    """Return the canonical name of an activation given as a string, None or an activation function.

    Raises:
        ValueError: unknown name.
    """
    if callable(identifier) and getattr(identifier, "_mnistc_activation", None):
        return identifier._mnistc_activation
    if identifier is None or isinstance(identifier, str):
        key = identifier.lower() if isinstance(identifier, str) else None
        if key in _CODES:
            return _NAMES[_CODES[key]]
    raise ValueError(
        f"Could not interpret activation function identifier: {identifier!r}. "
        f"Expected one of: {', '.join(sorted(n for n in _CODES if n))}.")


def code(name):
    """C code of a canonical activation name."""
    return _CODES[name]


def _make(name):
    def fn(*args, **kwargs):
        raise TypeError(
            f"mnistc.activations.{name} is used as a layer argument (Dense(..., activation="
            f"mnistc.activations.{name})); it cannot be called on arrays.")
    fn.__name__ = name
    fn._mnistc_activation = name
    return fn


linear = _make("linear")
relu = _make("relu")
sigmoid = _make("sigmoid")
tanh = _make("tanh")
softmax = _make("softmax")
elu = _make("elu")
selu = _make("selu")
gelu = _make("gelu")
silu = _make("silu")
swish = silu
softplus = _make("softplus")
leaky_relu = _make("leaky_relu")
softsign = _make("softsign")
exponential = _make("exponential")
