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
import numpy as np
from numba import njit, prange

from . import checks

update_kernel = njit(cache=True, parallel=True)


@update_kernel
def sgd_step(theta, g, lr):
    for m in prange(theta.shape[0]):
        theta[m] -= lr * g[m]


@update_kernel
def momentum_step(theta, g, velocity, lr, mu, nesterov):
    for m in prange(theta.shape[0]):
        velocity[m] = mu * velocity[m] + g[m]
        theta[m] -= lr * (g[m] + mu * velocity[m] if nesterov else velocity[m])


@update_kernel
def adam_step(theta, g, m1, m2, lr, beta1, beta2, eps, t):
    step = lr / (1 - beta1 ** t)
    root_correction = np.sqrt(1 - beta2 ** t)
    for m in prange(theta.shape[0]):
        m1[m] = beta1 * m1[m] + (1 - beta1) * g[m]
        m2[m] = beta2 * m2[m] + (1 - beta2) * g[m] * g[m]
        theta[m] -= step * m1[m] / (np.sqrt(m2[m]) / root_correction + eps)


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

    def step(self, theta, g):
        """One update of ``theta`` in place from the gradient ``g``; ``_step`` is the formula."""
        self.init_state(theta)
        self.t += 1
        self._step(theta, g)


class SGD(Optimizer):
    name = "sgd"

    def _step(self, theta, g):
        sgd_step(theta, g, self.lr)


class Momentum(Optimizer):
    name = "momentum"
    defaults = {"momentum": 0.9, "nesterov": False}
    state_names = ("velocity",)

    def __init__(self, lr=0.01, **hyper):
        super().__init__(lr, **hyper)
        _fraction("momentum", self.hyper["momentum"])

    def _step(self, theta, g):
        momentum_step(theta, g, self.state["velocity"], self.lr, float(self.hyper["momentum"]),
                      bool(self.hyper["nesterov"]))


class Adam(Optimizer):
    name = "adam"
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    state_names = ("m", "v")

    def __init__(self, lr=0.001, **hyper):
        super().__init__(lr, **hyper)
        _fraction("beta1", self.hyper["beta1"])
        _fraction("beta2", self.hyper["beta2"])
        _positive("eps", self.hyper["eps"])

    def _step(self, theta, g):
        h = self.hyper
        adam_step(theta, g, self.state["m"], self.state["v"], self.lr, float(h["beta1"]),
                  float(h["beta2"]), float(h["eps"]), float(self.t))


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
