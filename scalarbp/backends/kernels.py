"""Backpropagation in scalar form (seed 001), compiled by Numba: the driver of the passes.

Symbols as in the notes (seed 001's ``h`` is called ``a`` here, its ``f`` is ``h``; see
the README's table of symbols).  Indices: ``n`` a sample of the batch, ``i`` a unit of
the layer being computed, ``j`` a unit of the layer below, ``s`` a unit of the layer
above.  Per layer ``k`` (``W = W[k]`` of shape ``(d_{k+1}, d_k)``, ``b = b[k]``)::

    a_ni = sum_j w_ij h_nj + b_i,    h_ni = g(a_ni)                 forward
    delta_nj = dPhi/df_j g'(a_nj) / N                              output layer
    dPhi/dw_ij = sum_n delta_ni h_nj + l2 w_ij                     weight gradient
    dPhi/db_i = sum_n delta_ni                                     bias gradient
    delta_ni = (sum_s delta_ns w_si) g'(a_ni)                      the delta recursion

The three sums are :mod:`.products`' ``forward_sum``, ``weight_grad_sum`` and
``delta_sum``; the element-wise steps (``+ b`` and ``g``, ``g'``, the output layer, the
bias gradient) are the loops at the end of this module, each over the samples of the
batch with ``prange``.  :func:`train_epoch` runs a whole epoch of minibatch steps in
compiled code, so that small networks do not pay Python's per-step cost.
"""
from collections import namedtuple

import numpy as np
from numba import prange

from ..activations import IDENTITY, activation as g, derivative as g_prime
from ..layout import B_AT, D_IN, D_OUT, UNIT_AT, W_AT
from ..losses import SOFTMAX, output_row, outputs_row
from ..optimizers import update
from . import BAD_GRADIENT, BAD_UPDATE
from .jit import PARALLEL_ELEMENTS, kernel, serial_and_parallel
from .products import delta_sum, forward_sum, weight_grad_sum

#: The work buffers of one batch, all 1-D and of the parameters' dtype
#: (:class:`scalarbp.backends.scalar.Workspace` sizes them): ``a``, ``h`` per-sample
#: blocks of layers 1..T; ``losses`` one per sample; ``delta``, ``below`` the deltas of
#: two adjacent layers; ``scratch`` the transposes :mod:`.products` writes; ``sums`` one
#: per unit, the per-row sums of the gradient (its finiteness check).
Work = namedtuple("Work", "a h losses delta below scratch sums")


@kernel
def parameters(theta, layers, k):
    """``(W[k], b[k])`` as views of a flat vector laid out like theta (:mod:`scalarbp.layout`)."""
    d_in, d_out = layers[k, D_IN], layers[k, D_OUT]
    W = theta[layers[k, W_AT]:layers[k, B_AT]].reshape((d_out, d_in))
    return W, theta[layers[k, B_AT]:layers[k, B_AT] + d_out]


@kernel
def layer(buffer, layers, k, N):
    """Layer ``k+1``'s ``(N, d_{k+1})`` block of a per-sample buffer of layers 1..T."""
    at, d = N * layers[k, UNIT_AT], layers[k, D_OUT]
    return buffer[at:at + N * d].reshape((N, d))


@kernel
def rows(buffer, N, d):
    """The first ``N * d`` entries of a 1-D buffer as an ``(N, d)`` array."""
    return buffer[:N * d].reshape((N, d))


@kernel
def forward(theta, layers, codes, X, work):
    """Forward pass: a and h of layers 1..T into ``work.a`` and ``work.h``.

    ``codes[k]`` is the activation code of layer k+1 (the last one the output's).  The
    output layer's h is that layer's g(a), or for softmax its logits a; :func:`output`
    or :func:`output_layer` then computes the outputs.
    """
    N = X.shape[0]
    h_below = X
    for k in range(layers.shape[0]):
        W, b = parameters(theta, layers, k)
        a, h = layer(work.a, layers, k, N), layer(work.h, layers, k, N)
        forward_sum(h_below, W, a, work.scratch)                      # a_ni = sum_j w_ij h_nj
        activate(a, b, h, codes[k] if codes[k] != SOFTMAX else IDENTITY)  # a_ni += b_i; h_ni = g(a_ni)
        h_below = h


@kernel
def predict(theta, layers, codes, X, work):
    """The network's outputs for X: the last layer's block of ``work.h`` after the call."""
    forward(theta, layers, codes, X, work)
    T, N = layers.shape[0], X.shape[0]
    output(layer(work.a, layers, T - 1, N), layer(work.h, layers, T - 1, N), codes[T - 1])


@kernel
def loss_and_grad(theta, grad, layers, codes, loss_code, l2, X, Y, weights, work):
    """J and dJ/dtheta (into ``grad``) for the batch (X, Y); returns ``(J, s)``.

    ``weights`` (one per sample, or empty for none) make J the weighted mean
    ``sum_n w_n Loss_n / sum_n w_n``.  ``s`` is the sum of every gradient entry: finite
    exactly when no entry is NaN or inf (barring overflow), so the training loop checks
    one number.
    """
    N, T = X.shape[0], layers.shape[0]
    forward(theta, layers, codes, X, work)
    delta = rows(work.delta, N, layers[T - 1, D_OUT])
    # delta^T_nj = dPhi/df_j g'(a_nj) / N; (f - y) / N for softmax + cross-entropy (seed 003)
    output_layer(layer(work.a, layers, T - 1, N), layer(work.h, layers, T - 1, N), Y, codes[T - 1], loss_code,
                 theta.dtype.type(1.0 / N), delta, work.losses)
    if weights.shape[0] > 0:
        weigh(delta, work.losses, weights)                 # delta_n, Loss_n *= N w_n / sum_m w_m
    J = 0.0
    for n in range(N):
        J += work.losses[n]                                 # J = (1/N) sum_n Loss_n (seed 003's E_in)
    J /= N
    grad_sum = 0.0
    delta_buffer, below_buffer = work.delta, work.below
    for k in range(T - 1, -1, -1):
        W, _ = parameters(theta, layers, k)
        dW, db = parameters(grad, layers, k)
        h_below = X if k == 0 else layer(work.h, layers, k - 1, N)
        weight_grad_sum(delta, h_below, dW, work.scratch)  # dPhi/dw_ij = sum_n delta_ni h_nj (seed 001, 004)
        grad_sum += bias_grad_and_penalty(delta, W, l2, dW, db, work.sums)  # db_i = sum_n delta_ni; + l2 w_ij
        if l2 != 0:
            J += 0.5 * l2 * squared_norm(W)                 # (l2 / 2) ||W||_F^2 (seed 002)
        if k > 0:
            below = rows(below_buffer, N, layers[k, D_IN])
            delta_sum(delta, W, below, work.scratch)        # sum_s delta_ns w_si
            scale_by_g_prime(below, layer(work.a, layers, k - 1, N), h_below, codes[k - 1])  # * g'(a_ni)
            delta_buffer, below_buffer = below_buffer, delta_buffer
            delta = below
    return J, grad_sum


@kernel
def train_epoch(theta, grad, layers, codes, loss_code, l2, X, labels, Y, weights, order, batch_size,
                optimizer, clip, work, xb, yb, wb, batch_losses):
    """One epoch of minibatch training, every step in compiled code.

    Minibatch ``b`` holds the samples ``order[b * batch_size:(b + 1) * batch_size]``: their
    rows of ``X`` are gathered into ``xb`` and their targets into ``yb`` (1-D buffers; one-hot
    rows of ``labels`` when it is not empty, else rows of ``Y``; the samples' ``weights``
    into ``wb`` when there are any).  Each step computes J and the gradient, checks both
    are finite, scales the gradient to norm ``clip`` if it is longer (``clip`` 0: never),
    then applies the optimiser: ``optimizer`` is ``(code, states, hypers, t)``, ``hypers``
    one row of hyper-parameters per step (the learning-rate schedule is column 0) as
    :func:`scalarbp.optimizers.update` takes them, ``t`` the step count before the run.
    Returns ``(steps, reason)``: ``reason`` 0 when all ``steps`` ran; 1 when the next
    step's loss or gradient was NaN or inf (it is not applied, so theta keeps the last
    finite weights); 2 when the next step's update gave
    a NaN or inf parameter (theta and the optimiser state then hold that step's values,
    and the caller rolls back: :func:`scalarbp.training.fit`).
    """
    code, states, hypers, t = optimizer
    d, K = X.shape[1], layers[layers.shape[0] - 1, D_OUT]
    N = order.shape[0]
    steps = (N + batch_size - 1) // batch_size
    for b in range(steps):
        start = b * batch_size
        n = min(batch_size, N - start)
        Xb, Yb, wn = rows(xb, n, d), rows(yb, n, K), wb[:n if weights.shape[0] > 0 else 0]
        gather(X, labels, Y, weights, order[start:start + n], Xb, Yb, wn)
        J, grad_sum = loss_and_grad(theta, grad, layers, codes, loss_code, l2, Xb, Yb, wn, work)
        batch_losses[b] = J
        if not (np.isfinite(J) and np.isfinite(grad_sum)):
            return b, BAD_GRADIENT
        if clip > 0:
            clip_norm(grad, clip)
        if not update(code, theta, grad, states, hypers[b], t + b + 1):
            return b, BAD_UPDATE
    return steps, 0


# --- the steps between the sums -----------------------------------------------------------


@kernel
def gather(X, labels, Y, weights, samples, Xb, Yb, wb):
    """Rows ``samples`` of X into Xb, and their targets into Yb (one-hot rows of
    ``labels`` when it is not empty, else rows of Y), their weights into wb (if any)."""
    for m in range(wb.shape[0]):
        wb[m] = weights[samples[m]]
    for m in range(samples.shape[0]):
        row = samples[m]
        for j in range(X.shape[1]):
            Xb[m, j] = X[row, j]
        if labels.shape[0] > 0:
            for j in range(Yb.shape[1]):
                Yb[m, j] = 0
            Yb[m, labels[row]] = 1
        else:
            for j in range(Yb.shape[1]):
                Yb[m, j] = Y[row, j]


@kernel
def weigh(delta, losses, weights):
    """Sample n's share of the batch from 1/N to w_n / sum_m w_m: its delta row and its loss
    times N w_n / sum_m w_m (so that J = sum_n w_n Loss_n / sum_m w_m)."""
    total = 0.0
    for n in range(weights.shape[0]):
        total += weights[n]
    for n in range(delta.shape[0]):
        share = delta.dtype.type(delta.shape[0] * weights[n] / total)
        losses[n] *= share
        for j in range(delta.shape[1]):
            delta[n, j] *= share


@kernel
def clip_norm(grad, clip):
    """grad *= clip / (||grad|| + 1e-6) when that is below 1: the gradient's global norm
    clipped to ``clip`` (``torch.nn.utils.clip_grad_norm_``'s rule)."""
    s = 0.0
    for m in range(grad.shape[0]):
        s += grad[m] * grad[m]
    factor = clip / (np.sqrt(s) + 1e-6)
    if factor < 1:
        scale = grad.dtype.type(factor)
        for m in range(grad.shape[0]):
            grad[m] *= scale


@kernel
def squared_norm(W):
    """sum_ij w_ij^2, in a fixed order."""
    s = 0.0
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            s += W[i, j] * W[i, j]
    return s


@kernel
def _activate_row(a, b, h, code, n):
    for i in range(a.shape[1]):
        a[n, i] += b[i]
        h[n, i] = g(code, a[n, i])


def _activate(a, b, h, code):
    """a_ni += b_i, then h_ni = g(a_ni): the end of the forward sum, one sample per iteration."""
    for n in prange(a.shape[0]):
        _activate_row(a, b, h, code, n)


@kernel
def _scale_row(delta, a, h, code, n):
    for i in range(delta.shape[1]):
        delta[n, i] *= g_prime(code, a[n, i], h[n, i])


def _scale_by_g_prime(delta, a, h, code):
    """delta_ni *= g'(a_ni), one sample per iteration."""
    for n in prange(delta.shape[0]):
        _scale_row(delta, a, h, code, n)


def _output(a, f, out_code):
    """f_n = g(a_n) for every sample, softmax taken across the row."""
    for n in prange(a.shape[0]):
        outputs_row(a, f, out_code, n)


def _output_layer(a, f, y, out_code, loss_code, scale, delta, losses):
    """Outputs, per-sample losses and the output delta times ``scale``, one sample per
    iteration (:func:`scalarbp.losses.output_row` has the formulas)."""
    for n in prange(a.shape[0]):
        losses[n] = output_row(a, f, y, out_code, loss_code, scale, delta, n)


_activate_serial, _activate_parallel = serial_and_parallel(_activate)
_scale_serial, _scale_parallel = serial_and_parallel(_scale_by_g_prime)
_output_serial, _output_parallel = serial_and_parallel(_output)
_output_layer_serial, _output_layer_parallel = serial_and_parallel(_output_layer)


@kernel
def activate(a, b, h, code):
    if a.size >= PARALLEL_ELEMENTS:
        _activate_parallel(a, b, h, code)
    else:
        _activate_serial(a, b, h, code)


@kernel
def scale_by_g_prime(delta, a, h, code):
    if delta.size >= PARALLEL_ELEMENTS:
        _scale_parallel(delta, a, h, code)
    else:
        _scale_serial(delta, a, h, code)


@kernel
def output(a, f, out_code):
    if f.size >= PARALLEL_ELEMENTS:
        _output_parallel(a, f, out_code)
    else:
        _output_serial(a, f, out_code)


@kernel
def output_layer(a, f, y, out_code, loss_code, scale, delta, losses):
    if delta.size >= PARALLEL_ELEMENTS:
        _output_layer_parallel(a, f, y, out_code, loss_code, scale, delta, losses)
    else:
        _output_layer_serial(a, f, y, out_code, loss_code, scale, delta, losses)


@kernel
def _bias_columns(delta, db, i0, i1):
    """db_i = sum_n delta_ni for i0 <= i < i1, rows of delta read at unit stride, n in order."""
    out = db[i0:i1]
    for i in range(out.shape[0]):
        out[i] = 0
    for n in range(delta.shape[0]):
        row = delta[n, i0:i1]
        for i in range(out.shape[0]):
            out[i] += row[i]


@kernel
def _penalty_row(W, l2, dW, i):
    """dW_ij += l2 w_ij for row i; returns the row's sum."""
    row, Wi = dW[i], W[i]
    if l2 != 0:
        for j in range(row.shape[0]):
            row[j] += l2 * Wi[j]
    total = dW.dtype.type(0)
    for j in range(row.shape[0]):
        total += row[j]
    return total


#: Units per share of :func:`bias_grad_and_penalty` (columns of delta, rows of dW).
BIAS_COLUMNS = 64


def _bias_grad_and_penalty(delta, W, l2, dW, db, sums):
    """One share of BIAS_COLUMNS units per iteration: their db_i, their rows' penalty."""
    for share in prange((W.shape[0] + BIAS_COLUMNS - 1) // BIAS_COLUMNS):
        i0 = share * BIAS_COLUMNS
        i1 = min(i0 + BIAS_COLUMNS, W.shape[0])
        _bias_columns(delta, db, i0, i1)
        for i in range(i0, i1):
            sums[i] = db[i] + _penalty_row(W, l2, dW, i)


_bias_serial, _bias_parallel = serial_and_parallel(_bias_grad_and_penalty)


@kernel
def bias_grad_and_penalty(delta, W, l2, dW, db, sums):
    """db_i = sum_n delta_ni (over the batch, in a fixed order); dW_ij += l2 w_ij.

    Returns the sum of the layer's gradient entries (per unit into ``sums``, then in
    order), which is NaN or inf when any entry is.
    """
    if W.size >= PARALLEL_ELEMENTS:
        _bias_parallel(delta, W, l2, dW, db, sums)
    else:
        _bias_serial(delta, W, l2, dW, db, sums)
    total = 0.0
    for i in range(W.shape[0]):
        total += sums[i]
    return total
