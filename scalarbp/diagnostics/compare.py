"""Scalar versus vector: per-layer differences between the backends' gradients and
central finite differences, as a table."""
import numpy as np

from .. import backends, checks
from .gradcheck import DEFAULT_EPS, numerical_gradient

#: The columns of the comparison: (name, reference) pairs of gradient sources.
PAIRS = (("literal", "scalar"), ("scalar", "row"), ("scalar", "column"), ("row", "column"),
         ("literal", "finite differences"), ("scalar", "finite differences"), ("row", "finite differences"))


def gradients(net, X, Y):
    """Flat gradients from every backend, and from finite differences of the row
    backend's J taken in float64 whatever the net's dtype (the most accurate reference)."""
    X = checks.inputs(X, net.sizes[0], net.dtype)
    T = checks.targets(Y, X.shape[0], net.sizes[-1], net.loss, net.dtype)
    grads = {name: backends.get(name).loss_and_grad(net, X, T)[1] for name in backends.BACKENDS}
    exact = net.astype("float64")
    grads["finite differences"] = numerical_gradient(
        exact, X.astype(np.float64), T.astype(np.float64), backends.get("row"), DEFAULT_EPS)
    return grads


def differences(net, grads):
    """Rows ``(parameter, {pair: (max abs difference, relative difference)})`` per layer.

    The relative difference is ``max|g - g_ref| / max|g_ref|`` over the parameter array.
    """
    views = {name: net.layout.views(g) for name, g in grads.items()}
    rows = []
    for k in range(net.layout.depth):
        for kind, label in ((0, "W"), (1, "b")):
            cells = {}
            for a, b in PAIRS:
                g, ref = views[a][kind][k].astype(np.float64), views[b][kind][k].astype(np.float64)
                diff = float(np.max(np.abs(g - ref)))
                scale = float(np.max(np.abs(ref)))
                cells[(a, b)] = (diff, diff / scale if scale > 0 else diff)
            rows.append((f"{label}[{k}] {views['row'][kind][k].shape}", cells))
    return rows


def table(rows):
    """A Markdown table of :func:`differences`: 'abs / rel' in each cell."""
    header = ["parameter"] + [f"{a} vs {b}" for a, b in PAIRS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, cells in rows:
        lines.append("| " + " | ".join([name] + [f"{cells[p][0]:.1e} / {cells[p][1]:.1e}" for p in PAIRS]) + " |")
    return "\n".join(lines)
