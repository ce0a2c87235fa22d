"""Every intermediate quantity of one forward and backward pass, next to its formula.

:func:`seed_002` rebuilds the worked example of the notes (a 2-3-2 net, ReLU, softmax,
cross-entropy, penalty ``1/2 ||W||_F^2``) and :func:`explain` prints it, or any small
net, one sample at a time, from the column reference's trace (seed 000's notation).
The scalar and row backends and finite differences are checked against the same values.
"""
import numpy as np

from . import checks
from .backends import column
from .gradcheck import gradcheck
from .model import MLP

#: Seed 002's names: the pre-activation and activation of each layer, one-based weights.
SEED_002_NAMES = {"a": ["u", "v"], "h": ["h", "o"]}


def seed_002():
    """``(net, x, y)`` of seed 002's worked example."""
    net = MLP([2, 3, 2], hidden="relu", output="softmax", l2=1.0)
    net.weights[0] = [[0.3, 0.5], [0.2, 0.7], [0.1, 0.4]]
    net.biases[0] = [0.1, 0.2, 0.3]
    net.weights[1] = [[0.3, 0.5, 0.1], [0.2, 0.7, 0.8]]
    net.biases[1] = [0.3, 0.5]
    return net, np.array([[6.0, 3.0]]), np.array([1])


#: Where a value starts on its line: after "  label = formula = ".
INDENT = 2 + 8 + 3 + 24 + 3


def _fmt(value):
    array = np.asarray(value, np.float64)
    if array.ndim == 0:
        return f"{float(array):.4f}"
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    return np.array2string(array, precision=4, suppress_small=True, separator=", ",
                           max_line_width=200).replace("\n", "\n" + " " * INDENT)


def explain(net, x, y, names=None):
    """Lines of text: forward and backward pass of ``net`` on one sample ``(x, y)``."""
    x = checks.inputs(x, net.sizes[0], np.float64)
    if x.shape[0] != 1:
        raise ValueError(f"explain takes one sample, got {x.shape[0]}")
    net = net.astype("float64")
    T = checks.targets(y, 1, net.sizes[-1], net.loss, np.float64)
    t = column.trace(net, x, T)
    depth = len(t["a"])
    a_name = (names or {}).get("a") or [f"a{k + 1}" for k in range(depth)]
    h_name = (names or {}).get("h") or [f"h{k + 1}" for k in range(depth)]
    h_name = ["x"] + list(h_name)
    lines = []

    def show(label, formula, value):
        lines.append(f"  {label:<8} = {formula:<24} = {_fmt(value)}")

    lines.append(f"{net}")
    lines.append("Forward (seed 001: a_i = sum_j w_ij h_j + b_i, h_i = g(a_i))")
    show("x", "input", x[0])
    for k in range(depth):
        W, b, below = f"W{k + 1}", f"b{k + 1}", h_name[k]
        show(a_name[k], f"{W} {below} + {b}", t["a"][k])
        g = net.hidden[k] if k < depth - 1 else net.output
        show(h_name[k + 1], f"{g}({a_name[k]})", t["h"][k + 1])
    loss_formula = {"cross_entropy": "-sum y log {o}", "binary_cross_entropy": "-sum y log {o} + (1-y) log(1-{o})",
                    "mse": "1/2 sum ({o} - y)^2"}[net.loss].format(o=h_name[-1])
    show("L", loss_formula, t["L"])
    penalties = [0.5 * float(np.vdot(W, W)) for W in net.weights]
    for k, s in enumerate(penalties):
        show(f"s{k + 1}", f"1/2 ||W{k + 1}||_F^2", s)
    show("J", f"L + {net.l2:g} (" + " + ".join(f"s{k + 1}" for k in range(depth)) + ")", t["J"])

    lines.append("Backward (dJ/dL = 1; seed 001: delta_i = (sum_s delta_s w_si) g'(a_i), dJ/dw_ij = delta_i h_j)")
    out_delta = {"cross_entropy": f"{h_name[-1]} - y", "binary_cross_entropy": f"{h_name[-1]} - y",
                 "mse": f"J_g^T ({h_name[-1]} - y)"}[net.loss]
    for k in range(depth - 1, -1, -1):
        W, da = f"W{k + 1}", f"dJ/d{a_name[k]}"
        if k == depth - 1:
            show(da, out_delta, t["grad_a"][k])
        else:
            show(f"dJ/d{h_name[k + 1]}", f"W{k + 2}^T dJ/d{a_name[k + 1]}", t["grad_h"][k])
            show(da, f"dJ/d{h_name[k + 1]} * {net.hidden[k]}'({a_name[k]})", t["grad_a"][k])
        penalty = f" + {net.l2:g} {W}" if net.l2 else ""
        show(f"dJ/d{W}", f"{da} {h_name[k]}^T{penalty}", t["dW"][k])
        show(f"dJ/db{k + 1}", da, t["db"][k])

    lines.append("Checks")
    for name in ("scalar", "row"):
        _, dW, db = net.loss_and_grad(x, y, backend=name)
        diff = max(float(np.max(np.abs(g - ref))) for g, ref in zip(dW + db, t["dW"] + t["db"]))
        lines.append(f"  {name} backend vs column: largest difference {diff:.1e}")
    lines.append(f"  finite differences: largest relative error {gradcheck(net, x, y, backend='column'):.1e}")
    return lines


def explain_seed_002():
    """:func:`explain` of seed 002's example, with the note's erratum pointed out."""
    net, x, y = seed_002()
    lines = ["Seed 002's worked example: 2-3-2, ReLU, softmax, cross-entropy, l2 = 1, x = (6, 3), y = (0, 1)"]
    lines += explain(net, x, y, SEED_002_NAMES)
    _, dW, db = net.loss_and_grad(x, y, backend="column")
    lines += [
        "Erratum",
        "  The note's backward numbers are wrong: it seeds the backward pass with dJ/dL = 1.403",
        "  (the value of J) where dJ/dL = 1, so each gradient it prints is 1.403 times too large:",
        f"  its dJ/dv = (0.163, -0.163) is 1.403 x {_fmt(db[1])}; its dJ/dW2 row 1",
        f"  (0.975, 1.273, 0.482) is 1.403 x {_fmt(dW[1][0])}.  The values above are the correct ones.",
    ]
    return lines
