"""Three implementations of the same forward and backward pass, chosen by name.

* ``"scalar"``: the scalar form (seed 001) as Numba-compiled index loops, :mod:`.kernels`.
* ``"row"``: NumPy, samples as rows, ``S = X W + b`` (seeds 003, 004), :mod:`.row`.
* ``"column"``: NumPy, samples as columns, ``a = W h + b`` (seed 000), :mod:`.column`.
* ``"cuda"``: the scalar form on an NVIDIA GPU with ``numba.cuda`` (optional), :mod:`.cuda`.

Each module provides ``forward(net, X)`` and ``loss_and_grad(net, X, T, grad=None)`` on validated,
C-contiguous arrays of the network's dtype (:mod:`scalarbp.checks` does the validation).
"""
import importlib

from ..checks import choice

#: The backends that run on the CPU, always available.
BACKENDS = ("scalar", "row", "column")

#: Every backend name, the GPU's included.
ALL = BACKENDS + ("cuda",)


def get(name):
    """The backend module called ``name``; a missing GPU or CUDA package is a RuntimeError."""
    choice("backend", name, ALL)
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ImportError as err:
        raise RuntimeError(str(err)) from None
    if name == "cuda":
        module.require_device()
    return module
