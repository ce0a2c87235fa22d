"""The one product micro-kernel (:mod:`scalarbp.backends.products`): exact sums in every
form the three sums of backpropagation call it in, and a compiled inner loop of vector
fused multiply-adds."""
import platform
import re

import numba
import numpy as np
import pytest

from scalarbp.backends.jit import OPTIONS
from scalarbp.backends.products import PANEL, product


def reference(a, sp, sr, B, P):
    A = np.array([[a[p * sp + r * sr] for r in range(B.shape[0])] for p in range(P)])
    return A.astype(np.float64) @ B.astype(np.float64)


@pytest.mark.parametrize("P, R, Q", [(1, 1, 1), (3, 5, 7), (4, 4, 4), (9, 13, 2 * PANEL + 3), (17, 130, 64)])
@pytest.mark.parametrize("form", ["rows", "columns"])
def test_product_sums_every_row_and_column(P, R, Q, form):
    rng = np.random.default_rng(P * R * Q)
    B = rng.normal(size=(R, Q))
    C = np.full((P, Q), np.nan)
    if form == "rows":   # A(p, r) = a[p R + r]: the forward sum and the delta recursion
        a, sp, sr = rng.normal(size=P * R), R, 1
    else:                # A(p, r) = a[p + r P]: the weight gradient, delta read down a column
        a, sp, sr = rng.normal(size=P * R), 1, P
    product(a, np.int64(sp), np.int64(sr), B, C)
    np.testing.assert_allclose(C, reference(a, sp, sr, B, P), rtol=1e-13, atol=1e-13)


def test_a_row_does_not_depend_on_the_rows_beside_it():
    """A row computed in a group of four and the same row computed alone (the last, partial
    group) are bit-for-bit equal: blocks of samples cannot change a sample's numbers."""
    rng = np.random.default_rng(0)
    R, Q = 37, 70
    a, B = rng.normal(size=(7, R)).astype(np.float32), rng.normal(size=(R, Q)).astype(np.float32)
    whole, alone = np.empty((7, Q), np.float32), np.empty((1, Q), np.float32)
    product(a.reshape(-1), np.int64(R), np.int64(1), B, whole)
    for p in range(7):
        product(a[p].copy(), np.int64(R), np.int64(1), B, alone)
        assert np.array_equal(whole[p], alone[0]), p


def _has_fma():
    from llvmlite import binding

    return platform.machine() in ("x86_64", "AMD64") and binding.get_host_cpu_features().get("fma", False)


@pytest.mark.skipif(not _has_fma(), reason="checks x86 FMA vector instructions")
@pytest.mark.parametrize("dtype, suffix", [("float32", "ps"), ("float64", "pd")])
def test_the_inner_loop_is_vector_fused_multiply_adds(dtype, suffix):
    fresh = numba.njit(**{**OPTIONS, "cache": False})(product.py_func)  # (cached code cannot be inspected)
    B, C = np.zeros((8, 8), dtype), np.zeros((4, 8), dtype)
    fresh(np.zeros(32, dtype), np.int64(8), np.int64(1), B, C)
    asm = fresh.inspect_asm(fresh.signatures[0])
    fmas = re.findall(rf"vfmadd\w*{suffix}\s+[^\n]*%([xyz])mm", asm)
    assert fmas, "no vector FMA in the product"
    assert {"y", "z"} & set(fmas), "the FMAs use 128-bit registers only"
