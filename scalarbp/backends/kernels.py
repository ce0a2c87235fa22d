"""The scalar form of backpropagation (seed 001), as explicit index loops compiled by Numba.

Indices follow the notes: ``n`` a sample of the batch, ``i`` a unit of the layer being
computed, ``j`` a unit of the layer below, ``s`` a unit of the layer above.  Per layer
``k`` (``W = W[k]`` of shape ``(d_{k+1}, d_k)``, ``b = b[k]``)::

    a_ni = sum_j w_ij h_nj + b_i,    h_ni = g(a_ni)                    forward
    delta_nj = dPhi/df_j g'(a_nj) / N                                 output layer
    delta_ni = (sum_s delta_ns w_si) g'(a_ni)                         the delta recursion
    dPhi/dw_ij = sum_n delta_ni h_nj + l2 w_ij,  dPhi/db_i = sum_n delta_ni

The three sums are matrix products, computed by two routines written as index loops:

* :func:`sum_products`, ``C[p, q] = sum_r A[p, r] B[q, r]``: both operands unit-stride
  along the summed index ``r``, 4 x 4 register tiles (each value loaded is used four
  times), a horizontal sum of a vector at the end of each element, columns of C in
  panels of ``PANEL`` so that the panel of B stays in cache.  Fed ``(h, W)`` for the
  forward sums; for long delta sums ``(delta, W^T)`` and long weight-gradient sums
  ``(delta^T, h^T)``, with the transposes written beforehand.
* :func:`sum_outer_products`, ``C[p, q] = sum_r A[r, p] B[r, q]``: the innermost loop runs
  along rows of C and B, four terms of the sum per pass; no transposes and no horizontal
  sums, which makes it the faster form for short sums (up to ``SHORT_SUM`` terms) into
  long enough rows (at least ``LONG_ROW``, :func:`outer_form`), and for longer sums
  over a B small enough to stay in cache (``CACHED_B``, :func:`outer_form_for`): the
  weight gradient ``(delta, h)`` (or ``(h, delta)`` into ``dW^T`` when the layer below
  is the narrow one), the delta sum ``(delta^T, W)``, and the forward sum
  ``(h^T, W^T)`` from a layer of up to 128 units.

Parallelism and determinism: both routines run ``prange`` over blocks of four rows of
``C``.  For the forward and delta sums those rows are samples (parallel over the batch);
for the weight gradient they are units (of either layer), so each ``dPhi/dw_ij`` is
summed over ``n`` by one thread, in a fixed order.  No two threads ever add into the
same element and no result depends on the number of threads: gradients are bit-for-bit
identical for 1 and 2 threads.  A product smaller than ``PARALLEL_MACS`` multiply-adds
(or a pass over fewer than ``PARALLEL_ELEMENTS`` entries) runs the same loop on one
thread, since waking the others costs more than it saves; the arithmetic, and so the
result, is the same.

:func:`train_epoch` runs a whole epoch of minibatch steps (gather, forward, backward,
update) in compiled code, so that small networks do not pay Python's per-step cost.

``FASTMATH`` lets LLVM reassociate the sums (to use vector lanes) and fuse multiply-adds,
but keeps IEEE NaN and inf semantics so that a diverging run is still detected.
"""
import numpy as np
from numba import njit, prange

from ..activations import IDENTITY, activation as g, derivative as g_prime
from ..losses import SOFTMAX, output_row, outputs_row
from ..optimizers import update

FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

#: Multiply-adds below which a product runs on one thread: waking the others costs more.
PARALLEL_MACS = 1 << 18

#: Elements below which an element-wise pass runs on one thread.
PARALLEL_ELEMENTS = 1 << 15

# error_model="numpy": x / 0 gives inf or NaN as in IEEE arithmetic instead of raising
# ZeroDivisionError, whose check would also stop LLVM from vectorising loops that divide.
kernel = njit(cache=True, fastmath=FASTMATH, error_model="numpy")
parallel_kernel = njit(cache=True, fastmath=FASTMATH, error_model="numpy", parallel=True)

@kernel
def _tile_rows(A, B, C, block, q0, q1):
    """Rows 4 block .. 4 block + 3, columns q0 .. q1 - 1 of C = A B^T (see :func:`sum_products`)."""
    P = A.shape[0]
    p = 4 * block
    if p + 4 > P:  # the last, partial block of rows: one dot product per element
        for pp in range(p, P):
            Ap, Cp = A[pp], C[pp]
            for q in range(q0, q1):
                Bq = B[q]
                c = C.dtype.type(0)
                for r in range(Bq.shape[0]):
                    c += Ap[r] * Bq[r]
                Cp[q] = c
        return
    # Rows of A, B and C as 1-D views: unit stride that LLVM can see, indices from 0.
    A0, A1, A2, A3 = A[p], A[p + 1], A[p + 2], A[p + 3]
    C0, C1, C2, C3 = C[p], C[p + 1], C[p + 2], C[p + 3]
    q = q0
    while q + 4 <= q1:
        B0, B1, B2, B3 = B[q], B[q + 1], B[q + 2], B[q + 3]
        c00 = c01 = c02 = c03 = C.dtype.type(0)
        c10 = c11 = c12 = c13 = C.dtype.type(0)
        c20 = c21 = c22 = c23 = C.dtype.type(0)
        c30 = c31 = c32 = c33 = C.dtype.type(0)
        for r in range(A0.shape[0]):
            a0, a1, a2, a3 = A0[r], A1[r], A2[r], A3[r]
            b0, b1, b2, b3 = B0[r], B1[r], B2[r], B3[r]
            c00 += a0 * b0
            c01 += a0 * b1
            c02 += a0 * b2
            c03 += a0 * b3
            c10 += a1 * b0
            c11 += a1 * b1
            c12 += a1 * b2
            c13 += a1 * b3
            c20 += a2 * b0
            c21 += a2 * b1
            c22 += a2 * b2
            c23 += a2 * b3
            c30 += a3 * b0
            c31 += a3 * b1
            c32 += a3 * b2
            c33 += a3 * b3
        C0[q], C0[q + 1], C0[q + 2], C0[q + 3] = c00, c01, c02, c03
        C1[q], C1[q + 1], C1[q + 2], C1[q + 3] = c10, c11, c12, c13
        C2[q], C2[q + 1], C2[q + 2], C2[q + 3] = c20, c21, c22, c23
        C3[q], C3[q + 1], C3[q + 2], C3[q + 3] = c30, c31, c32, c33
        q += 4
    for qq in range(q, q1):  # the panel's last columns: a 4 x 1 tile each
        Bq = B[qq]
        c0 = c1 = c2 = c3 = C.dtype.type(0)
        for r in range(Bq.shape[0]):
            bq = Bq[r]
            c0 += A0[r] * bq
            c1 += A1[r] * bq
            c2 += A2[r] * bq
            c3 += A3[r] * bq
        C0[qq], C1[qq], C2[qq], C3[qq] = c0, c1, c2, c3


#: Rows of B (columns of C) per panel in :func:`sum_products`.  A panel of B, PANEL x R
#: values, stays in a core's L2 cache while every block of rows of A passes over it;
#: without panels, a product with a 1024 x 1024 B reads all of B from the shared L3
#: cache once per block of four rows (measured: 159 instead of 177 GFLOP/s; no change
#: where B fits in L2).
PANEL = 128


@parallel_kernel
def sum_products(A, B, C, parallel):
    """C[p, q] = sum_r A[p, r] B[q, r] for A (P, R), B (Q, R), C (P, Q).

    Columns of C are computed in panels of ``PANEL``, and within a panel rows in blocks
    of four, one block per ``prange`` iteration when ``parallel`` (else in a plain loop:
    the same arithmetic, without the cost of waking threads for a small product); inside
    a full block, 4 x 4 tiles of C are held in 16 accumulators while ``r`` runs over both
    operands at unit stride.
    """
    blocks = (A.shape[0] + 3) // 4
    Q = B.shape[0]
    for q0 in range(0, Q, PANEL):
        q1 = min(q0 + PANEL, Q)
        if parallel:
            for block in prange(blocks):
                _tile_rows(A, B, C, block, q0, q1)
        else:
            for block in range(blocks):
                _tile_rows(A, B, C, block, q0, q1)


@kernel
def _outer_rows(A, B, C, block):
    """Rows 4 block .. 4 block + 3 of C = A^T B (see :func:`sum_outer_products`)."""
    R, Q = B.shape
    p = 4 * block
    if p + 4 > C.shape[0]:  # the last, partial block: one row at a time
        for pp in range(p, C.shape[0]):
            Cp = C[pp]
            for q in range(Q):
                Cp[q] = 0
            for r in range(R):
                a, Br = A[r, pp], B[r]
                for q in range(Q):
                    Cp[q] += a * Br[q]
        return
    C0, C1, C2, C3 = C[p], C[p + 1], C[p + 2], C[p + 3]
    for q in range(Q):
        C0[q] = C1[q] = C2[q] = C3[q] = 0
    r = 0
    while r + 4 <= R:  # four terms of the sum per pass: four multiply-adds per store
        a00, a01, a02, a03 = A[r, p], A[r, p + 1], A[r, p + 2], A[r, p + 3]
        a10, a11, a12, a13 = A[r + 1, p], A[r + 1, p + 1], A[r + 1, p + 2], A[r + 1, p + 3]
        a20, a21, a22, a23 = A[r + 2, p], A[r + 2, p + 1], A[r + 2, p + 2], A[r + 2, p + 3]
        a30, a31, a32, a33 = A[r + 3, p], A[r + 3, p + 1], A[r + 3, p + 2], A[r + 3, p + 3]
        B0, B1, B2, B3 = B[r], B[r + 1], B[r + 2], B[r + 3]
        for q in range(Q):
            b0, b1, b2, b3 = B0[q], B1[q], B2[q], B3[q]
            C0[q] += a00 * b0 + a10 * b1 + a20 * b2 + a30 * b3
            C1[q] += a01 * b0 + a11 * b1 + a21 * b2 + a31 * b3
            C2[q] += a02 * b0 + a12 * b1 + a22 * b2 + a32 * b3
            C3[q] += a03 * b0 + a13 * b1 + a23 * b2 + a33 * b3
        r += 4
    while r < R:
        a0, a1, a2, a3 = A[r, p], A[r, p + 1], A[r, p + 2], A[r, p + 3]
        Br = B[r]
        for q in range(Q):
            b = Br[q]
            C0[q] += a0 * b
            C1[q] += a1 * b
            C2[q] += a2 * b
            C3[q] += a3 * b
        r += 1


@parallel_kernel
def sum_outer_products(A, B, C, parallel):
    """C[p, q] = sum_r A[r, p] B[r, q] for A (R, P), B (R, Q), C (P, Q).

    The same sums as :func:`sum_products`, organised the other way round: the innermost
    loop runs along a row of C and a row of B (unit stride, vectorised), and each pass
    adds four terms of the sum, so no horizontal sum of a vector is ever needed.  That is
    the faster form when the sum is short (a weight gradient over a batch of 64, or a
    delta sum over 10 output units); ``A`` may be a transposed view.  Rows of C in blocks
    of four, one block per ``prange`` iteration when ``parallel``.
    """
    blocks = (C.shape[0] + 3) // 4
    if parallel:
        for block in prange(blocks):
            _outer_rows(A, B, C, block)
    else:
        for block in range(blocks):
            _outer_rows(A, B, C, block)


#: Sums of at most this many terms use :func:`sum_outer_products`, longer ones
#: :func:`sum_products` (measured: 160 against 115 GFLOP/s for a weight gradient over a
#: batch of 64; 97 against 133 over a batch of 256 with 1024-wide layers) ...
SHORT_SUM = 128

#: ... provided the rows of C are at least this long: the outer form's innermost loop
#: runs along them (a forward sum into 10 output units runs at 15 GFLOP/s in outer
#: form and 75 in dot-product tiles).
LONG_ROW = 64


#: Bytes of an operand B (R, Q) small enough to stay in a core's L2 cache while every
#: block of rows of C passes over it: then :func:`sum_outer_products` also takes long
#: sums (measured: mnist1d's 256-256 delta sum over a batch of 100 at 141-161 against
#: 116-123 GFLOP/s for the transpose and tiles; with a 1024 x 1024 W, 80 against 168).
CACHED_B = 1 << 19


@kernel
def outer_form(R, Q):
    """Whether sums of R terms into rows of Q entries take :func:`sum_outer_products`."""
    return R <= SHORT_SUM and Q >= LONG_ROW


@kernel
def outer_form_for(B):
    """Whether ``C = A^T B`` takes :func:`sum_outer_products` for this B, as it is (R, Q):
    for a short sum (:func:`outer_form`), or a long one over a B that stays in cache."""
    R, Q = B.shape
    return outer_form(R, Q) or (Q >= LONG_ROW and B.nbytes <= CACHED_B)


#: Side of the square tiles :func:`transpose` moves.  Small: a column of a tile spans
#: TILE rows of the destination, which for power-of-two widths all fall in one cache set.
TILE = 8


@kernel
def _transpose_tile(src, dst, i0):
    # Loops over views indexed from 0: Numba's negative-index handling of a loop starting
    # at i0 would otherwise sit in the innermost loop.  The inner loop writes a row of dst.
    strip = src[i0:i0 + TILE]
    for j0 in range(0, src.shape[1], TILE):
        block = strip[:, j0:j0 + TILE]
        out = dst[j0:j0 + TILE, i0:i0 + TILE]
        for j in range(block.shape[1]):
            for i in range(block.shape[0]):
                out[j, i] = block[i, j]


@parallel_kernel
def transpose(src, dst, parallel):
    """dst[j, i] = src[i, j], in TILE x TILE tiles."""
    strips = (src.shape[0] + TILE - 1) // TILE
    if parallel:
        for strip in prange(strips):
            _transpose_tile(src, dst, strip * TILE)
    else:
        for strip in range(strips):
            _transpose_tile(src, dst, strip * TILE)


@kernel
def _activate_row(a, b, h, code, n):
    for i in range(a.shape[1]):
        a[n, i] += b[i]
        h[n, i] = g(code, a[n, i])


@parallel_kernel
def activate(a, b, h, code, parallel):
    """a_ni += b_i, then h_ni = g(a_ni): the end of the forward sum, per sample."""
    if parallel:
        for n in prange(a.shape[0]):
            _activate_row(a, b, h, code, n)
    else:
        for n in range(a.shape[0]):
            _activate_row(a, b, h, code, n)


@kernel
def _scale_row(delta, a, h, code, n):
    for i in range(delta.shape[1]):
        delta[n, i] *= g_prime(code, a[n, i], h[n, i])


@parallel_kernel
def scale_by_g_prime(delta, a, h, code, parallel):
    """delta_ni *= g'(a_ni): turns sum_s delta_ns w_si into the delta of layer k."""
    if parallel:
        for n in prange(delta.shape[0]):
            _scale_row(delta, a, h, code, n)
    else:
        for n in range(delta.shape[0]):
            _scale_row(delta, a, h, code, n)


@parallel_kernel
def output(a, f, out_code, parallel):
    """f_n = g(a_n) for every sample, softmax taken across the row."""
    if parallel:
        for n in prange(a.shape[0]):
            outputs_row(a, f, out_code, n)
    else:
        for n in range(a.shape[0]):
            outputs_row(a, f, out_code, n)


@parallel_kernel
def output_layer(a, f, y, out_code, loss_code, scale, delta, losses, parallel):
    """Output activations f, per-sample losses and the output delta times ``scale``.

    Row ``n`` of ``a`` holds the logits of sample ``n``; see :mod:`scalarbp.losses` for
    the formulas.  Cross-entropy is taken as ``lse - a_j`` (log-sum-exp), so huge logits
    stay finite.
    """
    if parallel:
        for n in prange(a.shape[0]):
            losses[n] = output_row(a, f, y, out_code, loss_code, scale, delta, n)
    else:
        for n in range(a.shape[0]):
            losses[n] = output_row(a, f, y, out_code, loss_code, scale, delta, n)


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


@kernel
def _bias_and_penalty(delta, W, l2, dW, db, sums, share):
    i0 = share * BIAS_COLUMNS
    i1 = min(i0 + BIAS_COLUMNS, W.shape[0])
    _bias_columns(delta, db, i0, i1)
    for i in range(i0, i1):
        sums[i] = db[i] + _penalty_row(W, l2, dW, i)


@parallel_kernel
def bias_grad_and_penalty(delta, W, l2, dW, db, sums, parallel):
    """db_i = sum_n delta_ni (over the batch, in a fixed order); dW_ij += l2 w_ij.

    ``sums[i]`` receives the sum of row i of the layer's gradient (dW's row and db_i): a
    NaN or inf anywhere in the gradient shows in their total.
    """
    shares = (W.shape[0] + BIAS_COLUMNS - 1) // BIAS_COLUMNS
    if parallel:
        for share in prange(shares):
            _bias_and_penalty(delta, W, l2, dW, db, sums, share)
    else:
        for share in range(shares):
            _bias_and_penalty(delta, W, l2, dW, db, sums, share)


@kernel
def squared_norm(W):
    """sum_ij w_ij^2, in a fixed order."""
    s = 0.0
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            s += W[i, j] * W[i, j]
    return s


@kernel
def layer_views(flat, sizes, k, N):
    """Layer ``k``'s ``(N, d_{k+1})`` block of a per-sample buffer holding layers 1..T."""
    at = 0
    for m in range(1, k + 1):
        at += N * sizes[m]
    d = sizes[k + 1]
    return flat[at:at + N * d].reshape((N, d))


@kernel
def parameter_views(theta, sizes, k):
    """``(W[k], b[k])`` as views of the flat parameter vector (scalarbp.layout)."""
    at = 0
    for m in range(k):
        at += sizes[m + 1] * (sizes[m] + 1)
    d_out, d_in = sizes[k + 1], sizes[k]
    W = theta[at:at + d_out * d_in].reshape((d_out, d_in))
    return W, theta[at + d_out * d_in:at + d_out * (d_in + 1)]


@kernel
def forward(theta, sizes, codes, X, a_flat, h_flat, WT_buf):
    """Forward pass: a^(k) and h^(k) of layers 1..T into the per-sample buffers.

    ``codes[k]`` is the activation code of layer k+1 (the last one the output's).  The
    output layer's h is that layer's g(a), or for softmax its logits a; :func:`output`
    or :func:`output_layer` then computes the outputs.  ``WT_buf`` holds ``W^T`` for a
    layer whose sum is short enough for the outer-product form.
    """
    N = X.shape[0]
    T = sizes.shape[0] - 1
    h_below = X
    for k in range(T):
        W, b = parameter_views(theta, sizes, k)
        a = layer_views(a_flat, sizes, k, N)
        h = layer_views(h_flat, sizes, k, N)
        d_out, d_in = W.shape
        big = N * W.size >= PARALLEL_MACS
        if outer_form(d_in, d_out):  # a_ni = sum_j h_nj w_ij
            WT = WT_buf[:d_in * d_out].reshape((d_in, d_out))
            transpose(W, WT, W.size >= PARALLEL_ELEMENTS)
            sum_outer_products(h_below.T, WT, a, big)
        else:
            sum_products(h_below, W, a, big)
        activate(a, b, h, codes[k] if codes[k] != SOFTMAX else IDENTITY, a.size >= PARALLEL_ELEMENTS)
        h_below = h


@kernel
def predict(theta, sizes, codes, X, a_flat, h_flat, WT_buf):
    """The network's outputs for X: the last layer's block of ``h_flat`` after the call."""
    forward(theta, sizes, codes, X, a_flat, h_flat, WT_buf)
    T = sizes.shape[0] - 1
    N = X.shape[0]
    out = layer_views(h_flat, sizes, T - 1, N)
    output(layer_views(a_flat, sizes, T - 1, N), out, codes[T - 1], out.size >= PARALLEL_ELEMENTS)


@kernel
def loss_and_grad(theta, grad, sizes, codes, loss_code, l2, X, y, work):
    """J and dJ/dtheta (into ``grad``) for a batch; ``work`` holds the scratch buffers.

    ``work = (a_flat, h_flat, losses, delta, delta_below, deltaT, hT, WT, sums)``, sized by
    :class:`scalarbp.backends.scalar.Workspace`.  Returns ``(J, s)`` where ``s`` is the sum
    of all gradient entries: finite exactly when no entry is NaN or inf (barring overflow).
    """
    a_flat, h_flat, losses, delta_buf, below_buf, deltaT_buf, hT_buf, WT_buf, sums = work
    N = X.shape[0]
    T = sizes.shape[0] - 1
    forward(theta, sizes, codes, X, a_flat, h_flat, WT_buf)

    K = sizes[T]
    a_out = layer_views(a_flat, sizes, T - 1, N)
    f_out = layer_views(h_flat, sizes, T - 1, N)
    delta = delta_buf[:N * K].reshape((N, K))
    output_layer(a_out, f_out, y, codes[T - 1], loss_code, theta.dtype.type(1.0 / N), delta, losses,
                 N * K >= PARALLEL_ELEMENTS)
    J = 0.0
    for n in range(N):
        J += losses[n]
    J /= N

    grad_sum = 0.0
    for k in range(T - 1, -1, -1):
        d_out, d_in = sizes[k + 1], sizes[k]
        big = N * d_out * d_in >= PARALLEL_MACS
        W, _ = parameter_views(theta, sizes, k)
        dW, db = parameter_views(grad, sizes, k)
        h_below = X if k == 0 else layer_views(h_flat, sizes, k - 1, N)
        if outer_form_for(h_below):  # dPhi/dw_ij = sum_n delta_ni h_nj
            sum_outer_products(delta, h_below, dW, big)
        elif outer_form_for(delta):  # the same sums as dW^T, whose rows are longer
            dWT = WT_buf[:d_in * d_out].reshape((d_in, d_out))
            sum_outer_products(h_below, delta, dWT, big)
            transpose(dWT, dW, dW.size >= PARALLEL_ELEMENTS)
        else:
            deltaT = deltaT_buf[:d_out * N].reshape((d_out, N))
            hT = hT_buf[:d_in * N].reshape((d_in, N))
            transpose(delta, deltaT, delta.size >= PARALLEL_ELEMENTS)
            transpose(h_below, hT, h_below.size >= PARALLEL_ELEMENTS)
            sum_products(deltaT, hT, dW, big)
        bias_grad_and_penalty(delta, W, l2, dW, db, sums, W.size >= PARALLEL_ELEMENTS)
        for i in range(d_out):
            grad_sum += sums[i]
        if l2 != 0:
            J += 0.5 * l2 * squared_norm(W)
        if k > 0:
            below = below_buf[:N * d_in].reshape((N, d_in))
            if outer_form_for(W):  # sum_s delta_ns w_si
                sum_outer_products(delta.T, W, below, big)
            else:
                WT = WT_buf[:d_in * d_out].reshape((d_in, d_out))
                transpose(W, WT, W.size >= PARALLEL_ELEMENTS)
                sum_products(delta, WT, below, big)
            a_below = layer_views(a_flat, sizes, k - 1, N)
            scale_by_g_prime(below, a_below, h_below, codes[k - 1], below.size >= PARALLEL_ELEMENTS)
            delta_buf, below_buf = below_buf, delta_buf
            delta = below
    return J, grad_sum


@kernel
def train_epoch(theta, grad, sizes, codes, loss_code, l2, X, labels, Y, order, batch_size,
                optimizer, work, xb, yb, batch_losses):
    """One epoch of minibatch training, every step in compiled code.

    Minibatch ``b`` holds the samples ``order[b * batch_size:(b + 1) * batch_size]``: their
    rows of ``X`` are gathered into ``xb`` and their targets into ``yb`` (1-D buffers; one-hot
    rows of ``labels`` when it is not empty, else rows of ``Y``).  Each step computes J and
    the gradient, checks both are finite, then applies the optimiser's update
    (:func:`scalarbp.optimizers.update`; ``optimizer`` is its argument tuple).  Returns the
    number of steps applied; a step with a NaN or inf loss or gradient is not applied
    and ends the epoch early, so theta keeps the last finite weights.
    """
    code, state1, state2, lr, h1, h2, h3, t = optimizer
    d, K = X.shape[1], sizes[sizes.shape[0] - 1]
    N = order.shape[0]
    steps = (N + batch_size - 1) // batch_size
    for b in range(steps):
        start = b * batch_size
        n = min(batch_size, N - start)
        Xb = xb[:n * d].reshape((n, d))  # reshaped 1-D buffers: typed C-contiguous
        Yb = yb[:n * K].reshape((n, K))
        for m in range(n):
            row = order[start + m]
            for j in range(d):
                Xb[m, j] = X[row, j]
            if labels.shape[0] > 0:
                for j in range(K):
                    Yb[m, j] = 0
                Yb[m, labels[row]] = 1
            else:
                for j in range(K):
                    Yb[m, j] = Y[row, j]
        J, grad_sum = loss_and_grad(theta, grad, sizes, codes, loss_code, l2, Xb, Yb, work)
        batch_losses[b] = J
        if not (np.isfinite(J) and np.isfinite(grad_sum)):
            return b
        update(code, theta, grad, state1, state2, lr, h1, h2, h3, t + b + 1,
               theta.shape[0] >= PARALLEL_ELEMENTS)
    return steps
