"""Every intermediate quantity of one forward and backward pass, next to its formula, in
the notes' own symbols.

:func:`seed_002` rebuilds the worked example of the notes (a 2-3-2 net, ReLU, softmax,
cross-entropy, penalty ``1/2 ||W||_F^2``) and :func:`explain` prints it, or any small
net, from the column reference's trace (seed 000's ``a`` and ``h``; seed 002's names
where given).  One sample gives seed 001's scalar form, one delta per layer; a batch
gives seeds 003 and 004's batch form, ``delta^L = (X^L - Y)/N``, ``dW = delta^T X``
(in the code's (out, in) layout), ``db = 1^T delta``, with seed 004's per-sample outer
products summed into the batch gradient.  The scalar, literal and row backends and
finite differences are checked against the same values.
"""
import numpy as np

from .. import checks
from ..backends import column
from .gradcheck import gradcheck
from ..model import MLP

#: Seed 002's names: the pre-activation and activation of each layer.
SEED_002_NAMES = {"a": ["u", "v"], "h": ["h", "o"]}

#: Where a value starts on its line: after "  label = formula = ".
LABEL, FORMULA = 14, 40
INDENT = 2 + LABEL + 3 + FORMULA + 3


def seed_002(l2=1.0):
    """``(net, x, y)`` of seed 002's worked example."""
    net = MLP([2, 3, 2], hidden="relu", output="softmax", l2=l2)
    net.weights[0] = [[0.3, 0.5], [0.2, 0.7], [0.1, 0.4]]
    net.biases[0] = [0.1, 0.2, 0.3]
    net.weights[1] = [[0.3, 0.5, 0.1], [0.2, 0.7, 0.8]]
    net.biases[1] = [0.3, 0.5]
    return net, np.array([[6.0, 3.0]]), np.array([1])


def _fmt(value, indent=None):
    """A value as text; a matrix's later rows indented by ``indent`` (the table's, by default)."""
    array = np.asarray(value, np.float64)
    if array.ndim == 0:
        return f"{float(array):.4f}"
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    return np.array2string(array, precision=4, suppress_small=True, separator=", ",
                           max_line_width=200).replace("\n", "\n" + " " * (INDENT if indent is None else indent))


def _trace(net, X, y, names):
    """``(net, X, trace, a names, h names)``: the column reference's trace of every
    quantity in float64, and the names to print (seed 002's where given; ``X`` for a
    batch, ``x`` for one sample)."""
    X = checks.inputs(X, net.sizes[0], np.float64)
    net = net.astype("float64") if net.dtype != np.float64 else net
    t = column.trace(net, X, checks.targets(y, X.shape[0], net.sizes[-1], net.loss, np.float64))
    depth = len(t["a"])
    a_name = (names or {}).get("a") or [f"a{k + 1}" for k in range(depth)]
    h_name = ["X" if X.shape[0] > 1 else "x"] + list((names or {}).get("h") or [f"h{k + 1}" for k in range(depth)])
    return net, X, t, a_name, h_name


def explain(net, X, y, names=None):
    """Lines of text: the forward and backward pass of ``net`` on the samples ``(X, y)``.

    One sample: seed 001's scalar form, vectors.  Several: the batch form, one row per
    sample (seed 003's ``X^(l)``), and seed 004's per-sample outer products.
    """
    net, X, t, a_name, h_name = _trace(net, X, y, names)
    N = X.shape[0]
    batch = N > 1
    depth = len(t["a"])
    o, y_name = h_name[-1], "Y" if batch else "y"
    lines = [f"{net}"]

    def show(label, formula, value, per_sample=True):
        """One line; a per-sample quantity (columns in the trace) shows one row per sample."""
        value = np.asarray(value)
        if per_sample and value.ndim == 2:
            value = value.T if batch else value[:, 0]
        lines.append(f"  {label:<{LABEL}} = {formula:<{FORMULA}} = {_fmt(value)}")

    lines.append("Forward (seed 001: a_i = sum_j w_ij h_j + b_i, h_i = g(a_i); seed 001 writes h for a, f for h)"
                 + (f"; {N} samples, one row each (seed 003's S = X W + b)" if batch else ""))
    show(h_name[0], "input", t["h"][0])
    for k in range(depth):
        W, b, below = f"W{k + 1}", f"b{k + 1}", h_name[k]
        show(a_name[k], f"{below} {W}^T + {b}" if batch else f"{W} {below} + {b}", t["a"][k])
        if k == depth - 1 and net.output == "softmax":
            show(f"max {a_name[k]}", "the shift of seed 002", t["a"][k].max(axis=0, keepdims=True))
            show(o, f"e^({a_name[k]} - max) / sum e^(...)", t["h"][k + 1])
        else:
            g = net.hidden[k] if k < depth - 1 else net.output
            show(h_name[k + 1], f"{g}({a_name[k]})", t["h"][k + 1])
    loss = {"cross_entropy": f"-sum y log {o}", "binary_cross_entropy": f"-sum [y log {o} + (1-y) log(1-{o})]",
            "mse": f"1/2 sum ({o} - y)^2", "poisson": f"sum [y log(y / {o}) - y + {o}]"}[net.loss]
    show("L", f"mean over samples of {loss}" if batch else loss, t["L"])
    for k, W in enumerate(net.weights):
        show(f"s{k + 1}", f"1/2 ||W{k + 1}||_F^2", 0.5 * float(np.vdot(W, W)), per_sample=False)
    show("J", f"L + {net.l2:g} (" + " + ".join(f"s{k + 1}" for k in range(depth)) + ")", t["J"])

    lines.append("Backward (dJ/dL = 1; seed 001: delta_i^k = (sum_s delta_s^{k+1} w_si) g'(a_i^k), "
                 "dJ/dw_ij = delta_i h_j)")
    per_N = " / N" if batch else ""
    for k in range(depth - 1, -1, -1):
        delta, W = f"δ{k + 1}", f"W{k + 1}"
        label = f"{delta} = dJ/d{a_name[k]}"
        if k == depth - 1:
            _output_delta(show, net, t, o, y_name, label, per_N, a_name[k])
        else:
            step = f"δ{k + 2} W{k + 2}" if batch else f"W{k + 2}^T δ{k + 2}"
            show(f"dJ/d{h_name[k + 1]}", step, t["grad_h"][k])
            if net.hidden[k] == "sigmoid":
                show(f"sigmoid'({a_name[k]})", f"{h_name[k + 1]} (1 - {h_name[k + 1]}) (seed 000)",
                     t["h"][k + 1] * (1 - t["h"][k + 1]))
            show(label, f"({step}) * {net.hidden[k]}'({a_name[k]})", t["grad_a"][k])
        penalty = f" + {net.l2:g} {W}" if net.l2 else ""
        show(f"dJ/d{W}", (f"{delta}^T {h_name[k]}" if batch else f"{delta} {h_name[k]}^T") + penalty, t["dW"][k],
             per_sample=False)
        show(f"dJ/db{k + 1}", f"1^T {delta}" if batch else delta, t["db"][k])
    if batch:
        _outer_products(lines, show, net, t, h_name)

    lines.append("Checks")
    for name in ("scalar", "literal", "row"):
        _, dW, db = net.loss_and_grad(X, y, backend=name)
        diff = max(float(np.max(np.abs(g - ref))) for g, ref in zip(dW + db, t["dW"] + t["db"]))
        lines.append(f"  {name} backend vs column: largest difference {diff:.1e}")
    lines.append(f"  finite differences: largest relative error {gradcheck(net, X, y, backend='column'):.1e}")
    return lines


def _output_delta(show, net, t, o, y, label, per_N, a):
    """The output layer's delta, with the step each output/loss pair takes."""
    if net.loss != "mse":  # seed 003: the softmax (or sigmoid) Jacobian cancels against the loss's
        show(label, f"({o} - {y}){per_N} (seed 003)" if per_N else f"{o} - {y}", t["grad_a"][-1])
        return
    show(f"dJ/d{o}", f"({o} - {y}){per_N}", (t["h"][-1] - t["y"]) / t["y"].shape[1])
    if net.output == "softmax":
        show(label, f"J_softmax^T dJ/d{o} = {o} (dJ/d{o} - Σ dJ/d{o} {o})", t["grad_a"][-1])
    elif net.output == "sigmoid":
        show(f"sigmoid'({a})", f"{o} (1 - {o}) (seed 000)", t["h"][-1] * (1 - t["h"][-1]))
        show(label, f"dJ/d{o} * sigmoid'({a})", t["grad_a"][-1])
    else:
        show(label, f"dJ/d{o} * {net.output}'({a})", t["grad_a"][-1])


def _outer_products(lines, show, net, t, h_name):
    """Seed 004: the last layer's weight gradient as a sum of per-sample outer products."""
    k = len(t["a"]) - 1
    delta, below = t["grad_a"][k], t["h"][k]
    lines.append(f"Per sample (seed 004: dJ/dW = sum_n δ_n {h_name[k]}_n^T, an N x n x 1 times N x 1 x m "
                 "product, summed)")
    total = np.zeros_like(net.weights[k])
    for n in range(delta.shape[1]):
        outer = np.outer(delta[:, n], below[:, n])
        total += outer
        show(f"δ{k + 1}_{n + 1} {h_name[k]}_{n + 1}^T", f"sample {n + 1}", outer, per_sample=False)
    penalty = f" + {net.l2:g} W{k + 1}" if net.l2 else ""
    show("sum", f"sum_n{penalty} (= dJ/dW{k + 1})", total + net.l2 * net.weights[k], per_sample=False)


def explain_per_example(net, X, y):
    """Lines of text: each sample's own gradient (seed 001 before seed 004's sum) and the
    identity that gives its norm without it (:mod:`scalarbp.backends.per_example`)."""
    net, X, t, a_name, h_name = _trace(net, X, y, None)
    N, depth = X.shape[0], len(t["a"])
    losses, G = net.per_example_grads(X, y, backend="row", flat=True)
    _, norms = net.per_example_grad_norms(X, y)
    lines = [f"{net}", f"Per sample (seed 001: dLoss_n/dw_ij = δ_ni h_nj, each sample's own; seed 004 sums these "
             f"N x n x 1 times N x 1 x m outer products into dJ/dW), N = {N}, no 1/N, no penalty"]
    for n in range(N):
        lines.append(f"  sample {n + 1}: Loss = {_fmt(losses[n])}")
        squares = []
        for k in range(depth - 1, -1, -1):
            delta, below = t["grad_a"][k][:, n] * N, t["h"][k][:, n]  # (the trace's deltas carry 1/N)
            lines.append(f"    {'δ' + str(k + 1) + '_' + str(n + 1):<{LABEL}} = {_fmt(delta)}")
            head = f"    {'dLoss/dW' + str(k + 1):<{LABEL}} = δ{k + 1}_{n + 1} {h_name[k]}_{n + 1}^T = "
            lines.append(head + _fmt(np.outer(delta, below), len(head)))
            squares.append(float(delta @ delta) * (float(below @ below) + 1))
        lines.append(f"    ||g_n||^2 from the gradient = {float(G[n] @ G[n]):.6g}; "
                     f"sum_k ||δ^k_n||^2 (||h^(k-1)_n||^2 + 1) = " + " + ".join(f"{q:.6g}" for q in squares[::-1])
                     + f" = {sum(squares):.6g}; per_example_grad_norms: {norms[n] ** 2:.6g}")
    return lines


def explain_seed_002(l2=1.0):
    """:func:`explain` of seed 002's example, with the note's erratum pointed out."""
    net, x, y = seed_002(l2)
    lines = [f"Seed 002's worked example: 2-3-2, ReLU, softmax, cross-entropy, l2 = {l2:g}, x = (6, 3), y = (0, 1)"]
    lines += explain(net, x, y, SEED_002_NAMES)
    _, dW, db = net.loss_and_grad(x, y, backend="column")
    lines += [
        "Erratum (scalarbp explain --errata lists them all)",
        "  The note's backward numbers are wrong: it seeds the backward pass with dJ/dL = 1.403",
        "  (the value of J) where dJ/dL = 1, so each gradient it prints is 1.403 times too large:",
        f"  its dJ/dv = (0.163, -0.163) is 1.403 x {_fmt(db[1])}; its dJ/dW2 row 1",
        f"  (0.975, 1.273, 0.482) is 1.403 x {_fmt(dW[1][0])}.  The values above are the correct ones.",
    ]
    return lines


#: The note's (wrong) deltas of seed 002, per layer: 1.403 times the true ones.
SEED_002_WRONG_DELTAS = ([0.016, -0.033, -0.114], [0.163, -0.163])


def plot(net, X, y, path, names=None, wrong=None):
    """Draw the net for the first sample of ``(X, y)`` into the image file ``path``: units as
    circles with their activations, weights as edges (width by size, blue positive, red
    negative, values written on them), each unit's delta beneath it; ``wrong`` (one list
    per layer) adds a note's wrong deltas, struck through, beside the right ones.
    Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'scalarbp[plot]'") from None
    net, _, t, a_name, h_name = _trace(net, np.asarray(X)[:1], np.asarray(y)[:1], names)
    depth = len(t["a"])
    tall = max(net.sizes)
    gap = 1.6  # between units of a layer: room for a delta and the note's value beneath each
    fig, ax = plt.subplots(figsize=(3.2 * (depth + 1), 1.3 * gap * tall + 1.5))
    where = [[(3.0 * k, gap * ((d - 1) / 2 - i)) for i in range(d)] for k, d in enumerate(net.sizes)]
    small = tall <= 4
    for k, W in enumerate(net.weights):
        top = np.abs(W).max() or 1.0
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                (x0, y0), (x1, y1) = where[k][j], where[k + 1][i]
                ax.plot([x0, x1], [y0, y1], color="C0" if W[i, j] >= 0 else "C3", alpha=0.6,
                        linewidth=0.5 + 3 * abs(W[i, j]) / top, zorder=1)
                if small:
                    fx = 0.3 + 0.4 * ((i + j) % 3) / 2  # stagger the labels along crossing edges
                    ax.text(x0 + fx * (x1 - x0), y0 + fx * (y1 - y0), f"{W[i, j]:.2g}", fontsize=7,
                            ha="center", va="center", color="0.3", zorder=3,
                            bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
    for k, layer in enumerate(where):
        for i, (x0, y0) in enumerate(layer):
            ax.add_patch(plt.Circle((x0, y0), 0.32, fc="white", ec="k", zorder=2))
            ax.text(x0, y0, f"{t['h'][k][i, 0]:.3g}", ha="center", va="center", fontsize=9, zorder=4)
            if k > 0:
                right = f"δ={t['grad_a'][k - 1][i, 0]:.3g}"
                ax.text(x0, y0 - 0.45, right, ha="center", va="top", fontsize=8, color="C2", zorder=4)
                if wrong is not None:
                    struck = "".join(ch + "\u0336" for ch in f"{wrong[k - 1][i]:.3g}")
                    ax.text(x0, y0 - 0.72, f"note: {struck}", ha="center", va="top", fontsize=8, color="C3",
                            zorder=4)
        label = h_name[k] if k == 0 else f"{a_name[k - 1]} → {h_name[k]}"
        ax.text(layer[0][0], gap * (tall - 1) / 2 + 0.8, label, ha="center", fontsize=10, weight="bold")
    title = f"{net}\nunits: activations (first sample); green: δ = dJ/da" + \
        ("; red, struck: the note's δ (1.403 × too large)" if wrong is not None else "")
    ax.set_title(title, fontsize=9)
    ax.set_xlim(-1, 3.0 * depth + 1)
    ax.set_ylim(-gap * (tall - 1) / 2 - 1.3, gap * (tall - 1) / 2 + 1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
