"""Activation functions g and their derivatives g', one definition for every backend.

Each function is written once with NumPy ufuncs so that the same code runs on whole
arrays (the row and column references) and, compiled by Numba, on single scalars
inside the CPU and CUDA kernels.  Only ufuncs that numba-cuda's CUDA target implements
are used (``maximum``, ``tanh``, ``log``, comparisons, arithmetic; not ``sign``,
``exp``, ``abs`` or ``log1p``).  ``register_jitable`` keeps each one
an ordinary Python function that Numba can also compile.  The derivative takes both the pre-activation ``a`` and the
activation ``h = g(a)``, because several derivatives are cheapest in terms of ``h``
(seed 000: "sigmoid'(z) = sigmoid_grad(d)", i.e. h (1 - h)).

The layer convention follows seed 001: ``a_i = sum_j w_ij h_j + b_i`` and
``h_i = g(a_i)``; the derivative ``g'(a_i)`` is what the delta recursion multiplies by.

Softmax is not element-wise (every output depends on every logit, seed 003), so it has
no entry here: :mod:`scalarbp.definitions.losses` treats it as an output together with its loss.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba.extending import register_jitable

#: Negative slope of ``leaky_relu``, PyTorch's default.
LEAKY_SLOPE = 0.01


@register_jitable
def relu(a):
    return np.maximum(a, 0)


@register_jitable
def step(a):
    """1 where a > 0, else 0, in a's dtype: the derivative of max(a, 0).

    ``a ** 0`` is 1 in a's dtype for every a, inf included (for a float32 scalar, Numba
    would make ``0 * a`` a float64, and the kernels would convert every element).
    """
    return (a > 0) * a ** 0


@register_jitable
def relu_grad(a, h):
    # The step function: 1 for a > 0, 0 otherwise (0 at a = 0).  Seed 003 writes sign(S), which
    # would give -1 for S < 0 (scalarbp.notation.ERRATA).
    return step(a)


@register_jitable
def leaky_relu(a):
    return np.maximum(a, LEAKY_SLOPE * a)


@register_jitable
def leaky_relu_grad(a, h):
    # 1 where a > 0, LEAKY_SLOPE elsewhere (PyTorch's choice at a = 0).
    return LEAKY_SLOPE + (1 - LEAKY_SLOPE) * step(a)


@register_jitable
def sigmoid(a):
    # 1 / (1 + e^-a) written with tanh: no overflow for any finite a.
    return 0.5 + 0.5 * np.tanh(0.5 * a)


@register_jitable
def sigmoid_grad(a, h):
    return h * (1 - h)


@register_jitable
def tanh(a):
    return np.tanh(a)


@register_jitable
def tanh_grad(a, h):
    return 1 - h * h


@register_jitable
def identity(a):
    return a


@register_jitable
def identity_grad(a, h):
    return a * 0 + 1


@dataclass(frozen=True)
class Activation:
    """An element-wise activation: ``h = g(a)`` and ``g'(a)`` as ``dg(a, h)``.

    ``code`` is the integer the compiled kernels dispatch on: its position in
    :data:`ACTIVATIONS`.
    """

    name: str
    code: int
    g: Callable
    dg: Callable


#: Every element-wise activation, by name; codes are assigned in this order, and the
#: output codes of :mod:`scalarbp.definitions.losses` continue after the last.
ACTIVATIONS = {
    name: Activation(name, code, g, dg)
    for code, (name, g, dg) in enumerate((
        ("identity", identity, identity_grad),
        ("relu", relu, relu_grad),
        ("leaky_relu", leaky_relu, leaky_relu_grad),
        ("sigmoid", sigmoid, sigmoid_grad),
        ("tanh", tanh, tanh_grad),
    ))
}

IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH = (
    ACTIVATIONS[name].code for name in ("identity", "relu", "leaky_relu", "sigmoid", "tanh"))


@register_jitable
def activation(code, a):
    """h = g(a) for the activation with kernel ``code`` (the compiled kernels' dispatch)."""
    if code == RELU:
        return relu(a)
    if code == LEAKY_RELU:
        return leaky_relu(a)
    if code == SIGMOID:
        return sigmoid(a)
    if code == TANH:
        return tanh(a)
    return identity(a)


@register_jitable
def derivative(code, a, h):
    """g'(a), given a and h = g(a), for the activation with kernel ``code``."""
    if code == RELU:
        return relu_grad(a, h)
    if code == LEAKY_RELU:
        return leaky_relu_grad(a, h)
    if code == SIGMOID:
        return sigmoid_grad(a, h)
    if code == TANH:
        return tanh_grad(a, h)
    return identity_grad(a, h)


#: Activations allowed between layers.
HIDDEN = ("relu", "leaky_relu", "sigmoid", "tanh", "identity")

#: Activations whose weights are initialised with He's rule (Glorot's for the others).
RELU_LIKE = ("relu", "leaky_relu")
