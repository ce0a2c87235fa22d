"""DP-SGD's clipped gradient sum, from the scalar form (Abadi et al. 2016; Opacus' rule).

A private step needs ``sum_n min(1, C / (||g_n|| + 1e-6)) g_n``: every sample's gradient
clipped to norm C, then summed.  Since ``g_n`` is linear in sample n's deltas (seed 001:
``dLoss_n/dw_ij = delta_ni h_nj``), clipping ``g_n`` is scaling the n-th row of every
layer's delta; and ``||g_n||`` comes from the deltas and activations by the outer-product
identity of :mod:`.per_example`.  So :func:`clipped_grad` takes the norms and every
layer's deltas from :func:`.per_example.per_example` (without its gradients), scales the
delta rows by the clipping factors in one pass, and only then forms the weight-gradient
sums, as in training: no per-sample gradient is ever held.
"""
import math

import numpy as np
from numba import prange
from numba.extending import register_jitable

from ..layout import D_OUT
from ..optimizers import update
from ..privacy.sampler import add_noise
from . import BAD_GRADIENT, BAD_UPDATE
from .jit import OPTIONS, compiled, kernel
from .kernels import bias_grad_and_penalty, gather, layer, parameters, rows, squared_norm, weight_grad_sum
from .per_example import per_example


@register_jitable
def clip_factors(norms, clip, factors):
    """``factors_n = min(1, clip / (norms_n + 1e-6))``, Opacus' clipping factor, and 0 for a
    norm that is NaN or inf: such a sample (a huge input whose units all die gives
    ``inf * 0``) is left out of the sum, so that no sample can escape the bound.  The one
    definition every backend uses, from compiled code and from Python."""
    for n in range(norms.shape[0]):
        factors[n] = min(1.0, clip / (norms[n] + 1e-6)) if np.isfinite(norms[n]) else 0.0


@compiled(parallel=True, **OPTIONS)
def _clip_rows(delta, factors):
    """delta_ni *= factors_n: sample n's gradient scaled in one pass over its deltas (set
    to 0, not multiplied, for a sample left out: ``0 * inf`` would be NaN)."""
    for n in prange(delta.shape[0]):
        f = delta.dtype.type(factors[n])
        for i in range(delta.shape[1]):
            delta[n, i] = delta[n, i] * f if f != 0 else 0


@kernel
def _leave_out(h, factors):
    """h_nj = 0 for every sample left out (factor 0): its weight sums ``delta_ni h_nj`` are
    then 0, whatever its activations held.  (Serial: such samples are rare, and a parallel
    loop would add its compile time to every cold start.)"""
    for n in range(h.shape[0]):
        if factors[n] == 0:
            for j in range(h.shape[1]):
                h[n, j] = 0


@kernel
def clipped_grad(theta, grad, layers, codes, loss_code, X, Y, clip, work, norms, factors):
    """``grad = sum_n c_n dLoss_n/dtheta`` with ``c_n`` from :func:`clip_factors` (no 1/N, no
    penalty); ``norms`` receives the unclipped ``||dLoss_n/dtheta||``, ``factors``
    the ``c_n``.  Returns the sum of the samples' losses."""
    N, T = X.shape[0], layers.shape[0]
    per_example(theta, layers, codes, loss_code, X, Y, work, work.scratch[:0].reshape((0, 0)), norms)
    for n in range(N):                                          # (the deltas are now in work.a)
        norms[n] = math.sqrt(norms[n])
    clip_factors(norms, clip, factors)
    total = 0.0
    for n in range(N):
        total += work.losses[n]
    for k in range(T - 1, -1, -1):
        delta = layer(work.a, layers, k, N)
        _clip_rows(delta, factors)
        W, _ = parameters(theta, layers, k)
        dW, db = parameters(grad, layers, k)
        h_below = X if k == 0 else layer(work.h, layers, k - 1, N)  # (X is finite: checked on input)
        if k > 0:
            _leave_out(h_below, factors)
        weight_grad_sum(delta, h_below, dW, work.scratch)
        bias_grad_and_penalty(delta, W, 0.0, dW, db, work.sums)
    return total


@kernel
def private_steps(theta, grad, layers, codes, loss_code, l2, X, labels, Y, batches, offsets, divisors, clip, noise,
                  key, first, optimizer, work, xb, yb, norms, factors, batch_losses):
    """Steps of DP-SGD (:mod:`scalarbp.privacy`) in compiled code, as :func:`.kernels.train_epoch`
    runs plain steps.  Step b's batch is ``batches[offsets[b]:offsets[b + 1]]`` (gathered as
    there; ``labels``, ``Y`` as there, no sample weights); its gradient is the clipped sum
    (:func:`clipped_grad`), plus ``noise * clip`` times the step's standard normals
    (:func:`~scalarbp.privacy.sampler.add_noise`, keyed by ``key`` and the step's number
    ``first + b`` in the net's privacy ledger), divided by ``divisors[b]`` (the expected
    batch size), plus the penalty's ``l2 W``; then the optimiser's update.  Returns
    ``(steps, reason)`` as ``train_epoch`` does, but a step stops only on the noisy
    gradient or the update, never on the loss: the loss is the data's, not released under
    DP (``batch_losses`` holds it for the caller to withhold)."""
    code, states, hypers, t = optimizer
    d, K = X.shape[1], layers[layers.shape[0] - 1, D_OUT]
    no_weights = xb[:0]
    steps = offsets.shape[0] - 1
    for b in range(steps):
        n = offsets[b + 1] - offsets[b]
        total = 0.0
        if n > 0:
            Xb, Yb = rows(xb, n, d), rows(yb, n, K)
            gather(X, labels, Y, no_weights, batches[offsets[b]:offsets[b + 1]], Xb, Yb, no_weights)
            total = clipped_grad(theta, grad, layers, codes, loss_code, Xb, Yb, clip, work, norms[:n], factors[:n])
        else:
            grad[:] = 0
        if noise > 0:
            add_noise(grad, key, first + b, noise * clip)                # + N(0, sigma^2 C^2)
        divisor = grad.dtype.type(divisors[b])
        for m in range(grad.shape[0]):
            grad[m] /= divisor
        J = total / max(n, 1)
        if l2 != 0:                                                     # the penalty, unclipped
            penalty = theta.dtype.type(l2)
            for k in range(layers.shape[0]):
                W, _ = parameters(theta, layers, k)
                dW, _ = parameters(grad, layers, k)
                for i in range(W.shape[0]):
                    for j in range(W.shape[1]):
                        dW[i, j] += penalty * W[i, j]
                J += 0.5 * l2 * squared_norm(W)
        grad_sum = 0.0
        for m in range(grad.shape[0]):
            grad_sum += grad[m]
        batch_losses[b] = J
        if not np.isfinite(grad_sum):
            return b, BAD_GRADIENT
        if not update(code, theta, grad, states, hypers[b], t + b + 1):
            return b, BAD_UPDATE
    return steps, 0
