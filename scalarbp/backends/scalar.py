"""The ``"scalar"`` backend: Python glue around the compiled kernels in :mod:`.kernels`.

It owns the work buffers (allocated once per batch size and reused, so a training step
allocates nothing in the kernels) and hands the kernels the layout table and the integer
codes they dispatch on.
"""
import numpy as np

from ..layout import UNIT_AT
from . import BAD_UPDATE, Backend, kernels
from .jit import start_threads


class Workspace:
    """Scratch buffers for batches of up to ``capacity`` samples of one architecture.

    ``work`` is the :class:`.kernels.Work` the kernels take (see there); ``xb``/``yb``/``wb``
    receive the minibatch (and its sample weights) :func:`.kernels.train_epoch` gathers.
    """

    def __init__(self, layout, capacity, dtype):
        self.key = (layout.sizes, np.dtype(dtype))
        self.capacity = N = capacity
        sizes = layout.sizes
        widest_out, widest_in = max(sizes[1:]), max(sizes[:-1])
        widest_W = max(d_out * d_in for d_in, d_out in zip(sizes[:-1], sizes[1:]))
        self.layout = layout
        self.work = kernels.Work(
            a=np.empty(N * sum(sizes[1:]), dtype), h=np.empty(N * sum(sizes[1:]), dtype),
            losses=np.empty(N, dtype), delta=np.empty(N * widest_out, dtype),
            below=np.empty(N * widest_out, dtype),
            scratch=np.empty(max(widest_W, N * (widest_out + widest_in)), dtype),
            sums=np.empty(widest_out, dtype))
        self.xb = np.empty(N * sizes[0], dtype)
        self.yb = np.empty(N * sizes[-1], dtype)
        self.wb = np.empty(N, dtype)

    def fits(self, net, N):
        return self.key == (net.sizes, net.dtype) and self.capacity >= N

    def output(self, N):
        """A copy of the last layer's ``(N, d_T)`` block of ``h``."""
        at = N * int(self.layout.table[-1, UNIT_AT])
        d = self.layout.sizes[-1]
        return self.work.h[at:at + N * d].reshape(N, d).copy()


class Scalar(Backend):
    """The scalar form on the CPU: :mod:`.kernels`, parallel over the batch."""

    name = "scalar"

    def workspace(self, net, N):
        """The net's workspace for batches of ``N``, grown if they do not fit or the net changed."""
        return self.held(net, lambda work: work.fits(net, N), lambda: Workspace(net.layout, N, net.dtype))

    def forward(self, net, X):
        work = self.workspace(net, X.shape[0])
        start_threads()
        kernels.predict(net.theta, net.layout.table, net.codes, X, work.work)
        return work.output(X.shape[0])

    def loss_and_grad(self, net, X, T, grad=None, weights=None):
        work = self.workspace(net, X.shape[0])
        grad = np.empty_like(net.theta) if grad is None else grad
        weights = np.empty(0, net.dtype) if weights is None else weights
        start_threads()
        J, _ = kernels.loss_and_grad(net.theta, grad, net.layout.table, net.codes, net.loss_code, net.l2, X, T,
                                     weights, work.work)
        return float(J), grad

    def per_example(self, net, X, T, G):
        from .per_example import per_example

        work = self.workspace(net, X.shape[0])
        norms = np.empty(X.shape[0])
        start_threads()
        per_example(net.theta, net.layout.table, net.codes, net.loss_code, X, T, work.work, G, norms)
        return work.work.losses[:X.shape[0]].copy(), norms

    def clipped_grad(self, net, X, T, clip, grad):
        from .private import clipped_grad

        N = X.shape[0]
        work = self.workspace(net, max(N, 1))
        norms, factors = np.empty(N), np.empty(N)
        start_threads()
        total = clipped_grad(net.theta, grad, net.layout.table, net.codes, net.loss_code, X, T, clip, work.work,
                             norms, factors)
        return float(total), norms

    def stepper(self, net, data):
        """Whole runs of steps in compiled code (:func:`.kernels.train_epoch`), the data
        standardised once; data on disk (a memmap) goes step by step instead."""
        if not data.in_memory:
            return super().stepper(net, data)
        X, labels, Y, weights = data.whole()

        def steps(rows, batch_size, grad, hypers, clip):
            work = self.workspace(net, min(batch_size, rows.shape[0]))
            losses = np.empty(-(-rows.shape[0] // batch_size))
            code, states, _, t = net.optimizer.arguments(net.theta)
            start_threads()
            done, reason = kernels.train_epoch(net.theta, grad, net.layout.table, net.codes, net.loss_code, net.l2,
                                               X, labels, Y, weights, rows, batch_size, (code, states, hypers, t),
                                               clip, work.work, work.xb, work.yb, work.wb, losses)
            net.optimizer.t += done + (reason == BAD_UPDATE)
            return done, losses[:min(done + 1, losses.shape[0])], reason
        return steps

    def private_stepper(self, net, data, private, q):
        """DP-SGD's runs of steps in compiled code (:func:`.private.private_steps`)."""
        if not data.in_memory:
            return super().private_stepper(net, data, private, q)
        from .. import privacy
        from .private import private_steps

        X, labels, Y, _ = data.whole()

        def steps(rows, batch_size, grad, hypers, clip):
            first = net.privacy_ledger.steps + 1
            batches, offsets, divisors = privacy.batches(private, rows, batch_size, first, data.subset, q)
            N = max(1, int(np.diff(offsets).max()))
            work = self.workspace(net, N)
            losses = np.empty(divisors.shape[0])
            code, states, _, t = net.optimizer.arguments(net.theta)
            start_threads()
            done, reason = private_steps(net.theta, grad, net.layout.table, net.codes, net.loss_code, net.l2, X,
                                         labels, Y, batches, offsets, divisors, private.clip, private.noise,
                                         private.key, first, (code, states, hypers, t), work.work, work.xb, work.yb,
                                         np.empty(N), np.empty(N), losses)
            net.optimizer.t += done + (reason == BAD_UPDATE)
            return done, losses[:min(done + 1, losses.shape[0])], reason
        return steps


BACKEND = Scalar()
