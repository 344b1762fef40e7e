"""Parity with PyTorch: same initial weights, same batches, same Adam settings -> the same losses
over 50 steps. Skipped when torch is not installed; the float64 reference tests do not depend on it."""
import numpy as np
import pytest

import mnistc

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_adam_mlp_losses_match_pytorch_over_50_steps(mnist_dir):
    (x, y), _ = mnistc.datasets.mnist.load_data(mnist_dir)
    x = (x[:50 * 128] / 255.0).astype(np.float32).reshape(-1, 784)
    y = y[:50 * 128].astype(np.int64)
    mnistc.utils.set_random_seed(3)
    model = mnistc.Sequential([mnistc.Input((784,)), mnistc.layers.Dense(128, activation="relu"),
                               mnistc.layers.Dense(10)])
    # eps far below the gradients' scale, so Keras's and torch's different eps placement do not matter
    model.compile(mnistc.optimizers.Adam(1e-3, epsilon=1e-10),
                  mnistc.losses.SparseCategoricalCrossentropy(from_logits=True))
    w1, b1, w2, b2 = (torch.tensor(a) for a in model.get_weights())

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        net[0].weight.copy_(w1.T)
        net[0].bias.copy_(b1)
        net[2].weight.copy_(w2.T)
        net[2].bias.copy_(b2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-10)
    ours, theirs = [], []
    for step in range(50):
        xb, yb = x[step * 128:(step + 1) * 128], y[step * 128:(step + 1) * 128]
        ours.append(model.train_on_batch(xb, yb))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(yb))
        loss.backward()
        opt.step()
        theirs.append(loss.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert ours[-1] < ours[0] / 3
