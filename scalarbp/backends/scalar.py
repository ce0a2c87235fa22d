"""The ``"scalar"`` backend: Python glue around the compiled kernels in :mod:`.kernels`.

It owns the work buffers (allocated once per batch size and reused, so a training step
allocates nothing in the kernels) and turns the network's description into the integer
codes the kernels dispatch on.
"""
import numba
import numpy as np

from . import kernels


def start_threads():
    """Start Numba's thread pool; call before any kernel of :mod:`.kernels`.

    Those kernels are not ``parallel=True`` themselves: their parallel loops are in their
    callees.  Numba starts its threads when it loads a cached parallel function, but a
    cached caller that was compiled in a process which had itself loaded those callees
    from the cache does not carry that start-up, and loading it in a new process then
    crashes that process (numba issues 8578 and 4807; seen here after editing
    ``kernels.py``, and reproduced by ``tests/test_kernel_cache.py``).
    ``numba.get_num_threads()`` starts the pool, and does nothing once it runs.
    """
    numba.get_num_threads()


class Workspace:
    """Scratch buffers for batches of up to ``capacity`` samples of one architecture.

    ``a``/``h``: pre-activations and activations of layers 1..T, one ``(N, d_k)`` block
    per layer; ``delta``/``below``: the deltas of two adjacent layers; ``deltaT``/``hT``:
    transposed copies feeding the weight-gradient sum; ``WT``: a transposed weight matrix
    (or a transposed weight gradient, summed there before it is written into ``dW``);
    ``sums``: per-unit sums of the gradient (the finiteness check); ``xb``/``yb``: the
    minibatch gathered by :func:`train_epoch`.
    """

    def __init__(self, sizes, capacity, dtype):
        self.key = (tuple(sizes), np.dtype(dtype))
        self.capacity = capacity
        widest_out = max(sizes[1:])
        widest_in = max(sizes[:-1])
        widest_W = max(d_out * d_in for d_in, d_out in zip(sizes[:-1], sizes[1:]))
        N = capacity
        self.a = np.empty(N * sum(sizes[1:]), dtype)
        self.h = np.empty_like(self.a)
        self.WT = np.empty(widest_W, dtype)
        self.buffers = (
            self.a, self.h, np.empty(N, dtype), np.empty(N * widest_out, dtype),
            np.empty(N * widest_out, dtype), np.empty(N * widest_out, dtype),
            np.empty(N * widest_in, dtype), self.WT, np.empty(widest_out, dtype),
        )
        self.xb = np.empty(N * sizes[0], dtype)
        self.yb = np.empty(N * sizes[-1], dtype)

    @classmethod
    def for_batch(cls, net, N):
        """The net's workspace, grown if ``N`` samples do not fit or the net changed."""
        work = getattr(net, "_workspace", None)
        key = (net.sizes, net.dtype)
        if work is None or work.key != key or work.capacity < N:
            work = cls(net.sizes, N, net.dtype)
            net._workspace = work
        return work

    def output(self, sizes, N):
        """A copy of the last layer's ``(N, d_T)`` block of ``h``."""
        at = N * sum(sizes[1:-1])
        return self.h[at:at + N * sizes[-1]].reshape(N, sizes[-1]).copy()


def _codes(net):
    return np.array(net.codes, dtype=np.int64), np.array(net.sizes, dtype=np.int64)


def forward(net, X):
    """Outputs ``(N, d_T)`` for inputs ``X`` ``(N, d_0)``."""
    codes, sizes = _codes(net)
    work = Workspace.for_batch(net, X.shape[0])
    start_threads()
    kernels.predict(net.theta, sizes, codes, X, work.a, work.h, work.WT)
    return work.output(net.sizes, X.shape[0])


def loss_and_grad(net, X, T, grad=None):
    """``(J, grad)``: the penalised mean loss and its gradient, flat like ``net.theta``
    (written into ``grad`` when one is given)."""
    codes, sizes = _codes(net)
    work = Workspace.for_batch(net, X.shape[0])
    grad = np.empty_like(net.theta) if grad is None else grad
    start_threads()
    J, _ = kernels.loss_and_grad(net.theta, grad, sizes, codes, net.loss_code, net.l2, X, T,
                                 work.buffers)
    return float(J), grad


def train_epoch(net, X, labels, Y, order, batch_size, grad):
    """One compiled epoch (:func:`.kernels.train_epoch`) with ``net.optimizer``.

    ``X`` and ``Y`` are C-contiguous arrays of the net's dtype; ``labels`` int64 class
    labels (then ``Y`` is ignored) or empty.  Returns ``(steps applied, losses of the
    attempted steps)``; ``net.optimizer.t`` advances by the steps applied.
    """
    codes, sizes = _codes(net)
    work = Workspace.for_batch(net, min(batch_size, order.shape[0]))
    losses = np.empty(-(-order.shape[0] // batch_size))
    start_threads()
    steps = kernels.train_epoch(net.theta, grad, sizes, codes, net.loss_code, net.l2, X, labels, Y, order,
                                batch_size, net.optimizer.arguments(net.theta), work.buffers, work.xb,
                                work.yb, losses)
    net.optimizer.t += steps
    return steps, losses[:min(steps + 1, losses.shape[0])]
