"""Three implementations of the same forward and backward pass, chosen by name.

* ``"scalar"``: the scalar form (seed 001) as Numba-compiled index loops, :mod:`.kernels`.
* ``"row"``: NumPy, samples as rows, ``S = X W + b`` (seeds 003, 004), :mod:`.row`.
* ``"column"``: NumPy, samples as columns, ``a = W h + b`` (seed 000), :mod:`.column`.

Each module provides ``forward(net, X)`` and ``loss_and_grad(net, X, T, grad=None)`` on validated,
C-contiguous arrays of the network's dtype (:mod:`scalarbp.checks` does the validation).
"""
import importlib

from ..checks import choice

BACKENDS = ("scalar", "row", "column")


def get(name):
    """The backend module called ``name``."""
    choice("backend", name, BACKENDS)
    return importlib.import_module(f"{__name__}.{name}")
