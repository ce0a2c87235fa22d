"""The one product micro-kernel (:mod:`scalarbp.backends.products`): exact sums in every
form the three sums of backpropagation call it in, and a compiled inner loop of vector
fused multiply-adds."""
import platform
import re

import numba
import numpy as np
import pytest

from scalarbp.jit import OPTIONS
from scalarbp.backends.products import PANEL, product


@pytest.mark.parametrize("P, R, Q", [(1, 1, 1), (3, 5, 7), (4, 4, 4), (9, 13, 2 * PANEL + 3), (17, 130, 64)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_product_sums_every_row_and_column(P, R, Q, dtype):
    """C = A B^T over full 4 x 4 tiles, the partial rows and columns at the edges, and
    more than one panel of B."""
    rng = np.random.default_rng(P * R * Q)
    A, B = rng.normal(size=(P, R)).astype(dtype), rng.normal(size=(Q, R)).astype(dtype)
    C = np.full((P, Q), np.nan, dtype)
    product(A, B, C)
    tolerance = 1e-13 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.T.astype(np.float64), rtol=tolerance, atol=tolerance)


def test_blocks_of_rows_in_fours_give_the_rows_bit_for_bit():
    """The pass over samples splits a batch into blocks whose sizes are multiples of four
    (more or fewer with the thread count): each row's numbers are the same either way."""
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(23, 37)).astype(np.float32), rng.normal(size=(70, 37)).astype(np.float32)
    whole = np.empty((23, 70), np.float32)
    product(A, B, whole)
    for size in (4, 8, 16):
        for p in range(0, 23, size):
            block = np.empty((min(size, 23 - p), 70), np.float32)
            product(A[p:p + size], B, block)
            assert np.array_equal(block, whole[p:p + size]), (size, p)


def _has_fma():
    from llvmlite import binding

    return platform.machine() in ("x86_64", "AMD64") and binding.get_host_cpu_features().get("fma", False)


@pytest.mark.skipif(not _has_fma(), reason="checks x86 FMA vector instructions")
@pytest.mark.parametrize("dtype, suffix", [("float32", "ps"), ("float64", "pd")])
def test_the_inner_loop_is_vector_fused_multiply_adds(dtype, suffix):
    fresh = numba.njit(**{**OPTIONS, "cache": False})(product.py_func)  # (cached code cannot be inspected)
    fresh(np.zeros((8, 64), dtype), np.zeros((8, 64), dtype), np.zeros((8, 8), dtype))
    asm = fresh.inspect_asm(fresh.signatures[0])
    fmas = re.findall(rf"vfmadd\w*{suffix}\s+[^\n]*%([xyz])mm", asm)
    assert fmas, "no vector FMA in the product"
    assert {"y", "z"} & set(fmas), "the FMAs use 128-bit registers only"
