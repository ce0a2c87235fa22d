"""Input validation: every check runs in Python before any kernel does.

The compiled kernels do not bounds-check, so a wrong shape or an out-of-range label
would read or write memory silently.  Each function here either returns a clean,
C-contiguous array of the network's dtype or raises ``ValueError``/``TypeError`` with
a message naming the problem and what was expected.
"""
import numbers

import numpy as np

from .activations import HIDDEN
from .losses import DEFAULT_LOSS, LOSSES, OUTPUTS

DTYPES = ("float32", "float64")


def choice(kind, value, allowed):
    """``value`` if it is one of ``allowed`` (names), else a ValueError listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {', '.join(allowed)}")
    return value


def dtype(value):
    """'float32' or 'float64' from a name or a NumPy dtype-like."""
    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {value!r}; expected one of {', '.join(DTYPES)}")
    return np.dtype(name)


def sizes(value):
    """Layer widths as a tuple of positive ints, at least two of them."""
    try:
        widths = list(value)
    except TypeError:
        raise TypeError(f"sizes must be a sequence of layer widths, got {value!r}") from None
    if len(widths) < 2:
        raise ValueError(f"sizes needs at least two layer widths (input and output), got {widths}")
    for d in widths:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"layer widths must be integers, got {d!r} in sizes={widths}")
        if d <= 0:
            raise ValueError(f"layer widths must be positive, got {d} in sizes={widths}")
    return tuple(int(d) for d in widths)


def hidden(value, n_hidden):
    """One activation name per hidden layer, from a single name or a list."""
    names = [value] * n_hidden if isinstance(value, str) else list(value)
    if len(names) != n_hidden:
        raise ValueError(f"hidden lists {len(names)} activations but the network has "
                         f"{n_hidden} hidden layers; give one name or a list of {n_hidden}")
    return tuple(choice("hidden activation", name, HIDDEN) for name in names)


def output_and_loss(output, loss):
    """The output activation and its loss (default by output), checked to pair."""
    output = choice("output activation", output, OUTPUTS)
    loss = DEFAULT_LOSS[output] if loss is None else choice("loss", loss, tuple(LOSSES))
    allowed = LOSSES[loss].outputs
    if allowed is not None and output not in allowed:
        raise ValueError(f"loss {loss!r} needs output {' or '.join(allowed)}, got output {output!r}; "
                         f"use loss='mse' for other outputs")
    return output, loss


def l2(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"l2 must be a real number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"l2 must be finite and >= 0, got {value}")
    return float(value)


def _numeric(name, value):
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"{name} must be a numeric array: {err}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


#: Rows checked at a time for NaN/inf: no temporary as large as the data.
CHUNK_ROWS = 4096


def _finite(name, array):
    for start in range(0, max(len(array), 1), CHUNK_ROWS):
        part = array[start:start + CHUNK_ROWS]
        if not np.isfinite(part).all():
            bad = np.argwhere(~np.isfinite(part))[0]
            bad[0] += start
            raise ValueError(f"{name} holds NaN or inf (first at index {tuple(int(i) for i in bad)})")


def inputs(X, width, dtype):
    """X as a C-contiguous ``(N, width)`` array of ``dtype`` with N >= 1 and finite values."""
    X = _numeric("X", X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("X is an empty batch (0 samples)")
    if X.shape[1] != width:
        raise ValueError(f"X has {X.shape[1]} features per sample, the network expects {width}")
    X = np.ascontiguousarray(X, dtype=dtype)
    _finite("X", X)
    return X


def targets(Y, n, width, loss, dtype):
    """Targets as an ``(n, width)`` array of ``dtype``.

    ``Y`` is either class labels ``(n,)`` (integers in ``[0, width)``, turned into one-hot
    rows) or a target array ``(n, width)``.  A 1-D array for a one-unit output is taken as
    that unit's targets.
    """
    Y = _numeric("Y", Y)
    if Y.ndim == 1 and width == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim not in (1, 2):
        raise ValueError(f"Y must be labels (N,) or targets (N, {width}), got shape {Y.shape}")
    if Y.shape[0] != n:
        raise ValueError(f"Y has {Y.shape[0]} rows but X has {n} samples")
    if Y.ndim == 1:
        return one_hot(labels(Y, width), width, dtype)
    if Y.shape[1] != width:
        raise ValueError(f"Y has {Y.shape[1]} target columns, the network has {width} outputs")
    T = np.ascontiguousarray(Y, dtype=dtype)
    _finite("Y", T)
    if loss == "cross_entropy" and (T < 0).any():
        raise ValueError("cross_entropy targets must be >= 0 (one-hot rows or probabilities)")
    if loss == "binary_cross_entropy" and ((T < 0) | (T > 1)).any():
        raise ValueError("binary_cross_entropy targets must lie in [0, 1]")
    return T


def labels(y, n_classes):
    """Integer class labels in ``[0, n_classes)`` as int64."""
    y = _numeric("labels", y)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind == "f":
        _finite("labels", y)
        if (y != np.round(y)).any():
            raise ValueError("labels must be integers (class indices), got non-integer values")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values from {y.min()} to {y.max()}")
    return y


def one_hot(y, width, dtype):
    T = np.zeros((y.shape[0], width), dtype=dtype)
    T[np.arange(y.shape[0]), y] = 1
    return T
