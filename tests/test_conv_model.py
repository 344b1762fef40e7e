"""The keras-io MNIST convnet (Conv2D 32 -> MaxPooling2D -> Conv2D 64 -> MaxPooling2D -> Flatten -> Dropout
-> Dense 10 softmax) through the Keras API at small scale (64 random images): the forward and a chained
gradient against the float64 reference, determinism for a seed and across thread counts, predict on
blocks, saving, weights, summary counts, frozen layers and frozen BatchNormalization in fit, and the
errors that name the fix leaving the model as it was."""
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import mnistc
import reference as R
from mnistc import _C
from test_ops import check_directional
from test_robustness_inputs import Unchanged, rejects

L = mnistc.layers
N = 64


def convnet(seed=0, dropout=0.5, batch_norm=False):
    mnistc.utils.set_random_seed(seed)
    stack = [mnistc.Input((28, 28, 1)), L.Conv2D(32, kernel_size=(3, 3), activation="relu")]
    if batch_norm:
        stack.append(L.BatchNormalization())
    stack += [L.MaxPooling2D(pool_size=(2, 2)), L.Conv2D(64, kernel_size=(3, 3), activation="relu"),
              L.MaxPooling2D(pool_size=(2, 2)), L.Flatten(), L.Dropout(dropout), L.Dense(10, activation="softmax")]
    model = mnistc.Sequential(stack)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def images(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    x[x < 0.6] = 0.0  # mostly background, as digits are
    return x, rng.integers(0, 10, n)


def reference_chain(model, x, training=False, weights=None):
    """The model's float64 forward, layer by layer through reference.keras_layer_forward."""
    h = np.asarray(x, np.float64)
    weights = weights or [layer.get_weights() for layer in model.layers]
    for layer, w in zip(model.layers, weights):
        h, _ = R.keras_layer_forward(layer, h, w, training)
    return h


def run(model, x, y, epochs=2):
    """fit, evaluate and predict: (history, evaluate's [loss, accuracy], predictions, weights)."""
    hist = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    ev = model.evaluate(x, y, batch_size=16, verbose=0)
    pred = model.predict(x, batch_size=16, verbose=0)
    return hist.history, ev, pred, model.get_weights()


def assert_same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


@pytest.fixture
def restore_threads():
    saved = mnistc.get_num_threads()
    yield
    mnistc.set_num_threads(saved)


# --- numbers against the reference ---

@pytest.mark.parametrize("batch_norm", [False, True])
def test_convnet_predict_matches_the_float64_reference(batch_norm):
    model = convnet(1, batch_norm=batch_norm)
    x, y = images(16, seed=1)
    if batch_norm:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # moving statistics away from 0 and 1
    want = reference_chain(model, x)
    got = model.predict(x, batch_size=16, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_small_convnet_gradients_match_central_differences_of_the_chain():
    """Conv2D -> BatchNormalization (training) -> MaxPooling2D -> Conv2D 'same' stride 2 -> AveragePooling2D
    -> Flatten -> Dense: every trained weight's gradient and dx from one _C.loss_and_grad against float64
    central differences of the reference chain, so the layers' backward passes compose."""
    mnistc.utils.set_random_seed(5)
    model = mnistc.Sequential([
        mnistc.Input((7, 6, 2)), L.Conv2D(3, 3, activation="tanh"), L.BatchNormalization(momentum=0.9),
        L.MaxPooling2D(2, strides=1), L.Conv2D(4, 2, strides=2, padding="same", activation="relu"),
        L.AveragePooling2D(2, padding="same"), L.Flatten(), L.Dense(3)])
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w + rng.uniform(-0.3, 0.3, w.shape) for w in layer.get_weights()])
    x = rng.standard_normal((4, 7, 6, 2)).astype(np.float32)
    y = rng.standard_normal((4, 3)).astype(np.float32)
    plan = model._get_plan()
    table, _ = plan.tables([True] * len(model.layers))
    params = plan.params.copy()
    grads = np.zeros_like(params)
    loss, dx = _C.loss_and_grad(table, plan.lfloats, params, grads, x.reshape(4, -1), y, (R.MSE, 0, 0.0), 0, True)
    weights = [layer.get_weights() for layer in model.layers]

    def ref_loss(xx=x, ws=weights):
        out = reference_chain(model, xx, True, ws)
        return float(R.mse(out, y)[0].mean())
    np.testing.assert_allclose(loss, ref_loss(), rtol=1e-5)
    fd = R.numeric_grad(lambda xx: ref_loss(xx=xx), x.astype(np.float64))
    np.testing.assert_allclose(np.asarray(dx).reshape(x.shape), fd, rtol=1e-4, atol=1e-5 * np.abs(fd).max())
    for li, layer in enumerate(model.layers):
        for wi, (name, trained) in enumerate(zip(layer._weight_names, layer._weight_trained)):
            if not trained:
                continue

            def loss_of(w, li=li, wi=wi):
                ws = [list(lw) for lw in weights]
                ws[li][wi] = w
                return ref_loss(ws=ws)
            fd = R.numeric_grad(loss_of, weights[li][wi].astype(np.float64))
            off, size = plan.offsets[li][wi], weights[li][wi].size
            np.testing.assert_allclose(grads[off:off + size].reshape(fd.shape), fd, rtol=1e-4,
                                       atol=1e-5 * np.abs(fd).max(), err_msg=f"{layer.name}.{name}")

    def c_loss(p):
        g = np.zeros_like(p)
        return _C.loss_and_grad(table, plan.lfloats, p, g, x.reshape(4, -1), y, (R.MSE, 0, 0.0), 0, True)[0]
    trained = np.zeros(plan.P, bool)
    for li, layer in enumerate(model.layers):
        for off, w, t in zip(plan.offsets[li], layer._weights, layer._weight_trained):
            trained[off:off + w.size] = t
    base = plan.params.copy()

    def c_loss_trained(v):
        p = base.copy()
        p[trained] = v
        return c_loss(p)
    check_directional(c_loss_trained, base[trained], grads[trained], rng, eps=1e-3)


# --- determinism ---

def test_fit_is_deterministic_for_a_seed_and_differs_for_another():
    x, y = images()
    first = run(convnet(7), x, y)
    again = run(convnet(7), x, y)
    other = run(convnet(8), x, y)
    assert first[0] == again[0] and first[1] == again[1]
    assert_same_bits(first[2], again[2])
    for a, b in zip(first[3], again[3]):
        assert_same_bits(a, b)
    assert not np.array_equal(first[2], other[2])
    assert first[0]["loss"][1] < first[0]["loss"][0]


def test_fit_evaluate_predict_are_bit_identical_on_1_2_3_threads(restore_threads):
    x, y = images()
    results = []
    for threads in (1, 2, 3):
        mnistc.set_num_threads(threads)
        assert mnistc.get_num_threads() == threads
        results.append(run(convnet(3), x, y))
    for hist, ev, pred, weights in results[1:]:
        assert hist == results[0][0] and ev == results[0][1]
        assert_same_bits(pred, results[0][2])
        for a, b in zip(weights, results[0][3]):
            assert_same_bits(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_predict_in_batches_of_1_7_64_agrees_and_repeats_bit_for_bit(threads, restore_threads):
    mnistc.set_num_threads(threads)
    model = convnet(2, batch_norm=True)
    x, y = images()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    whole = model.predict(x, batch_size=N, verbose=0)
    for bs in (1, 7, N):
        got = model.predict(x, batch_size=bs, verbose=0)
        assert_same_bits(model.predict(x, batch_size=bs, verbose=0), got)
        np.testing.assert_allclose(got, whole, rtol=1e-6, atol=1e-7)
    assert_same_bits(model.predict_on_batch(x[:7]), model.predict(x[:7], batch_size=7, verbose=0))


INFER_RSS_CHILD = """
import resource, sys
sys.path[:0] = sys.argv[1:2]
from test_conv_model import convnet, images
model = convnet(5)
x, y = images(8000)
model.predict(x[:64], batch_size=32, verbose=0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model.predict(x, batch_size=len(x), verbose=0)
model.evaluate(x, y, batch_size=len(x), verbose=0)
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(growth)
"""


def test_inference_memory_does_not_grow_with_the_batch_size():
    # 8000 images in one batch: the layers' outputs alone would take 8000 * 152 KB = 1.2 GB if a batch
    # were held whole; inference runs it in cache-sized blocks, each thread in an arena of its own.
    r = subprocess.run([sys.executable, "-c", INFER_RSS_CHILD, str(pathlib.Path(__file__).parent)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    growth_kib = int(r.stdout)
    assert growth_kib < 48 * 1024, f"peak RSS grew by {growth_kib} KiB"


# --- weights, saving, summary ---

def test_save_load_round_trips_keras_and_weights_npz(tmp_path):
    x, y = images()
    model = convnet(4, batch_norm=True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    pred = model.predict(x, verbose=0)
    model.save(tmp_path / "net.keras")
    loaded = mnistc.load_model(tmp_path / "net.keras")
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert_same_bits(loaded.predict(x, verbose=0), pred)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert_same_bits(a, b)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    # training on continues identically (optimizer state and BatchNormalization statistics restored);
    # the same seed before each fit gives both the same shuffling
    mnistc.utils.set_random_seed(11)
    run_a = run(model, x, y, 1)
    mnistc.utils.set_random_seed(11)
    run_b = run(loaded, x, y, 1)
    assert run_a[0] == run_b[0]
    assert_same_bits(run_a[2], run_b[2])

    model.save_weights(tmp_path / "net.weights.npz")
    twin = convnet(99, batch_norm=True)
    assert not np.array_equal(twin.predict(x, verbose=0), model.predict(x, verbose=0))
    twin.load_weights(tmp_path / "net.weights.npz")
    assert_same_bits(twin.predict(x, verbose=0), model.predict(x, verbose=0))

    third = convnet(100, batch_norm=True)
    third.set_weights(model.get_weights())
    assert_same_bits(third.predict(x, verbose=0), model.predict(x, verbose=0))
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 3, 1, 32), (32,), (32,), (32,), (32,), (32,), (3, 3, 32, 64), (64,), (1600, 10), (10,)]


def test_summary_counts_match_keras():
    lines = []
    model = convnet(0)
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    counts = {layer.name: layer.count_params() for layer in model.layers}
    assert list(counts.values()) == [320, 0, 18496, 0, 0, 0, 16010]
    assert " Total params: 34,826 " in text and " Trainable params: 34,826 " in text
    for layer, count in zip(model.layers, ("320", "0", "18,496", "0", "0", "0", "16,010")):
        assert re.search(rf"{layer.name} \({type(layer).__name__}\) .*│ +{count} │", text), (layer.name, text)

    lines = []
    model = convnet(0, batch_norm=True)
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    bn = model.layers[1]
    assert bn.count_params() == 4 * 32 and len(bn.trainable_weights) == 2 and len(bn.non_trainable_weights) == 2
    assert " Total params: 34,954 " in text and " Trainable params: 34,890 " in text
    assert " Non-trainable params: 64 " in text


# --- frozen layers in fit ---

def test_frozen_conv_body_stays_bit_identical_while_the_head_trains():
    x, y = images()
    model = convnet(6)
    for layer in model.layers[:-1]:
        layer.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    body = [w.copy() for layer in model.layers[:-1] for w in layer.get_weights()]
    head = model.layers[-1].get_weights()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for a, b in zip((w for layer in model.layers[:-1] for w in layer.get_weights()), body):
        assert_same_bits(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(model.layers[-1].get_weights(), head))


def test_frozen_batch_norm_keeps_its_moving_statistics_in_fit():
    x, y = images()
    model = convnet(6, batch_norm=True)
    bn = model.layers[1]
    bn.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = bn.get_weights()
    conv_before = model.layers[0].get_weights()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(bn.get_weights(), before):
        assert_same_bits(a, b)
    assert not np.array_equal(model.layers[0].kernel, conv_before[0])  # the rest trains
    # the same layer trainable: the moving statistics move, gamma and beta train
    bn.trainable = True
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(bn.get_weights(), before))


def test_calling_the_model_with_training_true_names_fit_for_batch_normalization():
    model = mnistc.Sequential([mnistc.Input((4,)), L.BatchNormalization()])
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32) * 3 + 2
    before = model.get_weights()
    with pytest.raises(ValueError, match="training=True.*BatchNormalization.*train_on_batch or fit"):
        model(x, training=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


# --- errors that name the fix, and leave the model as it was ---

def _layers_of(model):
    return [(layer.name, layer.output_shape) for layer in model.layers]


def test_a_window_larger_than_the_input_names_same_padding():
    with pytest.raises(ValueError, match=r"window \(5, 5\) is larger than the input's height 4.*padding='same'"):
        mnistc.Sequential([mnistc.Input((4, 4, 1)), L.Conv2D(2, 5)])
    model = mnistc.Sequential([mnistc.Input((4, 4, 1)), L.Conv2D(2, 3), L.Conv2D(2, 2)])
    shape_before = _layers_of(model)
    keep = Unchanged(model)
    for layer in (L.Conv2D(2, 2), L.MaxPooling2D(2), L.AveragePooling2D((1, 3))):
        with pytest.raises(ValueError, match="larger than the input"):
            model.add(layer)
        assert _layers_of(model) == shape_before
        keep.check()
    x = np.ones((3, 4, 4, 1), np.float32)
    assert model.predict(x, verbose=0).shape == (3, 1, 1, 2)


def test_conv2d_on_rank_2_samples_names_the_channel_axis():
    with pytest.raises(ValueError, match=r"Reshape\(\(28, 28, 1\)\).*x\[\.\.\., None\]"):
        mnistc.Sequential([mnistc.Input((28, 28)), L.Conv2D(32, 3)])
    model = mnistc.Sequential([mnistc.Input((28, 28)), L.Dense(4)])
    shape_before = _layers_of(model)
    keep = Unchanged(model)
    for layer in (L.Conv2D(2, 3), L.MaxPooling2D(), L.GlobalAveragePooling2D()):
        with pytest.raises(ValueError, match="channel axis"):
            model.add(layer)
        assert _layers_of(model) == shape_before
        keep.check()


@pytest.mark.parametrize("make", [lambda: L.Conv2D(8, 3, data_format="channels_first"),
                                  lambda: L.MaxPooling2D(data_format="channels_first"),
                                  lambda: L.AveragePooling2D(data_format="channels_first"),
                                  lambda: L.GlobalAveragePooling2D(data_format="channels_first")])
def test_channels_first_names_the_transpose(make):
    with pytest.raises(ValueError, match=r"channels_last only.*np\.transpose\(x, \(0, 2, 3, 1\)\)"):
        make()


def test_wrong_input_shape_is_refused_everywhere_and_loses_nothing():
    model = convnet(9)
    x, y = images(16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for bad in (np.zeros((16, 28, 28, 3), np.float32), np.zeros((16, 784), np.float32),
                np.zeros((16, 26, 26, 1), np.float32)):
        for call in (lambda: model.fit(bad, y, verbose=0), lambda: model.evaluate(bad, y, verbose=0),
                     lambda: model.predict(bad, verbose=0), lambda: model.train_on_batch(bad, y)):
            rejects(model, ValueError, r"expected shape \(None, 28, 28, 1\)", call, bad, y)
    # Keras's rank adaptation: (N, 28, 28) feeds Input((28, 28, 1))
    assert_same_bits(model.predict(x[..., 0], verbose=0), model.predict(x, verbose=0))


def test_nan_in_x_is_named_and_nan_weights_are_not_blamed_on_x():
    model = convnet(10)
    x, y = images(8)
    bad = x.copy()
    bad[3, 5, 5, 0] = np.nan
    rejects(model, ValueError, r"x contains 1 NaN and 0 infinite", lambda: model.predict(bad, verbose=0), bad)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rejects(model, ValueError, r"x contains 1 NaN", lambda: model.fit(bad, y, verbose=0), bad, y)
    # a NaN in the first kernel with a clean x: predict computes and does not blame x
    model.layers[0].kernel[1, 1, 0, 0] = np.nan
    keep = Unchanged(model, x)
    model.predict(x, verbose=0)
    keep.check()


def test_an_infinity_in_x_is_named_when_the_first_layer_is_a_winograd_relu_conv():
    # relu would turn the -inf products into 0: x is scanned before a conv first layer runs
    mnistc.utils.set_random_seed(2)
    model = mnistc.Sequential([mnistc.Input((6, 6, 16)), L.Conv2D(16, 3, activation="relu"), L.Flatten(),
                               L.Dense(3)])
    x = np.random.default_rng(2).random((5, 6, 6, 16), dtype=np.float32)
    bad = x.copy()
    bad[2, 1, 1, 3] = -np.inf
    rejects(model, ValueError, r"x contains 0 NaN and 1 infinite", lambda: model.predict(bad, verbose=0), bad)
    assert np.isfinite(model.predict(x, verbose=0)).all()


def test_a_nan_weight_in_a_relu_conv_layer_shows_in_the_predictions():
    model = convnet(10)
    x, _ = images(8)
    model.layers[0].kernel[1, 1, 0, 0] = np.nan
    assert np.isnan(model.predict(x, verbose=0)).all()


# --- parity with PyTorch ---

# Steps compared: past ~35, float32 rounding that puts a pre-activation on the other side of relu's
# kink in one run and not the other makes the two drift apart (1e-3 of the loss by step 50), the
# convolutions' weight gradients being summed in another order than torch's.
AGREE_STEPS = 30


@pytest.mark.torch
def test_adam_convnet_matches_pytorch_over_30_steps(mnist_dir):
    """The convnet without dropout, the same initial weights in torch (kernels (kh, kw, cin, cout) ->
    (cout, cin, kh, kw); the Dense rows follow the channels-last flatten (h, w, c), torch's flatten is
    (c, h, w)), AGREE_STEPS Adam steps with Keras's defaults on the same batches of real digits.

    Keras adds epsilon to sqrt(v) (KERAS_SEMANTICS.md §5), torch to sqrt(v_hat) = sqrt(v) / sqrt(1 - b2^t):
    torch's epsilon is set to 1e-7 / sqrt(1 - 0.999^t) before step t, which makes the two updates the
    same formula. Step by step the weights then agree to ~1e-7; the tolerances allow for a ReLU input
    or a max-pooling pair that float32 and torch's rounding put on different sides of a kink (one such
    flip, a conv pre-activation of 2e-8, shows at step 37 on x86-64: from there the weights differ by up
    to 0.8% of how far they moved, the losses by 1.2e-5)."""
    torch = pytest.importorskip("torch")
    (x, y), _ = mnistc.datasets.mnist.load_data(mnist_dir)
    bs, steps = 32, 50
    x = (x[:bs * steps] / 255.0).astype(np.float32)[..., None]
    y = y[:bs * steps].astype(np.int64)
    model = convnet(3, dropout=0.0)
    model.compile(mnistc.optimizers.Adam(), "sparse_categorical_crossentropy")
    initial = model.get_weights()
    k1, b1, k2, b2, w3, b3 = initial

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                  torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                  torch.nn.Flatten(), torch.nn.Linear(1600, 10))
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        with torch.no_grad():
            net[0].weight.copy_(t(k1.transpose(3, 2, 0, 1)))
            net[0].bias.copy_(t(b1))
            net[3].weight.copy_(t(k2.transpose(3, 2, 0, 1)))
            net[3].bias.copy_(t(b2))
            net[7].weight.copy_(t(w3.reshape(5, 5, 64, 10).transpose(3, 2, 0, 1).reshape(10, 1600)))
            net[7].bias.copy_(t(b3))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
        ours, theirs = [], []
        for step in range(steps):
            xb, yb = x[step * bs:(step + 1) * bs], y[step * bs:(step + 1) * bs]
            ours.append(model.train_on_batch(xb, yb))
            opt.param_groups[0]["eps"] = 1e-7 / np.sqrt(1 - 0.999 ** (step + 1))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(t(xb.transpose(0, 3, 1, 2))), t(yb))
            loss.backward()
            opt.step()
            theirs.append(loss.item())
            if step + 1 == AGREE_STEPS:
                break
        g = lambda p: p.detach().numpy()  # noqa: E731
        torch_weights = [g(net[0].weight).transpose(2, 3, 1, 0), g(net[0].bias),
                         g(net[3].weight).transpose(2, 3, 1, 0), g(net[3].bias),
                         g(net[7].weight).reshape(10, 64, 5, 5).transpose(2, 3, 1, 0).reshape(1600, 10),
                         g(net[7].bias)]
    finally:
        torch.set_num_threads(saved_threads)
    np.testing.assert_allclose(ours[:5], theirs[:5], rtol=1e-6)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert ours[-1] < 0.6 * ours[0]
    for name, a, b, w0 in zip(("conv1 kernel", "conv1 bias", "conv2 kernel", "conv2 bias", "dense kernel",
                               "dense bias"), model.get_weights(), torch_weights, initial):
        moved = np.abs(b - w0).max()
        assert moved > 1e-2, name
        assert np.abs(a - b).max() <= 0.05 * moved, name  # measured: 2.4% at most (conv2 kernel)
