"""The one product micro-kernel behind the three sums of backpropagation.

Every sum of seed 001 is, for a block of rows ``p`` of its result, ::

    C[p, q] = sum_r A(p, r) B[r, q]

with ``B`` read along its rows (unit stride in ``q``) and ``A(p, r) = a[p sp + r sr]`` read
one scalar at a time, so that one kernel serves them all (:mod:`.kernels` calls it):

* the forward sum ``a_ni = sum_j h_nj w_ij``: A = h (p = n, r = j), B = W^T (r = j, q = i),
  the transposed weights :mod:`.kernels` keeps beside theta;
* the delta recursion ``sum_s delta_ns w_sj``: A = delta (p = n, r = s), B = W as it is;
* the weight gradient ``dPhi/dw_ij = sum_n delta_ni h_nj``: A = delta read down a column
  (p = i, r = n: ``sp = 1``, ``sr = d_out``), B = h.

Register blocking: four rows of C at a time, four terms of the sum per pass, so each
pass holds sixteen values of A in registers and adds four products into every element
of four rows of C, which stay in the L1 cache while ``q`` runs along them in vector
registers (``tests/test_products.py`` checks the compiled loop is vector FMAs).  Columns
run in panels of :data:`PANEL`, outermost, so that the panel of B stays in a core's L2
cache while every group of rows passes over it.

Every row of C is computed by the same expression whether it falls in a group of four or
not, and every element sums its terms in order of ``r``: results do not depend on how the
caller blocks the rows, nor on the number of threads.
"""
from .jit import inlined, kernel

#: Columns of C (and B) per panel: a panel of B, R x PANEL values, stays in L2 while the
#: groups of rows pass over it (a 1024 x 1024 B would otherwise be read from L3 once per
#: group of four rows).
PANEL = 256


@kernel
def product(a, sp, sr, B, C):
    """C[p, q] = sum_r a[p sp + r sr] B[r, q] for C (P, Q), B (R, Q); ``a`` 1-D."""
    P, Q = C.shape
    R = B.shape[0]
    for q0 in range(0, Q, PANEL):
        q1 = min(q0 + PANEL, Q)
        for p in range(0, P, 4):
            if P - p < 4:  # the last, partial group: one row at a time
                for pp in range(p, P):
                    _row(a, pp * sp, sr, B, C[pp, q0:q1], q0, q1)
                break
            C0, C1, C2, C3 = C[p, q0:q1], C[p + 1, q0:q1], C[p + 2, q0:q1], C[p + 3, q0:q1]
            for q in range(q1 - q0):
                C0[q] = C1[q] = C2[q] = C3[q] = 0
            a0, a1, a2, a3 = p * sp, (p + 1) * sp, (p + 2) * sp, (p + 3) * sp
            r = 0
            while r + 4 <= R:
                x00, x01, x02, x03 = a[a0 + r * sr], a[a0 + (r + 1) * sr], a[a0 + (r + 2) * sr], a[a0 + (r + 3) * sr]
                x10, x11, x12, x13 = a[a1 + r * sr], a[a1 + (r + 1) * sr], a[a1 + (r + 2) * sr], a[a1 + (r + 3) * sr]
                x20, x21, x22, x23 = a[a2 + r * sr], a[a2 + (r + 1) * sr], a[a2 + (r + 2) * sr], a[a2 + (r + 3) * sr]
                x30, x31, x32, x33 = a[a3 + r * sr], a[a3 + (r + 1) * sr], a[a3 + (r + 2) * sr], a[a3 + (r + 3) * sr]
                B0, B1, B2, B3 = B[r, q0:q1], B[r + 1, q0:q1], B[r + 2, q0:q1], B[r + 3, q0:q1]
                for q in range(q1 - q0):
                    b0, b1, b2, b3 = B0[q], B1[q], B2[q], B3[q]
                    C0[q] += x00 * b0 + x01 * b1 + x02 * b2 + x03 * b3
                    C1[q] += x10 * b0 + x11 * b1 + x12 * b2 + x13 * b3
                    C2[q] += x20 * b0 + x21 * b1 + x22 * b2 + x23 * b3
                    C3[q] += x30 * b0 + x31 * b1 + x32 * b2 + x33 * b3
                r += 4
            while r < R:
                x0, x1, x2, x3 = a[a0 + r * sr], a[a1 + r * sr], a[a2 + r * sr], a[a3 + r * sr]
                Br = B[r, q0:q1]
                for q in range(q1 - q0):
                    b = Br[q]
                    C0[q] += x0 * b
                    C1[q] += x1 * b
                    C2[q] += x2 * b
                    C3[q] += x3 * b
                r += 1


@inlined
def _row(a, at, sr, B, Cp, q0, q1):
    """One row of :func:`product` on its own, by the same expressions as a group's rows."""
    R = B.shape[0]
    for q in range(q1 - q0):
        Cp[q] = 0
    r = 0
    while r + 4 <= R:
        x0, x1, x2, x3 = a[at + r * sr], a[at + (r + 1) * sr], a[at + (r + 2) * sr], a[at + (r + 3) * sr]
        B0, B1, B2, B3 = B[r, q0:q1], B[r + 1, q0:q1], B[r + 2, q0:q1], B[r + 3, q0:q1]
        for q in range(q1 - q0):
            Cp[q] += x0 * B0[q] + x1 * B1[q] + x2 * B2[q] + x3 * B3[q]
        r += 4
    while r < R:
        x, Br = a[at + r * sr], B[r, q0:q1]
        for q in range(q1 - q0):
            Cp[q] += x * Br[q]
        r += 1
