"""NumPy reference, column version (seed 000): samples are columns.

With ``h^(0) = x`` (shape ``(d_0, N)``)::

    a^(k) = W^(k) h^(k-1) + b^(k)          h^(k) = f(a^(k))            forward
    grad_a^(T) Loss = y_hat - y            (softmax + cross-entropy; / N for a mean)
    grad_W^(k) = grad_a^(k) h^(k-1)^T      grad_b^(k) = grad_a^(k) 1
    grad_h^(k-1) = W^(k)^T grad_a^(k)      grad_a^(k-1) = grad_h^(k-1) * f'(a^(k-1))

Written independently of the row reference and of the scalar kernels.
"""
import numpy as np

from ..definitions.activations import ACTIVATIONS
from ..definitions.losses import output_activation, output_delta, sample_losses, shares
from . import Reference


def _forward(net, x):
    """Pre-activations a^(k) and activations h^(k) of every layer, samples as columns."""
    a, h = [], [x]
    T = len(net.weights)
    for k in range(T):
        a.append(net.weights[k] @ h[-1] + net.biases[k][:, None])
        if k < T - 1:
            h.append(ACTIVATIONS[net.hidden[k]].g(a[-1]))
        else:
            h.append(output_activation(a[-1], net.output, axis=0))
    return a, h


def forward(net, X):
    """Outputs ``(N, d_T)`` for inputs ``X`` ``(N, d_0)``."""
    return _forward(net, X.T)[1][-1].T


def trace(net, X, T, weights=None):
    """Every intermediate of one forward and backward pass, samples as columns.

    Returns a dict: ``a``, ``h`` (lists over layers, ``h[0] = x``), ``y`` (the targets,
    as columns), ``L`` (mean loss, weighted by ``weights`` if given),
    ``J`` (with the penalty), ``grad_a`` and ``grad_h`` (lists over layers 1..T; ``grad_h``
    of the output layer is None), ``dW`` and ``db`` (lists over layers).
    """
    x, y = X.T, T.T
    a, h = _forward(net, x)
    N = x.shape[1]
    losses = sample_losses(a[-1], h[-1], y, net.loss, axis=0)
    share = shares(weights, X.dtype)  # N w_n / sum w
    L = (losses if share is None else losses * share).sum() / N
    J = L + 0.5 * net.l2 * sum(np.vdot(W, W) for W in net.weights) if net.l2 else L
    depth = len(a)
    grad_a, grad_h, dW, db = [None] * depth, [None] * depth, [None] * depth, [None] * depth
    grad_a[-1] = output_delta(a[-1], h[-1], y, net.output, net.loss, axis=0) / N
    if share is not None:
        grad_a[-1] = grad_a[-1] * share[None, :]
    for k in range(depth - 1, -1, -1):
        dW[k] = grad_a[k] @ h[k].T + net.l2 * net.weights[k]
        db[k] = grad_a[k].sum(axis=1)
        if k > 0:
            grad_h[k - 1] = net.weights[k].T @ grad_a[k]
            grad_a[k - 1] = grad_h[k - 1] * ACTIVATIONS[net.hidden[k - 1]].dg(a[k - 1], h[k])
    return {"a": a, "h": h, "y": y, "L": float(L), "J": float(J), "grad_a": grad_a, "grad_h": grad_h,
            "dW": dW, "db": db}


def loss_and_grad(net, X, T, grad=None, weights=None):
    """``(J, grad)``: the penalised mean loss (weighted by ``weights``, one per sample, if
    given) and its gradient, flat like ``net.theta`` (written into ``grad`` if given)."""
    t = trace(net, X, T, weights)
    grad = np.empty_like(net.theta) if grad is None else grad
    dW, db = net.layout.views(grad)
    for k in range(len(dW)):
        dW[k][...] = t["dW"][k]
        db[k][...] = t["db"][k]
    return t["J"], grad


def per_example(net, X, T, G):
    """Each sample's loss and gradient from the column trace: ``N grad_a`` (the trace divides
    by N) times ``h^T``, one outer product per sample (a column of each)."""
    t = trace(net, X, T)
    N = X.shape[0]
    for k, layer in enumerate(net.layout.layers()):
        delta = t["grad_a"][k] * N
        G[:, layer.w_at:layer.b_at] = np.einsum("in,jn->nij", delta, t["h"][k]).reshape(N, -1)
        G[:, layer.b_at:layer.b_at + layer.d_out] = delta.T
    losses = sample_losses(t["a"][-1], t["h"][-1], t["y"], net.loss, axis=0)
    return losses, np.einsum("np,np->n", G, G)


BACKEND = Reference("column", forward, loss_and_grad, per_example)
