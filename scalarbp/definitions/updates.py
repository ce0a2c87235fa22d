"""The update rules of the optimisers, compiled: the formulas of :mod:`scalarbp.training.optimizers`
(PyTorch's, per parameter), which the CPU kernels and the CUDA kernel call.

The compiled interface is the same for every optimiser, a :class:`Rule` of named fields:
its rule's ``code``; ``states``, three 1-D arrays shaped like theta (the class's ``slots``;
an unused one is empty); ``hypers``, float64 rows of :data:`HYPER` hyper-parameters
(``lr`` first, then the class's ``hyper_names`` in order), one per step; and ``t``, the
steps taken before.  Per step, :func:`coefficients` turns ``(hyper, t)`` into the named
:class:`Coefficients` in the parameters' precision and :func:`rule` applies them to one
parameter.  The CPU loops (:func:`update_range`) and the CUDA kernel call those two
functions.
"""
import math
from collections import namedtuple

from numba.extending import register_jitable

from ..jit import compiled

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
        # (With ``code`` a constant, LLVM may fuse this product into the subtraction below,
        # one rounding where PyTorch rounds twice: update_range decays in a loop of its own.)
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


@register_jitable(inline="always")
def _each(code, theta, g, s0, s1, s2, c):
    """:func:`rule` on every parameter of the views, inlined where it is called: with a
    constant ``code`` the rule is picked once, outside the loop, and the loop vectorises."""
    for m in range(theta.shape[0]):
        rule(code, theta, g, s0, s1, s2, m, c)


@compiled(**UPDATE)
def update_range(code, theta, g, states, start, stop, c):
    """:func:`rule` on parameters ``start .. stop - 1``, one loop per rule, its code a
    constant, so that each vectorises (with the code read per parameter, adamw's update took
    6.5 times adam's: 36.6 ms against 5.6 ms on 2**20 float64 parameters, Zen 4); returns 0
    if every new parameter is finite, else NaN (:func:`_nonfinite`).  Rmsprop's loop still
    reads ``centered`` and ``momentum`` per parameter, and does not vectorise (34 ms).

    Adamw decays theta in a loop of its own, then takes Adam's step: in one loop with its
    code a constant, LLVM fuses the decay's product into the step's subtraction (one
    rounding where :func:`rule`, and PyTorch's ``mul_`` then ``addcdiv_``, round twice).

    The loops run over views indexed from 0 (with a loop from ``start``, Numba's handling of
    negative indices keeps LLVM from vectorising); an empty state array stays empty.
    """
    theta, g = theta[start:stop], g[start:stop]
    s0, s1, s2 = states[0][start:stop], states[1][start:stop], states[2][start:stop]
    if code == SGD_RULE:
        _each(SGD_RULE, theta, g, s0, s1, s2, c)
    elif code == MOMENTUM_RULE:
        _each(MOMENTUM_RULE, theta, g, s0, s1, s2, c)
    elif code == NESTEROV_RULE:
        _each(NESTEROV_RULE, theta, g, s0, s1, s2, c)
    elif code == ADAM_RULE:
        _each(ADAM_RULE, theta, g, s0, s1, s2, c)
    elif code == ADAMW_RULE:  # the decoupled decay first, in a loop of its own (see above)
        for m in range(theta.shape[0]):
            theta[m] = theta[m] * c.decay
        _each(ADAM_RULE, theta, g, s0, s1, s2, c)
    else:
        _each(RMSPROP_RULE, theta, g, s0, s1, s2, c)
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
