"""Seeded synthetic classification data, for tests, examples and scaling runs."""
import numpy as np


def make_spirals(n_samples=300, n_classes=3, noise=0.1, turns=1.0, seed=None):
    """``n_classes`` interleaved 2-D spiral arms: ``X (n_samples, 2)``, ``y (n_samples,)``.

    Not linearly separable; a small MLP separates them.  Samples are spread as evenly as
    possible over the classes.
    """
    if n_samples < 1 or n_classes < 1:
        raise ValueError(f"need n_samples >= 1 and n_classes >= 1, got {n_samples}, {n_classes}")
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    r = rng.uniform(0.05, 1.0, n_samples)
    angle = 2 * np.pi * (turns * r + y / n_classes) + rng.normal(0, noise, n_samples)
    X = np.column_stack([r * np.cos(angle), r * np.sin(angle)])
    return X, y


def make_blobs(n_samples=300, n_features=2, centers=3, spread=1.0, seed=None):
    """Gaussian clusters around random centres in ``[-10, 10]^n_features``."""
    if n_samples < 1 or n_features < 1 or centers < 1:
        raise ValueError("n_samples, n_features and centers must all be >= 1")
    rng = np.random.default_rng(seed)
    middle = rng.uniform(-10, 10, (centers, n_features))
    y = np.arange(n_samples) % centers
    X = middle[y] + rng.normal(0, spread, (n_samples, n_features))
    return X, y
