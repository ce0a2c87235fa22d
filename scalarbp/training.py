"""The training loop: minibatches, an optimiser, validation, early stopping.

This is the thin Python layer of the design: per epoch it orders the samples and hands
runs of up to ``STEPS_PER_CALL`` minibatches to the backend's stepper
(:meth:`scalarbp.backends.Backend.stepper`: compiled on the scalar and cuda backends,
step by step from Python on the others and for data on disk), then validates.  Results
depend only on the data, the seed and the number of epochs already trained
(``net.epochs_trained``), never on the number of threads.
"""
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import backends, checks, metrics, optimizers


class DivergedError(FloatingPointError):
    """The loss or the gradient became NaN or inf; the net keeps the last finite weights.

    ``history`` holds the epochs completed before the divergence.
    """

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """Per-epoch record of a ``fit``.

    ``loss``: mean training loss over the epoch's minibatches (the penalised J);
    ``val_loss``/``val_score``: on the validation data, if any, ``val_score`` being
    accuracy for classifiers and R^2 for regression (``score_name``); ``seconds``: wall
    time of each epoch.  With early stopping, ``best_epoch`` is the epoch whose weights
    were restored (0-based within this fit).
    """

    score_name: str = "accuracy"
    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_score: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    @property
    def val_accuracy(self):
        return self.val_score if self.score_name == "accuracy" else []

    @property
    def epochs(self):
        return len(self.loss)


class Batches:
    """Gathers minibatches of (X, T) rows into reusable buffers of the net's dtype.

    ``X`` may be a ``numpy.memmap`` larger than memory: only the rows of one minibatch
    are read at a time, and each is checked for NaN/inf as it is read.  The net's
    standardizer, if any, is applied to each minibatch as it is gathered.
    """

    def __init__(self, net, X, y, batch_size):
        self.X, self.N = _rows(net, X)
        self.labels, self.T = _targets(net, y, self.N)
        self.xb = np.empty((batch_size, net.sizes[0]), net.dtype)
        self.tb = np.empty((batch_size, net.sizes[-1]), net.dtype)
        self.in_memory = not isinstance(self.X, np.memmap)  # (then X is validated already)
        self.standardizer = net.standardizer

    def gather(self, rows):
        n = rows.shape[0]
        xb, tb = self.xb[:n], self.tb[:n]
        if self.in_memory:
            np.take(self.X, rows, axis=0, out=xb)
        else:
            xb[...] = self.X[rows]
            if not np.isfinite(xb).all():
                bad = np.sort(rows[~np.isfinite(xb).all(axis=1)])
                raise ValueError(f"X holds NaN or inf in row(s) {bad[:5].tolist()}")
        if self.standardizer is not None:
            self.standardizer.transform(xb, out=xb)
        if self.labels is not None:
            tb[...] = 0
            tb[np.arange(n), self.labels[rows]] = 1
        else:
            np.take(self.T, rows, axis=0, out=tb)
        return xb, tb

    def whole(self):
        """The training data as compiled loops take it: ``(X, labels, Y)``, X standardised
        once and of the net's dtype; ``labels`` int64 class labels (then ``Y`` is empty) or
        empty."""
        X = self.X if self.standardizer is None else self.standardizer.transform(self.X)
        X = np.ascontiguousarray(X, dtype=self.xb.dtype)
        labels = self.labels if self.labels is not None else np.empty(0, np.int64)
        Y = self.T if self.T is not None else np.empty((0, self.tb.shape[1]), self.tb.dtype)
        return X, labels, Y


def _rows(net, X):
    """X as an array with N rows of the net's input width; a memmap stays on disk."""
    if isinstance(X, np.memmap):
        if X.ndim != 2 or X.shape[1] != net.sizes[0]:
            raise ValueError(f"X has shape {X.shape}, the network expects (N, {net.sizes[0]})")
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
        if X.shape[0] == 0:
            raise ValueError("X is an empty batch (0 samples)")
        return X, X.shape[0]
    X = checks.inputs(X, net.sizes[0], net.dtype)
    return X, X.shape[0]


def _targets(net, y, N):
    """(labels, None) for class labels of a multi-unit output, else (None, targets)."""
    y_array = np.asarray(y)
    if y_array.ndim == 1 and net.sizes[-1] > 1:
        if y_array.shape[0] != N:
            raise ValueError(f"Y has {y_array.shape[0]} rows but X has {N} samples")
        return checks.labels(y_array, net.sizes[-1]), None
    return None, checks.targets(y_array, N, net.sizes[-1], net.loss, net.dtype)


def _optimizer(net, optimizer, lr):
    """The optimiser to use: a given instance, or the net's own if it has that name."""
    if isinstance(optimizer, optimizers.Optimizer):
        net.optimizer = optimizer
    elif net.optimizer is not None and net.optimizer.name == optimizer:
        net.optimizer.lr = optimizers.make(optimizer, lr).lr
    else:
        net.optimizer = optimizers.make(optimizer, lr)
    return net.optimizer


def _split(X, y, fraction, seed):
    """A random ``fraction`` of the samples held out for validation."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {fraction}")
    N = len(X)
    n_val = max(1, int(round(fraction * N)))
    if n_val >= N:
        raise ValueError(f"validation_fraction={fraction} leaves no training samples out of {N}")
    order = np.random.default_rng([seed, 2 ** 31]).permutation(N)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    y = np.asarray(y)
    return (X[train], y[train]), (np.asarray(X[val]), y[val])


#: Minibatch steps per call into the training loop: the progress bar moves between calls.
STEPS_PER_CALL = 256


def fit(net, X, y, epochs=10, batch_size=32, lr=0.01, optimizer="sgd", shuffle=True, seed=None,
        validation_data=None, validation_fraction=0.0, early_stopping=False, patience=10,
        backend="scalar", verbose=0):
    """Train ``net`` in place; see :meth:`scalarbp.MLP.fit`."""
    engine = backends.get(backend)
    for name, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1), ("patience", patience, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if seed is None:
        seed = int(np.random.default_rng().integers(2 ** 63))
    if validation_fraction:
        if validation_data is not None:
            raise ValueError("give validation_data or validation_fraction, not both")
        (X, y), validation_data = _split(X, y, validation_fraction, seed)
    opt = _optimizer(net, optimizer, lr)
    batches = Batches(net, X, y, min(batch_size, len(X)))
    validation = None
    if validation_data is not None:
        X_val, y_val = validation_data
        X_val = net.transform(checks.inputs(X_val, net.sizes[0], net.dtype))
        validation = (X_val, checks.targets(y_val, X_val.shape[0], net.sizes[-1], net.loss, net.dtype), y_val)

    history = History(score_name="accuracy" if net.is_classifier else "r2")
    grad = np.empty_like(net.theta)
    best = (np.inf, None, None)
    progress = Progress(verbose >= 2)
    step = engine.stepper(net, batches)
    n_batches = -(-batches.N // batch_size)
    for epoch in range(epochs):
        start = time.perf_counter()
        if shuffle:
            order = np.random.default_rng([seed, net.epochs_trained]).permutation(batches.N)
        else:
            order = np.arange(batches.N)
        total = 0.0
        for b0 in range(0, n_batches, STEPS_PER_CALL):
            b1 = min(b0 + STEPS_PER_CALL, n_batches)
            rows = order[b0 * batch_size:b1 * batch_size]
            done, losses = step(rows, batch_size, grad)
            sizes = np.minimum(batch_size, rows.shape[0] - batch_size * np.arange(done))
            total += float(np.dot(losses[:done], sizes))
            if done < b1 - b0:
                J = losses[done]
                what = "the gradient holds NaN or inf" if np.isfinite(J) else f"the loss is {J}"
                raise DivergedError(
                    f"training diverged at epoch {net.epochs_trained + 1}, step {b0 + done + 1}: {what}; "
                    f"the weights are the last finite ones (before this step). Try a smaller learning "
                    f"rate (lr={opt.lr}).", history)
            progress.update(epoch, epochs, b1, n_batches)
        net.epochs_trained += 1
        history.loss.append(total / batches.N)
        if validation is not None:
            X_val, T_val, y_val = validation
            history.val_loss.append(engine.loss_and_grad(net, X_val, T_val)[0])
            history.val_score.append(metrics.score(net, engine.forward(net, X_val), y_val))
        history.seconds.append(time.perf_counter() - start)
        progress.done()
        if verbose:
            print(epoch_line(history, epoch, epochs), flush=True)

        if early_stopping:
            monitored = history.val_loss[-1] if validation is not None else history.loss[-1]
            if monitored < best[0]:
                best = (monitored, epoch, net.theta.copy())
            elif epoch - best[1] >= patience:
                history.stopped_early = True
                break
    if early_stopping and best[2] is not None:
        net.theta[...] = best[2]
        history.best_epoch = best[1]
    return history


def epoch_line(history, epoch, epochs):
    """One line per epoch: loss, validation loss and score, time."""
    line = f"epoch {epoch + 1:>3}/{epochs}  loss {history.loss[-1]:.4f}"
    if history.val_loss:
        line += f"  val_loss {history.val_loss[-1]:.4f}  val_{history.score_name} {history.val_score[-1]:.4f}"
    return line + f"  {history.seconds[-1]:.2f} s"


class Progress:
    """A one-line progress bar on stderr, redrawn at most every 0.1 s (only on a terminal)."""

    def __init__(self, enabled):
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def update(self, epoch, epochs, step, steps):
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and step < steps):
            return
        self.last = now
        filled = int(30 * step / steps)
        sys.stderr.write(f"\repoch {epoch + 1:>3}/{epochs} [{'=' * filled}{' ' * (30 - filled)}] {step}/{steps}")
        sys.stderr.flush()

    def done(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * 60 + "\r")
