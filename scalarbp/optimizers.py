"""Optimisers: how a step turns the gradient into a parameter update.

Each works on the flat parameter vector ``theta`` and gradient ``g`` (scalarbp.layout),
element by element, in a compiled loop; the state (velocity, moments, step count) lives
in arrays that model files save, so resumed training equals uninterrupted training.
The formulas and defaults are PyTorch's (``torch.optim``), per parameter:

* ``sgd``:      ``theta -= lr g``
* ``momentum``: ``v = mu v + g``; ``theta -= lr v`` (``lr (g + mu v)`` with Nesterov)
* ``adam``:     ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
  ``theta -= lr / (1 - b1^t) m / (sqrt(v / (1 - b2^t)) + eps)``
* ``adamw``:    ``theta *= 1 - lr wd`` (decoupled weight decay), then Adam's step
* ``rmsprop``:  ``s = alpha s + (1 - alpha) g^2``; centered: ``m = m + (1 - alpha)(g - m)``
  (the running mean of g, PyTorch's ``lerp``) and ``avg = sqrt(s - m^2) + eps``, else
  ``avg = sqrt(s) + eps``; with momentum ``buf = mu buf + g / avg``, ``theta -= lr buf``,
  else ``theta -= lr g / avg``

The compiled interface is the same for every optimiser, a :class:`Rule` of named fields:
its rule's ``code``; ``states``, three 1-D arrays shaped like theta (the class's ``slots``;
an unused one is empty); ``hypers``, float64 rows of :data:`HYPER` hyper-parameters
(``lr`` first, then the class's ``hyper_names`` in order), one per step; and ``t``, the
steps taken before.  Per step, :func:`coefficients` turns ``(hyper, t)`` into the named
:class:`Coefficients` in the parameters' precision and :func:`rule` applies them to one
parameter.  The CPU loops (:func:`update_range`) and the CUDA kernel call those two
functions.  Adding an optimiser is a class, a branch of
:func:`coefficients` and a branch of :func:`rule`, here.
"""
import math
from collections import namedtuple

import numpy as np
from numba.extending import register_jitable

from . import checks
from .errors import BAD_UPDATE
from .jit import compiled

#: The updates' compile options: fused multiply-adds but no reassociation or reciprocal
#: approximations, so each formula rounds as written (and as PyTorch's does).  Without
#: ``error_model="numpy"`` the division's zero check would stop LLVM from vectorising.
UPDATE = dict(cache=True, fastmath={"contract"}, error_model="numpy")

#: The update rules, in the order of their codes.
RULES = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SGD_RULE, MOMENTUM_RULE, NESTEROV_RULE, ADAM_RULE, ADAMW_RULE, RMSPROP_RULE = range(len(RULES))

#: Length of the hyper-parameter array: lr and up to seven more.
HYPER = 8

#: What the compiled steps take of an optimiser: its rule's ``code``, its three state
#: arrays ``states`` (the class's ``slots``; an unused one is empty), ``hypers``, one row
#: of :data:`HYPER` hyper-parameters per step (``lr`` first, then the class's
#: ``hyper_names``; the schedule's rate in column 0), and ``t``, the steps taken before.
Rule = namedtuple("Rule", "code states hypers t")

#: The numbers a rule needs at one step, in the parameters' precision
#: (:func:`coefficients`); a rule reads only its own.
Coefficients = namedtuple("Coefficients", "rate momentum beta1 beta2 one_minus_beta1 one_minus_beta2 "
                                          "bias2 eps decay alpha one_minus_alpha centered")


@register_jitable
def coefficients(code, hyper, t, theta):
    """The :class:`Coefficients` of rule ``code`` at step ``t``, in theta's dtype.

    Computed in float64 from ``hyper`` (``lr`` first, then the class's ``hyper_names``),
    then rounded once: every operation of the rule itself runs in the parameters'
    precision, as PyTorch's does (``1 - beta1`` of a float32 would be a float64 in Numba).
    """
    real = theta.dtype.type
    lr, zero = hyper[0], real(0)
    if code == ADAM_RULE or code == ADAMW_RULE:  # hyper: lr, beta1, beta2, eps, weight_decay
        b1, b2 = hyper[1], hyper[2]
        decay = 1 - lr * hyper[4] if code == ADAMW_RULE else 1.0
        return Coefficients(rate=real(lr / (1 - b1 ** t)), momentum=zero, beta1=real(b1), beta2=real(b2),
                            one_minus_beta1=real(1 - b1), one_minus_beta2=real(1 - b2), bias2=real(1 - b2 ** t),
                            eps=real(hyper[3]), decay=real(decay), alpha=zero, one_minus_alpha=zero, centered=zero)
    if code == RMSPROP_RULE:  # hyper: lr, alpha, eps, momentum, centered
        alpha = hyper[1]
        return Coefficients(rate=real(lr), momentum=real(hyper[3]), beta1=zero, beta2=zero, one_minus_beta1=zero,
                            one_minus_beta2=zero, bias2=zero, eps=real(hyper[2]), decay=zero, alpha=real(alpha),
                            one_minus_alpha=real(1 - alpha), centered=real(hyper[4]))
    return Coefficients(rate=real(lr), momentum=real(hyper[1]), beta1=zero, beta2=zero, one_minus_beta1=zero,
                        one_minus_beta2=zero, bias2=zero, eps=zero, decay=zero, alpha=zero, one_minus_alpha=zero,
                        centered=zero)  # hyper: lr, momentum


@register_jitable
def rule(code, theta, g, s0, s1, s2, m, c):
    """Update parameter ``theta[m]`` (and its state in ``s0..s2``) by rule ``code``, with
    ``c = coefficients(code, hyper, t, theta)``.  The formulas of the module docstring."""
    if code == SGD_RULE:
        theta[m] = theta[m] - c.rate * g[m]
    elif code == MOMENTUM_RULE or code == NESTEROV_RULE:  # s0: velocity
        v = c.momentum * s0[m] + g[m]
        s0[m] = v
        theta[m] = theta[m] - c.rate * (g[m] + c.momentum * v if code == NESTEROV_RULE else v)
    elif code == ADAM_RULE or code == ADAMW_RULE:  # s0, s1: first and second moments
        gm, first, second = g[m], s0[m], s1[m]
        first = c.beta1 * first + c.one_minus_beta1 * gm
        second = c.beta2 * second + c.one_minus_beta2 * gm * gm
        s0[m], s1[m] = first, second
        decayed = theta[m] * c.decay if code == ADAMW_RULE else theta[m]
        theta[m] = decayed - c.rate * first / (math.sqrt(second / c.bias2) + c.eps)
    else:  # rmsprop; s0: square average, s1: momentum buffer, s2: mean gradient (centered)
        square = c.alpha * s0[m] + c.one_minus_alpha * (g[m] * g[m])
        s0[m] = square
        if c.centered != 0:
            mean = s2[m] + c.one_minus_alpha * (g[m] - s2[m])
            s2[m] = mean
            avg = math.sqrt(square - mean * mean) + c.eps
        else:
            avg = math.sqrt(square) + c.eps
        if c.momentum != 0:
            buf = c.momentum * s1[m] + g[m] / avg
            s1[m] = buf
            theta[m] = theta[m] - c.rate * buf
        else:
            theta[m] = theta[m] - c.rate * g[m] / avg


@compiled(**UPDATE)
def update_range(code, theta, g, states, start, stop, c):
    """:func:`rule` on parameters ``start .. stop - 1``, one loop per rule so that each
    vectorises; returns 0 if every new parameter is finite, else NaN (:func:`_nonfinite`).

    The loops run over views indexed from 0 (with a loop from ``start``, Numba's handling of
    negative indices keeps LLVM from vectorising); an empty state array stays empty.
    """
    theta, g = theta[start:stop], g[start:stop]
    s0, s1, s2 = states[0][start:stop], states[1][start:stop], states[2][start:stop]
    n = theta.shape[0]
    if code == SGD_RULE:
        for m in range(n):
            rule(SGD_RULE, theta, g, s0, s1, s2, m, c)
    elif code == MOMENTUM_RULE:
        for m in range(n):
            rule(MOMENTUM_RULE, theta, g, s0, s1, s2, m, c)
    elif code == NESTEROV_RULE:
        for m in range(n):
            rule(NESTEROV_RULE, theta, g, s0, s1, s2, m, c)
    elif code == ADAM_RULE:
        for m in range(n):
            rule(ADAM_RULE, theta, g, s0, s1, s2, m, c)
    else:
        for m in range(n):
            rule(code, theta, g, s0, s1, s2, m, c)
    return _nonfinite(theta)  # (read back while the block is in the cache)


@compiled(cache=True, fastmath={"reassoc"})  # reassociation only (a vector sum): x - x must stay NaN for inf
def _nonfinite(theta):
    """0 if every entry of ``theta`` is finite, else NaN: the sum of ``x - x``."""
    s = theta.dtype.type(0)
    for m in range(theta.shape[0]):
        s += theta[m] - theta[m]
    return s


@compiled(cache=True, error_model="numpy")  # no fastmath: the coefficients round as written
def update(code, theta, g, states, hyper, t):
    """One step of rule ``code`` on every parameter, in place; ``t`` counts from 1.

    Returns True if every new parameter is finite: a finite gradient can still give an
    update that overflows (a huge learning rate), and the caller then rolls back.  (The
    compiled steps of :mod:`.backends.kernels` run :func:`update_range` on each block of
    units in their own parallel pass.)
    """
    return update_range(code, theta, g, states, 0, theta.shape[0], coefficients(code, hyper, t, theta)) == 0


class Optimizer:
    """Hyper-parameters, state arrays and a step count; ``step`` updates theta in place.

    A subclass names its rule (``code``), its hyper-parameters after ``lr`` in the order
    :func:`coefficients` reads them (``hyper_names``, with ``defaults``), and its state
    arrays in the order :func:`rule` reads them (``slots``; ``None`` for a position it
    does not use).
    """

    name = None
    code = None
    defaults = {}
    hyper_names = ()
    slots = ()
    #: State arrays that can never be negative (sums of squares): checked at load.
    non_negative = ()

    def __init__(self, lr=0.01, **hyper):
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise ValueError(f"unknown {self.name} option(s) {', '.join(sorted(unknown))}; "
                             f"expected {', '.join(self.defaults) or 'none'}")
        self.lr = checks.positive("lr", lr)
        self.hyper = {**self.defaults, **hyper}
        self.t = 0
        self.state = {}

    def __repr__(self):
        options = "".join(f", {k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}(lr={self.lr!r}{options})"

    def check_state(self):
        """Refuse state arrays no training could have produced (a negative sum of squares)."""
        for name in self.non_negative:
            if name in self.state and (self.state[name] < 0).any():
                raise ValueError(f"{self.name} state '{name}' holds negative values; it is a running mean of squares")

    @property
    def state_names(self):
        """The state arrays this optimiser keeps, with its current options."""
        return tuple(name for name in self.slots if name is not None)

    @property
    def t(self):
        """Steps taken: Adam's bias correction and the step numbers follow it."""
        return self._t

    @t.setter
    def t(self, value):
        self._t = checks.integer("optimizer step count", value, 0)

    def init_state(self, theta):
        """Zero state for parameters shaped like ``theta`` (kept if already the right shape
        and dtype; a read-only or strided array is copied, as the kernels write it in place)."""
        for name in self.state_names:
            state = self.state.get(name)
            if state is None or state.shape != theta.shape or state.dtype != theta.dtype:
                self.state[name] = np.zeros_like(theta)
                self.t = 0
            elif type(state) is not np.ndarray or not (state.flags.c_contiguous and state.flags.writeable):
                self.state[name] = np.array(state)

    def hyper_array(self):
        """``lr`` and the hyper-parameters as :func:`coefficients` reads them (float64)."""
        values = [self.lr] + [float(self.hyper[name]) for name in self.hyper_names]
        return np.array(values + [0.0] * (HYPER - len(values)))

    def arguments(self, theta, hypers=None):
        """The :class:`Rule` the compiled steps take, with ``hypers`` (default: one row of
        this optimiser's own) and the step count before the update (state arrays are
        created for ``theta`` if needed)."""
        self.init_state(theta)
        empty = np.empty(0, theta.dtype)  # its own buffer: aliasing theta would stop vectorization
        states = tuple(empty if name is None else self.state[name] for name in self.slots)
        states += (empty,) * (3 - len(states))
        return Rule(self.code, states, self.hyper_array()[None] if hypers is None else hypers, float(self.t))

    def advance(self, done, reason):
        """Count the steps a compiled run applied: ``done``, and the failed one too when it
        stopped on an update (:data:`~scalarbp.errors.BAD_UPDATE`: applied, then rolled
        back by the caller with the counts)."""
        self.t += done + (reason == BAD_UPDATE)

    def step(self, theta, g, hyper=None):
        """One update of ``theta`` in place from the gradient ``g`` (with the row of
        hyper-parameters ``hyper`` when given: a scheduled rate); returns True if the new
        parameters are all finite (see :func:`update`)."""
        code, states, own, t = self.arguments(theta)
        finite = update(code, theta, g, states, own[0] if hyper is None else hyper, t + 1)
        self.t += 1
        return finite


class SGD(Optimizer):
    name = "sgd"
    code = SGD_RULE


class Momentum(Optimizer):
    name = "momentum"
    defaults = {"momentum": 0.9, "nesterov": False}
    hyper_names = ("momentum",)
    slots = ("velocity",)

    def __init__(self, lr=0.01, **hyper):
        super().__init__(lr, **hyper)
        _fraction("momentum", self.hyper["momentum"])
        checks.boolean("nesterov", self.hyper["nesterov"])

    @property
    def code(self):
        return NESTEROV_RULE if self.hyper["nesterov"] else MOMENTUM_RULE


class Adam(Optimizer):
    name = "adam"
    code = ADAM_RULE
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    hyper_names = ("beta1", "beta2", "eps")
    slots = ("m", "v")
    non_negative = ("v",)

    def __init__(self, lr=0.001, **hyper):
        super().__init__(lr, **hyper)
        _fraction("beta1", self.hyper["beta1"])
        _fraction("beta2", self.hyper["beta2"])
        checks.positive("eps", self.hyper["eps"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter; ``torch.optim.AdamW``)."""

    name = "adamw"
    code = ADAMW_RULE
    defaults = {**Adam.defaults, "weight_decay": 0.01}
    hyper_names = Adam.hyper_names + ("weight_decay",)

    def __init__(self, lr=0.001, **hyper):
        super().__init__(lr, **hyper)
        checks.non_negative("weight_decay", self.hyper["weight_decay"])


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop`` (Hinton's lecture 6e; Graves 2013 when centered)."""

    name = "rmsprop"
    code = RMSPROP_RULE
    defaults = {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False}
    hyper_names = ("alpha", "eps", "momentum", "centered")
    non_negative = ("square_avg",)

    def __init__(self, lr=0.01, **hyper):
        super().__init__(lr, **hyper)
        _fraction("alpha", self.hyper["alpha"])
        checks.positive("eps", self.hyper["eps"])
        _fraction("momentum", self.hyper["momentum"])
        checks.boolean("centered", self.hyper["centered"])

    @property
    def slots(self):
        return ("square_avg", "momentum_buffer" if self.hyper["momentum"] else None,
                "grad_avg" if self.hyper["centered"] else None)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Adam, AdamW, RMSprop)}


def make(name, lr=None, **hyper):
    """An optimiser by name: ``sgd``, ``momentum`` (``nesterov=True`` for Nesterov),
    ``adam``, ``adamw``, ``rmsprop``; ``lr=None`` takes the class's default rate."""
    cls = OPTIMIZERS[checks.choice("optimizer", name, tuple(OPTIMIZERS))]
    return cls(**hyper) if lr is None else cls(lr, **hyper)


def _fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
