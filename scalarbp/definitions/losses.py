"""Output activations and losses, and the output-layer delta they seed.

Per sample, with logits ``a`` (the output layer's pre-activations), outputs ``h = g(a)``
and targets ``y`` (seed 001's ``Phi = Loss(f^T(x), y)``, its f our h):

========================  ======================================  ==========================
loss                      Loss(h, y)                              delta = dPhi/da
========================  ======================================  ==========================
``cross_entropy``         ``-sum_j y_j log h_j``, h = softmax(a)  ``h sum(y) - y`` (seed 003)
``binary_cross_entropy``  ``-sum_j [y_j log h_j + (1-y_j)        ``h - y``
                          log(1-h_j)]``, h = sigmoid(a)
``mse``                   ``1/2 sum_j (h_j - y_j)^2``, any g      ``J_g^T (h - y)`` (seed 001)
``poisson``               ``sum_j [y_j log(y_j / h_j) - y_j       ``h - y``
                          + h_j]``, h = exp(a)
========================  ======================================  ==========================

For one-hot or probability targets ``sum(y) = 1`` and the first line is seed 003's
``delta^L = (X^L - Y)``; a batch divides every delta by ``N`` (seed 003: ``E_in`` is a mean).
``poisson`` is half the Poisson deviance (scikit-learn's ``MLPRegressor(loss="poisson")``):
with h = e^a, ``dLoss/da_j = (1 - y_j / h_j) h_j = h_j - y_j``, the same ``ŷ − y`` as seed 000's
softmax with cross-entropy (the exp output is the Poisson's canonical link); it is
evaluated from the logit, ``e^a - y a + y log y - y`` (``0 log 0 = 0``), and differs from
PyTorch's ``PoissonNLLLoss(log_input=True)`` by the constant ``y log y - y`` alone.
``mse`` is seed 001's general path ``delta_j = dPhi/dh_j g'(a_j)``; for a softmax output
the Jacobian is not diagonal and ``delta_j = h_j (u_j - sum_k u_k h_k)`` with ``u = h - y``.

Both losses that pair with a fixed output are evaluated from the logits, never from
``log h``: cross-entropy through log-sum-exp and binary cross-entropy through softplus,
so logits of +-1e4 give finite values (seed 002 subtracts the max for the same reason).

The element-wise pieces are written with NumPy ufuncs and are shared by every backend
(the scalar kernels compile them with Numba); the ``axis`` functions below are the
vectorised forms used by the row (``axis=1``) and column (``axis=0``) references.
"""
from dataclasses import dataclass

import math

import numpy as np
from numba.extending import register_jitable

from .activations import ACTIVATIONS, activation, derivative

#: Kernel codes of the outputs that are not element-wise activations: softmax, and exp
#: (an output only: it pairs with the Poisson loss), after every element-wise activation's
#: (the element-wise outputs use their activation's code).
SOFTMAX, EXP = len(ACTIVATIONS), len(ACTIVATIONS) + 1

OUTPUTS = ("softmax", "sigmoid", "identity", "tanh", "exp")


@dataclass(frozen=True)
class Loss:
    """A loss by name; ``outputs`` lists the output activations it pairs with (None: any)."""

    name: str
    code: int
    outputs: tuple | None


#: Every loss, by name; its code is its position here.
LOSSES = {
    name: Loss(name, code, outputs)
    for code, (name, outputs) in enumerate((
        ("cross_entropy", ("softmax",)),
        ("binary_cross_entropy", ("sigmoid",)),
        ("mse", ("softmax", "sigmoid", "identity", "tanh")),
        ("poisson", ("exp",)),
    ))
}

DEFAULT_LOSS = {
    "softmax": "cross_entropy",
    "sigmoid": "binary_cross_entropy",
    "identity": "mse",
    "tanh": "mse",
    "exp": "poisson",
}


#: The losses' codes: what every dispatch on a loss compares, in the kernels and the
#: references alike (a name becomes its code once, through :data:`LOSSES`).
CROSS_ENTROPY, BINARY_CROSS_ENTROPY, MSE, POISSON = (LOSSES[name].code for name in (
    "cross_entropy", "binary_cross_entropy", "mse", "poisson"))


def output_code(output):
    """The kernel code of an output activation name."""
    return SOFTMAX if output == "softmax" else EXP if output == "exp" else ACTIVATIONS[output].code


# --- element-wise pieces (arrays or scalars) -------------------------------------------


@register_jitable
def softplus(a):
    """log(1 + e^a) = max(a, 0) + log(1 + e^-|a|) without overflow, where
    log(1 + e^-|a|) = -log sigmoid(|a|) and sigmoid(x) = (1 + tanh(x / 2)) / 2 (only
    ufuncs the CUDA target has: no exp, log1p or abs)."""
    return np.maximum(a, 0) - np.log(0.5 + 0.5 * np.tanh(0.5 * np.maximum(a, -a)))


@register_jitable
def binary_cross_entropy(a, y):
    """-[y log sigmoid(a) + (1 - y) log(1 - sigmoid(a))], from the logit a."""
    return softplus(a) - y * a


@register_jitable
def squared_error(h, y):
    return 0.5 * (h - y) * (h - y)


def poisson(a, y):
    """Half the Poisson deviance ``y log(y / h) - y + h`` of h = e^a, from the logit a
    (``0 log 0 = 0``), element-wise over arrays."""
    return np.exp(a) - y * a + y * np.log(np.where(y > 0, y, 1)) - y


# --- vectorised forms for the NumPy references -----------------------------------------


def shares(weights, dtype):
    """Each sample's share ``N w_n / sum_m w_m`` of a weighted mean (None without weights),
    in ``dtype``; all 0 when every weight of the batch is 0 (legal: a minibatch of
    zero-weight samples takes a step with the penalty's gradient alone)."""
    if weights is None:
        return None
    total = weights.sum()
    return (weights.shape[0] * weights / total if total > 0 else np.zeros_like(weights)).astype(dtype)


def log_softmax(a, axis):
    """log softmax(a) along ``axis``, max-shifted as in seed 002."""
    z = a - a.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def output_activation(a, output, axis):
    """h = g(a) for a batch of logits, softmax taken along ``axis``."""
    if output == "softmax":
        return np.exp(log_softmax(a, axis))
    if output == "exp":
        return np.exp(a)
    return ACTIVATIONS[output].g(a)


def sample_losses(a, h, y, loss, axis):
    """Loss(h_n, y_n) for every sample: reduces ``axis``."""
    code = LOSSES[loss].code
    if code == CROSS_ENTROPY:
        per_unit = -y * log_softmax(a, axis)
    elif code == BINARY_CROSS_ENTROPY:
        per_unit = binary_cross_entropy(a, y)
    elif code == POISSON:
        per_unit = poisson(a, y)
    else:
        per_unit = squared_error(h, y)
    return per_unit.sum(axis=axis)


def output_delta(a, h, y, output, loss, axis):
    """dLoss/da for every sample (not yet divided by N), shaped like ``a``."""
    code = LOSSES[loss].code
    if code == CROSS_ENTROPY:
        return h * y.sum(axis=axis, keepdims=True) - y
    if code in (BINARY_CROSS_ENTROPY, POISSON):
        return h - y
    u = h - y  # dLoss/dh for mse
    if output_code(output) == SOFTMAX:
        return h * (u - (u * h).sum(axis=axis, keepdims=True))
    return u * ACTIVATIONS[output].dg(a, h)


# --- one sample at a time, for the compiled kernels (CPU and CUDA) -------------------------


@register_jitable
def softmax_row(a, h, n):
    """f_nj = softmax(a_n)_j, max-shifted (seed 002); returns the log-sum-exp of row n."""
    K = a.shape[1]
    m = a[n, 0]
    for j in range(1, K):
        m = max(m, a[n, j])
    s = a.dtype.type(0)
    for j in range(K):
        h[n, j] = math.exp(a[n, j] - m)
        s += h[n, j]
    for j in range(K):
        h[n, j] /= s
    return m + math.log(s)


@register_jitable
def outputs_row(a, h, out_code, n):
    """h_n = g(a_n), softmax across the row."""
    if out_code == SOFTMAX:
        softmax_row(a, h, n)
    elif out_code == EXP:
        for j in range(a.shape[1]):
            h[n, j] = math.exp(a[n, j])
    else:
        for j in range(a.shape[1]):
            h[n, j] = activation(out_code, a[n, j])


@register_jitable
def output_row(a, h, y, out_code, loss_code, scale, delta, n):
    """Outputs h_n, loss and output delta (times ``scale``) of sample n; returns the loss.

    The formulas of the table above, as scalar loops over the row's units j.
    """
    K = a.shape[1]
    lse = a.dtype.type(0)
    if out_code == SOFTMAX:
        lse = softmax_row(a, h, n)
    else:
        outputs_row(a, h, out_code, n)

    loss = a.dtype.type(0)
    if loss_code == CROSS_ENTROPY:  # -sum_j y_j log h_j, log h_j = a_j - lse
        y_sum = a.dtype.type(0)
        for j in range(K):
            loss += y[n, j] * (lse - a[n, j])
            y_sum += y[n, j]
        for j in range(K):  # seed 003: (h - y) for one-hot y
            delta[n, j] = scale * (h[n, j] * y_sum - y[n, j])
    elif loss_code == BINARY_CROSS_ENTROPY:
        for j in range(K):
            loss += binary_cross_entropy(a[n, j], y[n, j])
            delta[n, j] = scale * (h[n, j] - y[n, j])
    elif loss_code == POISSON:  # y log(y / h) - y + h from the logit; delta = h - y (the canonical link)
        for j in range(K):
            y_log_y = y[n, j] * math.log(y[n, j]) if y[n, j] > 0 else a.dtype.type(0)
            loss += h[n, j] - y[n, j] * a[n, j] + y_log_y - y[n, j]
            delta[n, j] = scale * (h[n, j] - y[n, j])
    else:  # mse: seed 001's delta_j = dPhi/dh_j g'(a_j), dPhi/dh_j = u_j = h_j - y_j
        for j in range(K):
            loss += squared_error(h[n, j], y[n, j])
        if out_code == SOFTMAX:  # softmax's Jacobian: delta_j = h_j (u_j - sum_k u_k h_k)
            uf = a.dtype.type(0)
            for k in range(K):
                uf += (h[n, k] - y[n, k]) * h[n, k]
            for j in range(K):
                delta[n, j] = scale * h[n, j] * (h[n, j] - y[n, j] - uf)
        else:
            for j in range(K):
                delta[n, j] = scale * (h[n, j] - y[n, j]) * derivative(out_code, a[n, j], h[n, j])
    return loss
