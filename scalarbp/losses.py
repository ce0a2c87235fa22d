"""Output activations and losses, and the output-layer delta they seed.

Per sample, with logits ``a`` (the output layer's pre-activations), outputs ``f = g(a)``
and targets ``y`` (seed 001's ``Phi = Loss(f^T(x), y)``):

========================  ======================================  ==========================
loss                      Loss(f, y)                              delta = dPhi/da
========================  ======================================  ==========================
``cross_entropy``         ``-sum_j y_j log f_j``, f = softmax(a)  ``f sum(y) - y`` (seed 003)
``binary_cross_entropy``  ``-sum_j y_j log f_j + (1-y_j)          ``f - y``
                          log(1-f_j)``, f = sigmoid(a)
``mse``                   ``1/2 sum_j (f_j - y_j)^2``, any g      ``J_g^T (f - y)`` (seed 001)
========================  ======================================  ==========================

For one-hot or probability targets ``sum(y) = 1`` and the first line is seed 003's
``delta^L = (X^L - Y)``; a batch divides every delta by ``N`` (seed 003: ``E_in`` is a mean).
``mse`` is seed 001's general path ``delta_j = dPhi/df_j g'(a_j)``; for a softmax output
the Jacobian is not diagonal and ``delta_j = f_j (u_j - sum_k u_k f_k)`` with ``u = f - y``.

Both losses that pair with a fixed output are evaluated from the logits, never from
``log f``: cross-entropy through log-sum-exp and binary cross-entropy through softplus,
so logits of +-1e4 give finite values (seed 002 subtracts the max for the same reason).

The element-wise pieces are written with NumPy ufuncs and are shared by every backend
(the scalar kernels compile them with Numba); the ``axis`` functions below are the
vectorised forms used by the row (``axis=1``) and column (``axis=0``) references.
"""
from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable

from .activations import ACTIVATIONS

#: Kernel code of the softmax output (the element-wise outputs use their activation code).
SOFTMAX = 5

OUTPUTS = ("softmax", "sigmoid", "identity", "tanh")


@dataclass(frozen=True)
class Loss:
    """A loss by name; ``outputs`` lists the output activations it pairs with (None: any)."""

    name: str
    code: int
    outputs: tuple | None


LOSSES = {
    loss.name: loss
    for loss in (
        Loss("cross_entropy", 0, ("softmax",)),
        Loss("binary_cross_entropy", 1, ("sigmoid",)),
        Loss("mse", 2, None),
    )
}

DEFAULT_LOSS = {
    "softmax": "cross_entropy",
    "sigmoid": "binary_cross_entropy",
    "identity": "mse",
    "tanh": "mse",
}


def output_code(output):
    """The kernel code of an output activation name."""
    return SOFTMAX if output == "softmax" else ACTIVATIONS[output].code


# --- element-wise pieces (arrays or scalars) -------------------------------------------


@register_jitable
def softplus(a):
    """log(1 + e^a) without overflow."""
    return np.maximum(a, 0) + np.log1p(np.exp(-np.abs(a)))


@register_jitable
def binary_cross_entropy(a, y):
    """-[y log sigmoid(a) + (1 - y) log(1 - sigmoid(a))], from the logit a."""
    return softplus(a) - y * a


@register_jitable
def squared_error(f, y):
    return 0.5 * (f - y) * (f - y)


# --- vectorised forms for the NumPy references -----------------------------------------


def log_softmax(a, axis):
    """log softmax(a) along ``axis``, max-shifted as in seed 002."""
    z = a - a.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def output_activation(a, output, axis):
    """f = g(a) for a batch of logits, softmax taken along ``axis``."""
    if output == "softmax":
        return np.exp(log_softmax(a, axis))
    return ACTIVATIONS[output].g(a)


def sample_losses(a, f, y, loss, axis):
    """Loss(f_n, y_n) for every sample: reduces ``axis``."""
    if loss == "cross_entropy":
        per_unit = -y * log_softmax(a, axis)
    elif loss == "binary_cross_entropy":
        per_unit = binary_cross_entropy(a, y)
    else:
        per_unit = squared_error(f, y)
    return per_unit.sum(axis=axis)


def output_delta(a, f, y, output, loss, axis):
    """dLoss/da for every sample (not yet divided by N), shaped like ``a``."""
    if loss == "cross_entropy":
        return f * y.sum(axis=axis, keepdims=True) - y
    if loss == "binary_cross_entropy":
        return f - y
    u = f - y  # dLoss/df for mse
    if output == "softmax":
        return f * (u - (u * f).sum(axis=axis, keepdims=True))
    return u * ACTIVATIONS[output].dg(a, f)
