"""DP-SGD's steps on any backend (:mod:`scalarbp.privacy`): per step the clipped sum
``sum_n c_n g_n`` (:func:`clipped_grad`), the step's noise, the division by the expected
batch size, the penalty's gradient added unclipped, then the optimiser.

The scalar backend runs whole runs of steps in compiled code (:mod:`.kernels`); any other
backend, or data on disk, runs them from Python over the backend's per-example gradients.
Both key the noise and the batches by ``private.key`` and the step's number in the net's
privacy ledger, so a run is the same on any number of threads.
"""
import numpy as np

from ..backends import python_steps
from ..backends import kernels as engine_kernels
from ..backends.scalar import BACKEND as SCALAR
from ..definitions.clipping import clip_factors
from ..jit import start_threads
from . import batches
from .kernels import CLIPPED_GRAD, PRIVATE_STEPS
from .sampler import add_noise


def clipped_grad(engine, net, X, T, clip, grad):
    """``sum_n c_n g_n`` into ``grad`` (g_n: sample n's loss gradient, no penalty; c_n from
    :func:`scalarbp.definitions.clipping.clip_factor`); returns ``(sum of losses, norms)``.  On the
    scalar backend, compiled with no per-example gradient held; on another, the clipped
    sum of its per-example gradients (``N x P`` memory)."""
    if engine is SCALAR:
        N = X.shape[0]
        work = SCALAR.workspace(net, max(N, 1))
        start_threads()
        total = engine_kernels.variant(CLIPPED_GRAD, net)(net.theta, grad, net.layout.table, net.codes,
                                                          net.loss_code, X, T, clip, work.now())
        return float(total), work.work.norms[:N].copy()
    G = np.empty((X.shape[0], net.theta.shape[0]), net.dtype)
    losses, squares = engine.per_example(net, X, T, G)
    norms = np.sqrt(squares)
    factors = np.empty_like(norms)
    clip_factors(norms, clip, factors)
    G[factors == 0] = 0  # (left out: 0 * inf would be NaN)
    grad[...] = factors.astype(net.dtype) @ G
    return float(np.sum(losses, dtype=np.float64)), norms


def stepper(engine, net, data, private, q):
    """A stepper like :meth:`scalarbp.backends.Backend.stepper`'s for DP-SGD, whose
    :func:`~scalarbp.privacy.batches` picks each step's samples.  A step stops only on its
    noisy gradient or its update, not on its loss (not released under DP)."""
    if engine is SCALAR and data.in_memory:
        return _compiled(net, data, private, q)

    def steps(rows, batch_size, grad, hypers, clip):
        first = net.privacy_ledger.steps + 1
        drawn, offsets, divisors = batches(private, rows, batch_size, first, data.subset, q)

        def minibatch(b, grad):
            batch = drawn[offsets[b]:offsets[b + 1]]
            total = 0.0
            if batch.shape[0]:
                xb, tb, _ = data.gather(batch)
                total, _ = clipped_grad(engine, net, xb, tb, private.clip, grad)
            else:
                grad[...] = 0
            if private.noise:
                add_noise(grad, private.key, first + b, private.noise * private.clip)
            grad /= net.dtype.type(divisors[b])
            J = total / max(batch.shape[0], 1)
            if net.l2:  # J += l2/2 ||W||^2, dW += l2 W
                for dW, W in zip(net.layout.views(grad)[0], net.weights):
                    dW += net.dtype.type(net.l2) * W
                J += 0.5 * net.l2 * sum(float(np.vdot(W, W)) for W in net.weights)
            return J
        return python_steps(net, divisors.shape[0], minibatch, grad, hypers, clip, check_loss=False)
    return steps


def _compiled(net, data, private, q):
    """Runs of DP-SGD's steps in compiled code (:func:`.kernels._private_steps`)."""
    X, labels, Y, _ = data.whole()

    def steps(rows, batch_size, grad, hypers, clip):
        first = net.privacy_ledger.steps + 1
        drawn, offsets, divisors = batches(private, rows, batch_size, first, data.subset, q)
        work = SCALAR.workspace(net, max(1, int(np.diff(offsets).max())))
        losses = np.empty(divisors.shape[0])
        rule = net.optimizer.arguments(net.theta, hypers)
        start_threads()
        done, reason = engine_kernels.variant(PRIVATE_STEPS, net)(
            net.theta, grad, net.layout.table, net.codes, net.loss_code, net.l2, X, labels, Y, drawn, offsets,
            divisors, private.clip, private.noise, private.key, first, rule, work.now(), losses)
        net.optimizer.advance(done, reason)
        return done, losses[:min(done + 1, losses.shape[0])], reason
    return steps
