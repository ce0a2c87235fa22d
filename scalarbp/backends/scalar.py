"""The ``"scalar"`` backend: Python glue around the compiled kernels in :mod:`.kernels`.

It owns the work buffers (allocated once per batch size and reused, so a training step
allocates nothing in the kernels) and hands the kernels the layout table and the integer
codes they dispatch on.
"""
import numba
import numpy as np

from ..definitions.layout import UNIT_AT
from ..definitions import updates
from . import Backend, kernels
from ..jit import start_threads


#: Multiply-adds of one sample per block of units of passes 2 and 3 (rows of W times its
#: width): blocks of about equal work, so that the threads' shares of a pass are even.
UNIT_BLOCK = 8192


def items(layout):
    """The blocks of units of passes 2 and 3: rows ``(k, i0, i1)``, a multiple of four units
    each, about :data:`UNIT_BLOCK` multiply-adds per sample; fixed by the sizes alone."""
    table = []
    for k, (d_in, d_out) in enumerate(zip(layout.sizes[:-1], layout.sizes[1:])):
        step = max(4, UNIT_BLOCK // d_in // 4 * 4)
        table += [(k, i0, min(i0 + step, d_out)) for i0 in range(0, d_out, step)]
    return np.array(table, dtype=np.int64)


class Workspace:
    """Scratch buffers for batches of up to ``capacity`` samples of one architecture: the
    :class:`.kernels.Work` the kernels take (see there), allocated once and reused, so a
    training step allocates nothing."""

    def __init__(self, layout, capacity, dtype):
        self.key = (layout.sizes, np.dtype(dtype))
        self.capacity = N = capacity
        sizes = layout.sizes
        units = N * sum(sizes[1:])
        blocks = items(layout)
        self.layout = layout
        self.work = kernels.Work(
            a=np.empty(units, dtype), h=np.empty(units, dtype), delta=np.empty(units, dtype),
            losses=np.empty(N, dtype), WT=np.empty(layout.size, dtype), xT=np.empty(N * sizes[0], dtype),
            hT=np.empty(units, dtype), deltaT=np.empty(units, dtype), items=blocks,
            sums=np.empty((blocks.shape[0], 3)), xb=np.empty(N * sizes[0], dtype), yb=np.empty(N * sizes[-1], dtype),
            wb=np.empty(N, dtype), norms=np.empty(N), factors=np.empty(N), threads=1)

    def now(self):
        """The :class:`.kernels.Work` for a call on this thread now (its thread count)."""
        return self.work._replace(threads=numba.get_num_threads())

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
        self._one_step(net, X, np.empty((0, net.sizes[-1]), net.dtype), net.theta, None, kernels.PREDICT)
        return self.workspace(net, X.shape[0]).output(X.shape[0])

    def _one_step(self, net, X, T, grad, weights, mode):
        """One call of :func:`.kernels._train_epoch` on the batch ``(X, T)`` in ``mode`` (not
        TRAIN): returns J (and in mode GRADIENT writes the gradient into ``grad``)."""
        N = X.shape[0]
        work = self.workspace(net, N)
        losses = np.empty(1)
        empty = np.empty(0, net.dtype)
        rule = updates.Rule(0, (empty, empty, empty), np.zeros((1, updates.HYPER)), 0.0)
        start_threads()
        kernels.variant(kernels.TRAIN_EPOCH, net)(
            net.theta, grad, net.layout.table, net.codes, net.loss_code, net.l2, X, np.empty(0, np.int64), T,
            empty if weights is None else weights, np.arange(N), N, mode, rule, 0.0, work.now(), losses)
        return float(losses[0])

    def loss_and_grad(self, net, X, T, grad=None, weights=None):
        grad = np.empty_like(net.theta) if grad is None else grad
        return self._one_step(net, X, T, grad, weights, kernels.GRADIENT), grad

    def loss(self, net, X, T, weights=None):
        return self._one_step(net, X, T, net.theta, weights, kernels.LOSS)

    def per_example(self, net, X, T, G):
        work = self.workspace(net, X.shape[0])
        start_threads()
        kernels.variant(kernels.PER_EXAMPLE, net)(net.theta, net.layout.table, net.codes, net.loss_code,
                                                              X, T, work.now(), G)
        N = X.shape[0]
        return work.work.losses[:N].copy(), work.work.norms[:N].copy()

    def stepper(self, net, data):
        """Whole runs of steps in compiled code (:func:`.kernels.train_epoch`), the data
        standardised once; data on disk (a memmap) goes step by step instead."""
        if not data.in_memory:
            return super().stepper(net, data)
        X, labels, Y, weights = data.whole()

        def steps(rows, batch_size, grad, hypers, clip):
            n = min(batch_size, rows.shape[0])
            work = self.workspace(net, n)
            losses = np.empty(-(-rows.shape[0] // batch_size))
            rule = net.optimizer.arguments(net.theta, hypers)
            start_threads()
            done, reason = kernels.variant(kernels.TRAIN_EPOCH, net)(
                net.theta, grad, net.layout.table, net.codes, net.loss_code, net.l2, X, labels, Y, weights, rows,
                batch_size, kernels.TRAIN, rule, clip, work.now(), losses)
            net.optimizer.advance(done, reason)
            return done, losses[:min(done + 1, losses.shape[0])], reason
        return steps


BACKEND = Scalar()
