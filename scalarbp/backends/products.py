"""The one product micro-kernel behind the three sums of backpropagation.

Every sum of seed 001 is, for a block of rows ``p`` of its result, ::

    C[p, q] = sum_r A[p, r] B[q, r]

with both operands read along ``r`` at unit stride, so that one kernel serves them all
(:mod:`.kernels` calls it, and keeps the transposes it needs beside its buffers):

* the forward sum ``a_ni = sum_j h_nj w_ij``: A = h (p = n, r = j), B = W as it is;
* the delta recursion ``sum_s delta_ns w_sj``: A = delta (p = n, r = s), B = W^T, which
  :mod:`.kernels` keeps beside theta and writes anew with each update;
* the weight gradient ``dPhi/dw_ij = sum_n delta_ni h_nj``: A = delta^T, B = h^T (r = n),
  which the pass over samples writes as it computes delta and h.

Register blocking: 4 x 4 tiles of C in sixteen accumulators while ``r`` runs over four
rows of A and four of B, each value loaded used four times; LLVM keeps the accumulators
in vector registers along ``r`` (``tests/test_products.py`` checks the compiled loop is
vector FMAs) and sums each one's lanes at the end.  Rows of B (columns of C) run in panels
of :data:`PANEL`, outermost, so that the panel of B stays in a core's L2 cache while every
group of rows of A passes over it.

Rows go in groups of four from the first; a last group of fewer runs one dot product per
element, which may round differently from a tile.  So a caller that splits the rows into
blocks of a multiple of four rows gets every row bit for bit the same, however large the
blocks (:mod:`.kernels` sizes them by the thread count), and every element of C sums its
terms in a fixed order: results do not depend on the number of threads.
"""
from ..jit import inlined, kernel

#: Rows of B (columns of C) per panel: a panel, PANEL x R values, stays in L2 while the
#: groups of rows of A pass over it (a 1024 x 1024 B would otherwise be read from L3 once
#: per group of four rows).
PANEL = 128


@kernel
def product(A, B, C):
    """C[p, q] = sum_r A[p, r] B[q, r] for A (P, R), B (Q, R), C (P, Q)."""
    P, Q = C.shape
    for q0 in range(0, Q, PANEL):
        q1 = min(q0 + PANEL, Q)
        for p in range(0, P, 4):
            if P - p < 4:  # the last, partial group of rows: one dot product per element
                for pp in range(p, P):
                    for q in range(q0, q1):
                        C[pp, q] = _dot(A[pp], B[q])
                break
            A0, A1, A2, A3 = A[p], A[p + 1], A[p + 2], A[p + 3]
            q = q0
            while q + 4 <= q1:
                _tile(A0, A1, A2, A3, B[q], B[q + 1], B[q + 2], B[q + 3], C, p, q)
                q += 4
            for qq in range(q, q1):  # the panel's last columns: one dot product per element
                Bq = B[qq]
                C[p, qq], C[p + 1, qq], C[p + 2, qq], C[p + 3, qq] = _dot(A0, Bq), _dot(A1, Bq), _dot(A2, Bq), \
                    _dot(A3, Bq)


@inlined
def _dot(a, b):
    c = a.dtype.type(0)
    for r in range(a.shape[0]):
        c += a[r] * b[r]
    return c


@inlined
def _tile(A0, A1, A2, A3, B0, B1, B2, B3, C, p, q):
    """C[p:p+4, q:q+4]: sixteen accumulators over r, rows of A and B as 1-D views (unit
    stride that LLVM can see, indices from 0)."""
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
    C[p, q], C[p, q + 1], C[p, q + 2], C[p, q + 3] = c00, c01, c02, c03
    C[p + 1, q], C[p + 1, q + 1], C[p + 1, q + 2], C[p + 1, q + 3] = c10, c11, c12, c13
    C[p + 2, q], C[p + 2, q + 1], C[p + 2, q + 2], C[p + 2, q + 3] = c20, c21, c22, c23
    C[p + 3, q], C[p + 3, q + 1], C[p + 3, q + 2], C[p + 3, q + 3] = c30, c31, c32, c33
