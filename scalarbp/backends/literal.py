"""The ``"literal"`` backend: seed 001 transcribed, one sample at a time, to be read next to
the notes.  Clarity is its whole point: plain loops over the notes' indices, no tiling,
no transposes, no tricks.  For real work use the ``"scalar"`` backend, which computes the
same sums as a matrix-product library would (:mod:`.products`).

In the package's symbols (seed 000's: ``a`` a pre-activation, ``h`` an activation,
``h^0 = x``; seed 001 writes ``h`` for our ``a`` and ``f`` for our ``h``, notation.py's
table), for every sample ``n`` of the batch, one ``prange`` iteration each::

    a_i^{k+1} = sum_j w_ij^k h_j^k + b_i^k,    h_i^{k+1} = g(a_i^{k+1})       forward
    delta_j^T = dPhi/dh_j^T g'(a_j^T)                                        output layer
              = (h_j - y_j) / N   for softmax + cross-entropy, sigmoid + binary CE (seed 003)
    delta_i^k = (sum_s delta_s^{k+1} w_si^k) g'(a_i^k)                       the recursion
    dPhi_n/dw_ij^k = delta_i^{k+1} h_j^k,   dPhi_n/db_i^k = delta_i^{k+1}    per sample

and then, as seed 004 sums its ``N x n x m`` tensor of per-sample outer products,
``dPhi/dw_ij = sum_n dPhi_n/dw_ij`` in the order ``n = 0, 1, ..., N-1``, whatever the
number of threads.  The per-sample gradients of a chunk of samples are held at once (one
row of ``G`` per sample); chunks are sized so that ``G`` stays under
:data:`scalarbp.definitions.layout.PER_EXAMPLE_BYTES`.
"""
import numpy as np
from numba import prange

from ..definitions.activations import activation as g, derivative as g_prime
from ..definitions.layout import B_AT, D_IN, D_OUT, UNIT_AT, W_AT
from ..definitions.losses import output_row, outputs_row, shares
from . import Backend
from ..jit import OPTIONS, compiled, require_parallel, start_threads

literal = compiled(parallel=True, **OPTIONS)


@compiled(**OPTIONS)
def forward_one(theta, layers, codes, x, a, h, n):
    """Sample n's forward pass: ``a[n]`` the pre-activations of layers 1..T, ``h[n]`` the
    activations of layers 0..T (``h^0 = x``; the output layer's h is left to the caller)."""
    d_0 = layers[0, D_IN]
    for j in range(d_0):
        h[n, j] = x[j]                                         # h_j^0 = x_j
    T = layers.shape[0]
    for k in range(T):
        d_in, d_out = layers[k, D_IN], layers[k, D_OUT]
        w, b = theta[layers[k, W_AT]:layers[k, B_AT]], theta[layers[k, B_AT]:]
        below, here = layers[k, UNIT_AT] - d_in + d_0, layers[k, UNIT_AT]  # h^k in h[n], a^{k+1} in a[n]
        for i in range(d_out):
            s = b[i]
            for j in range(d_in):
                s += w[i * d_in + j] * h[n, below + j]         # a_i^{k+1} = sum_j w_ij h_j^k + b_i
            a[n, here + i] = s
            if k < T - 1:
                h[n, d_0 + here + i] = g(codes[k], s)          # h_i^{k+1} = g(a_i^{k+1})


@compiled(**OPTIONS)
def backward_one(theta, layers, codes, a, h, delta, G, n):
    """Sample n's delta recursion and its gradient ``G[n]`` (flat like theta), from the
    output layer's delta already in ``delta[n]``."""
    d_0 = layers[0, D_IN]
    for k in range(layers.shape[0] - 1, -1, -1):
        d_in, d_out = layers[k, D_IN], layers[k, D_OUT]
        w_at, b_at = layers[k, W_AT], layers[k, B_AT]
        w = theta[w_at:b_at]
        below, here = layers[k, UNIT_AT] - d_in, layers[k, UNIT_AT]  # delta^k, delta^{k+1} in delta[n]
        for i in range(d_out):
            G[n, b_at + i] = delta[n, here + i]                # dPhi_n/db_i = delta_i^{k+1}
            for j in range(d_in):
                G[n, w_at + i * d_in + j] = delta[n, here + i] * h[n, below + d_0 + j]  # delta_i h_j
        if k > 0:
            for i in range(d_in):
                s = delta.dtype.type(0)
                for s_ in range(d_out):
                    s += delta[n, here + s_] * w[s_ * d_in + i]  # sum_s delta_s^{k+1} w_si
                delta[n, below + i] = s * g_prime(codes[k - 1], a[n, below + i], h[n, below + d_0 + i])


@literal
def per_sample_gradients(theta, layers, codes, loss_code, X, Y, scale, a, h, delta, G, losses):
    """``G[n] = dPhi_n/dtheta`` and ``losses[n]`` for every sample n of X, one ``prange``
    iteration each; the output delta is scaled by ``scale`` (1/N of the whole batch)."""
    T = layers.shape[0]
    d_0, K = layers[0, D_IN], layers[T - 1, D_OUT]
    out = layers[T - 1, UNIT_AT]
    for n in prange(X.shape[0]):
        forward_one(theta, layers, codes, X[n], a, h, n)
        losses[n] = output_row(a[:, out:out + K], h[:, d_0 + out:d_0 + out + K], Y, codes[T - 1], loss_code,
                               scale, delta[:, out:out + K], n)  # delta_j^T
        backward_one(theta, layers, codes, a, h, delta, G, n)


@literal
def add_over_samples(G, N, grad):
    """grad_p += sum_n G[n, p] for n = 0..N-1 in order: one parameter per iteration."""
    for p in prange(grad.shape[0]):
        s = grad[p]
        for n in range(N):
            s += G[n, p]
        grad[p] = s


@literal
def outputs(theta, layers, codes, X, a, h, out):
    """The network's outputs for every sample of X, one ``prange`` iteration each."""
    T = layers.shape[0]
    K, at = layers[T - 1, D_OUT], layers[T - 1, UNIT_AT]
    for n in prange(X.shape[0]):
        forward_one(theta, layers, codes, X[n], a, h, n)
        outputs_row(a[:, at:at + K], out, codes[T - 1], n)


class Literal(Backend):
    """Seed 001, transcribed (see the module docstring); slow on purpose."""

    name = "literal"

    def require(self):
        require_parallel("the literal backend")  # (its kernels are parallel only)

    def buffers(self, net, N):
        units = sum(net.sizes[1:])
        return (np.empty((N, units), net.dtype), np.empty((N, net.sizes[0] + units), net.dtype),
                np.empty((N, units), net.dtype))

    def forward(self, net, X):
        a, h, _ = self.buffers(net, X.shape[0])
        out = np.empty((X.shape[0], net.sizes[-1]), net.dtype)
        start_threads()
        outputs(net.theta, net.layout.table, net.codes, X, a, h, out)
        return out

    def loss_and_grad(self, net, X, T, grad=None, weights=None):
        N, P = X.shape[0], net.theta.shape[0]
        share = shares(weights, net.dtype)  # N w_n / sum w
        chunk = min(N, net.layout.samples_per_chunk(net.dtype.itemsize))
        a, h, delta = self.buffers(net, chunk)
        G = np.empty((chunk, P), net.dtype)
        losses = np.empty(chunk, net.dtype)
        grad = np.empty_like(net.theta) if grad is None else grad
        grad[...] = 0
        total = 0.0
        start_threads()
        for start in range(0, N, chunk):
            n = min(chunk, N - start)
            per_sample_gradients(net.theta, net.layout.table, net.codes, net.loss_code, X[start:start + n],
                                 T[start:start + n], net.dtype.type(1.0 / N), a, h, delta, G, losses)
            if share is not None:  # sample n's gradient and loss weighted: dPhi_n/dtheta * N w_n / sum w
                G[:n] *= share[start:start + n, None]
                losses[:n] *= share[start:start + n]
            add_over_samples(G, n, grad)
            total += float(np.sum(losses[:n], dtype=np.float64))
        J = total / N
        for W, dW in zip(net.weights, net.layout.views(grad)[0]):
            dW += net.l2 * W                                   # d/dW of (l2 / 2) ||W||_F^2 (seed 002)
            J += 0.5 * net.l2 * float(np.sum(W.astype(np.float64) ** 2))
        return J, grad


    def per_example(self, net, X, T, G):
        """Seed 001 as written: each sample's gradient, G[n], before the sum over samples."""
        N = X.shape[0]
        a, h, delta = self.buffers(net, N)
        G = np.empty((N, net.theta.shape[0]), net.dtype) if G.shape[0] == 0 else G
        losses = np.empty(N, net.dtype)
        per_sample_gradients(net.theta, net.layout.table, net.codes, net.loss_code, X, T, net.dtype.type(1.0),
                             a, h, delta, G, losses)
        return losses, np.einsum("np,np->n", G, G, dtype=np.float64)


BACKEND = Literal()
