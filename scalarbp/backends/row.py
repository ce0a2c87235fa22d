"""NumPy reference, row version (seeds 003 and 004): samples are rows.

With ``U = W^T`` (shape ``(d_in, d_out)``) and ``X^(0) = X``::

    S^(l) = X^(l-1) U^(l) + c^(l)                    forward, seed 003
    X^(l) = theta(S^(l))
    delta^(L) = dLoss/dS^(L) / N                      (X^(L) - Y) / N for softmax + CE
    dE/dU^(l) = [X^(l-1)]^T delta^(l)                 dE/dc^(l) = 1^T delta^(l)
    delta^(l) = (delta^(l+1) [U^(l+1)]^T) * theta'(S^(l))

Written independently of the column reference and of the scalar kernels, so that
agreement between them means something.
"""
import numpy as np

from ..definitions.activations import ACTIVATIONS
from ..definitions.losses import output_activation, output_delta, sample_losses, shares
from . import Reference


def _forward(net, X):
    """Pre-activations S and activations X^(l) of every layer (X^(0) = X)."""
    U = [W.T for W in net.weights]
    S, Xs = [], [X]
    for l, (U_l, c_l) in enumerate(zip(U, net.biases)):
        S.append(Xs[-1] @ U_l + c_l)
        if l < len(U) - 1:
            Xs.append(ACTIVATIONS[net.hidden[l]].g(S[-1]))
        else:
            Xs.append(output_activation(S[-1], net.output, axis=1))
    return S, Xs


def forward(net, X):
    """Outputs ``(N, d_T)`` for inputs ``X`` ``(N, d_0)``."""
    return _forward(net, X)[1][-1]


def loss_and_grad(net, X, T, grad=None, weights=None):
    """``(J, grad)``: the penalised mean loss (weighted by ``weights``, one per sample, if
    given) and its gradient, flat like ``net.theta`` (written into ``grad`` if given)."""
    S, Xs = _forward(net, X)
    N = X.shape[0]
    losses = sample_losses(S[-1], Xs[-1], T, net.loss, axis=1)
    share = shares(weights, X.dtype)  # N w_n / sum w
    J = (losses if share is None else losses * share).sum() / N
    if net.l2:
        J += 0.5 * net.l2 * sum((W * W).sum() for W in net.weights)

    grad = np.empty_like(net.theta) if grad is None else grad
    dW, db = net.layout.views(grad)
    delta = output_delta(S[-1], Xs[-1], T, net.output, net.loss, axis=1) / N
    if share is not None:
        delta *= share[:, None]
    for l in range(len(S) - 1, -1, -1):
        dU = Xs[l].T @ delta
        dW[l][...] = dU.T + net.l2 * net.weights[l]
        db[l][...] = np.ones(N, dtype=delta.dtype) @ delta
        if l > 0:
            U_l = net.weights[l].T
            delta = (delta @ U_l.T) * ACTIVATIONS[net.hidden[l - 1]].dg(S[l - 1], Xs[l])
    return float(J), grad


def per_example(net, X, T, G):
    """Each sample's loss and gradient (seed 001 before the sum, :mod:`.per_example`) with
    NumPy, samples as rows: ``(losses, squared norms)``, the norms summed from G itself (the
    definition, not the identity)."""
    S, Xs = _forward(net, X)
    losses = sample_losses(S[-1], Xs[-1], T, net.loss, axis=1)
    delta = output_delta(S[-1], Xs[-1], T, net.output, net.loss, axis=1)
    layers = net.layout.layers()
    for l in range(len(S) - 1, -1, -1):
        layer = layers[l]
        outer = np.einsum("ni,nj->nij", delta, Xs[l])  # per-sample outer products
        G[:, layer.w_at:layer.b_at] = outer.reshape(len(X), -1)
        G[:, layer.b_at:layer.b_at + layer.d_out] = delta
        if l > 0:
            delta = (delta @ net.weights[l]) * ACTIVATIONS[net.hidden[l - 1]].dg(S[l - 1], Xs[l])
    return losses, np.einsum("np,np->n", G, G)


BACKEND = Reference("row", forward, loss_and_grad, per_example)
