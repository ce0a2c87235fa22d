"""Input validation: every check runs in Python before any kernel does.

The compiled kernels do not bounds-check, so a wrong shape or an out-of-range label
would read or write memory silently.  Each function here either returns a clean,
C-contiguous array of the network's dtype or raises ``ValueError``/``TypeError`` with
a message naming the problem and what was expected.
"""
import numbers
import os

import numpy as np

from .definitions.activations import HIDDEN
from .definitions.losses import DEFAULT_LOSS, LOSSES, OUTPUTS

DTYPES = ("float32", "float64")

#: The most classes a softmax output is given from labels: more distinct labels than this
#: are a regression target or a mistake, not a 10,001-way classification.
MAX_CLASSES = 10_000


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


def memory_for(what, count, dtype):
    """Refuse ``count`` numbers of ``dtype`` that this machine's memory cannot hold: a
    ``ValueError`` naming ``what`` and the size, instead of a ``MemoryError`` later (or the
    out-of-memory killer, where the system over-commits)."""
    need = count * np.dtype(dtype).itemsize
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # (no sysconf: not checked)
        return
    if need > memory:
        raise ValueError(f"{what}: {count:,} numbers, {need / 2 ** 30:,.1f} GiB of {np.dtype(dtype).name}, more than "
                         f"this machine's memory ({memory / 2 ** 30:,.1f} GiB)")


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
        raise ValueError(f"loss {loss!r} needs output {' or '.join(allowed)}, got output {output!r}; " +
                         ("the exp output pairs with loss='poisson'" if output == "exp" else
                          "use loss='mse' for other outputs"))
    return output, loss


def integer(name, value, low, high=None):
    """``value`` as a Python int in ``[low, high]``: ints and NumPy integers, not bools,
    floats or strings (``2.7`` is refused rather than truncated)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value}")
    return value


def positive(name, value):
    """``value`` as a float, checked to be a finite number > 0 (not a bool or a string)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def non_negative(name, value):
    """``value`` as a float, checked to be a finite number >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def boolean(name, value):
    """``value`` as a bool: True or False (or NumPy's), never a string like ``'no'``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def l2(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"l2 must be a real number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"l2 must be finite and >= 0, got {value}")
    return float(value)


def real_array(name, value):
    """``value`` as an array of real numbers (bool, integer or float); complex numbers,
    strings and objects are refused rather than cast."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise TypeError(f"{name} must be a numeric array: {err}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


#: Rows checked at a time for NaN/inf: no temporary as large as the data.
CHUNK_ROWS = 4096


def finite(name, array, dtype=None):
    """Refuse NaN and inf in ``array``, and values that ``dtype`` cannot hold (1e40 would
    become inf in float32), naming the first offending index; chunk by chunk."""
    largest = np.finfo(dtype).max if dtype is not None and np.dtype(dtype).kind == "f" else np.inf
    check_range = array.dtype.kind == "f" and np.finfo(array.dtype).max > largest
    array = array.reshape(1) if array.ndim == 0 else array
    for start in range(0, max(len(array), 1), CHUNK_ROWS):
        part = array[start:start + CHUNK_ROWS]
        bad = ~np.isfinite(part) if part.dtype.kind == "f" else np.zeros(part.shape, bool)
        if check_range:
            with np.errstate(invalid="ignore"):
                big = np.abs(part) > largest
            if big.any() and not bad.any():
                at = np.argwhere(big)[0]
                at[0] += start
                raise ValueError(f"{name} holds a value too large for {np.dtype(dtype).name} "
                                 f"({float(array[tuple(at)]):g} at index {tuple(int(i) for i in at)}; "
                                 f"the largest is {largest:.3g})")
        if bad.any():
            at = np.argwhere(bad)[0]
            at[0] += start
            raise ValueError(f"{name} holds NaN or inf (first at index {tuple(int(i) for i in at)})")


def is_sparse(X):
    """Whether X is a SciPy sparse matrix or array (told apart without importing SciPy)."""
    return type(X).__module__.startswith("scipy.sparse")


def dense(X):
    """X as a NumPy array: a SciPy sparse matrix's rows made dense, anything else as
    ``np.asarray`` gives it (a memmap's slice is read)."""
    return X.toarray() if is_sparse(X) else np.asarray(X)


def sparse_inputs(X, width, dtype):
    """A SciPy sparse X as CSR rows of ``dtype`` (rows are then taken cheaply), checked as
    :func:`inputs` checks a dense one; its stored values are what may be NaN or inf."""
    _input_shape(X, width)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    X = X.tocsr().astype(dtype, copy=False)
    finite("X", X.data, dtype)
    return X


def inputs(X, width, dtype):
    """X as a C-contiguous ``(N, width)`` array of ``dtype`` with N >= 1 and finite values."""
    X = real_array("X", X)
    _input_shape(X, width)
    finite("X", X, dtype)
    return np.ascontiguousarray(X, dtype=dtype)


def _input_shape(X, width):
    """Refuse an X that is not ``(N, width)`` with N >= 1."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("X is an empty batch (0 samples)")
    if X.shape[1] != width:
        raise ValueError(f"X has {X.shape[1]} features per sample, the network expects {width}")


def targets(Y, n, width, loss, dtype):
    """Targets as an ``(n, width)`` array of ``dtype``.

    ``Y`` is either class labels ``(n,)`` (integers in ``[0, width)``, turned into one-hot
    rows) or a target array ``(n, width)``.  A 1-D array for a one-unit output is taken as
    that unit's targets.
    """
    Y = real_array("Y", Y)
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
    finite("Y", Y, dtype)
    T = np.ascontiguousarray(Y, dtype=dtype)
    if loss == "cross_entropy" and (T < 0).any():
        raise ValueError("cross_entropy targets must be >= 0 (one-hot rows or probabilities)")
    if loss == "binary_cross_entropy" and ((T < 0) | (T > 1)).any():
        raise ValueError("binary_cross_entropy targets must lie in [0, 1]")
    if loss == "poisson" and (T < 0).any():
        raise ValueError("poisson targets must be >= 0 (counts or rates)")
    return T


def labels(y, n_classes):
    """Integer class labels in ``[0, n_classes)`` as int64."""
    y = real_array("labels", y)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind == "f":
        finite("labels", y)
        if (y != np.round(y)).any():
            raise ValueError("labels must be integers (class indices), got non-integer values")
    if y.size and (y.min() < 0 or y.max() >= n_classes):  # before the cast: 1e20 would wrap
        raise ValueError(f"labels must lie in [0, {n_classes}), got values from {y.min():g} to {y.max():g}")
    return y.astype(np.int64)


def sample_weights(value, n):
    """One weight per sample, each finite and >= 0, with a positive sum."""
    weights = real_array("sample_weight", value)
    if weights.shape != (n,):
        raise ValueError(f"sample_weight must hold one weight per sample ({n}), got shape {weights.shape}")
    finite("sample_weight", weights)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("sample_weight must be >= 0 with a positive sum")
    return weights


def weights_in(weights, dtype):
    """Sample weights (>= 0, a positive sum) in ``dtype``, first scaled by the power of two
    that puts the largest in [0.5, 1).  Only their ratios count (the mean is
    ``sum w_n Loss_n / sum w_n``) and the scaling is exact, so results do not change, and
    weights beyond ``dtype``'s range (1e39 or 1e-50 for float32) keep their ratios instead
    of becoming inf or 0."""
    weights = np.asarray(weights, np.float64)
    _, exponent = np.frexp(weights.max())
    return np.ldexp(weights, -exponent).astype(dtype)


def encode(labels):
    """``(classes, indices)``: the distinct labels that occur (integers or names), sorted,
    and each label's index among them (as scikit-learn encodes labels); absurd class
    counts are refused."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "biuU":
        raise ValueError(f"class labels must be 1-D integers or names, got shape {labels.shape} "
                         f"and dtype {labels.dtype}")
    found, indices = np.unique(labels, return_inverse=True)
    if found.shape[0] > MAX_CLASSES:
        raise ValueError(f"{found.shape[0]} distinct labels: more than {MAX_CLASSES} classes for a softmax; "
                         f"for a numeric target use regression (an identity output)")
    return classes(found, found.shape[0]), indices.reshape(-1)


#: The longest class name kept, in characters.
MAX_NAME = 256


def classes(value, width):
    """The labels of ``width`` classes: distinct, sorted integers (int64) or names (str)."""
    array = np.asarray(value)
    if array.shape != (width,):
        raise ValueError(f"classes must list one label per output unit ({width}), got shape {array.shape}")
    if array.dtype.kind == "U":
        if array.dtype.itemsize > 4 * MAX_NAME:
            raise ValueError(f"class names must be at most {MAX_NAME} characters")
    else:
        array = real_array("classes", array)
        if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()
                                            and np.abs(array).max(initial=0) < 2 ** 63):
            raise ValueError("classes must be integer labels or names")
        array = array.astype(np.int64)
    if (array[1:] <= array[:-1]).any():
        raise ValueError("classes must be distinct and sorted")
    return array


def one_hot(y, width, dtype):
    T = np.zeros((y.shape[0], width), dtype=dtype)
    T[np.arange(y.shape[0]), y] = 1
    return T
