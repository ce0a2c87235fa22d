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

The compiled rules, which the kernels call, are :mod:`scalarbp.definitions.updates`
(:class:`~scalarbp.definitions.updates.Rule` is what a compiled step takes of an
optimiser).  Adding an optimiser is a class here, and a branch of ``coefficients`` and of
``rule`` there.
"""

import numpy as np

from .. import checks
from ..errors import BAD_UPDATE
from ..definitions.updates import (  # noqa: F401  (RULES and the codes: also scalarbp.optimizers' names)
    ADAM_RULE, ADAMW_RULE, HYPER, MOMENTUM_RULE, NESTEROV_RULE, RMSPROP_RULE, RULES, SGD_RULE, Coefficients, Rule,
    coefficients, update)


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
