"""Backpropagation in scalar form (seed 001), compiled by Numba: the engine.

Symbols as in the notes (seed 001's ``h`` is called ``a`` here, its ``f`` is ``h``; see
the table of symbols in docs/notes.md).  Indices: ``n`` a sample of the batch, ``i`` a unit of
the layer being computed, ``j`` a unit of the layer below, ``s`` a unit of the layer
above.  Per layer ``k`` (``W = W[k]`` of shape ``(d_{k+1}, d_k)``, ``b = b[k]``)::

    a_ni = sum_j w_ij h_nj + b_i,    h_ni = g(a_ni)                 forward
    delta_nj = dPhi/dh_j g'(a_nj) / N                              output layer
    delta_ni = (sum_s delta_ns w_si) g'(a_ni)                      the delta recursion
    dPhi/dw_ij = sum_n delta_ni h_nj + l2 w_ij                     weight gradient
    dPhi/db_i = sum_n delta_ni                                     bias gradient

A training step is two parallel passes and the update:

1. :func:`samples_pass`, per block of samples: the forward sums through every layer, the
   output delta and the delta recursion down to layer 1 (a sample's deltas need nothing
   of the other samples', so there is no barrier between layers);
2. :func:`units_pass`, per block of units: the weight and bias sums over the batch, the
   penalty and the sums the finiteness check and the clipping read;
3. :func:`update_pass`, per block of units: the optimiser's rule on their weights and
   biases, and their column of ``W^T`` (which the forward sums read) written anew.

All three sums are one micro-kernel, :func:`.products.product`.  Blocks are fixed by the
shapes (samples in groups of four, units in the net's ``items`` table), never by the
number of threads: results are bit-for-bit the same on any number of them.

The entry points (:func:`_train_epoch`, which also predicts, :func:`_per_example`, and DP-SGD's in
:mod:`scalarbp.privacy.kernels`) are each compiled twice from one body, serial and parallel
(:func:`scalarbp.jit.serial_and_parallel`), and a net calls only the one its size asks for
(:func:`variant`); the passes and their pieces are inlined into them
(:data:`scalarbp.jit.inlined`).  The product, the optimiser's update, the views and
:func:`transpose_rows` are called instead, each compiled once (:data:`scalarbp.jit.kernel`): they are
called from many places, and each inlined copy of a view's slice and reshape is some forty
statements for Numba to type and lower in every entry point.
"""
from collections import namedtuple

import numpy as np
from numba import prange

from ..definitions.activations import IDENTITY, activation as g, derivative as g_prime
from ..definitions.clipping import global_factor
from ..definitions.layout import B_AT, D_IN, D_OUT, UNIT_AT, W_AT
from ..definitions.losses import SOFTMAX, output_row, outputs_row
from ..definitions.updates import coefficients, update_range
from . import BAD_GRADIENT, BAD_UPDATE
from ..jit import inlined, kernel, parallel_for, serial_and_parallel
from .per_example import outer_products_row
from .products import product

#: The work buffers of one batch (:class:`scalarbp.backends.scalar.Workspace` sizes them):
#: ``a``, ``h``, ``delta`` per-sample blocks of layers 1..T (1-D); ``losses`` one per
#: sample; ``WT`` laid out like theta, each ``W[k]^T`` ``(d_k, d_{k+1})`` where ``W[k]`` is
#: (for k >= 1);
#: ``xT``, ``hT``, ``deltaT`` the batch's inputs, activations and deltas transposed (each
#: layer's block ``(d, N)`` where its ``(N, d)`` block is in ``h``), for the weight sums;
#: ``items`` the blocks of units of passes 2 and 3, one row ``(k, i0, i1)`` each; ``sums``
#: per item: the sum of its gradient entries, their squares, and ``sum w_ij^2``; ``xb``,
#: ``yb``, ``wb`` the minibatch's inputs, targets and sample weights (1-D); ``norms`` and
#: ``factors`` one per sample (per-example norms, DP-SGD's clipping); ``threads`` the call's
#: thread count (:func:`block_size`).
Work = namedtuple("Work", "a h delta losses WT xT hT deltaT items sums xb yb wb norms factors threads")

#: Fewest samples per block of :func:`samples_pass` (:func:`block_size`).
SAMPLES = 16


@inlined
def block_size(N, threads):
    """Samples per block of the pass over samples: an even share of the batch per thread
    (each block reads every W once, so fewer, larger blocks read less), at least
    :data:`SAMPLES`, and a multiple of 4, so that the product's groups of four rows fall the
    same way whatever the block: a sample's numbers do not depend on it, nor on the
    number of threads."""
    share = (N + threads - 1) // threads
    return max(SAMPLES, (share + 3) // 4 * 4)

#: Modes of :func:`_train_epoch`: steps with updates; one gradient, no update; the loss only;
#: the outputs only (the forward pass of ``predict``).
TRAIN, GRADIENT, LOSS, PREDICT = range(4)


def variant(entry, net):
    """The serial or the parallel compilation of ``entry`` (a pair) for ``net``: chosen by its
    size alone, so that a net compiles one of the two, whatever its batches."""
    return entry[parallel_for(net.layout.macs)]


# --- views ---------------------------------------------------------------------------------
# (Compiled functions, not inlined: called from fifteen places, inlined they made 1,200 of the
# serial entry point's 4,400 typed statements, as calls 2,800 in all; a cold fit + predict of
# the default net 12-15% faster, epochs unchanged.)


@kernel
def parameters(theta, layers, k):
    """``(W[k], b[k])`` as views of a flat vector laid out like theta (:mod:`scalarbp.layout`)."""
    d_in, d_out = layers[k, D_IN], layers[k, D_OUT]
    W = theta[layers[k, W_AT]:layers[k, B_AT]].reshape((d_out, d_in))
    return W, theta[layers[k, B_AT]:layers[k, B_AT] + d_out]


@kernel
def transposed(WT, layers, k):
    """``W[k]^T`` ``(d_k, d_{k+1})``, the view of :data:`Work`'s ``WT``."""
    return WT[layers[k, W_AT]:layers[k, B_AT]].reshape((layers[k, D_IN], layers[k, D_OUT]))


@kernel
def layer(buffer, layers, k, N):
    """Layer ``k+1``'s ``(N, d_{k+1})`` block of a per-sample buffer of layers 1..T."""
    at, d = N * layers[k, UNIT_AT], layers[k, D_OUT]
    return buffer[at:at + N * d].reshape((N, d))


@kernel
def layer_T(buffer, layers, k, N):
    """The same block of a transposed buffer: ``(d_{k+1}, N)``."""
    at, d = N * layers[k, UNIT_AT], layers[k, D_OUT]
    return buffer[at:at + N * d].reshape((d, N))


@kernel
def rows(buffer, N, d):
    """The first ``N * d`` entries of a 1-D buffer as an ``(N, d)`` array."""
    return buffer[:N * d].reshape((N, d))


# --- pass 1: per block of samples -------------------------------------------------------------


@inlined
def forward_rows(theta, layers, codes, x, N, n0, n1, A, H):
    """Forward sums of samples n0 .. n1 - 1 of a batch of N with inputs ``x`` (1-D, N d_0):
    a and h of layers 1..T into A and H.  The output layer's h is its g(a), or for softmax
    its logits a."""
    for k in range(layers.shape[0]):
        d_in, d_out = layers[k, D_IN], layers[k, D_OUT]
        below = rows(x, N, d_in) if k == 0 else layer(H, layers, k - 1, N)
        a, h = layer(A, layers, k, N), layer(H, layers, k, N)
        W, b = parameters(theta, layers, k)
        product(below[n0:n1], W, a[n0:n1])                     # a_ni = sum_j w_ij h_nj
        code = codes[k] if codes[k] < SOFTMAX else IDENTITY     # (softmax and exp: the logits, f follows)
        for n in range(n0, n1):
            for i in range(d_out):
                a[n, i] += b[i]                                 # + b_i
                h[n, i] = g(code, a[n, i])                      # h_ni = g(a_ni)


@inlined
def backward_rows(WT, layers, codes, N, n0, n1, A, H, D):
    """The delta recursion for samples n0 .. n1 - 1, from the output layer's delta down to
    layer 1's (seed 001): ``delta_nj = (sum_s delta_ns w_sj) g'(a_nj)``, into D."""
    for k in range(layers.shape[0] - 1, 0, -1):
        below = layer(D, layers, k - 1, N)
        product(layer(D, layers, k, N)[n0:n1], transposed(WT, layers, k), below[n0:n1])  # sum_s delta_ns w_sj
        a, h = layer(A, layers, k - 1, N), layer(H, layers, k - 1, N)
        for n in range(n0, n1):
            for j in range(below.shape[1]):
                below[n, j] *= g_prime(codes[k - 1], a[n, j], h[n, j])  # * g'(a_nj)


@inlined
def gather_rows(X, labels, Y, weights, samples, n0, n1, K, xb, yb, wb):
    """Rows ``samples[n0:n1]`` of X into the batch inputs, their K targets into the batch
    targets (one-hot rows of ``labels`` when it is not empty, else rows of Y), their
    weights (if any) into the batch weights."""
    d = X.shape[1]
    for m in range(n0, n1):
        row = samples[m]
        for j in range(d):
            xb[m * d + j] = X[row, j]
        if labels.shape[0] == 0 and Y.shape[0] == 0:  # (predicting: no targets)
            continue
        if labels.shape[0] > 0:
            for j in range(K):
                yb[m * K + j] = 0
            yb[m * K + labels[row]] = 1
        else:
            for j in range(K):
                yb[m * K + j] = Y[row, j]
        if weights.shape[0] > 0:
            wb[m] = weights[row]


@inlined
def samples_pass(theta, layers, codes, loss_code, X, labels, Y, weights, samples, scale, backward, transpose, work):
    """Pass 1 of a step over the batch ``samples`` (rows of X): per block of
    :data:`SAMPLES`, gather, forward, output and (when ``backward``) the delta recursion,
    then (when ``transpose``) the samples' columns of the transposed buffers (:func:`columns`).

    The output delta is ``dLoss_n/da_n`` times ``scale`` (``1/N``: seed 003's mean), then
    times ``N w_n / sum_m w_m`` when there are sample weights, as the loss is.
    """
    N, T = samples.shape[0], layers.shape[0]
    K = layers[T - 1, D_OUT]
    total = 0.0
    for m in range(N if weights.shape[0] > 0 else 0):
        total += weights[samples[m]]                            # sum_m w_m
    # (every array a parallel loop touches is named before it: a loop over a named tuple's
    # fields would work on copies)
    A, H, D, losses, xb, yb, wb, WT = work.a, work.h, work.delta, work.losses, work.xb, work.yb, work.wb, work.WT
    xT, HT, DT = work.xT, work.hT, work.deltaT
    x, y = xb[:N * X.shape[1]], rows(yb, N, K)
    a_T, h_T, delta_T = layer(A, layers, T - 1, N), layer(H, layers, T - 1, N), layer(D, layers, T - 1, N)
    size = block_size(N, work.threads)
    for block in prange((N + size - 1) // size):
        n0 = block * size
        n1 = min(n0 + size, N)
        gather_rows(X, labels, Y, weights, samples, n0, n1, K, xb, yb, wb)
        forward_rows(theta, layers, codes, x, N, n0, n1, A, H)
        for n in range(n0, n1):  # delta^T_nj = dPhi/dh_j g'(a_nj) / N; (h - y) / N for softmax + cross-entropy
            if labels.shape[0] == 0 and Y.shape[0] == 0:
                outputs_row(a_T, h_T, codes[T - 1], n)          # predicting: f_n = g(a_n), softmax across the row
                continue
            losses[n] = output_row(a_T, h_T, y, codes[T - 1], loss_code, scale, delta_T, n)
            if weights.shape[0] > 0:  # delta_n, Loss_n *= N w_n / sum_m w_m (0 if every w_m is: the penalty alone)
                share = theta.dtype.type(N * wb[n] / total if total > 0 else 0.0)
                losses[n] *= share
                for j in range(K):
                    delta_T[n, j] *= share
        if backward:
            backward_rows(WT, layers, codes, N, n0, n1, A, H, D)
        if transpose:
            for n in range(n0, n1):
                columns(layers, x, N, n, H, D, xT, HT, DT)


@inlined
def columns(layers, x, N, n, H, D, xT, HT, DT):
    """Sample n's column of x^T, of h^T (layers 1..T-1) and of delta^T (layers 1..T)."""
    d = layers[0, D_IN]
    for j in range(d):
        xT[j * N + n] = x[n * d + j]
    for k in range(layers.shape[0]):
        h, delta = layer(H, layers, k, N), layer(D, layers, k, N)
        hT, deltaT = layer_T(HT, layers, k, N), layer_T(DT, layers, k, N)
        for i in range(delta.shape[1]):
            deltaT[i, n] = delta[n, i]
            if k < layers.shape[0] - 1:
                hT[i, n] = h[n, i]


# --- passes 2 and 3: per block of units ---------------------------------------------------------


@inlined
def units_pass(theta, grad, layers, N, l2, work):
    """Pass 2, per item ``(k, i0, i1)`` of the net's table: units i0 .. i1 - 1 of layer k+1.

    ``dPhi/dw_ij = sum_n delta_ni h_nj`` (seed 001's ``delta_i f_j``, summed over the batch
    as seed 004 does), ``dPhi/db_i = sum_n delta_ni``, both over n in order, then
    ``+ l2 w_ij``; into ``work.sums[item]`` the sum of the entries, of their squares, and
    ``sum w_ij^2`` (the penalty's share of J).
    """
    items, sums, xT, HT, DT = work.items, work.sums, work.xT, work.hT, work.deltaT
    for item in prange(items.shape[0]):
        k, i0, i1 = items[item, 0], items[item, 1], items[item, 2]
        d_in = layers[k, D_IN]
        W, _ = parameters(theta, layers, k)
        dW, db = parameters(grad, layers, k)
        belowT = rows(xT, d_in, N) if k == 0 else layer_T(HT, layers, k - 1, N)
        deltaT = layer_T(DT, layers, k, N)
        product(deltaT[i0:i1], belowT, dW[i0:i1])                       # dPhi/dw_ij = sum_n delta_ni h_nj
        total, squares, weights = 0.0, 0.0, 0.0
        for i in range(i0, i1):
            s = db.dtype.type(0)
            deltaT_i = deltaT[i]
            for n in range(N):
                s += deltaT_i[n]                                        # dPhi/db_i = sum_n delta_ni
            db[i] = s
            total += s
            squares += s * s
            row, w = dW[i], W[i]
            for j in range(d_in):
                if l2 != 0:
                    row[j] += l2 * w[j]                                 # + l2 w_ij
                total += row[j]
                squares += row[j] * row[j]
                weights += w[j] * w[j]
        sums[item, 0], sums[item, 1], sums[item, 2] = total, squares, weights


@inlined
def update_pass(theta, grad, layers, rule, hyper, t, scale, work):
    """Pass 3, per item: the gradient times ``scale`` when it is below 1 (the clipping),
    the optimiser's rule on the item's weights and biases at step ``t``, and their
    columns of ``W^T``; returns True if every new parameter is finite."""
    code, states, items, sums, WT = rule.code, rule.states, work.items, work.sums, work.WT
    for item in prange(items.shape[0]):
        c = coefficients(code, hyper, t, theta)  # (per item: a named tuple cannot enter a parallel loop)
        k, i0, i1 = items[item, 0], items[item, 1], items[item, 2]
        d_in = layers[k, D_IN]
        w0, w1 = layers[k, W_AT] + i0 * d_in, layers[k, W_AT] + i1 * d_in
        b0, b1 = layers[k, B_AT] + i0, layers[k, B_AT] + i1
        if scale < 1:
            factor = grad.dtype.type(scale)
            for m in range(w0, w1):
                grad[m] *= factor
            for m in range(b0, b1):
                grad[m] *= factor
        bad = update_range(code, theta, grad, states, w0, w1, c)
        bad += update_range(code, theta, grad, states, b0, b1, c)
        sums[item, 0] = bad
        transpose_rows(theta, WT, layers, k, i0, i1)
    bad = 0.0
    for item in range(items.shape[0]):
        bad += sums[item, 0]
    return bad == 0


@kernel
def transpose_rows(theta, WT, layers, k, i0, i1):
    """Rows i0 .. i1 - 1 of W[k] into their columns of W[k]^T, for the layers whose delta
    recursion reads it (k >= 1: layer 0's delta is never needed)."""
    if k == 0:
        return
    W, _ = parameters(theta, layers, k)
    src, dst = W[i0:i1], transposed(WT, layers, k)[:, i0:i1]  # (views indexed from 0)
    for j in range(src.shape[1]):
        for i in range(src.shape[0]):
            dst[j, i] = src[i, j]


@inlined
def transpose_all(theta, layers, work):
    """W^T of every layer from theta as it is (once per call: theta may have been assigned)."""
    for item in range(work.items.shape[0]):
        transpose_rows(theta, work.WT, layers, work.items[item, 0], work.items[item, 1], work.items[item, 2])


# --- the entry points --------------------------------------------------------------------------


def _train_epoch(theta, grad, layers, codes, loss_code, l2, X, labels, Y, weights, order, batch_size, mode, rule,
                 clip, work, batch_losses):
    """One epoch of minibatch training, every step in compiled code.

    Minibatch ``b`` holds the samples ``order[b * batch_size:(b + 1) * batch_size]`` (their
    targets one-hot rows of ``labels`` when it is not empty, else rows of ``Y``; their
    ``weights``, when there are any, weigh the mean).  Each step computes J and the
    gradient (passes 1 and 2), checks both are finite, scales the gradient to norm ``clip``
    if it is longer (``clip`` 0: never), then applies the optimiser (pass 3): ``rule`` is
    an :class:`scalarbp.optimizers.Rule`, its ``hypers[b]`` step b's hyper-parameters.
    Returns ``(steps, reason)``: ``reason`` 0 when all ``steps`` ran; 1 when the next
    step's loss or gradient was NaN or inf (it is not applied, so theta keeps the last
    finite weights); 2 when the next step's update gave a NaN or inf parameter (theta and
    the optimiser state then hold that step's values, and the caller rolls back:
    :func:`scalarbp.training.fit`).  ``mode`` :data:`GRADIENT`: one step's J and gradient
    (into ``grad``) without the update; :data:`LOSS`: its J alone; :data:`PREDICT`: the
    outputs of the samples ``order`` (no targets: ``labels`` and ``Y`` empty) in the last
    layer's block of ``work.h``.  J is in ``batch_losses[b]``.
    """
    N = order.shape[0]
    steps = (N + batch_size - 1) // batch_size
    if mode == TRAIN or mode == GRADIENT:  # (the forward sums read W itself)
        transpose_all(theta, layers, work)
    for b in range(steps):
        start = b * batch_size
        n = min(batch_size, N - start)
        samples = order[start:start + n]
        samples_pass(theta, layers, codes, loss_code, X, labels, Y, weights, samples, theta.dtype.type(1.0 / n),
                     mode <= GRADIENT, mode <= GRADIENT, work)
        if mode == PREDICT:
            return 1, 0
        J = 0.0
        for m in range(n):
            J += work.losses[m]                                 # J = (1/N) sum_n Loss_n (seed 003's E_in)
        J /= n
        if mode == LOSS:
            penalty = 0.0
            for k in range(layers.shape[0]):
                W, _ = parameters(theta, layers, k)
                for i in range(W.shape[0]):
                    for j in range(W.shape[1]):
                        penalty += W[i, j] * W[i, j]
            batch_losses[b] = J + 0.5 * l2 * penalty            # + (l2 / 2) ||W||_F^2 (seed 002)
            return 1, 0
        units_pass(theta, grad, layers, n, l2, work)
        grad_sum, squares, penalty = 0.0, 0.0, 0.0
        for item in range(work.items.shape[0]):
            grad_sum += work.sums[item, 0]
            squares += work.sums[item, 1]
            penalty += work.sums[item, 2]
        J += 0.5 * l2 * penalty                                 # + (l2 / 2) ||W||_F^2 (seed 002)
        batch_losses[b] = J
        if not (np.isfinite(J) and np.isfinite(grad_sum)):
            return b, BAD_GRADIENT
        if mode == GRADIENT:
            return 1, 0
        scale = global_factor(squares, clip)
        if not update_pass(theta, grad, layers, rule, rule.hypers[b], rule.t + b + 1, scale, work):
            return b, BAD_UPDATE
    return steps, 0


def _per_example(theta, layers, codes, loss_code, X, Y, work, G):
    """Sample n's loss into ``work.losses[n]``, its squared gradient norm into
    ``work.norms[n]`` and (when G is not empty) its gradient into ``G[n]``, flat like theta
    (:mod:`.per_example` has the identity)."""
    N = X.shape[0]
    transpose_all(theta, layers, work)
    samples_pass(theta, layers, codes, loss_code, X, np.empty(0, np.int64), Y, np.empty(0, theta.dtype),
                 np.arange(N), theta.dtype.type(1.0), True, False, work)  # delta_n = dLoss_n/da_n: no 1/N
    x, H, D, norms = work.xb, work.h, work.delta, work.norms
    for n in prange(N):
        sample_norm(layers, x, N, H, D, G, norms, n)


@inlined
def sample_norm(layers, x, N, H, D, G, norms, n):
    """Sample n's ``||dLoss_n/dtheta||^2`` into ``norms[n]`` (returned) and, when G is
    not empty, its gradient into ``G[n]``: :func:`.per_example.outer_products_row`, the CPU's
    and the CUDA backend's one definition, layer by layer."""
    norms[n] = 0
    for k in range(layers.shape[0]):
        below = rows(x, N, layers[k, D_IN]) if k == 0 else layer(H, layers, k - 1, N)
        outer_products_row(layer(D, layers, k, N), below, layers[k, W_AT], layers[k, B_AT], G, norms, n)
    return norms[n]


TRAIN_EPOCH = serial_and_parallel(_train_epoch)
PER_EXAMPLE = serial_and_parallel(_per_example)

