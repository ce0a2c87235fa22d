import numpy as np
import pytest

import scalarbp

#: (output, loss) pairs: each output with its natural loss, and mse on the others.
OUTPUT_LOSS = [
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
    ("identity", "mse"),
    ("tanh", "mse"),
    ("softmax", "mse"),
    ("sigmoid", "mse"),
    ("exp", "poisson"),
]
HIDDEN = ["relu", "leaky_relu", "sigmoid", "tanh", "identity"]
BACKENDS = ["scalar", "row", "column"]


def run_cli(capsys, *argv):
    """``scalarbp`` with these arguments, in this process: ``(exit code, stdout, stderr)``."""
    from scalarbp.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make_targets(rng, loss, N, K):
    """Labels for cross-entropy, binary targets for BCE, real targets for mse."""
    if loss == "cross_entropy":
        return rng.integers(0, K, N)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (N, K)).astype(float)
    if loss == "poisson":  # (counts, zeros among them: 0 log 0 = 0)
        return rng.poisson(1.5, (N, K)).astype(float)
    return rng.normal(size=(N, K))


def spirals_net(**kw):
    """A 2-32-32-3 tanh net and 300 points of three spirals."""
    from scalarbp.datasets import make_spirals
    X, y = make_spirals(300, n_classes=3, noise=0.05, seed=0)
    return scalarbp.MLP([2, 32, 32, 3], hidden="tanh", seed=0, **kw), X, y


def problem(sizes, hidden="relu", output="softmax", loss=None, N=7, seed=0, **kw):
    """A net and a batch (X, Y) for it, all from one seed."""
    net = scalarbp.MLP(sizes, hidden=hidden, output=output, loss=loss, seed=seed, **kw)
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:  # non-zero biases: no unit sits exactly on ReLU's kink
        b[...] = rng.normal(0, 0.1, b.shape)
    X = rng.normal(size=(N, sizes[0]))
    return net, X, make_targets(rng, net.loss, N, sizes[-1])


def assert_close(a, b, rel):
    """max |a - b| <= rel * max |b|, over a whole array (norm-wise relative difference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.max(np.abs(b)), np.finfo(float).tiny)
    assert np.max(np.abs(a - b)) <= rel * scale, f"relative difference {np.max(np.abs(a - b)) / scale:.3e} > {rel}"


@pytest.fixture
def seed_002_net():
    """Seed 002's worked example: a 2-3-2 net, ReLU, softmax, cross-entropy, l2 = 1."""
    net = scalarbp.MLP([2, 3, 2], hidden="relu", output="softmax", l2=1.0)
    net.weights[0][...] = [[0.3, 0.5], [0.2, 0.7], [0.1, 0.4]]
    net.biases[0][...] = [0.1, 0.2, 0.3]
    net.weights[1][...] = [[0.3, 0.5, 0.1], [0.2, 0.7, 0.8]]
    net.biases[1][...] = [0.3, 0.5]
    return net


@pytest.fixture(autouse=True)
def all_numba_threads():
    """Tests that pin Numba to one thread (the CLI's --threads) must not slow the rest."""
    yield
    import numba

    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
