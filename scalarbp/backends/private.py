"""DP-SGD's clipped gradient sum, from the scalar form (Abadi et al. 2016; Opacus' rule).

A private step needs ``sum_n min(1, C / (||g_n|| + 1e-6)) g_n``: every sample's gradient
clipped to norm C, then summed.  Since ``g_n`` is linear in sample n's deltas (seed 001:
``dLoss_n/dw_ij = delta_ni h_nj``), clipping ``g_n`` is scaling the n-th row of every
layer's delta; and ``||g_n||`` comes from the deltas and activations by the outer-product
identity of :mod:`.per_example`.  So :func:`clipped_grad` runs the delta recursion for
the whole batch, keeping each layer's deltas in place of its pre-activations (no longer
needed once the layer below has its delta), accumulates the norms, scales the delta rows
by the clipping factors in one pass, and only then forms the weight-gradient sums, as in
training: no per-sample gradient is ever held.
"""
import math

from numba import njit, prange

from ..layout import D_IN, D_OUT
from .jit import OPTIONS, kernel
from .kernels import (bias_grad_and_penalty, delta_sum, forward, layer, output_layer, parameters, rows,
                      scale_by_g_prime, weight_grad_sum)
from .per_example import outer_products


@njit(parallel=True, **OPTIONS)
def _clip_rows(delta, factors):
    """delta_ni *= factors_n: sample n's gradient scaled in one pass over its deltas."""
    for n in prange(delta.shape[0]):
        f = delta.dtype.type(factors[n])
        for i in range(delta.shape[1]):
            delta[n, i] *= f


@kernel
def clipped_grad(theta, grad, layers, codes, loss_code, X, Y, clip, work, norms, factors):
    """``grad = sum_n c_n dLoss_n/dtheta`` with ``c_n = min(1, clip / (||dLoss_n/dtheta|| + 1e-6))``
    (no 1/N, no penalty); ``norms`` receives the unclipped ``||dLoss_n/dtheta||``, ``factors``
    the ``c_n``.  Returns the sum of the samples' losses."""
    N, T = X.shape[0], layers.shape[0]
    forward(theta, layers, codes, X, work)
    top = layer(work.a, layers, T - 1, N)
    delta = rows(work.delta, N, layers[T - 1, D_OUT])
    output_layer(top, layer(work.h, layers, T - 1, N), Y, codes[T - 1], loss_code, theta.dtype.type(1.0), delta,
                 work.losses)                                   # delta_n = dLoss_n/da_n: no 1/N
    top[:, :] = delta                                           # deltas kept where the a's were
    norms[:] = 0
    none = work.scratch[:0].reshape((0, 0))
    for k in range(T - 1, -1, -1):
        delta = layer(work.a, layers, k, N)
        h_below = X if k == 0 else layer(work.h, layers, k - 1, N)
        outer_products(delta, h_below, 0, 0, none, norms)      # ||delta_n||^2 (||h_n||^2 + 1)
        if k > 0:
            W, _ = parameters(theta, layers, k)
            below = rows(work.below, N, layers[k, D_IN])
            delta_sum(delta, W, below, work.scratch)            # sum_s delta_ns w_si
            a_below = layer(work.a, layers, k - 1, N)
            scale_by_g_prime(below, a_below, h_below, codes[k - 1])  # * g'(a_ni)
            a_below[:, :] = below
    for n in range(N):
        norms[n] = math.sqrt(norms[n])
        factors[n] = min(1.0, clip / (norms[n] + 1e-6))        # Opacus' clipping factor
    total = 0.0
    for n in range(N):
        total += work.losses[n]
    for k in range(T - 1, -1, -1):
        delta = layer(work.a, layers, k, N)
        _clip_rows(delta, factors)
        W, _ = parameters(theta, layers, k)
        dW, db = parameters(grad, layers, k)
        weight_grad_sum(delta, X if k == 0 else layer(work.h, layers, k - 1, N), dW, work.scratch)
        bias_grad_and_penalty(delta, W, 0.0, dW, db, work.sums)
    return total
