"""Per-example gradients and their norms: seed 001 before the sum over the batch.

Seed 001 writes the gradient of one sample's loss as ``dPhi_n/dw_ij = delta_ni f_nj``, and
seed 004 sums these ``N x n x m`` per-sample outer products into the batch gradient.
:func:`per_example` stops before that sum: with the output delta unscaled
(``delta_n = dLoss_n/da_n``, no ``1/N``) and the delta recursion of :mod:`.kernels` run
for the whole batch, sample n's gradient is, per layer k,

    dLoss_n/dW^k_ij = delta^k_ni h^{k-1}_nj,        dLoss_n/db^k_i = delta^k_ni.

Its squared norm needs no ``N x P`` memory: the Frobenius norm of an outer product is the
product of the norms, so

    ||dLoss_n/dtheta||^2 = sum_k ||delta^k_n||^2 (||h^{k-1}_n||^2 + 1)

(the ``+ 1`` is the bias, whose "input" is 1): ``O(N x units)`` work on top of the
passes.  Losses are per sample, without ``1/N`` and without the L2 penalty (the same for
every sample: its gradient is ``l2 W``).
"""
import numpy as np
from numba import prange
from numba.extending import register_jitable

from ..layout import B_AT, D_IN, D_OUT, W_AT
from .jit import OPTIONS, compiled, kernel
from .kernels import delta_sum, forward, layer, output_layer, parameters, rows, scale_by_g_prime


@register_jitable
def outer_products_row(delta, h, w_at, b_at, G, norms, n):
    """Sample n: ``norms[n] += ||delta_n||^2 (||h_n||^2 + 1)`` and, when G is not empty,
    ``G[n, w_at + i d_in + j] = delta_ni h_nj`` and ``G[n, b_at + i] = delta_ni`` (the CPU's
    and the CUDA backend's, one definition)."""
    d_out, d_in = delta.shape[1], h.shape[1]
    squares_delta, squares_h = 0.0, 1.0
    for i in range(d_out):
        squares_delta += delta[n, i] * delta[n, i]
    for j in range(d_in):
        squares_h += h[n, j] * h[n, j]
    norms[n] += squares_delta * squares_h
    if G.shape[0] > 0:
        for i in range(d_out):
            at = w_at + i * d_in
            for j in range(d_in):
                G[n, at + j] = delta[n, i] * h[n, j]   # dLoss_n/dw_ij = delta_ni h_nj (seed 001)
            G[n, b_at + i] = delta[n, i]


@compiled(parallel=True, **OPTIONS)
def outer_products(delta, h, w_at, b_at, G, norms):
    """:func:`outer_products_row` for every sample, one per iteration."""
    for n in prange(delta.shape[0]):
        outer_products_row(delta, h, w_at, b_at, G, norms, n)


@kernel
def per_example(theta, layers, codes, loss_code, X, Y, work, G, norms):
    """Sample n's loss into ``work.losses[n]``, its squared gradient norm into ``norms[n]``,
    and (when G is not empty) its gradient into ``G[n]``, flat like theta.  Each layer's
    deltas are kept in its block of ``work.a`` (its pre-activations are not needed once the
    layer below has its delta), for :func:`.private.clipped_grad` to clip and sum."""
    N, T = X.shape[0], layers.shape[0]
    forward(theta, layers, codes, X, work)
    top = layer(work.a, layers, T - 1, N)
    delta = rows(work.delta, N, layers[T - 1, D_OUT])
    output_layer(top, layer(work.h, layers, T - 1, N), Y, codes[T - 1], loss_code, theta.dtype.type(1.0), delta,
                 work.losses)                                   # delta_n = dLoss_n/da_n: no 1/N
    top[:, :] = delta
    norms[:] = 0
    for k in range(T - 1, -1, -1):
        delta = layer(work.a, layers, k, N)
        h_below = X if k == 0 else layer(work.h, layers, k - 1, N)
        outer_products(delta, h_below, layers[k, W_AT], layers[k, B_AT], G, norms)
        if k > 0:
            W, _ = parameters(theta, layers, k)
            below = rows(work.below, N, layers[k, D_IN])
            delta_sum(delta, W, below, work.scratch)            # sum_s delta_ns w_si
            a_below = layer(work.a, layers, k - 1, N)
            scale_by_g_prime(below, a_below, h_below, codes[k - 1])  # * g'(a_ni)
            a_below[:, :] = below


def reference(net, X, T, G):
    """The same with NumPy, samples as rows (seeds 003, 004): ``(losses, squared norms)``,
    the norms summed from G itself (the definition, not the identity)."""
    from ..activations import ACTIVATIONS
    from ..losses import output_delta, sample_losses
    from .row import _forward

    S, Xs = _forward(net, X)
    losses = sample_losses(S[-1], Xs[-1], T, net.loss, axis=1)
    delta = output_delta(S[-1], Xs[-1], T, net.output, net.loss, axis=1)
    for l in range(len(S) - 1, -1, -1):
        d_in, d_out, w_at, b_at, _ = net.layout.table[l]
        G[:, w_at:b_at] = np.einsum("ni,nj->nij", delta, Xs[l]).reshape(len(X), -1)  # per-sample outer products
        G[:, b_at:b_at + d_out] = delta
        if l > 0:
            delta = (delta @ net.weights[l]) * ACTIVATIONS[net.hidden[l - 1]].dg(S[l - 1], Xs[l])
    return losses, np.einsum("np,np->n", G, G)
