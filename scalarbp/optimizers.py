"""Optimisers: how a step turns the gradient into a parameter update.

Each works on the flat parameter vector ``theta`` and gradient ``g`` (scalarbp.layout),
element by element, in a compiled loop; the state (velocity, moments, step count) lives
in arrays that :mod:`scalarbp.persistence` saves, so resumed training equals
uninterrupted training.  The formulas are PyTorch's:

* ``sgd``:      ``theta -= lr g``
* ``momentum``: ``v = mu v + g``; ``theta -= lr v`` (or ``lr (g + mu v)`` with Nesterov)
* ``adam``:     ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
  ``theta -= lr / (1 - b1^t) m / (sqrt(v / (1 - b2^t)) + eps)``
"""
import math

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from . import checks

#: Codes of the update rules, as :func:`update` dispatches on them.
SGD_RULE, MOMENTUM_RULE, NESTEROV_RULE, ADAM_RULE = 0, 1, 2, 3


#: Parameters per block of :func:`update`: one block per ``prange`` iteration.
BLOCK = 4096


@register_jitable
def rule(code, theta, g, s1, s2, lr, h1, h2, h3, step1, bias2, c1, c2):
    """One parameter's update: ``(theta, s1, s2)`` after the step (see the module docstring).

    ``h1`` is momentum's mu or Adam's beta1, ``h2`` and ``h3`` Adam's beta2 and eps;
    ``step1 = lr / (1 - beta1^t)``, ``bias2 = 1 - beta2^t``, ``c1 = 1 - beta1`` and
    ``c2 = 1 - beta2`` (:func:`adam_factors`), passed in so that every operation runs in
    the parameters' precision (``1 - h1`` would be a float64 even for float32 ``h1``).
    The CPU loop and the CUDA kernel both apply this function.
    """
    if code == SGD_RULE:
        return theta - lr * g, s1, s2
    if code == MOMENTUM_RULE or code == NESTEROV_RULE:
        v = h1 * s1 + g
        return theta - lr * (g + h1 * v if code == NESTEROV_RULE else v), v, s2
    m = h1 * s1 + c1 * g
    v = h2 * s2 + c2 * g * g
    return theta - step1 * m / (math.sqrt(v / bias2) + h3), m, v


@register_jitable
def adam_factors(lr, beta1, beta2, t):
    """``(lr / (1 - beta1^t), 1 - beta2^t, 1 - beta1, 1 - beta2)`` for step t."""
    return lr / (1 - beta1 ** t), 1 - beta2 ** t, 1 - beta1, 1 - beta2


@njit(cache=True, fastmath={"contract"}, error_model="numpy")  # no ZeroDivisionError check: vectorises
def _update_block(code, theta, g, s1, s2, lr, h1, h2, h3, step1, bias2, c1, c2):
    """:func:`rule` on one block of parameters; one loop per rule, so each vectorises."""
    if code == SGD_RULE:
        for m in range(theta.shape[0]):
            theta[m], _, _ = rule(SGD_RULE, theta[m], g[m], 0, 0, lr, h1, h2, h3, step1, bias2, c1, c2)
    elif code == ADAM_RULE:
        for m in range(theta.shape[0]):
            theta[m], s1[m], s2[m] = rule(ADAM_RULE, theta[m], g[m], s1[m], s2[m], lr, h1, h2, h3,
                                          step1, bias2, c1, c2)
    else:
        for m in range(theta.shape[0]):
            theta[m], s1[m], _ = rule(code, theta[m], g[m], s1[m], 0, lr, h1, h2, h3, step1, bias2, c1, c2)


@njit(cache=True)
def _block(array, block):
    """Block number ``block`` of :data:`BLOCK` entries of ``array`` (empty arrays stay empty).

    Loops over a view from index 0 let LLVM vectorise: with a loop from ``start``, Numba's
    handling of negative indices gets in the way.
    """
    return array[block * BLOCK:(block + 1) * BLOCK]


@njit(cache=True, parallel=True, error_model="numpy")
def update(code, theta, g, s1, s2, lr, h1, h2, h3, t, parallel):
    """One step of optimiser ``code`` on every parameter, in place.

    ``s1``/``s2`` are its state arrays (velocity; first and second moments), ``h1..h3``
    its hyper-parameters and ``t`` the step number (counted from 1).  Blocks of
    :data:`BLOCK` parameters run in parallel when ``parallel``.
    """
    step1, bias2, c1, c2 = adam_factors(lr, h1, h2, t)
    # In the parameters' precision, as PyTorch computes: float32 nets update in float32.
    real = theta.dtype.type
    lr, h1, h2, h3 = real(lr), real(h1), real(h2), real(h3)
    step1, bias2, c1, c2 = real(step1), real(bias2), real(c1), real(c2)
    blocks = (theta.shape[0] + BLOCK - 1) // BLOCK
    if parallel:
        for block in prange(blocks):
            _update_block(code, _block(theta, block), _block(g, block), _block(s1, block),
                          _block(s2, block), lr, h1, h2, h3, step1, bias2, c1, c2)
    else:
        for block in range(blocks):
            _update_block(code, _block(theta, block), _block(g, block), _block(s1, block),
                          _block(s2, block), lr, h1, h2, h3, step1, bias2, c1, c2)


class Optimizer:
    """Hyper-parameters, state arrays and a step count; ``step`` updates theta in place."""

    name = None
    defaults = {}
    state_names = ()

    def __init__(self, lr=0.01, **hyper):
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise ValueError(f"unknown {self.name} option(s) {', '.join(sorted(unknown))}; "
                             f"expected {', '.join(self.defaults) or 'none'}")
        self.lr = _positive("lr", lr)
        self.hyper = {**self.defaults, **hyper}
        self.t = 0
        self.state = {}

    def __repr__(self):
        options = "".join(f", {k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}(lr={self.lr!r}{options})"

    def init_state(self, theta):
        """Zero state for parameters shaped like ``theta`` (kept if already the right shape)."""
        for name in self.state_names:
            if self.state.get(name) is None or self.state[name].shape != theta.shape \
                    or self.state[name].dtype != theta.dtype:
                self.state[name] = np.zeros_like(theta)
                self.t = 0

    def arguments(self, theta):
        """``(code, state1, state2, lr, h1, h2, h3, t)``: what :func:`update` takes, with the
        step count before the update (state arrays are created for ``theta`` if needed)."""
        self.init_state(theta)
        empty = np.empty(0, theta.dtype)  # its own buffer: aliasing theta would stop vectorization
        states = [self.state[name] for name in self.state_names] + [empty, empty]
        h = self.packed()
        return (self.code, states[0], states[1], float(self.lr), h[0], h[1], h[2], float(self.t))

    def packed(self):
        return (0.0, 0.0, 0.0)

    def step(self, theta, g):
        """One update of ``theta`` in place from the gradient ``g``."""
        code, s1, s2, lr, h1, h2, h3, t = self.arguments(theta)
        update(code, theta, g, s1, s2, lr, h1, h2, h3, t + 1, theta.shape[0] >= 1 << 15)
        self.t += 1


class SGD(Optimizer):
    name = "sgd"
    code = SGD_RULE


class Momentum(Optimizer):
    name = "momentum"
    defaults = {"momentum": 0.9, "nesterov": False}
    state_names = ("velocity",)

    def __init__(self, lr=0.01, **hyper):
        super().__init__(lr, **hyper)
        _fraction("momentum", self.hyper["momentum"])

    @property
    def code(self):
        return NESTEROV_RULE if self.hyper["nesterov"] else MOMENTUM_RULE

    def packed(self):
        return (float(self.hyper["momentum"]), 0.0, 0.0)


class Adam(Optimizer):
    name = "adam"
    code = ADAM_RULE
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    state_names = ("m", "v")

    def __init__(self, lr=0.001, **hyper):
        super().__init__(lr, **hyper)
        _fraction("beta1", self.hyper["beta1"])
        _fraction("beta2", self.hyper["beta2"])
        _positive("eps", self.hyper["eps"])

    def packed(self):
        h = self.hyper
        return (float(h["beta1"]), float(h["beta2"]), float(h["eps"]))


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Adam)}


def make(name, lr, **hyper):
    """An optimiser by name: ``sgd``, ``momentum`` (``nesterov=True`` for Nesterov), ``adam``."""
    return OPTIMIZERS[checks.choice("optimizer", name, tuple(OPTIMIZERS))](lr, **hyper)


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
