"""The Poisson loss with the exp output (scikit-learn's ``MLPRegressor(loss="poisson")``):
``Loss = sum_j [y log(y / f) - y + f]``, ``f = e^a``, ``delta = f - y``, against PyTorch's
``PoissonNLLLoss`` (which omits the constant ``y log y - y``) and scikit-learn's own loss."""
import numpy as np
import pytest

from conftest import BACKENDS, problem


@pytest.mark.parametrize("backend", BACKENDS + ["literal"])
def test_poisson_loss_and_gradient_match_pytorch_autograd(backend):
    torch = pytest.importorskip("torch")
    net, X, Y = problem([3, 5, 2], "tanh", output="exp", N=9, seed=4)
    J, dW, db = net.loss_and_grad(X, Y, backend=backend)
    params = [torch.tensor(p, requires_grad=True) for p in [*net.weights, *net.biases]]
    h = torch.tensor(X)
    W1, W2, b1, b2 = params
    a = torch.tanh(h @ W1.T + b1) @ W2.T + b2
    y = torch.tensor(Y)
    reference = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction="sum")(a, y) / len(X)
    reference.backward()
    constant = np.sum(np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0) - Y) / len(X)
    assert abs(J - (reference.item() + constant)) <= 1e-14 * abs(J)
    for ours, theirs in zip([*dW, *db], params):
        assert np.max(np.abs(ours - theirs.grad.numpy())) <= 3e-15 * max(1.0, np.max(np.abs(theirs.grad.numpy())))


def test_poisson_loss_is_scikit_learns_half_deviance():
    pytest.importorskip("sklearn")
    from sklearn.neural_network._base import poisson_loss

    net, X, Y = problem([3, 4, 1], "relu", output="exp", N=11, seed=2)
    J, _, _ = net.loss_and_grad(X, Y)
    assert J == pytest.approx(poisson_loss(Y, net.forward(X)), rel=1e-14)


def test_poisson_targets_must_not_be_negative():
    net, X, Y = problem([3, 2], output="exp", N=4)
    Y[0, 0] = -1
    with pytest.raises(ValueError, match="poisson targets must be >= 0"):
        net.loss_and_grad(X, Y)
    with pytest.raises(ValueError, match="pairs with loss='poisson'"):
        problem([3, 2], output="exp", loss="mse")
