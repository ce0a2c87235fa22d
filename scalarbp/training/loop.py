"""The training loop: minibatches, an optimiser, validation, early stopping.

This is the thin Python layer of the design: per epoch it orders the samples and hands
runs of minibatches (sized to take about :data:`SECONDS_PER_CALL`) to the backend's
stepper (:meth:`scalarbp.backends.Backend.stepper`: compiled on the scalar and cuda
backends, step by step from Python on the others and for data on disk), then validates.
Results depend only on the data, the seed and the counters ``net.epochs_trained`` and
``net.epoch_steps``, never on the number of threads or on how the steps were grouped.

Nothing is lost: the counters always describe the weights; Ctrl-C stops at the end of
the current run of steps and raises :class:`TrainingInterrupted` (the next ``fit``
finishes the interrupted epoch, in the same order); a step whose loss, gradient or
update is not finite raises :class:`DivergedError` with the weights of the last good
step.
"""
import signal
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .. import backends, checks, fileio, metrics, plans, privacy
from ..errors import DivergedError, TrainingInterrupted  # noqa: F401  (scalarbp.training's names, as before)
from ..privacy import keyfile
from ..privacy.stepper import stepper as dp_stepper
from ..backends import BAD_UPDATE
from . import distributed, lbfgs, optimizers, schedules
from .options import DEFAULT_OPTIMIZER, FitOptions, signature as options_signature


class Snapshot:
    """The weights and everything that describes them (optimiser state and step count,
    epoch counters): what a rollback restores."""

    def __init__(self, net):
        opt = net.optimizer
        self.theta = net.theta.copy()
        self.state = {} if opt is None else {key: value.copy() for key, value in opt.state.items()}
        self.t = None if opt is None else opt.t
        self.epochs_trained, self.epoch_steps = net.epochs_trained, net.epoch_steps

    def restore(self, net):
        net.theta[...] = self.theta
        if net.optimizer is not None:
            for key, value in net.optimizer.state.items():  # (state made after the snapshot was zero)
                value[...] = self.state[key] if key in self.state else 0
            net.optimizer.t = self.t
        net.epochs_trained, net.epoch_steps = self.epochs_trained, self.epoch_steps


@dataclass
class History:
    """Per-epoch record of a ``fit``.

    ``loss``: mean training loss over the epoch's minibatches (the penalised J);
    ``val_loss``/``val_score``: on the validation data, if any, ``val_score`` being
    accuracy for classifiers and R^2 for regression (``score_name``); ``lr``: the
    learning rate at the epoch's end; ``seconds``: wall time of each epoch.  With early
    stopping, ``best_epoch`` is the epoch whose weights were restored (0-based within
    this fit); ``stopped_by`` says what ended training early, if anything; ``rank`` is the
    MPI rank of the process (0 without ``comm``).  With ``optimizer="lbfgs"`` an "epoch"
    is an iteration of L-BFGS: ``converged`` says whether it met its tolerance,
    ``function_calls`` how many passes over the data it took, ``stopped_by`` SciPy's message.

    Under DP-SGD (``private``), ``loss`` holds NaN: the training loss is a function of
    the data that the privacy guarantee does not cover, so it is withheld; ``epsilon``
    is the net's privacy ledger's after each epoch; ``outside_epsilon`` names every
    other release of the run that epsilon does not cover (validation metrics and the
    decisions taken on them, wall times).

    ``print(history)`` shows a short table; :meth:`to_csv` and :meth:`plot` export it.
    """

    score_name: str = "accuracy"
    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_score: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    epsilon: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    stopped_by: str | None = None
    rank: int = 0
    private: bool = False
    outside_epsilon: list = field(default_factory=list)
    converged: bool | None = None
    function_calls: int | None = None

    @property
    def val_accuracy(self):
        return self.val_score if self.score_name == "accuracy" else []

    @property
    def epochs(self):
        return len(self.loss)

    def columns(self):
        """``{name: values}`` of every per-epoch record that holds values."""
        columns = {"epoch": list(range(1, self.epochs + 1)), "loss": self.loss, "val_loss": self.val_loss,
                   f"val_{self.score_name}": self.val_score, "lr": self.lr, "epsilon": self.epsilon,
                   "seconds": self.seconds}
        return {name: values for name, values in columns.items()
                if len(values) == self.epochs and not (name == "loss" and self.private)}

    def __str__(self):
        columns = self.columns()
        shown = list(range(self.epochs)) if self.epochs <= 10 else [*range(5), None, *range(self.epochs - 4,
                                                                                              self.epochs)]
        lines = ["  ".join(f"{name:>12}" for name in columns)]
        for e in shown:
            lines.append("  ".join(f"{'...':>12}" if e is None else f"{values[e]:>12.6g}"
                                   for values in columns.values()))
        if self.best_epoch is not None:
            lines.append(f"best epoch {self.best_epoch + 1} (weights restored)")
        if self.stopped_by:
            lines.append(f"stopped by {self.stopped_by}")
        if self.private:
            lines.append("training loss withheld (DP-SGD)")
        if self.outside_epsilon:
            lines.append(f"not covered by epsilon: {'; '.join(self.outside_epsilon)}")
        return "\n".join(lines)

    def to_csv(self, path):
        """Write one row per epoch (header: the column names) to ``path``, atomically."""
        columns = self.columns()
        rows = np.column_stack([np.asarray(values, np.float64) for values in columns.values()]) if columns else \
            np.empty((0, 0))
        fileio.write_atomically(path, lambda file: np.savetxt(file, rows, delimiter=",", fmt="%.10g",
                                                                   header=",".join(columns), comments=""))

    def plot(self, path=None):
        """Loss (and validation loss and score) per epoch with matplotlib; saved to
        ``path`` if given; returns the figure."""
        try:
            import matplotlib
            if path is not None:
                matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install 'scalarbp[plot]'") from None
        epochs = np.arange(1, self.epochs + 1)
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.plot(epochs, self.loss, label="train")
        if self.val_loss:
            left.plot(epochs, self.val_loss, label="validation")
            right.plot(epochs, self.val_score, color="C1")
        left.set(xlabel="epoch", ylabel="loss J", yscale="log", title="loss")
        left.legend()
        right.set(xlabel="epoch", ylabel=self.score_name, title=f"validation {self.score_name}")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
            plt.close(fig)
        return fig


class Callback:
    """Called by ``fit`` after every epoch (its history updated, the weights those of the
    epoch's end): return True from :meth:`on_epoch_end` to stop training there."""

    def on_epoch_end(self, epoch, history, net):
        return False


class Checkpoint(Callback):
    """Saves the net to ``path`` (atomically: :meth:`scalarbp.MLP.save`) after every
    ``every``-th epoch; over MPI, rank 0 alone writes.  ``verbose`` says so on stdout."""

    def __init__(self, path, every=1, verbose=False):
        self.path, self.every, self.verbose = path, checks.integer("every", every, 1), verbose
        fileio.check_writable(path)  # (now, not after the first epoch: an OSError naming the problem)

    def on_epoch_end(self, epoch, history, net):
        if (epoch + 1) % self.every == 0 and history.rank == 0:
            net.save(self.path)
            if self.verbose:
                print(f"checkpoint: epoch {net.epochs_trained} saved to {self.path}", flush=True)
        return False


class Batches:
    """Gathers minibatches of (X, T) rows into reusable buffers of the net's dtype.

    ``X`` may be a ``numpy.memmap`` larger than memory: only the rows of one minibatch
    are read at a time, and each is checked for NaN/inf as it is read.  ``subset`` (sorted
    sample indices, or None for all) names the training samples, so a validation split
    needs no copy of X.  The net's standardizer, if any, is applied to each minibatch as
    it is gathered.
    """

    def __init__(self, net, X, y, batch_size, subset=None, weights=None):
        self.batch_size = batch_size
        self.X, N = _rows(net, X)
        self.labels, self.T = _targets(net, y, N)
        self.weights = None if weights is None else checks.weights_in(weights, net.dtype)  # one per sample, or None
        self.wb = None if weights is None else np.empty(batch_size, net.dtype)
        self.subset = np.arange(N) if subset is None else subset
        self.N = self.subset.shape[0]
        self.xb = np.empty((batch_size, net.sizes[0]), net.dtype)
        self.tb = np.empty((batch_size, net.sizes[-1]), net.dtype)
        self.sparse = checks.is_sparse(self.X)  # (validated already: its rows are made dense as gathered)
        self.in_memory = not self.sparse and not isinstance(self.X, np.memmap)  # (then X is validated already)
        self.standardizer = net.standardizer

    def order(self, shuffle, seed, epoch):
        """The sample indices of an epoch, in the order its minibatches take them: a new
        permutation per epoch (picked by the seed and the epoch number) or the data's own."""
        if not shuffle:
            return self.subset
        return self.subset[np.random.default_rng([seed, epoch]).permutation(self.N)]

    def gather(self, rows):
        n = rows.shape[0]
        if n > self.xb.shape[0]:  # (a Poisson-sampled batch can be larger than batch_size)
            self.xb, self.tb = np.empty((2 * n, self.xb.shape[1]), self.xb.dtype), np.empty((2 * n, self.tb.shape[1]),
                                                                                          self.tb.dtype)
            self.wb = None if self.wb is None else np.empty(2 * n, self.wb.dtype)
        xb, tb = self.xb[:n], self.tb[:n]
        if self.in_memory:
            np.take(self.X, rows, axis=0, out=xb)
        elif self.sparse:
            xb[...] = self.X[rows].toarray()
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
        if self.weights is None:
            return xb, tb, None
        wb = self.wb[:n]
        np.take(self.weights, rows, out=wb)
        return xb, tb, wb

    def whole(self):
        """The data as compiled loops take it: ``(X, labels, Y, weights)``, X standardised
        once and of the net's dtype; ``labels`` int64 class labels (then ``Y`` is empty) or
        empty; ``weights`` one per sample, or empty."""
        X = self.X if self.standardizer is None else self.standardizer.transform(self.X)
        X = np.ascontiguousarray(X, dtype=self.xb.dtype)
        labels = self.labels if self.labels is not None else np.empty(0, np.int64)
        Y = self.T if self.T is not None else np.empty((0, self.tb.shape[1]), self.tb.dtype)
        weights = self.weights if self.weights is not None else np.empty(0, self.xb.dtype)
        return X, labels, Y, weights


def _count(X):
    """The number of samples in X (a sparse matrix has no len)."""
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _rows(net, X):
    """X as an array with N rows of the net's input width; a memmap stays on disk, a SciPy
    sparse matrix stays sparse (CSR: minibatches are made dense as they are gathered)."""
    if checks.is_sparse(X):
        X = checks.sparse_inputs(X, net.sizes[0], net.dtype)
        return X, X.shape[0]
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
    y_array = checks.real_array("Y", y)
    if y_array.ndim == 1 and net.sizes[-1] > 1:
        if y_array.shape[0] != N:
            raise ValueError(f"Y has {y_array.shape[0]} rows but X has {N} samples")
        return checks.labels(y_array, net.sizes[-1]), None
    return None, checks.targets(y_array, N, net.sizes[-1], net.loss, net.dtype)


def _optimizer(net, optimizer, lr):
    """The optimiser to use, continuing what the net has unless told otherwise: a given
    instance; the net's own when ``optimizer`` is None or its name (its kind, state and,
    unless ``lr`` is given, its rate); else a new one by name (``lr=None``: its default)."""
    if isinstance(optimizer, optimizers.Optimizer):
        net.optimizer = optimizer
    elif net.optimizer is not None and optimizer in (None, net.optimizer.name):
        pass
    else:
        net.optimizer = optimizers.make(DEFAULT_OPTIMIZER if optimizer is None else optimizer, lr)
        return net.optimizer
    if lr is not None:
        net.optimizer.lr = optimizers.make(net.optimizer.name, lr).lr  # (checked as a new one would be)
    return net.optimizer


def _split(N, fraction, seed):
    """Sorted indices of the training and validation samples: a random ``fraction`` held out."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)) \
            or not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {fraction!r}")
    n_val = max(1, int(round(fraction * N)))
    if n_val >= N:
        raise ValueError(f"validation_fraction={fraction} leaves no training samples out of {N}")
    order = np.random.default_rng([seed, 2 ** 31]).permutation(N)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


#: Wall time aimed at per call into the backend's stepper: Ctrl-C and the progress bar
#: wait at most about this long.
SECONDS_PER_CALL = 0.2

#: The most minibatch steps per call.
STEPS_PER_CALL = 256


class CallSizes:
    """How many steps the next call runs: one at first, then as many as fit in
    :data:`SECONDS_PER_CALL` at the measured pace (at most 4 times more per call).  Over
    MPI (a :class:`scalarbp.distributed.Session`), rank 0's choice, so that every rank
    checks for Ctrl-C after the same steps."""

    def __init__(self, session=None):
        self.steps, self.session = 1, session

    def measured(self, steps, seconds):
        pace = seconds / max(steps, 1)
        fit = SECONDS_PER_CALL / pace if pace > 0 else STEPS_PER_CALL
        self.steps = int(min(max(fit, 1), 4 * self.steps, STEPS_PER_CALL))
        if self.session is not None:
            self.steps = self.session.comm.bcast(self.steps, root=0)


class Interrupts:
    """While active, Ctrl-C (SIGINT) and SIGTERM set :attr:`requested` (to the signal's
    number) instead of raising or killing at an arbitrary point; the loop checks it between
    calls.  (Only in the main thread, where Python delivers signals.)"""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = 0
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.requested = signum

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


@options_signature
def fit(net, X, y, *args, **kwargs):
    """Train ``net`` in place; see :meth:`scalarbp.MLP.fit` (the options: :class:`~.options.FitOptions`)."""
    options = FitOptions(*args, **kwargs)
    if options.comm is None:
        if options.micro_shards is not None:
            raise ValueError("micro_shards needs comm (data-parallel training over MPI)")
        return _checked_fit(net, X, y, options, None)
    with distributed.Session(options.comm) as session:
        if options.dp_clip is not None or options.dp_insecure_seed is not None or options.dp_key_file is not None:
            raise ValueError("DP-SGD (dp_clip) does not run over MPI (comm)")
        micro_shards = distributed.MICRO_SHARDS if options.micro_shards is None else options.micro_shards
        return _checked_fit(net, X, y, options, (session, micro_shards))


def _checked_fit(net, X, y, options, parallel):
    engine = backends.get(options.backend)
    epochs = checks.integer("epochs", options.epochs, 0)
    if options.optimizer == "lbfgs" or isinstance(options.optimizer, lbfgs.LBFGS):
        return _checked_lbfgs(net, engine, X, y, replace(options, epochs=epochs), parallel)
    o = options
    options = replace(o, epochs=epochs, batch_size=checks.integer("batch_size", o.batch_size, 1),
                      patience=checks.integer("patience", o.patience, 1),
                      verbose=checks.integer("verbose", o.verbose, 0), shuffle=checks.boolean("shuffle", o.shuffle),
                      early_stopping=checks.boolean("early_stopping", o.early_stopping),
                      seed=_seed(net, o.seed, parallel), callbacks=list(o.callbacks))
    for callback in options.callbacks:
        if not callable(getattr(callback, "on_epoch_end", None)):
            raise TypeError(f"callbacks must have an on_epoch_end(epoch, history, net) method, got {callback!r}")
    options = replace(options, warmup_steps=checks.integer("warmup_steps", o.warmup_steps, 0),
                      clip_norm=0.0 if o.clip_norm is None else checks.positive("clip_norm", o.clip_norm),
                      schedule=schedules.make(o.schedule, epochs, net.epochs_trained))
    options, private = _checked_privacy(net, options)
    if parallel is not None and parallel[0].comm.Get_rank():
        options = replace(options, verbose=0)  # (rank 0 reports)
    with net.in_use():
        return _Run(net, engine, X, y, options, private, parallel).run()


def _seed(net, seed, parallel):
    """The seed given, checked; else a random one, or over MPI one that every rank holding
    the same weights picks alike (which the ranks check)."""
    if seed is not None:
        return checks.integer("seed", seed, 0)
    if parallel is None:
        return int(np.random.default_rng().integers(2 ** 63))
    return int(plans.digest(net.theta), 16) >> 1


def _checked_lbfgs(net, engine, X, y, o, parallel):
    """``fit`` with ``optimizer="lbfgs"``, which refuses what a full-batch solver cannot do."""
    given = dict(validation_data=o.validation_data, validation_fraction=o.validation_fraction or None,
                 early_stopping=o.early_stopping or None, schedule=o.schedule, warmup_steps=o.warmup_steps or None,
                 clip_norm=o.clip_norm, dp_clip=o.dp_clip, dp_noise=o.dp_noise, dp_delta=o.dp_delta,
                 target_epsilon=o.target_epsilon, dp_insecure_seed=o.dp_insecure_seed, dp_key_file=o.dp_key_file,
                 comm=parallel, callbacks=list(o.callbacks) or None, lr=o.lr)
    refused = [name for name, value in given.items() if value is not None]
    if refused:
        raise ValueError(f"optimizer='lbfgs' is a full-batch solver: it takes no {', '.join(refused)} "
                         f"(its steps are not private, and it has no epochs to validate between)")
    solver = lbfgs.LBFGS() if o.optimizer == "lbfgs" else o.optimizer
    with net.in_use():
        return _fit_lbfgs(net, engine, X, y, o.epochs, solver, (o.sample_weight, o.class_weight),
                          checks.integer("verbose", o.verbose, 0))


def _checked_privacy(net, o):
    """``(options, private)``: DP-SGD's options checked, and its :class:`~.privacy.Privacy` or None."""
    if o.dp_clip is None:
        if any(option is not None for option in (o.dp_noise, o.dp_delta, o.target_epsilon, o.dp_insecure_seed,
                                                 o.dp_key_file)):
            raise ValueError("dp_noise, dp_delta, target_epsilon, dp_insecure_seed and dp_key_file need dp_clip "
                             "(DP-SGD)")
        return o, None
    if o.clip_norm or o.sample_weight is not None or o.class_weight is not None:
        raise ValueError("DP-SGD clips each sample's gradient itself: drop clip_norm, sample_weight and "
                         "class_weight")
    if o.dp_noise is None and (o.target_epsilon is None or o.dp_delta is None):
        raise ValueError("give dp_noise, or target_epsilon and dp_delta to choose it")
    if o.target_epsilon is not None:
        o = replace(o, target_epsilon=checks.positive("target_epsilon", o.target_epsilon))
        if o.dp_delta is None:
            raise ValueError("target_epsilon needs dp_delta (epsilon is spent at a delta)")
    private = privacy.Privacy(o.dp_clip, o.dp_noise, o.dp_delta, o.dp_sampling, o.dp_insecure_seed, net.dtype,
                              o.dp_key_file)
    if o.target_epsilon is not None and private.kind != "poisson":
        raise ValueError(f"target_epsilon needs Poisson sampling from a secret key: {private.kind} steps are "
                         f"not covered by epsilon")
    if o.validation_data is None and not o.validation_fraction:
        for name, used in (("early stopping", o.early_stopping),
                           ("reduce_on_plateau", isinstance(o.schedule, schedules.ReduceOnPlateau))):
            if used:
                raise ValueError(f"{name} on the training loss is a decision on the private data that epsilon "
                                 f"does not cover: give validation data (named as outside epsilon), or drop it")
    return o, private


def sample_weights(net, y, sample_weight, class_weight):
    """One weight per sample (or None): ``sample_weight`` times the weight of the sample's
    class; ``class_weight`` a ``{label: weight}`` mapping or ``"balanced"``, scikit-learn's
    ``N / (K * count(label))``."""
    if sample_weight is None and class_weight is None:
        return None
    y = np.asarray(y)
    N = y.shape[0]
    weights = np.ones(N)
    if sample_weight is not None:
        weights = weights * checks.sample_weights(sample_weight, N)
    if class_weight is not None:
        if not (net.is_classifier and net.output == "softmax" and y.ndim == 1):
            raise ValueError("class_weight needs class labels and a softmax output")
        labels = checks.labels(y, net.sizes[-1])
        if isinstance(class_weight, str):
            checks.choice("class_weight", class_weight, ("balanced",))
            counts = np.bincount(labels, minlength=net.sizes[-1])
            present = counts > 0
            per_class = np.zeros(net.sizes[-1])
            per_class[present] = N / (present.sum() * counts[present])
        else:
            per_class = np.ones(net.sizes[-1])
            for label, weight in dict(class_weight).items():
                per_class[checks.integer("class_weight label", label, 0, net.sizes[-1] - 1)] = \
                    checks.positive(f"class_weight[{label}]", weight)
        weights = weights * per_class[labels]
    return weights


def _data(net, X, y, batch_size, validation_data, validation_fraction, seed, weighting):
    """``(batches, validation, n_batches)``: the training rows (a validation split held out
    of them), the validation set ``(X_val, T_val, y_val)`` or None, checked against the
    net, and the steps of an epoch."""
    subset = None
    if checks.is_sparse(X):  # (CSR before any rows are taken: a COO matrix has no rows; Batches checks it)
        X = X.tocsr()
    if validation_fraction:
        if validation_data is not None:
            raise ValueError("give validation_data or validation_fraction, not both")
        subset, held_out = _split(_count(X), validation_fraction, seed)
        validation_data = (checks.dense(X[held_out]), np.asarray(y)[held_out])
    batch_size = min(batch_size, _count(X) if subset is None else len(subset))
    batches = Batches(net, X, y, batch_size, subset, sample_weights(net, y, *weighting))
    validation = None
    if validation_data is not None:
        X_val, y_val = validation_data
        X_val = net.transform(checks.inputs(checks.dense(X_val), net.sizes[0], net.dtype))
        validation = (X_val, checks.targets(y_val, X_val.shape[0], net.sizes[-1], net.loss, net.dtype), y_val)
    n_batches = -(-batches.N // batch_size)
    if net.epoch_steps >= n_batches:
        raise ValueError(f"the net stopped {net.epoch_steps} steps into an epoch, but this data and batch size "
                         f"make epochs of {n_batches} steps; give the same data and batch_size to finish it, "
                         f"or set net.epoch_steps = 0 to start a new epoch")
    return batches, validation, n_batches


def _private_run(net, private, target_epsilon, q, steps, schedule, plan):
    """A DP-SGD fit's key (resumed from its key file when the run's state and ``plan()`` are
    the file's) and noise (chosen for ``target_epsilon`` over its ``steps`` when not
    given); returns the key file's :class:`~.privacy.keyfile.Keeper` or None."""
    keeper = resumed = None
    if private.key_file is not None:  # (every row of X in the plan: even one record changed is another run)
        keeper = keyfile.Keeper(private.key_file, dict(plan(), dp=(private.clip, private.sampling, q)), schedule)
        resumed = keeper.resume(net)
    if private.noise is None:  # the noise that spends target_epsilon over this fit, after the net's past
        if resumed is not None and net.privacy_ledger.epsilon(
                private.delta, extra=[(q, resumed[1], steps)]) <= target_epsilon:
            private.noise = resumed[1]  # (the resumed run's own, which still spends no more than the target)
        else:
            private.noise = privacy.noise_for(target_epsilon, q, steps, private.delta, net.privacy_ledger)
        private.check_noise()
    elif target_epsilon is not None:
        net.privacy_ledger.check_target(target_epsilon, private.delta)
    if keeper is not None:
        keeper.begin(net, private, resumed)
    return keeper


class _Run:
    """One minibatch fit: its setup (:meth:`__init__`), its epochs (:meth:`run`), the steps
    of one epoch (:meth:`steps`) and what an epoch's end decides (:meth:`epoch_end`)."""

    def __init__(self, net, engine, X, y, options, private, parallel):
        o = self.options = options
        self.net, self.engine, self.private = net, engine, private
        self.batches, self.validation, self.n_batches = _data(net, X, y, o.batch_size, o.validation_data,
                                                              o.validation_fraction, o.seed,
                                                              (o.sample_weight, o.class_weight))
        self.batch_size = batch_size = self.batches.batch_size
        self.opt = _optimizer(net, o.optimizer, o.lr)
        self.history = History(score_name="accuracy" if net.is_classifier else "r2", private=private is not None)
        self.grad = np.empty_like(net.theta)
        self.best = (np.inf, None, None)
        self.progress = Progress(o.verbose >= 2, o.epochs,
                                 self.n_batches - net.epoch_steps + (o.epochs - 1) * self.n_batches)
        self.q = batch_size / self.batches.N
        self.keeper = None
        if private is not None:
            self.keeper = _private_run(net, private, o.target_epsilon, self.q,
                                       o.epochs * self.n_batches - net.epoch_steps, o.schedule,
                                       lambda: self.plan(plans.digest(self.batches.X)))
            self.history.outside_epsilon = _outside_epsilon(self.validation is not None, o.validation_fraction,
                                                            o.early_stopping, o.schedule)
        step, self.order_of, self.session = _stepper(
            net, engine, self.batches, private, self.q, parallel, self.history,
            lambda L: dict(self.plan(plans.rows_digest(self.batches.X)), micro_shards=L, epochs=o.epochs,
                           weights=plans.state(net)))
        self.sizes = CallSizes(self.session)
        self.step = _recorded(net, step, private, self.q)
        self.sample_counts = np.minimum(batch_size, self.batches.N - batch_size * np.arange(self.n_batches))

    def plan(self, data):
        """What this fit does (:func:`scalarbp.plans.plan`), ``data`` the digest of X."""
        o = self.options
        return plans.plan(self.net, self.engine, self.batches, self.batch_size, o.seed, o.shuffle, self.opt,
                          self.validation, o.early_stopping, o.patience, o.clip_norm, o.warmup_steps, o.schedule,
                          data)

    def hypers_for(self, first, count):
        """The hyper-parameters of steps ``first .. first + count - 1`` of the current epoch,
        one row each, the scheduled learning rate first."""
        o, opt = self.options, self.opt
        hypers = np.tile(opt.hyper_array(), (count, 1))
        hypers[:, 0] = schedules.rates(o.schedule, opt.lr, o.warmup_steps, self.net.epochs_trained, first, count,
                                       self.n_batches)
        return hypers

    def stop_requested(self):
        """Ctrl-C or SIGTERM, on any rank."""
        requested = self.interrupts.requested
        return requested if self.session is None else self.session.any(bool(requested))

    def interrupted(self):
        """The exception that stops the fit where it stands (the key file, if any, told first)."""
        self.progress.close()
        if self.keeper is not None:
            self.keeper.mark(self.net)
        return _interrupted(self.net, self.n_batches, self.history, self.interrupts.requested)

    def run(self):
        """Every epoch of the fit; returns its :class:`History`."""
        net, o, history = self.net, self.options, self.history
        with Interrupts() as self.interrupts:
            for epoch in range(o.epochs):
                if o.target_epsilon is not None and net.privacy_ledger.epsilon(
                        self.private.delta,
                        extra=[(self.q, self.private.noise, self.n_batches - net.epoch_steps)]) > o.target_epsilon:
                    history.stopped_by = f"target_epsilon {o.target_epsilon}"  # (this epoch would pass it)
                    break
                start = time.perf_counter()
                first = net.epoch_steps
                losses, lr = self.steps(epoch)
                net.epochs_trained += 1
                net.epoch_steps = 0
                _record(history, net, self.engine, self.validation, self.private, losses[first:],
                        self.sample_counts[first:], lr, start)
                if o.verbose:
                    self.progress.write(epoch_line(history, epoch, o.epochs))
                if self.epoch_end(epoch):
                    break
                if epoch + 1 < o.epochs and self.stop_requested():  # (during validation)
                    raise self.interrupted()
            if self.stop_requested():  # (in the last run of steps: not lost, but the work is complete)
                raise self.interrupted()
        self.progress.close()
        if o.early_stopping and self.best[2] is not None:
            _restore_best(net, history, self.best, o.verbose, self.validation is not None)
        if self.keeper is not None:
            self.keeper.finish()
        return history

    def steps(self, epoch):
        """The rest of the current epoch's steps, in runs of :class:`CallSizes`; returns the
        losses of its steps and the rate of the last."""
        net, opt, n_batches, batch_size = self.net, self.opt, self.n_batches, self.batch_size
        clip = self.options.clip_norm
        order = self.order_of(self.options.shuffle, self.options.seed, net.epochs_trained)
        snapshot = Snapshot(net)
        losses = np.zeros(n_batches)
        b = net.epoch_steps
        while b < n_batches:
            b1 = min(b + self.sizes.steps, n_batches)
            hypers = self.hypers_for(b, b1 - b)
            began, t = time.perf_counter(), opt.t
            try:
                done, tried, reason = self.step(order[b * batch_size:b1 * batch_size], batch_size, self.grad,
                                                hypers, clip)
            except BaseException:  # (bad data met or Ctrl-C mid-run: the steps applied count, as the weights hold them)
                net.epoch_steps = b + opt.t - t
                raise
            self.sizes.measured(done, time.perf_counter() - began)
            losses[b:b + done] = tried[:done]
            b += done
            net.epoch_steps = b
            if reason:
                raise _diverged(net, self.step, order, batch_size, self.grad, snapshot, b, tried[done], reason,
                                (self.hypers_for, clip), opt, self.history)
            self.progress.update(epoch, done, None if self.private is not None else losses[b - done:b])
            if b < n_batches and self.stop_requested():  # (at the end, the epoch is counted first)
                raise self.interrupted()
        return losses, float(hypers[done - 1, 0]) if done else opt.lr

    def epoch_end(self, epoch):
        """Early stopping, the schedule, the key file and the callbacks after an epoch: True to stop."""
        net, o, history = self.net, self.options, self.history
        if o.early_stopping:
            monitored = history.val_loss[-1] if self.validation is not None else history.loss[-1]
            if monitored < self.best[0]:
                self.best = (monitored, epoch, Snapshot(net))
            elif epoch - self.best[1] >= o.patience:
                history.stopped_early, history.stopped_by = True, "early stopping"
                return True
        o.schedule.epoch_end(history, self.opt)
        if self.keeper is not None:  # (before the callbacks: a checkpoint is always one of the run's states)
            self.keeper.mark(net)
        stop = any(callback.on_epoch_end(epoch, history, net) for callback in o.callbacks)
        if stop if self.session is None else self.session.any(stop):
            history.stopped_by = "a callback"
            return True
        return False


def _record(history, net, engine, validation, private, losses, counts, lr, start):
    """An epoch's entries of the history: its training loss, the steps' ``losses`` weighted
    by their sample ``counts`` (NaN under DP-SGD), the validation loss and score, the last
    step's rate, epsilon and the seconds since ``start``."""
    history.loss.append(np.nan if private is not None else  # (withheld: the data's, not covered by epsilon)
                        float(np.dot(losses, counts) / counts.sum()))
    if validation is not None:
        X_val, T_val, y_val = validation
        history.val_loss.append(engine.loss(net, X_val, T_val))
        history.val_score.append(metrics.score(net, engine.forward(net, X_val), y_val))
    history.lr.append(lr)
    if private is not None and private.delta is not None:
        history.epsilon.append(net.privacy_ledger.epsilon(private.delta))
    history.seconds.append(time.perf_counter() - start)


def _stepper(net, engine, batches, private, q, parallel, history, agreed):
    """``(step, order_of, session)``: the fit's stepper (DP-SGD's, or the MPI ranks' after
    they agree on ``agreed(micro_shards)``), the epoch's order of rows and the MPI session or None."""
    if parallel is None:
        step = engine.stepper(net, batches) if private is None else dp_stepper(engine, net, batches, private, q)
        return step, batches.order, None
    session, micro_shards = parallel
    rank, ranks, L = distributed.check(session.comm, micro_shards, batches.batch_size)
    shards = distributed.Shards(batches.subset, batches.batch_size, L, rank, ranks)
    step = distributed.stepper(engine, net, batches, session.comm, shards)
    session.ready(agreed(L))
    history.rank = rank
    return step, shards.order, session


def _restore_best(net, history, best, verbose, validating):
    """Early stopping's end: the best epoch's weights, with the counters that describe them."""
    monitored, epoch, snapshot = best
    snapshot.restore(net)
    history.best_epoch = epoch
    if verbose and history.stopped_early:
        print(f"stopped early after epoch {history.epochs}; restored the weights of epoch {epoch + 1} "
              f"(lowest {'validation' if validating else 'training'} loss {monitored:.4f})", flush=True)


def _fit_lbfgs(net, engine, X, y, epochs, solver, weighting, verbose):
    """``fit`` with :mod:`scalarbp.lbfgs`: at most ``epochs`` iterations on the whole set."""
    if net.epoch_steps:
        raise ValueError(f"the net stopped {net.epoch_steps} steps into an epoch; finish it with its stepping "
                         f"optimizer, or set net.epoch_steps = 0, before optimizer='lbfgs'")
    X, N = _rows(net, X)
    if isinstance(X, np.memmap):  # (checked once here, a block at a time: every pass of L-BFGS reads it again)
        for start in range(0, N, lbfgs.BLOCK_ROWS):
            if not np.isfinite(X[start:start + lbfgs.BLOCK_ROWS]).all():
                raise ValueError(f"X holds NaN or inf in rows {start}..{min(start + lbfgs.BLOCK_ROWS, N) - 1}")
    if net.standardizer is not None:  # (blocks are standardised as read: the memory stays one block's)
        X = _Standardized(X, net.standardizer)
    weights = sample_weights(net, y, *weighting)
    weights = None if weights is None else checks.weights_in(weights, net.dtype)
    history = History(score_name="accuracy" if net.is_classifier else "r2")
    try:
        with Interrupts() as interrupts:
            result = lbfgs.fit(net, engine, X, y, epochs, solver, weights, history, interrupts, verbose)
    finally:  # (an error in SciPy's loop too: the weights are the last iteration's, and counted)
        net.epochs_trained += history.epochs
        net.privacy_ledger.record("non-private", history.epochs)
    if result is None:
        raise _interrupted(net, 0, history, interrupts.requested)
    history.converged, history.stopped_by = result.status == 0, f"lbfgs: {result.message}"
    history.function_calls = int(result.nfev)
    return history


class _Standardized:
    """Rows of X through a standardizer as they are sliced (what :mod:`scalarbp.lbfgs` reads)."""

    def __init__(self, X, standardizer):
        self.X, self.standardizer, self.shape = X, standardizer, X.shape

    def __getitem__(self, rows):
        return self.standardizer.transform(checks.dense(self.X[rows]))


def _recorded(net, step, private, q):
    """``step``, each call's steps entered in the net's privacy ledger (a step that stopped
    the call counts too: its gradient was computed), as DP-SGD steps or non-private ones."""
    kind, noise = ("non-private", 0.0) if private is None else (private.kind, private.noise)

    def recorded(rows, batch_size, grad, hypers, clip):
        t = net.optimizer.t
        try:
            done, tried, reason = step(rows, batch_size, grad, hypers, clip)
        except BaseException:  # (bad data met mid-run: the steps the weights took count, their noise is spent)
            net.privacy_ledger.record(kind, net.optimizer.t - t, q, noise)
            raise
        net.privacy_ledger.record(kind, done + (reason != 0), q, noise)
        return done, tried, reason
    return recorded


def _outside_epsilon(validating, validation_fraction, early_stopping, schedule):
    """What a DP-SGD fit releases beside the weights that epsilon does not cover."""
    named = ["seconds: the wall time of each epoch (a timing channel)"]
    if validating:
        named.append("val_loss and val_score: metrics on the validation data" +
                     (", a split of the private training data" if validation_fraction else ""))
        if early_stopping:
            named.append("early stopping: the epoch it keeps is chosen on the validation loss")
        if isinstance(schedule, schedules.ReduceOnPlateau):
            named.append("reduce_on_plateau: the learning rate follows the validation loss")
    return named


def _interrupted(net, n_batches, history, received):
    where = f"step {net.epoch_steps} of {n_batches} of epoch {net.epochs_trained + 1}" if net.epoch_steps else \
        f"the end of epoch {net.epochs_trained}"
    return TrainingInterrupted(f"training interrupted at {where}; the weights and counters are those of that "
                               f"point, and the next fit continues from it", history, received or signal.SIGINT)


def _diverged(net, step, order, batch_size, grad, snapshot, b, J, reason, replay, opt, history):
    """The DivergedError for step ``b`` of this epoch, the net left with the weights of
    step ``b - 1``: when the step's update was applied, by restoring the epoch's snapshot
    and replaying the steps since (bit for bit the same: the steps are deterministic)."""
    if reason == BAD_UPDATE:
        first = snapshot.epoch_steps
        snapshot.restore(net)
        if b > first:
            hypers_for, clip = replay
            step(order[first * batch_size:b * batch_size], batch_size, grad, hypers_for(first, b - first), clip)
        net.epoch_steps = b
        what = "the update gave NaN or inf weights"
    else:
        what = "the gradient holds NaN or inf" if np.isfinite(J) else f"the loss is {J}"
    return DivergedError(
        f"training diverged at epoch {net.epochs_trained + 1}, step {b + 1}: {what}; "
        f"the weights are the last finite ones (before this step). Try a smaller learning "
        f"rate (lr={opt.lr}).", history)


def epoch_line(history, epoch, epochs):
    """One line per epoch: loss, validation loss and score, time."""
    line = f"epoch {epoch + 1:>3}/{epochs}  " + ("loss withheld (DP)" if history.private else
                                                  f"loss {history.loss[-1]:.4f}")
    if history.val_loss:
        line += f"  val_loss {history.val_loss[-1]:.4f}  val_{history.score_name} {history.val_score[-1]:.4f}"
    if history.epsilon:
        line += f"  epsilon {history.epsilon[-1]:.3f}"
    return line + f"  {history.seconds[-1]:.2f} s"


class Progress:
    """A progress bar (``tqdm.auto``: a terminal's or a notebook's) over every step of the
    fit: epoch, steps, rate, time left, the running loss.  Off unless asked for, and off
    when stderr is not a terminal."""

    def __init__(self, enabled, epochs, steps):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=steps, unit="step", disable=None, leave=False, dynamic_ncols=True)
        self.epochs, self.loss = epochs, None

    def update(self, epoch, steps, losses):
        """``steps`` more done; ``losses`` their losses (None: withheld, not shown)."""
        if self.bar is None or steps == 0:
            return
        self.bar.set_description(f"epoch {epoch + 1}/{self.epochs}", refresh=False)
        if losses is not None:
            mean = float(np.mean(losses))
            self.loss = mean if self.loss is None else 0.9 * self.loss + 0.1 * mean
            self.bar.set_postfix(loss=f"{self.loss:.4f}", refresh=False)
        self.bar.update(steps)

    def write(self, line):
        """A line of output that does not break the bar."""
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)

    def close(self):
        if self.bar is not None:
            self.bar.close()
