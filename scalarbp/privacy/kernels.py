"""DP-SGD's clipped gradient sum, from the scalar form (Abadi et al. 2016; Opacus' rule).

A private step needs ``sum_n min(1, C / (||g_n|| + 1e-6)) g_n``: every sample's gradient
clipped to norm C, then summed.  Since ``g_n`` is linear in sample n's deltas (seed 001:
``dLoss_n/dw_ij = delta_ni h_nj``), clipping ``g_n`` is scaling the n-th row of every
layer's delta; and ``||g_n||`` comes from the deltas and activations by the outer-product
identity of :mod:`scalarbp.backends.per_example`.  So :func:`clip_samples` takes each sample's norm and
scales its delta rows in the pass over samples that computed them, and only then does
the pass over units form the weight-gradient sums, as in training: no per-sample gradient
is ever held.
"""
import math

import numpy as np
from numba import prange

from ..backends import BAD_GRADIENT, BAD_UPDATE
from ..backends.kernels import (columns, layer, parameters, sample_norm, samples_pass, transpose_all, units_pass,
                                update_pass)
from ..definitions.clipping import clip_factor
from ..jit import inlined, serial_and_parallel
from .sampler import add_noise


@inlined
def clip_samples(layers, N, clip, work):
    """Per sample: its gradient's norm into ``work.norms`` (unclipped), its factor into
    ``work.factors``, every delta row times the factor (set to 0, not multiplied, for a
    sample left out: ``0 * inf`` would be NaN), and a left-out sample's activations set to
    0, so that its weight sums ``delta_ni h_nj`` are 0 whatever they held; then the
    sample's columns of the transposed buffers the weight sums read."""
    G, x, H, D, norms, factors = work.sums[:0], work.xb, work.h, work.delta, work.norms, work.factors
    xT, HT, DT = work.xT, work.hT, work.deltaT
    for n in prange(N):
        norm = math.sqrt(sample_norm(layers, x, N, H, D, G, norms, n))
        factor = clip_factor(norm, clip)
        norms[n], factors[n] = norm, factor
        for k in range(layers.shape[0]):
            delta = layer(D, layers, k, N)
            f = delta.dtype.type(factor)
            for i in range(delta.shape[1]):
                delta[n, i] = delta[n, i] * f if factor != 0 else 0
            if factor == 0 and k < layers.shape[0] - 1:  # (X is finite: checked on input)
                h = layer(H, layers, k, N)
                for j in range(h.shape[1]):
                    h[n, j] = 0
        columns(layers, x, N, n, H, D, xT, HT, DT)


@inlined
def clipped_sum(theta, grad, layers, codes, loss_code, X, labels, Y, samples, clip, work):
    """``grad = sum_n c_n dLoss_n/dtheta`` over the batch ``samples`` (no 1/N, no penalty);
    returns the sum of the samples' losses."""
    N = samples.shape[0]
    samples_pass(theta, layers, codes, loss_code, X, labels, Y, np.empty(0, theta.dtype), samples,
                 theta.dtype.type(1.0), True, False, work)        # delta_n = dLoss_n/da_n: no 1/N
    clip_samples(layers, N, clip, work)
    units_pass(theta, grad, layers, N, 0.0, work)
    total = 0.0
    for n in range(N):
        total += work.losses[n]
    return total


def _clipped_grad(theta, grad, layers, codes, loss_code, X, Y, clip, work):
    """:func:`clipped_sum` of the batch (X, Y); the norms and factors in ``work``."""
    transpose_all(theta, layers, work)
    return clipped_sum(theta, grad, layers, codes, loss_code, X, np.empty(0, np.int64), Y, np.arange(X.shape[0]),
                       clip, work)


@inlined
def finish_pass(theta, grad, layers, l2, divisor, work):
    """Per item: ``grad = grad / divisor + l2 W`` (the penalty unclipped) and the sums
    :func:`.kernels.units_pass` leaves, of the noisy gradient."""
    items, sums = work.items, work.sums
    for item in prange(items.shape[0]):
        k, i0, i1 = items[item, 0], items[item, 1], items[item, 2]
        W, _ = parameters(theta, layers, k)
        dW, db = parameters(grad, layers, k)
        total, weights = 0.0, 0.0
        for i in range(i0, i1):
            db[i] /= divisor
            total += db[i]
            for j in range(W.shape[1]):
                dW[i, j] = dW[i, j] / divisor + l2 * W[i, j]
                total += dW[i, j]
                weights += W[i, j] * W[i, j]
        sums[item, 0], sums[item, 2] = total, weights


def _private_steps(theta, grad, layers, codes, loss_code, l2, X, labels, Y, batches, offsets, divisors, clip, noise,
                   key, first, rule, work, batch_losses):
    """Steps of DP-SGD (:mod:`scalarbp.privacy`) in compiled code, as :func:`.kernels._train_epoch`
    runs plain steps.  Step b's batch is ``batches[offsets[b]:offsets[b + 1]]`` (targets as
    there, no sample weights); its gradient is the clipped sum (:func:`clipped_sum`), plus
    ``noise * clip`` times the step's standard normals
    (:func:`~scalarbp.privacy.sampler.add_noise`, keyed by ``key`` and the step's number
    ``first + b`` in the net's privacy ledger), divided by ``divisors[b]`` (the expected
    batch size), plus the penalty's ``l2 W``; then the optimiser's update.  Returns
    ``(steps, reason)`` as ``_train_epoch`` does, but a step stops only on the noisy
    gradient or the update, never on the loss: the loss is the data's, not released under
    DP (``batch_losses`` holds it for the caller to withhold)."""
    transpose_all(theta, layers, work)
    steps = offsets.shape[0] - 1
    for b in range(steps):
        n = offsets[b + 1] - offsets[b]
        total = 0.0
        if n > 0:
            total = clipped_sum(theta, grad, layers, codes, loss_code, X, labels, Y, batches[offsets[b]:offsets[b + 1]],
                                clip, work)
        else:
            grad[:] = 0
        if noise > 0:
            add_noise(grad, key, first + b, noise * clip)                # + N(0, sigma^2 C^2)
        finish_pass(theta, grad, layers, theta.dtype.type(l2), grad.dtype.type(divisors[b]), work)
        grad_sum, penalty = 0.0, 0.0
        for item in range(work.items.shape[0]):
            grad_sum += work.sums[item, 0]
            penalty += work.sums[item, 2]
        batch_losses[b] = total / max(n, 1) + 0.5 * l2 * penalty
        if not np.isfinite(grad_sum):
            return b, BAD_GRADIENT
        if not update_pass(theta, grad, layers, rule, rule.hypers[b], rule.t + b + 1, 1.0, work):
            return b, BAD_UPDATE
    return steps, 0


CLIPPED_GRAD = serial_and_parallel(_clipped_grad)
PRIVATE_STEPS = serial_and_parallel(_private_steps)
