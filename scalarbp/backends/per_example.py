"""Per-example gradients and their norms: seed 001 before the sum over the batch.

Seed 001 writes the gradient of one sample's loss as ``dPhi_n/dw_ij = delta_ni f_nj``, and
seed 004 sums these ``N x n x m`` per-sample outer products into the batch gradient.
:func:`.kernels._per_example` stops before that sum: with the output delta unscaled
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
from numba.extending import register_jitable


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

