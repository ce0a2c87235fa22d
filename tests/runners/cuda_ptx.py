"""Run by test_cuda_backend.py in a child process: compiles every CUDA kernel to PTX for an
H100 (sm_90), float32 and float64, without a GPU.  That checks numba-cuda can type and
lower them, the shared activation, loss and optimizer definitions included (the
simulator cannot: it runs them as Python).  Needs numba-cuda, NVVM and NVRTC; prints
SKIP and the reason when they are missing (numba-cuda is the ``cuda`` extra), else one line per kernel."""
import numpy as np

try:
    import numba_cuda  # noqa: F401  the CUDA target of the `cuda` extra (not Numba's old built-in one)
    from numba import cuda, types

    def probe(x):
        x[0] = 1

    cuda.compile_ptx(probe, "(float32[:],)", cc=(9, 0))
except Exception as err:  # no numba-cuda, NVVM or NVRTC here
    print(f"SKIP {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    raise SystemExit(0)

import numba.cuda.dispatcher as dispatcher  # noqa: E402

from scalarbp.backends import cuda as backend  # noqa: E402


class H100:
    """Device functions ask the current device for its compute capability; there is none."""

    compute_capability = (9, 0)


dispatcher.get_current_device = H100

for dtype in (np.float32, np.float64):
    kernels = backend._kernels(np.dtype(dtype))
    real = types.float32 if dtype == np.float32 else types.float64
    M, V, I, F = types.Array(real, 2, "A"), types.Array(real, 1, "A"), types.int64, types.float64
    V64, Vi = types.Array(types.float64, 1, "A"), types.Array(types.int64, 1, "A")
    signatures = {
        "forward_layer": (M, M, M, V, M, I),
        "delta_layer": (M, M, M, M, M, I),
        "weight_grad": (M, M, M, M, V64, F),
        "bias_grad": (M, M, F, V, V64, V64),
        "output_layer": (M, M, M, I, I, real, M, V),
        "outputs": (M, M, I),
        "gather": (M, Vi, M, Vi, I, M, M),
        "finish_step": (V, V64, F, I, V64),
        "update": (I, V, V, V, V, V, V64, I, I, V64),
        "outer_products": (M, M, I, I, M, V64),
    }
    for name, signature in signatures.items():
        ptx, _ = cuda.compile_ptx(getattr(kernels, name).py_func, signature, cc=(9, 0))
        assert ".entry" in ptx
        print(f"{np.dtype(dtype).name} {name} ok")
