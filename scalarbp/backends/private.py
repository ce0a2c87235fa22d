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
from numba import njit, prange

from ..layout import D_OUT
from ..optimizers import update
from . import BAD_GRADIENT, BAD_UPDATE
from .jit import OPTIONS, compiled, kernel
from .kernels import bias_grad_and_penalty, gather, layer, parameters, rows, squared_norm, weight_grad_sum
from .per_example import per_example


@compiled(parallel=True, **OPTIONS)
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
    per_example(theta, layers, codes, loss_code, X, Y, work, work.scratch[:0].reshape((0, 0)), norms)
    for n in range(N):                                          # (the deltas are now in work.a)
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


# --- Gaussian noise: counter-based, vectorised ------------------------------------------------
#
# Sample m of step t is a function of (key, t, m) alone: a SplitMix64 hash of the three
# gives two 24-bit uniforms, and Box-Muller turns them into two normals.  The logarithm
# (an atanh series on the mantissa, |error| < 2e-7) and sine and cosine (Taylor series to
# degree 15 on [-pi, pi], |error| < 3e-6) are polynomials, so LLVM vectorises the loop
# (libm's calls would not vectorise): about 1 ns per number on this project's machines,
# against 16 ns for NumPy's Philox.  Blocks of pairs run in parallel; the result does not
# depend on the number of threads.  Like every floating-point sampler (Opacus' included,
# outside its secure mode), these are normals to float32 precision, not exact reals.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

#: Pairs of normals per parallel block.
NOISE_BLOCK = 2048


@njit(inline="always")
def _hash(z):
    """SplitMix64's finaliser: a bijection of 64-bit words that mixes every bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


#: The streams of random numbers a step draws: its noise and its Poisson batch.
NOISE, SAMPLING = 0, 1


@njit(inline="always")
def _step_key(key, step, stream):
    """The 64-bit word that keys the random numbers of ``stream`` in ``step``."""
    return _hash(_hash(np.uint64(key) * _GOLDEN + np.uint64(stream)) ^ _hash(np.uint64(step) +
                                                                            np.uint64(0x632BE59BD9B4E019)))


@compiled(fastmath={"contract", "arcp", "nsz", "reassoc"}, error_model="numpy", cache=True)
def _normal_pairs(out, base, p0, count, scale, u1, u2, bits):
    """``out[2p], out[2p + 1] += scale * (the two normals of pair p0 + p)`` for p < count."""
    for p in range(count):
        z = _hash(base + np.uint64(p0 + p) * _GOLDEN)
        u1[p] = np.float32((z >> np.uint64(40)) + np.uint64(1)) * np.float32(5.9604645e-08)      # (0, 1]
        u2[p] = np.float32((z >> np.uint64(8)) & np.uint64(0xFFFFFF)) * np.float32(5.9604645e-08) - np.float32(0.5)
    words = u1.view(np.int32)
    for p in range(count):
        bits[p] = (words[p] & 0x007FFFFF) | 0x3F800000                   # the mantissa, in [1, 2)
    mantissa = bits.view(np.float32)
    for p in range(count):
        s = (mantissa[p] - np.float32(1)) / (mantissa[p] + np.float32(1))   # ln m = 2 atanh(s)
        s2 = s * s
        ln_m = np.float32(2) * s * (np.float32(1) + s2 * (np.float32(1 / 3) + s2 * (np.float32(1 / 5) + s2 * (
            np.float32(1 / 7) + s2 * np.float32(1 / 9)))))
        ln_u = np.float32(((words[p] >> 23) & 255) - 127) * np.float32(0.6931472) + ln_m
        r = math.sqrt(np.float32(-2) * ln_u) * scale
        t = np.float32(6.2831855) * u2[p]                                  # in [-pi, pi)
        t2 = t * t
        cos = np.float32(1) + t2 * (np.float32(-1 / 2) + t2 * (np.float32(1 / 24) + t2 * (
            np.float32(-1 / 720) + t2 * (np.float32(1 / 40320) + t2 * (np.float32(-1 / 3628800) + t2 * (
                np.float32(1 / 479001600) + t2 * np.float32(-1 / 87178291200)))))))
        sin = t * (np.float32(1) + t2 * (np.float32(-1 / 6) + t2 * (np.float32(1 / 120) + t2 * (
            np.float32(-1 / 5040) + t2 * (np.float32(1 / 362880) + t2 * (np.float32(-1 / 39916800) + t2 * (
                np.float32(1 / 6227020800) + t2 * np.float32(-1 / 1307674368000))))))))
        out[2 * p] += r * cos
        out[2 * p + 1] += r * sin


@compiled(parallel=True, cache=True)
def add_noise(out, key, step, scale):
    """``out += scale * xi``, xi standard normal, a function of (key, step, index) only."""
    pairs = out.shape[0] // 2
    base = _step_key(key, step, NOISE)
    for block in prange((pairs + NOISE_BLOCK - 1) // NOISE_BLOCK):
        p0 = block * NOISE_BLOCK
        count = min(NOISE_BLOCK, pairs - p0)
        u1, u2 = np.empty(NOISE_BLOCK, np.float32), np.empty(NOISE_BLOCK, np.float32)
        bits = np.empty(NOISE_BLOCK, np.int32)
        _normal_pairs(out[2 * p0:2 * (p0 + count)], base, p0, count, np.float32(scale), u1[:count], u2[:count],
                      bits[:count])
    if out.shape[0] % 2:  # the last entry: the first normal of one more pair
        last = np.zeros(2, out.dtype)
        _normal_pairs(last, base, pairs, 1, np.float32(scale), np.empty(1, np.float32), np.empty(1, np.float32),
                      np.empty(1, np.int32))
        out[out.shape[0] - 1] += last[0]


@kernel
def poisson_batches(subset, q, key, first, offsets, batches):
    """The Poisson-sampled batches of steps ``first, first + 1, ...`` (one per entry of
    ``offsets`` but the last): each sample of ``subset`` joins a step's batch independently
    with probability q.  Step ``first + b``'s samples go to ``batches[offsets[b]:offsets[b + 1]]``,
    in the order of ``subset``; with ``batches`` empty only ``offsets`` is filled (a first
    pass, to size it).

    Instead of one uniform per sample, the walk draws the gaps between members: for
    independent Bernoulli(q) trials the gap to the next success is geometric,
    ``P(gap = g + 1) = (1 - q)^g q``, which is ``1 + floor(ln U / ln(1 - q))`` for U uniform
    in (0, 1].  So a step costs about ``q N + 1`` draws, not N.  The uniforms are 53-bit,
    hashed from (key, step, draw), so a batch does not depend on the steps before it.
    """
    N = subset.shape[0]
    ln_miss = math.log1p(-q)
    offsets[0] = 0
    for b in range(offsets.shape[0] - 1):
        base = _step_key(key, first + b, SAMPLING)
        count, i, draw = offsets[b], -1, 0
        while True:
            u = np.float64((_hash(base + np.uint64(draw) * _GOLDEN) >> np.uint64(11)) + np.uint64(1)) * 2.0 ** -53
            draw += 1
            gap = math.log(u) / ln_miss  # (q = 1: ln_miss = -inf, every gap 0)
            if gap >= N - 1 - i:
                break
            i += 1 + int(gap)
            if batches.shape[0] > 0:
                batches[count] = subset[i]
            count += 1
        offsets[b + 1] = count


@kernel
def private_steps(theta, grad, layers, codes, loss_code, l2, X, labels, Y, batches, offsets, divisors, clip, noise,
                  key, optimizer, work, xb, yb, norms, factors, batch_losses):
    """Steps of DP-SGD (:mod:`scalarbp.privacy`) in compiled code, as :func:`.kernels.train_epoch`
    runs plain steps.  Step b's batch is ``batches[offsets[b]:offsets[b + 1]]`` (gathered as
    there; ``labels``, ``Y`` as there, no sample weights); its gradient is the clipped sum
    (:func:`clipped_grad`), plus ``noise * clip`` times the step's standard normals
    (:func:`add_noise`, keyed by ``key`` and the step's number), divided by ``divisors[b]``
    (the expected batch size), plus the penalty's ``l2 W``; then the optimiser's update.
    Returns ``(steps, reason)`` as ``train_epoch`` does."""
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
            add_noise(grad, key, t + b + 1, noise * clip)                # + N(0, sigma^2 C^2)
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
        if not (np.isfinite(J) and np.isfinite(grad_sum)):
            return b, BAD_GRADIENT
        if not update(code, theta, grad, states, hypers[b], t + b + 1):
            return b, BAD_UPDATE
    return steps, 0
