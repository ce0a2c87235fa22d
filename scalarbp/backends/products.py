"""The three sums of backpropagation, as index loops organised like a matrix-product library.

The backprop driver (:mod:`.kernels`) asks for each sum by its role in the notes:

* :func:`forward_sum`: ``a_ni = sum_j w_ij h_nj`` (seed 001's ``sum_j w_ij f_j``),
* :func:`delta_sum`: ``sum_s delta_ns w_si`` (the delta recursion, before ``g'``),
* :func:`weight_grad_sum`: ``dPhi/dw_ij = sum_n delta_ni h_nj`` (seed 001's ``delta_i f_j``,
  summed over the batch as seed 004 does),

and each picks one of two ways to compute it, and writes the transposes that way needs
into a scratch buffer:

* :func:`sum_products`, ``C[p, q] = sum_r A[p, r] B[q, r]``: both operands unit-stride
  along the summed index ``r``, 4 x 4 register tiles (each value loaded is used four
  times), a horizontal sum of a vector at the end of each element, columns of C in
  panels of ``PANEL`` so that the panel of B stays in cache.
* :func:`sum_outer_products`, ``C[p, q] = sum_r A[r, p] B[r, q]``: the innermost loop runs
  along rows of C and B, four terms of the sum per pass; no transposes and no horizontal
  sums, which makes it the faster form for short sums (up to ``SHORT_SUM`` terms) into
  long enough rows (at least ``LONG_ROW``, :func:`outer_form`), and for longer sums over a
  B small enough to stay in cache (``CACHED_B``, :func:`outer_form_for`).

Parallelism and determinism: both routines split the rows of ``C`` into blocks of four,
one block per ``prange`` iteration.  For the forward and delta sums those rows are
samples (parallel over the batch); for the weight gradient they are units (of either
layer), so each ``dPhi/dw_ij`` is summed over ``n`` by one thread, in a fixed order.  No
two threads ever add into the same element and no result depends on the number of
threads: gradients are bit-for-bit identical for 1 and 2 threads.  A product smaller
than ``PARALLEL_MACS`` multiply-adds runs the serial copy of the same loop
(:func:`.jit.serial_and_parallel`).
"""
from numba import prange

from .jit import PARALLEL_ELEMENTS, PARALLEL_MACS, kernel, serial_and_parallel


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


def _sum_products(A, B, C):
    """C[p, q] = sum_r A[p, r] B[q, r] for A (P, R), B (Q, R), C (P, Q).

    Columns of C are computed in panels of ``PANEL``, and within a panel rows in blocks
    of four, one block per ``prange`` iteration; inside a full block, 4 x 4 tiles of C
    are held in 16 accumulators while ``r`` runs over both operands at unit stride.
    """
    blocks = (A.shape[0] + 3) // 4
    Q = B.shape[0]
    for q0 in range(0, Q, PANEL):
        q1 = min(q0 + PANEL, Q)
        for block in prange(blocks):
            _tile_rows(A, B, C, block, q0, q1)


_sum_products_serial, _sum_products_parallel = serial_and_parallel(_sum_products)


@kernel
def sum_products(A, B, C, parallel):
    """:func:`_sum_products` on Numba's threads when ``parallel``, else on this one."""
    if parallel:
        _sum_products_parallel(A, B, C)
    else:
        _sum_products_serial(A, B, C)


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


def _sum_outer_products(A, B, C):
    """C[p, q] = sum_r A[r, p] B[r, q] for A (R, P), B (R, Q), C (P, Q).

    The same sums as :func:`sum_products`, organised the other way round: the innermost
    loop runs along a row of C and a row of B (unit stride, vectorised), and each pass
    adds four terms of the sum, so no horizontal sum of a vector is ever needed.  ``A``
    may be a transposed view.  Rows of C in blocks of four, one block per ``prange``
    iteration.
    """
    for block in prange((C.shape[0] + 3) // 4):
        _outer_rows(A, B, C, block)


_sum_outer_products_serial, _sum_outer_products_parallel = serial_and_parallel(_sum_outer_products)


@kernel
def sum_outer_products(A, B, C, parallel):
    """:func:`_sum_outer_products` on Numba's threads when ``parallel``, else on this one."""
    if parallel:
        _sum_outer_products_parallel(A, B, C)
    else:
        _sum_outer_products_serial(A, B, C)


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


def _transpose(src, dst):
    """dst[j, i] = src[i, j], in TILE x TILE tiles, one strip of TILE rows per iteration."""
    for strip in prange((src.shape[0] + TILE - 1) // TILE):
        _transpose_tile(src, dst, strip * TILE)


_transpose_serial, _transpose_parallel = serial_and_parallel(_transpose)


@kernel
def transpose(src, dst):
    """dst = src^T, on Numba's threads for a large matrix."""
    if src.size >= PARALLEL_ELEMENTS:
        _transpose_parallel(src, dst)
    else:
        _transpose_serial(src, dst)


# --- the three sums, by their role in the notes -------------------------------------------


@kernel
def forward_sum(h, W, a, scratch):
    """a_ni = sum_j w_ij h_nj for h (N, d_in), W (d_out, d_in), a (N, d_out).

    Short sums into long rows (a narrow layer below) take the outer-product form with
    ``W^T``, written into ``scratch`` (measured: mnist1d's 40-wide input layer, 18 us
    instead of 45); the others 4 x 4 tiles over ``h`` and ``W`` as they are.
    """
    d_out, d_in = W.shape
    parallel = h.shape[0] * W.size >= PARALLEL_MACS
    if outer_form(d_in, d_out):
        WT = scratch[:d_in * d_out].reshape((d_in, d_out))
        transpose(W, WT)
        sum_outer_products(h.T, WT, a, parallel)
    else:
        sum_products(h, W, a, parallel)


@kernel
def delta_sum(delta, W, out, scratch):
    """out_ni = sum_s delta_ns w_si for delta (N, d_out), W (d_out, d_in), out (N, d_in).

    The outer-product form over ``W`` as it is when the sum is short or ``W`` stays in
    cache; else 4 x 4 tiles over ``delta`` and ``W^T``, written into ``scratch``.
    """
    d_out, d_in = W.shape
    parallel = delta.shape[0] * W.size >= PARALLEL_MACS
    if outer_form_for(W):
        sum_outer_products(delta.T, W, out, parallel)
    else:
        WT = scratch[:d_in * d_out].reshape((d_in, d_out))
        transpose(W, WT)
        sum_products(delta, WT, out, parallel)


@kernel
def weight_grad_sum(delta, h, dW, scratch):
    """dW_ij = sum_n delta_ni h_nj for delta (N, d_out), h (N, d_in), dW (d_out, d_in).

    In order of preference: the outer-product form into ``dW`` (the sum over the batch is
    short, or ``h`` stays in cache); into ``dW^T``, whose rows are longer when the layer
    below is the narrow one, then transposed (mnist1d's first layer: 21 us instead of
    40); else 4 x 4 tiles over ``delta^T`` and ``h^T``.  Either way each ``dW_ij`` is
    summed over ``n`` by one thread, in order.  ``scratch`` holds at least
    ``max(d_out d_in, N (d_out + d_in))`` entries.
    """
    N = delta.shape[0]
    d_out, d_in = dW.shape
    parallel = N * dW.size >= PARALLEL_MACS
    if outer_form_for(h):
        sum_outer_products(delta, h, dW, parallel)
    elif outer_form_for(delta):
        dWT = scratch[:d_in * d_out].reshape((d_in, d_out))
        sum_outer_products(h, delta, dWT, parallel)
        transpose(dWT, dW)
    else:
        deltaT = scratch[:d_out * N].reshape((d_out, N))
        hT = scratch[d_out * N:(d_out + d_in) * N].reshape((d_in, N))
        transpose(delta, deltaT)
        transpose(h, hT)
        sum_products(deltaT, hT, dW, parallel)
