"""Scores of predictions: accuracy for classifiers, R^2 for regression."""
import numpy as np


def predictions(net, F):
    """Predictions from the outputs ``F`` ``(N, K)``: class labels, 0/1 labels or values.

    softmax: ``argmax`` labels ``(N,)``; sigmoid with binary cross-entropy: 0/1 labels
    (``(N,)`` for one output, ``(N, K)`` for several); regression: ``F`` (``(N,)`` for one
    output).
    """
    if net.output == "softmax":
        return F.argmax(axis=1)
    if net.loss == "binary_cross_entropy":
        labels = (F > 0.5).astype(np.int64)
        return labels[:, 0] if F.shape[1] == 1 else labels
    return F[:, 0] if F.shape[1] == 1 else F


def accuracy(net, F, y):
    """Fraction of samples predicted exactly right (all labels of a row, for multi-label)."""
    y = np.asarray(y)
    if net.output == "softmax" and y.ndim == 2:
        y = y.argmax(axis=1)
    pred = predictions(net, F)
    y = y.reshape(pred.shape)
    hits = pred == y if pred.ndim == 1 else (pred == y).all(axis=1)
    return float(hits.mean())


def r2(F, y):
    """Coefficient of determination, averaged over the outputs (1 is perfect)."""
    y = np.asarray(y, np.float64).reshape(F.shape[0], -1)
    residual = ((y - F) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_output = np.where(total > 0, 1 - residual / total, np.where(residual == 0, 1.0, 0.0))
    return float(per_output.mean())


def score(net, F, y):
    return accuracy(net, F, y) if net.is_classifier else r2(F, y)
