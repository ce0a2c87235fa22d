"""Seed 002's worked example, forward and backward, on every backend.

The note's forward numbers are right.  Its backward numbers are not: it seeds the
backward pass with dJ/dL = 1.403 (the value of J) where dJ/dL = 1, so every gradient it
prints is 1.403 times the true one.  The expected values below are the correct ones,
worked out by hand in the comments.
"""
import numpy as np
import pytest

import scalarbp
from conftest import BACKENDS

x = np.array([[6.0, 3.0]])
y = np.array([1])  # y = (0, 1)

W1 = np.array([[0.3, 0.5], [0.2, 0.7], [0.1, 0.4]])
b1 = np.array([0.1, 0.2, 0.3])
W2 = np.array([[0.3, 0.5, 0.1], [0.2, 0.7, 0.8]])
b2 = np.array([0.3, 0.5])

# Forward, as in the note: u = W1 x + b1, h = ReLU(u), v = W2 h + b2, o = softmax(v).
u = [3.4, 3.5, 2.1]
v = [3.28, 5.31]
o1 = np.exp(3.28) / (np.exp(3.28) + np.exp(5.31))  # 26.576 / 228.926 = 0.116
o = [o1, 1 - o1]

# Backward, correct: dJ/dv = o - y = (0.1161, -0.1161); dJ/dW2 = (o - y) h^T + W2;
# dJ/dh = W2^T (o - y); ReLU'(u) = 1 since u > 0, so dJ/du = dJ/dh; dJ/dW1 = dJ/du x^T + W1.
dJ_dv = np.array(o) - [0, 1]
dJ_dW2 = np.outer(dJ_dv, u) + W2
dJ_du = W2.T @ dJ_dv
dJ_dW1 = np.outer(dJ_du, x[0]) + W1


def net_with(sizes, Ws, bs, output, l2=0.0):
    net = scalarbp.MLP(sizes, output=output, l2=l2, loss="mse" if output == "identity" else None)
    for k, (W, b) in enumerate(zip(Ws, bs)):
        net.weights[k][...] = W
        net.biases[k][...] = b
    return net


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_values_match_the_note(backend, seed_002_net):
    pre_activations = net_with([2, 3], [W1], [b1], "identity")
    np.testing.assert_allclose(pre_activations.forward(x, backend=backend)[0], u, atol=1e-12)
    logits = net_with([2, 3, 2], [W1, W2], [b1, b2], "identity")
    np.testing.assert_allclose(logits.forward(x, backend=backend)[0], v, atol=1e-12)

    probs = seed_002_net.forward(x, backend=backend)[0]
    np.testing.assert_allclose(probs, [0.116, 0.884], atol=5e-4)

    L, _, _ = net_with([2, 3, 2], [W1, W2], [b1, b2], "softmax").loss_and_grad(x, y, backend=backend)
    assert round(L, 3) == 0.123
    J, _, _ = seed_002_net.loss_and_grad(x, y, backend=backend)
    s1, s2 = 0.5 * (W1 ** 2).sum(), 0.5 * (W2 ** 2).sum()
    assert (round(s1, 2), round(s2, 2)) == (0.52, 0.76)
    assert round(J, 3) == 1.403
    assert J == pytest.approx(L + s1 + s2, rel=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_values_are_the_correct_ones(backend, seed_002_net):
    _, dW, db = seed_002_net.loss_and_grad(x, y, backend=backend)
    np.testing.assert_allclose(db[1], dJ_dv, rtol=1e-13)
    np.testing.assert_allclose(dW[1], dJ_dW2, rtol=1e-13)
    np.testing.assert_allclose(db[0], dJ_du, rtol=1e-13)
    np.testing.assert_allclose(dW[0], dJ_dW1, rtol=1e-13)
    # Rounded to the note's three decimals:
    np.testing.assert_allclose(db[1], [0.116, -0.116], atol=5e-4)
    np.testing.assert_allclose(dW[1], [[0.695, 0.906, 0.344], [-0.195, 0.294, 0.556]], atol=5e-4)
    np.testing.assert_allclose(dW[0], [[0.370, 0.535], [0.061, 0.630], [-0.388, 0.156]], atol=5e-4)


def test_the_notes_backward_numbers_are_the_true_ones_times_J(seed_002_net):
    """The erratum, pinned down: the note's dJ/dv and dJ/dW2 are 1.403 x the true values."""
    _, dW, db = seed_002_net.loss_and_grad(x, y)
    notes_dJ_dv = np.array([0.163, -0.163])
    notes_dJ_dW2 = np.array([[0.975, 1.273, 0.482], [-0.273, 0.411, 0.78]])
    np.testing.assert_allclose(notes_dJ_dv, 1.403 * db[1], atol=1e-3)
    np.testing.assert_allclose(notes_dJ_dW2, 1.403 * dW[1], atol=2e-3)
    assert not np.allclose(notes_dJ_dW2, dW[1], atol=0.1)


def test_finite_differences_confirm_the_correct_gradient(seed_002_net):
    assert scalarbp.gradcheck(seed_002_net, x, y) < 1e-7
