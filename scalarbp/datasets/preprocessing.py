"""Standardisation and train/test splits."""
import numpy as np

#: Rows per chunk when fitting on a memmap larger than memory.
CHUNK = 65536


class Standardizer:
    """``(X - mean) / scale`` per feature, ``mean`` and ``scale`` fitted on training data.

    ``scale`` is the standard deviation, or 1 for a constant feature.  Fitting reads X in
    chunks, so a ``numpy.memmap`` larger than memory works.
    """

    def __init__(self):
        self.mean = None
        self.scale = None

    @classmethod
    def from_arrays(cls, mean, scale):
        standardizer = cls()
        standardizer.mean = np.asarray(mean, np.float64)
        standardizer.scale = np.asarray(scale, np.float64)
        if standardizer.mean.ndim != 1 or standardizer.scale.shape != standardizer.mean.shape:
            raise ValueError(f"standardizer mean and scale must be 1-D of one length, got shapes "
                             f"{standardizer.mean.shape} and {standardizer.scale.shape}")
        if not (np.isfinite(standardizer.mean).all() and np.isfinite(standardizer.scale).all()):
            raise ValueError("standardizer mean and scale must be finite")
        if (standardizer.scale < np.finfo(np.float64).tiny).any():  # 1 / 1e-320 is inf
            raise ValueError("standardizer scale must be positive and not subnormal")
        return standardizer

    def __repr__(self):
        fitted = "unfitted" if self.mean is None else f"{self.mean.shape[0]} features"
        return f"Standardizer({fitted})"

    def fit(self, X):
        """Mean and standard deviation of each column of X ``(N, d)``; returns self."""
        if np.ndim(X) != 2 or len(X) == 0:
            raise ValueError(f"Standardizer.fit needs a non-empty 2-D array, got shape {np.shape(X)}")
        shift = np.asarray(X[0], np.float64)  # shifted sums avoid cancellation for large means
        total = np.zeros_like(shift)
        squares = np.zeros_like(shift)
        for start in range(0, len(X), CHUNK):
            part = np.asarray(X[start:start + CHUNK], np.float64)
            if not np.isfinite(part).all():
                row, column = np.argwhere(~np.isfinite(part))[0]
                raise ValueError(f"X holds NaN or inf (first at index ({start + row}, {column}))")
            with np.errstate(over="ignore", invalid="ignore"):  # (an overflow is reported below)
                chunk = part - shift
                total += chunk.sum(axis=0)
                squares += (chunk * chunk).sum(axis=0)
        N = len(X)
        with np.errstate(over="ignore", invalid="ignore"):
            mean_shifted = total / N
            variance = np.maximum(squares / N - mean_shifted ** 2, 0.0)
        overflow = ~(np.isfinite(mean_shifted) & np.isfinite(variance))
        if overflow.any():  # (finite values whose squares exceed float64; read again for the message)
            column = int(np.argmax(overflow))
            largest = max(float(np.abs(np.asarray(X[start:start + CHUNK, column], np.float64)).max())
                          for start in range(0, len(X), CHUNK))
            raise ValueError(f"X's column {column} holds values too large to standardize (up to "
                             f"{largest:.3g}: their squares overflow float64); rescale it, or train "
                             f"without standardizing")
        std = np.sqrt(variance)
        self.mean = shift + mean_shifted
        self.scale = np.where(std > 1e-12 * np.maximum(1.0, np.abs(self.mean)), std, 1.0)
        return self

    def transform(self, X, out=None):
        """Standardised X (float), into ``out`` when given (may be X itself)."""
        if self.mean is None:
            raise ValueError("this Standardizer is not fitted yet; call fit(X_train) first")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"X has shape {X.shape}, the standardizer was fitted on {self.mean.shape[0]} features")
        dtype = X.dtype if X.dtype.kind == "f" else np.float64
        out = np.empty(X.shape, dtype) if out is None else out
        np.subtract(X, self.mean, out=out, casting="unsafe")
        np.divide(out, self.scale, out=out, casting="unsafe")
        return out

    def fit_transform(self, X):
        return self.fit(X).transform(X)


def train_test_split(X, y, test_fraction=0.2, seed=0):
    """A seeded split, stratified by label when ``y`` holds class labels ``(N,)``."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    N = len(y)
    if y.ndim == 1 and y.dtype.kind in "iub":
        test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:int(round(test_fraction * np.sum(y == c)))]
                               for c in np.unique(y)])
    else:
        test = rng.permutation(N)[:int(round(test_fraction * N))]
    if test.size == 0 or test.size == N:
        raise ValueError(f"test_fraction={test_fraction} of {N} samples leaves an empty part")
    is_test = np.zeros(N, bool)
    is_test[test] = True
    return (X[~is_test], y[~is_test]), (X[is_test], y[is_test])
