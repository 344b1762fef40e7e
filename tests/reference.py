"""Float64 NumPy versions of every op of the C training engine: the oracle of the numeric tests.

Written from the formulas (Keras 3 semantics, KERAS_SEMANTICS.md §4-§5, keras/src/layers/convolutional,
pooling, normalization/batch_normalization.py, activations/activations.py (relu) and
preprocessing/normalization.py, and the engine API), not from the C code. The windowed
and normalising layers have forwards only: their gradients are checked against central differences
(numeric_grad) of these forwards. Shapes: B batch rows, n_in / n_out widths, P parameters. Everything
here is float64 except where a value must be bit-equal to what C draws (the dropout masks and their
float32 scale).
"""
import math

import numpy as np

from mnistc import _C
from mnistc._plan import CRow, table_row

# --- codes of the engine table (layer.h, exported by _C) ---
DENSE, ACTIVATION, DROPOUT, RESCALING = _C.LAYER_DENSE, _C.LAYER_ACTIVATION, _C.LAYER_DROPOUT, _C.LAYER_RESCALING
KIND, ACT_COL, TRAINABLE, IN_C, OUT_C, W0 = (_C.COL_KIND, _C.COL_ACTIVATION, _C.COL_TRAINABLE, _C.COL_IN_C,
                                           _C.COL_OUT_C, _C.COL_WEIGHT0)
ACTS = ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "silu", "softplus",
        "leaky_relu", "softsign", "exponential")
ACT = {name: code for code, name in enumerate(ACTS)}
MSE, MAE, BCE, CCE, SCCE = 0, 1, 2, 3, 4
M_NONE, M_SPARSE, M_CAT, M_BIN = 0, 1, 2, 3
SGD, ADAM, RMSPROP = 0, 1, 2

SELU_ALPHA, SELU_SCALE = 1.67326324, 1.05070098  # keras/src/activations/activations.py
LEAKY_SLOPE = 0.2
CLIP_EPS = 1e-7  # keras.config.epsilon()

_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    return _erf(np.asarray(x, np.float64)).astype(np.float64)


# --- activations: forward and vector-Jacobian product ---

def sigmoid(x):
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def act_forward(code, x):
    """act(x) for an activation code, x (B, n) float64."""
    x = np.asarray(x, np.float64)
    name = ACTS[code]
    if name == "linear":
        return x.copy()
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        return sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "softmax":
        return softmax(x)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
    if name == "selu":
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))
    if name == "gelu":
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if name == "silu":
        return x * sigmoid(x)
    if name == "softplus":
        return np.logaddexp(0.0, x)
    if name == "leaky_relu":
        return np.where(x > 0, x, LEAKY_SLOPE * x)
    if name == "softsign":
        return x / (1.0 + np.abs(x))
    if name == "exponential":
        return np.exp(x)
    raise ValueError(code)


def act_backward(code, x, dout):
    """dL/dx given dL/dout for out = act(x) (softmax: the row Jacobian applied to dout)."""
    x = np.asarray(x, np.float64)
    dout = np.asarray(dout, np.float64)
    name = ACTS[code]
    if name == "linear":
        d = np.ones_like(x)
    elif name == "relu":
        d = (x > 0).astype(np.float64)
    elif name == "sigmoid":
        s = sigmoid(x)
        d = s * (1 - s)
    elif name == "tanh":
        d = 1 - np.tanh(x) ** 2
    elif name == "softmax":
        s = softmax(x)
        return s * (dout - (dout * s).sum(axis=-1, keepdims=True))
    elif name == "elu":
        d = np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))
    elif name == "selu":
        d = SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))
    elif name == "gelu":
        d = 0.5 * (1 + erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    elif name == "silu":
        s = sigmoid(x)
        d = s * (1 + x * (1 - s))
    elif name == "softplus":
        d = sigmoid(x)
    elif name == "leaky_relu":
        d = np.where(x > 0, 1.0, LEAKY_SLOPE)
    elif name == "softsign":
        d = 1.0 / (1.0 + np.abs(x)) ** 2
    elif name == "exponential":
        d = np.exp(x)
    else:
        raise ValueError(code)
    return dout * d


# --- dense ---

def dense_forward(x, w, b=None):
    """x (B, n_in) @ w (n_in, n_out) + b (n_out)."""
    out = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    return out if b is None else out + np.asarray(b, np.float64)


def dense_backward(dout, x, w):
    """(dx, dw, db) of out = x @ w + b."""
    dout = np.asarray(dout, np.float64)
    return dout @ np.asarray(w, np.float64).T, np.asarray(x, np.float64).T @ dout, dout.sum(axis=0)


# --- windowed layers on channels-last batches (B, H, W, C) (Keras 3 / TF semantics) ---

def window_geometry(n, k, s, padding):
    """(out, pad_before, pad_after) along one spatial axis of length n, window k, stride s.
    'valid': windows inside the input, out = floor((n - k) / s) + 1. 'same': out = ceil(n / s),
    pad_total = max((out - 1) s + k - n, 0), the smaller half before (TF's split)."""
    if padding == "valid":
        return (n - k) // s + 1, 0, 0
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def _pad_and_windows(x, kernel, strides, padding, fill):
    """Windows (B, oh, ow, C, kh, kw) of x (B, H, W, C) padded with `fill`, and the same windows of
    the mask of cells inside the input."""
    x = np.asarray(x, np.float64)
    (kh, kw), (sh, sw) = kernel, strides
    oh, top, bottom = window_geometry(x.shape[1], kh, sh, padding)
    ow, left, right = window_geometry(x.shape[2], kw, sw, padding)
    pads = ((0, 0), (top, bottom), (left, right), (0, 0))
    xp = np.pad(x, pads, constant_values=fill)
    inside = np.pad(np.ones_like(x), pads, constant_values=0.0)

    def windows(a):
        v = np.lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(1, 2))
        return v[:, ::sh, ::sw][:, :oh, :ow]
    return windows(xp), windows(inside)


def conv2d(x, kernel, bias=None, strides=(1, 1), padding="valid"):
    """Keras Conv2D before its activation: out[b, i, j, f] = sum_{u, v, c} xpad[b, i sh + u, j sw + v, c]
    kernel[u, v, c, f] + bias[f]; kernel (kh, kw, cin, cout), zeros as padding."""
    kernel = np.asarray(kernel, np.float64)
    win, _ = _pad_and_windows(x, kernel.shape[:2], strides, padding, 0.0)
    out = np.einsum("bijcuv,uvcf->bijf", win, kernel)
    return out if bias is None else out + np.asarray(bias, np.float64)


def max_pool2d(x, pool_size=(2, 2), strides=None, padding="valid"):
    """The largest value of each window per channel; 'same' padding never wins (-inf)."""
    win, _ = _pad_and_windows(x, pool_size, strides or pool_size, padding, -np.inf)
    return win.max(axis=(4, 5))


def avg_pool2d(x, pool_size=(2, 2), strides=None, padding="valid"):
    """The mean of each window per channel over its cells inside the input (Keras 'same' excludes the
    padding from the count)."""
    win, inside = _pad_and_windows(x, pool_size, strides or pool_size, padding, 0.0)
    return win.sum(axis=(4, 5)) / inside.sum(axis=(4, 5))


def global_avg_pool2d(x):
    """(B, H, W, C) -> (B, C): the mean of each feature map."""
    return np.asarray(x, np.float64).mean(axis=(1, 2))


def batch_norm(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3, momentum=0.99, training=False):
    """Keras BatchNormalization on the last axis: (out, new moving_mean, new moving_var).
    Training: the batch mean and biased variance over all axes but the last normalise x, and the moving
    statistics become moving * momentum + batch * (1 - momentum). Otherwise the moving statistics
    normalise x and stay. gamma / beta None: scale=False / center=False."""
    x = np.asarray(x, np.float64)
    moving_mean = np.asarray(moving_mean, np.float64)
    moving_var = np.asarray(moving_var, np.float64)
    if training:
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        new_mean = moving_mean * momentum + mean * (1.0 - momentum)
        new_var = moving_var * momentum + var * (1.0 - momentum)
    else:
        mean, var = moving_mean, moving_var
        new_mean, new_var = moving_mean, moving_var
    out = (x - mean) / np.sqrt(var + epsilon)
    if gamma is not None:
        out = out * np.asarray(gamma, np.float64)
    if beta is not None:
        out = out + np.asarray(beta, np.float64)
    return out, new_mean, new_var


def relu_layer(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's activations.relu (ReLU and LeakyReLU layers): x above the threshold, clipped at
    max_value; negative_slope * (x - threshold) at or below it (0 for a slope of 0: Keras skips the
    term). The constants as float32, which Keras computes in."""
    x = np.asarray(x, np.float64)
    slope, t = float(np.float32(negative_slope)), float(np.float32(threshold))
    top = np.inf if max_value is None else float(np.float32(max_value))
    low = slope * (x - t) if slope else np.zeros_like(x)
    return np.where(x > t, np.minimum(x, top), np.where(x <= t, low, x))


def normalization(x, mean, variance, invert=False, epsilon=CLIP_EPS):
    """Keras's Normalization: (x - mean) / max(sqrt(variance), epsilon), or the inverse map;
    mean and variance broadcast against x's last axis (or scalars)."""
    x = np.asarray(x, np.float64)
    d = np.maximum(np.sqrt(np.asarray(variance, np.float64)), float(np.float32(epsilon)))
    mean = np.asarray(mean, np.float64)
    return mean + x * d if invert else (x - mean) / d


def keras_layer_forward(layer, x, weights, training=False):
    """The float64 forward of a built mnistc Keras layer on a batch x (B, *layer.input_shape), from its
    configuration and `weights` (its get_weights() order). Returns (out, new weights: the moving
    statistics of a BatchNormalization moved when it trains, else `weights`)."""
    x = np.asarray(x, np.float64)
    weights = [np.asarray(w, np.float64) for w in weights]
    name = type(layer).__name__
    if name in ("Dense", "Conv2D"):
        bias = weights[1] if layer.use_bias else None
        if name == "Dense":
            pre = dense_forward(x, weights[0], bias)  # the last axis, as Keras's Dense
        else:
            pre = conv2d(x, weights[0], bias, layer.strides, layer.padding)
        return act_forward(ACT[layer.activation], pre), weights
    if name in ("MaxPooling2D", "AveragePooling2D"):
        pool = max_pool2d if name == "MaxPooling2D" else avg_pool2d
        return pool(x, layer.pool_size, layer.strides, layer.padding), weights
    if name == "GlobalAveragePooling2D":
        out = global_avg_pool2d(x)
        return (out[:, None, None, :] if layer.keepdims else out), weights
    if name == "BatchNormalization":
        it = iter(weights)
        gamma = next(it) if layer.scale else None
        beta = next(it) if layer.center else None
        mean, var = next(it), next(it)
        out, mean, var = batch_norm(x, gamma, beta, mean, var, layer.epsilon, layer.momentum,
                                    training and layer.trainable)
        return out, weights[:len(weights) - 2] + [mean, var]
    if name == "Flatten":
        return x.reshape(len(x), -1), weights
    if name == "Dropout":
        if training and layer.rate > 0:
            raise ValueError("keras_layer_forward: dropout while training has no float64 mask here")
        return x.copy(), weights
    if name in ("Activation", "Softmax"):
        return act_forward(ACT[layer.activation], x), weights
    if name == "ReLU":
        return relu_layer(x, layer.negative_slope, layer.max_value, layer.threshold), weights
    if name == "LeakyReLU":
        return relu_layer(x, layer.negative_slope), weights
    if name == "Normalization":
        mean, var = weights[:2] if weights else (layer.input_mean, layer.input_variance)
        return normalization(x, mean, var, layer.invert), weights
    raise ValueError(f"keras_layer_forward: no reference for {name}")


# --- losses: (per-sample losses (B,), gradient of the batch mean w.r.t. the input) ---

def _targets(y, labels, n, ls, kind):
    t = np.eye(n)[np.asarray(labels)] if labels is not None else np.asarray(y, np.float64)
    if kind == CCE:
        t = t * (1 - ls) + ls / n
    elif kind == BCE:
        t = t * (1 - ls) + 0.5 * ls
    return t


def mse(p, y):
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    B, n = p.shape
    return ((p - y) ** 2).mean(axis=1), 2 * (p - y) / (n * B)


def mae(p, y):
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    B, n = p.shape
    return np.abs(p - y).mean(axis=1), np.sign(p - y) / (n * B)


def bce_logits(z, y, ls=0.0):
    """Keras binary_crossentropy(from_logits=True), mean over the last axis."""
    z = np.asarray(z, np.float64)
    B, n = z.shape
    t = _targets(y, None, n, ls, BCE)
    per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return per.mean(axis=1), (sigmoid(z) - t) / (n * B)


def bce_probs(p, y, ls=0.0):
    """Keras binary_crossentropy on probabilities: clip to [eps, 1-eps]; zero gradient where clipped."""
    p = np.asarray(p, np.float64)
    B, n = p.shape
    t = _targets(y, None, n, ls, BCE)
    c = np.clip(p, CLIP_EPS, 1 - CLIP_EPS)
    per = -(t * np.log(c) + (1 - t) * np.log(1 - c))
    inside = (p >= CLIP_EPS) & (p <= 1 - CLIP_EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(inside, -t / p + (1 - t) / (1 - p), 0.0)
    return per.mean(axis=1), g / (n * B)


def cce_logits(z, y=None, labels=None, ls=0.0, kind=CCE):
    """-sum t * log_softmax(z); gradient sum(t) softmax - t, over B."""
    z = np.asarray(z, np.float64)
    B, n = z.shape
    t = _targets(y, labels, n, ls, kind)
    lse = np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)) + z.max(axis=1, keepdims=True)
    per = (t * (lse - z)).sum(axis=1)
    return per, (t.sum(axis=1, keepdims=True) * softmax(z) - t) / B


def cce_probs(p, y=None, labels=None, ls=0.0, kind=CCE):
    """Keras categorical_crossentropy on probabilities: q = p / sum(p), clip, -sum t log q, with the
    gradient through the normalisation and the clip (zero where clipped)."""
    p = np.asarray(p, np.float64)
    B, n = p.shape
    t = _targets(y, labels, n, ls, kind)
    s = p.sum(axis=1, keepdims=True)
    q = p / s
    per = -(t * np.log(np.clip(q, CLIP_EPS, 1 - CLIP_EPS))).sum(axis=1)
    inside = (q >= CLIP_EPS) & (q <= 1 - CLIP_EPS)
    g = np.where(inside, -t / q, 0.0)  # dL/dq
    dp = (g - (g * q).sum(axis=1, keepdims=True)) / s
    return per, dp / B


def loss_eval(spec, fused, out, logits, y):
    """(per-sample losses, gradient of the batch mean w.r.t. out, or w.r.t. logits when fused) for
    spec = (kind, from_logits, label_smoothing); y: class ids (SCCE) or (B, n) targets."""
    kind, from_logits, ls = spec
    labels = y if kind == SCCE else None
    yy = None if kind == SCCE else y
    use_logits = fused or from_logits
    src = logits if fused else out
    if kind == MSE:
        return mse(out, y)
    if kind == MAE:
        return mae(out, y)
    if kind == BCE:
        return bce_logits(src, y, ls) if use_logits else bce_probs(out, y, ls)
    ls = ls if kind == CCE else 0.0
    if use_logits:
        return cce_logits(src, yy, labels, ls, kind)
    return cce_probs(out, yy, labels, ls, kind)


def weighted_loss_eval(spec, fused, out, logits, y, w):
    """Keras's "sum_over_batch_size" with sample weights: (per-sample losses times w, gradient of
    sum(w * loss) / B, the divisor the row count and not the sum of the weights)."""
    per, g = loss_eval(spec, fused, out, logits, y)
    w = np.asarray(w, np.float64)
    return per * w, g * w[:, None]


# --- metrics: sum over rows ---

def metric_sum(metric, pred, y, sparse):
    pred = np.asarray(pred, np.float64)
    B, n = pred.shape
    t = np.eye(n)[np.asarray(y)] if sparse else np.asarray(y, np.float64)
    if metric == M_NONE:
        return 0.0
    if metric in (M_SPARSE, M_CAT):
        want = np.asarray(y) if sparse else t.argmax(axis=1)
        return float((pred.argmax(axis=1) == want).sum())
    if metric == M_BIN:
        return float(((pred > 0.5) == (t > 0.5)).mean(axis=1).sum())
    raise ValueError(metric)


# --- dropout masks: the counter-based hash of csrc/rng.h, in uint64 arithmetic ---

_M64 = (1 << 64) - 1


def _mix(x):
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def dropout_mask(seed, step, layer, count, rate):
    """The float32-valued mask (0 or float32(1/(1-rate))) C draws for `count` elements, as float64."""
    key = _mix(_mix(_mix(np.array([seed & _M64], np.uint64)) ^ np.uint64(step)) ^ np.uint64(layer))
    u = (_mix(key ^ np.arange(count, dtype=np.uint64)) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    scale = float(np.float32(1.0 / (1.0 - rate))) if rate < 1 else 0.0
    return np.where(u >= rate, scale, 0.0)


# --- layer tables and whole models ---

def build_table(spec, n_in, rng, trainable=None, use_bias=True, penalties=None):
    """A C layer table from a short description, laid out by the model's own plan code (table_row).

    spec: list of ("dense", n_out, act_name) | ("act", act_name) | ("dropout", rate) |
    ("rescale", scale, offset). Weights drawn from rng (glorot-uniform kernels, small random biases).
    penalties: {spec index of a dense layer: (kernel l1, kernel l2, bias l1, bias l2)}.
    Returns (layers int64 (L, _C.TABLE_COLS), lfloats float64 (L, _C.FTABLE_COLS), params float32 (P,)).
    """
    rows, floats, chunks, P, width = [], [], [], 0, n_in
    for i, item in enumerate(spec):
        kind, offsets = item[0], []
        if kind == "dense":
            n_out, act = item[1], ACT[item[2]]
            lim = math.sqrt(6.0 / (width + n_out))
            chunks.append(rng.uniform(-lim, lim, size=width * n_out))
            offsets.append(P)
            P += width * n_out
            if use_bias:
                chunks.append(rng.uniform(-0.1, 0.1, size=n_out))
                offsets.append(P)
                P += n_out
            factors = (penalties or {}).get(i, (0.0, 0.0, 0.0, 0.0))
            row = CRow(DENSE, (width,), (n_out,), act, weights=(0, 1 if use_bias else -1),
                       floats=_floats(dict(zip(PENALTY_COLS, factors))))
            width = n_out
        elif kind == "act":
            row = CRow(ACTIVATION, (width,), (width,), ACT[item[1]])
        elif kind == "dropout":
            row = CRow(DROPOUT, (width,), (width,), floats=_floats({_C.FCOL_RATE: item[1]}))
        elif kind == "rescale":
            row = CRow(RESCALING, (width,), (width,), floats=_floats({_C.FCOL_SCALE: item[1], _C.FCOL_OFFSET: item[2]}))
        else:
            raise ValueError(kind)
        r, f = table_row(row, offsets)
        r[TRAINABLE] = 1 if trainable is None else int(trainable[i])
        rows.append(r)
        floats.append(f)
    params = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return (np.array(rows, np.int64).reshape(-1, _C.TABLE_COLS),
            np.array(floats, np.float64).reshape(-1, _C.FTABLE_COLS), params)


PENALTY_COLS = (_C.FCOL_W0_L1, _C.FCOL_W0_L2, _C.FCOL_W1_L1, _C.FCOL_W1_L2)


def weight_penalty(w, l1, l2):
    """Keras's L1L2 penalty of one weight in float64, l1 * sum|w| + l2 * sum(w^2), and its gradient
    l1 * sign(w) + 2 * l2 * w (sign(0) = 0)."""
    w = np.asarray(w, np.float64)
    return l1 * np.abs(w).sum() + l2 * np.square(w).sum(), l1 * np.sign(w) + 2.0 * l2 * w


def _floats(values):
    f = [0.0] * _C.FTABLE_COLS
    for col, v in values.items():
        f[col] = float(v)
    return tuple(f)


def _dense_weights(row):
    """(kernel offset, n_in, n_out, bias offset or -1) of a flat dense row."""
    return int(row[W0]), int(row[IN_C]), int(row[OUT_C]), int(row[W0 + 1])


def segments_of(layers):
    """Trainable ranges [offset, length] of a table, merged where contiguous, in offset order."""
    ranges = []
    for row in layers:
        if row[KIND] != DENSE or not row[TRAINABLE]:
            continue
        w_off, n_in, n_out, b_off = _dense_weights(row)
        ranges.append([w_off, n_in * n_out])
        if b_off >= 0:
            ranges.append([b_off, n_out])
    ranges.sort()
    merged = []
    for off, n in ranges:
        if merged and merged[-1][0] + merged[-1][1] == off:
            merged[-1][1] += n
        else:
            merged.append([off, n])
    return np.array(merged, np.int64).reshape(-1, 2)


def is_fused(layers, spec):
    kind, from_logits, _ = spec
    last = layers[-1]
    if from_logits or last[KIND] not in (DENSE, ACTIVATION):
        return False
    if kind in (CCE, SCCE):
        return ACTS[last[ACT_COL]] == "softmax"
    if kind == BCE:
        return ACTS[last[ACT_COL]] == "sigmoid"
    return False


def model_forward(layers, lfloats, params, x, training=False, seed=0, step=0):
    """Forward pass; returns (output, cache) where cache[l] = (inp, pre, out, mask)."""
    params = np.asarray(params, np.float64)
    h = np.asarray(x, np.float64)
    cache = []
    for l, row in enumerate(layers):
        kind, act = row[KIND], row[ACT_COL]
        pre, mask = None, None
        if kind == DENSE:
            w_off, n_in, n_out, b_off = _dense_weights(row)
            w = params[w_off:w_off + n_in * n_out].reshape(n_in, n_out)
            b = params[b_off:b_off + n_out] if b_off >= 0 else None
            pre = dense_forward(h, w, b)
            out = act_forward(act, pre)
        elif kind == ACTIVATION:
            pre = h
            out = act_forward(act, h)
        elif kind == DROPOUT:
            rate = lfloats[l, _C.FCOL_RATE]
            if training and rate > 0:
                mask = dropout_mask(seed, step, l, h.size, rate).reshape(h.shape)
                out = h * mask
            else:
                out = h.copy()
        elif kind == RESCALING:
            out = h * float(np.float32(lfloats[l, _C.FCOL_SCALE])) + float(np.float32(lfloats[l, _C.FCOL_OFFSET]))
        else:
            raise ValueError(kind)
        cache.append((h, pre, out, mask))
        h = out
    return h, cache


def model_loss_and_grad(layers, lfloats, params, x, y, spec, training=False, seed=0, step=0, sample_weight=None):
    """(mean loss + weight penalties, grads (P,) with the trainable layers' ranges filled (zeros
    elsewhere), dx (B, d), output) of the whole chain, with the engine's fused-loss rule;
    sample_weight (B,) weights the per-sample losses as weighted_loss_eval does. The penalties are
    the trainable dense layers' (lfloats' FCOL_W*_L* columns), with their gradients."""
    out, cache = model_forward(layers, lfloats, params, x, training, seed, step)
    fused = is_fused(layers, spec)
    logits = cache[-1][1] if fused else None
    if sample_weight is None:
        per, g = loss_eval(spec, fused, out, logits, y)
    else:
        per, g = weighted_loss_eval(spec, fused, out, logits, y, sample_weight)
    params64 = np.asarray(params, np.float64)
    grads = np.zeros(len(params64))
    L = len(layers)
    for l in range(L - 1, -1, -1):
        row = layers[l]
        kind, act = row[KIND], row[ACT_COL]
        inp, pre, _, mask = cache[l]
        skip_act = fused and l == L - 1
        if kind == DENSE:
            if not skip_act:
                g = act_backward(act, pre, g)
            w_off, n_in, n_out, b_off = _dense_weights(row)
            w = params64[w_off:w_off + n_in * n_out].reshape(n_in, n_out)
            g, dw, db = dense_backward(g, inp, w)
            if row[TRAINABLE]:
                grads[w_off:w_off + n_in * n_out] = dw.ravel()
                if b_off >= 0:
                    grads[b_off:b_off + n_out] = db
        elif kind == ACTIVATION:
            if not skip_act:
                g = act_backward(act, pre, g)
        elif kind == DROPOUT:
            if mask is not None:
                g = g * mask
        elif kind == RESCALING:
            g = g * float(np.float32(lfloats[l, _C.FCOL_SCALE]))
        else:
            raise ValueError(f"model_loss_and_grad: no backward for layer kind {kind}; differentiate "
                             "keras_layer_forward numerically (numeric_grad)")
    # the trainable dense layers' weight penalties, on the loss and on their gradients
    penalty = 0.0
    for l, row in enumerate(layers):
        if row[KIND] != DENSE or not row[TRAINABLE]:
            continue
        w_off, n_in, n_out, b_off = _dense_weights(row)
        for off, n, (c1, c2) in ((w_off, n_in * n_out, PENALTY_COLS[:2]), (b_off, n_out, PENALTY_COLS[2:])):
            if off >= 0:
                p, dp = weight_penalty(params64[off:off + n], lfloats[l, c1], lfloats[l, c2])
                penalty += p
                grads[off:off + n] += dp
    return per.mean() + penalty, grads, g, out


# --- optimizers (Keras 3 update rules) on float64 copies ---

def n_slots(kind, hyper):
    if kind == SGD:
        return 1 if hyper[1] > 0 else 0
    if kind == ADAM:
        return 3 if hyper[5] else 2
    return 1 + (hyper[4] > 0) + bool(hyper[5])


def optimizer_step(kind, hyper, params, grads, segments, slots, iterations):
    """One step in place on float64 arrays params (P), slots (list of arrays of sum(lengths));
    grads (P). Returns the new iterations value."""
    lr, h1, h2, eps, mom, flag, wd = (float(v) for v in hyper[:7])
    t = iterations + 1
    pos = 0
    for off, n in segments:
        w = params[off:off + n]
        g = np.asarray(grads[off:off + n], np.float64)
        s = [sl[pos:pos + n] for sl in slots]
        if wd > 0:
            w -= w * wd * lr
        if kind == SGD:
            if h1 > 0:
                m = s[0]
                m[:] = h1 * m - lr * g
                if flag:
                    w += h1 * m - lr * g
                else:
                    w += m
            else:
                w -= lr * g
        elif kind == ADAM:
            m, v = s[0], s[1]
            m += (g - m) * (1 - h1)
            v += (g * g - v) * (1 - h2)
            vv = v
            if flag:
                s[2][:] = np.maximum(s[2], v)
                vv = s[2]
            alpha = lr * math.sqrt(1 - h2 ** t) / (1 - h1 ** t)
            w -= alpha * m / (np.sqrt(vv) + eps)
        elif kind == RMSPROP:
            v = s[0]
            v[:] = h1 * v + (1 - h1) * g * g
            k = 1
            momentum = None
            if mom > 0:
                momentum = s[k]
                k += 1
            if flag:
                mg = s[k]
                mg[:] = h1 * mg + (1 - h1) * g
                denom = v - mg * mg + eps
            else:
                denom = v + eps
            inc = lr * g / np.sqrt(denom)
            if momentum is not None:
                momentum[:] = mom * momentum + inc
                w -= momentum
            else:
                w -= inc
        else:
            raise ValueError(kind)
        pos += n
    return t


def hyper_vector(lr, h1=0.0, h2=0.0, eps=0.0, momentum=0.0, flag=0.0, wd=0.0):
    return np.array([lr, h1, h2, eps, momentum, flag, wd, 0.0], np.float64)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at x (float64 array), element by element."""
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


# --- Adagrad, Adamax, Nadam and the learning-rate schedules (Keras 3 formulas) ---

ADAGRAD, ADAMAX, NADAM = 3, 4, 5
S_CONSTANT, S_EXPONENTIAL, S_PIECEWISE, S_POLYNOMIAL, S_INVERSE_TIME, S_COSINE = range(6)


def schedule_lr(hyper, step):
    """The learning rate at optimizer step `step` (iterations before the increment): hyper[7] names the
    schedule, its parameters follow hyper[:8] (keras/src/optimizers/schedules/learning_rate_schedule.py)."""
    kind, p, s = int(hyper[7]), [float(v) for v in hyper[8:]], float(step)
    if kind == S_CONSTANT:
        return float(hyper[0])
    if kind in (S_EXPONENTIAL, S_INVERSE_TIME):
        init, decay_steps, rate, staircase = p
        e = math.floor(s / decay_steps) if staircase else s / decay_steps
        return init * rate ** e if kind == S_EXPONENTIAL else init / (1 + rate * e)
    if kind == S_POLYNOMIAL:
        init, decay_steps, end, power, cycle = p
        if cycle:
            decay_steps *= 1.0 if s == 0 else math.ceil(s / decay_steps)
        else:
            s = min(s, decay_steps)
        return (init - end) * (1 - s / decay_steps) ** power + end
    if kind == S_COSINE:
        init, decay_steps, alpha, target, warmup = p
        s = min(s, decay_steps + warmup)
        if s < warmup:
            return (target - init) * (s / warmup) + init
        cosine = 0.5 * (1 + math.cos(math.pi * (s - warmup) / decay_steps))
        return target * ((1 - alpha) * cosine + alpha)
    if kind == S_PIECEWISE:
        n = int(p[0])
        bounds, values = p[1:1 + n], p[1 + n:]
        for b, v in zip(bounds, values):
            if s <= b:
                return v
        return values[-1]
    raise ValueError(kind)


def slot_count(kind, hyper):
    """n_slots for every kind; Nadam's third slot is one value (u_product) for the whole optimizer."""
    return {ADAGRAD: 1, ADAMAX: 2, NADAM: 3}.get(kind) or n_slots(kind, hyper)


def scheduled_optimizer_step(kind, hyper, params, grads, segments, slots, iterations):
    """optimizer_step for every kind, at the learning rate schedule_lr(hyper, iterations). Nadam's
    slots[2] is a one-element array holding u_product (1 before the first step)."""
    lr = schedule_lr(hyper, iterations)
    if kind in (SGD, ADAM, RMSPROP):
        h = np.array(hyper[:8], np.float64)
        h[0] = lr
        return optimizer_step(kind, h, params, grads, segments, slots, iterations)
    _, b1, b2, eps, _, _, wd = (float(v) for v in hyper[:7])
    t = iterations + 1
    if kind == NADAM:
        u_t = b1 * (1 - 0.5 * 0.96 ** t)
        u_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        slots[2][0] *= u_t
        prod = float(slots[2][0])
    pos = 0
    for off, n in segments:
        w = params[off:off + n]
        g = np.asarray(grads[off:off + n], np.float64)
        s = [sl[pos:pos + n] for sl in slots[:2]]
        if wd > 0:
            w -= w * wd * lr
        if kind == ADAGRAD:
            acc = s[0]
            acc += g * g
            w -= lr * g / np.sqrt(acc + eps)
        elif kind == ADAMAX:
            m, u = s
            m += (g - m) * (1 - b1)
            u[:] = np.maximum(b2 * u, np.abs(g))
            w -= lr * m / ((1 - b1 ** t) * (u + eps))
        elif kind == NADAM:
            m, v = s
            m += (g - m) * (1 - b1)
            v += (g * g - v) * (1 - b2)
            m_hat = u_next * m / (1 - prod * u_next) + (1 - u_t) * g / (1 - prod)
            v_hat = v / (1 - b2 ** t)
            w -= m_hat * lr / (np.sqrt(v_hat) + eps)
        else:
            raise ValueError(kind)
        pos += n
    return t


def scheduled_hyper(kind, hyper8, schedule, params):
    """hyper8 (8,) with hyper[7] = schedule and its parameters appended."""
    h = np.array(hyper8, np.float64)
    h[7] = schedule
    return np.concatenate([h, np.asarray(params, np.float64)])
