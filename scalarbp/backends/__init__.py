"""Implementations of the same forward and backward pass, chosen by name.

* ``"scalar"``: the scalar form (seed 001) as Numba-compiled index loops, :mod:`.scalar`.
* ``"literal"``: seed 001 transcribed one sample at a time, for reading, :mod:`.literal`.
* ``"row"``: NumPy, samples as rows, ``S = X W + b`` (seeds 003, 004), :mod:`.row`.
* ``"column"``: NumPy, samples as columns, ``a = W h + b`` (seed 000), :mod:`.column`.
* ``"cuda"``: the scalar form on an NVIDIA GPU with ``numba.cuda`` (optional), :mod:`.cuda`.

Each module defines ``BACKEND``, an instance of :class:`Backend`.  Adding a backend is a
module here and its name in :data:`ALL`; the model and the training loop only call the
interface.
"""
import abc
import importlib

import numpy as np

from ..checks import choice
from ..definitions.clipping import clip_norm
from ..errors import BAD_GRADIENT, BAD_UPDATE  # (why a stepper stopped early: Backend.stepper)

#: The backends that run on the CPU, always available.
BACKENDS = ("scalar", "literal", "row", "column")

#: Every backend name, the GPU's included.
ALL = BACKENDS + ("cuda",)


class Backend(abc.ABC):
    """What a backend provides.  Arrays reaching it are validated, C-contiguous and of the
    network's dtype (:mod:`scalarbp.checks`)."""

    name = None

    def require(self):
        """Raise a one-line ``RuntimeError`` if this backend cannot run here."""

    @abc.abstractmethod
    def forward(self, net, X):
        """Outputs ``(N, d_T)`` for inputs ``X`` ``(N, d_0)``."""

    @abc.abstractmethod
    def loss_and_grad(self, net, X, T, grad=None, weights=None):
        """``(J, grad)``: the penalised mean loss on targets ``T`` ``(N, d_T)`` and its
        gradient, flat like ``net.theta`` (written into ``grad`` when one is given).
        ``weights`` (one per sample) make the mean a weighted one, ``sum w_n Loss_n /
        sum w_n``."""

    def loss(self, net, X, T, weights=None):
        """The penalised mean loss alone (validation): this default is
        :meth:`loss_and_grad`'s J."""
        return self.loss_and_grad(net, X, T, None, weights)[0]

    @abc.abstractmethod
    def per_example(self, net, X, T, G):
        """``(losses, squared norms)`` of every sample's own loss and gradient (no ``1/N``, no
        penalty; :mod:`.per_example`), and the gradients into G ``(N, P)`` when it has rows."""

    def stepper(self, net, data):
        """A function ``steps(rows, batch_size, grad, hypers, clip) -> (steps applied,
        losses, reason)`` that runs the minibatches of the sample indices ``rows`` with
        ``net.optimizer``, ``hypers[b]`` the hyper-parameters of step ``b`` (the learning
        rate first) and the gradient's norm clipped to ``clip`` (0: not clipped).  It stops
        early when a step's loss or gradient is not finite (``reason`` :data:`BAD_GRADIENT`:
        the step is not applied) or its update gives a parameter that is not finite
        (:data:`BAD_UPDATE`: the step is applied, and the caller rolls back); ``losses``
        then holds that step's loss last.  ``data`` is a :class:`scalarbp.training.Batches`.
        This default runs the steps one by one from Python (:func:`python_steps`); a
        backend may run them in compiled code."""
        def steps(rows, batch_size, grad, hypers, clip):
            def minibatch(b, grad):
                xb, tb, wb = data.gather(rows[b * batch_size:(b + 1) * batch_size])
                return self.loss_and_grad(net, xb, tb, grad, wb)[0]
            return python_steps(net, -(-rows.shape[0] // batch_size), minibatch, grad, hypers, clip)
        return steps

    def held(self, net, fits, make):
        """This backend's state for ``net`` (work buffers, a device copy), kept in the net's
        one cache of backend state: the one held if ``fits(it)``, else ``make()``."""
        state = net.backend_state.get(self.name)
        if state is None or not fits(state):
            state = net.backend_state[self.name] = make()
        return state


def python_steps(net, count, minibatch, grad, hypers, clip, check_loss=True):
    """Steps ``0 .. count - 1`` from Python, as a stepper runs them (see
    :meth:`Backend.stepper`): ``minibatch(b, grad)`` writes step b's gradient into ``grad``
    and returns its J; then the finiteness check (of the gradient, and of J unless
    ``check_loss`` is false), the clipping to ``clip`` (0: none) and ``net.optimizer``'s
    update with ``hypers[b]``.  Returns ``(steps applied, losses, reason)``."""
    losses = []
    for b in range(count):
        losses.append(minibatch(b, grad))
        if not ((np.isfinite(losses[-1]) or not check_loss) and np.isfinite(grad.sum())):
            return b, np.array(losses), BAD_GRADIENT
        if clip > 0:
            clip_norm(grad, clip)  # the compiled loop's rule, from Python
        if not net.optimizer.step(net.theta, grad, hypers[b]):
            return b, np.array(losses), BAD_UPDATE
    return count, np.array(losses), 0


class Reference(Backend):
    """A backend made of three plain functions: the NumPy references."""

    def __init__(self, name, forward, loss_and_grad, per_example):
        self.name = name
        self._forward, self._loss_and_grad, self._per_example = forward, loss_and_grad, per_example

    def forward(self, net, X):
        return self._forward(net, X)

    def loss_and_grad(self, net, X, T, grad=None, weights=None):
        return self._loss_and_grad(net, X, T, grad, weights)

    def per_example(self, net, X, T, G):
        if G.shape[0] == 0:
            G = np.empty((X.shape[0], net.theta.shape[0]), net.dtype)
        return self._per_example(net, X, T, G)


def get(name):
    """The backend called ``name``; a missing GPU or CUDA package is a RuntimeError."""
    choice("backend", name, ALL)
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ImportError as err:
        raise RuntimeError(str(err)) from None
    module.BACKEND.require()
    return module.BACKEND
