"""The options of a fit, each named once with its default: :class:`FitOptions`.

``MLP.fit`` and :func:`scalarbp.training.fit` take these names and the ``train`` command
its defaults; each is documented, and its default set, here alone (docs/guide.md,
"Defaults, in one place").  The estimators keep scikit-learn's own names and defaults.
"""
import inspect
from dataclasses import dataclass, fields

#: The optimiser of a net that has none and is given none.
DEFAULT_OPTIMIZER = "adam"


@dataclass(frozen=True)
class FitOptions:
    """Every option of ``fit`` (:meth:`scalarbp.MLP.fit`), with its default, as given:
    the fit that takes them checks them.

    Options
    -------
    epochs, batch_size : int
    lr : float or None
        Learning rate; None keeps the rate of the optimiser the net continues with, or
        takes a new optimiser's default.
    optimizer : None, ``"sgd"``, ``"momentum"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``
        or a :class:`scalarbp.optimizers.Optimizer` (e.g. ``Momentum(0.1, nesterov=True)``).
        None (the default) continues the net's optimiser, its kind and its state, as
        does its name; a net without one gets Adam.
    shuffle : bool
        Visit the samples in a new random order each epoch.
    seed : int or None
        Seeds the shuffles and the validation split: same seed and data, same weights,
        on any number of threads.
    validation_data : ``(X_val, y_val)`` or None
    validation_fraction : float
        Hold out this fraction of (X, y) for validation instead.
    early_stopping : bool
        Stop after ``patience`` epochs without a lower validation loss (training loss
        without validation data) and restore the best weights.
    backend : ``"scalar"``, ``"literal"`` (seed 001 one sample at a time: slow, for
        reading), ``"row"``, ``"column"`` or ``"cuda"``
    verbose : 0 silent, 1 a line per epoch, 2 also a progress bar on a terminal
    callbacks : objects with ``on_epoch_end(epoch, history, net)``
        (:class:`scalarbp.training.Callback`); one that returns True stops training.
    sample_weight : array ``(N,)`` or None
        Weights of the samples in the loss: each minibatch's J is the weighted mean
        ``sum w_n Loss_n / sum w_n`` (the output deltas weighted alike).
    class_weight : ``{label: weight}``, ``"balanced"`` or None
        Weights by class (multiplying ``sample_weight``); ``"balanced"`` is
        scikit-learn's ``N / (K * count(label))``.
    schedule : None, ``"step"``, ``"cosine"``, ``"reduce_on_plateau"`` or a
        :class:`scalarbp.schedules.Schedule`: the learning rate of every step.
    warmup_steps : int
        Linear warm-up of the rate over the first steps of training.
    clip_norm : float or None
        Clip the gradient's global norm to this (``clip_grad_norm_``'s rule).
    dp_clip, dp_noise, dp_delta, dp_sampling, target_epsilon, dp_insecure_seed
        Differentially private training (DP-SGD, :mod:`scalarbp.privacy`): each
        sample's gradient clipped to norm ``dp_clip``, Gaussian noise of standard
        deviation ``dp_noise * dp_clip``, Poisson sampling at rate
        ``batch_size / N`` (``dp_sampling="shuffle"``: fixed-size shuffled batches,
        outside the privacy analysis), noise and batches from a secret key drawn for
        this call.  Every step enters :attr:`privacy_ledger`; with ``dp_delta``,
        ``history.epsilon`` is its epsilon after each epoch (needs ``dp-accounting``);
        ``target_epsilon`` stops before an epoch that would pass it, or without
        ``dp_noise`` picks the noise that reaches it over ``epochs``, counting what the
        net spent before.  The training loss is withheld (``history.loss`` NaN) and
        early stopping or ``reduce_on_plateau`` need validation data, named with the
        other releases epsilon does not cover in ``history.outside_epsilon``.
        ``dp_insecure_seed`` (tests only) keys the noise and batches by a seed
        instead: reproducible, and so not private (the ledger's epsilon is inf).
    dp_key_file : path or None
        Under DP-SGD, keep the run's secret key in this file (owner-only; as secret
        as the key, :mod:`scalarbp.privacy.keyfile`) while the run is unfinished, and
        resume from it: a fit of a net the run checkpointed, with the run's data and
        settings, continues its noise and batches, so an interrupted run resumed
        equals the uninterrupted one bit for bit.  Anything else draws a fresh key
        with a :class:`~scalarbp.privacy.keyfile.KeyFileWarning`.  Removed when the
        fit ends without an interruption or an error.
    comm : an mpi4py communicator (``MPI.COMM_WORLD``) or None
        Synchronous data-parallel training over its ranks (:mod:`scalarbp.distributed`):
        every rank calls ``fit`` with the same arguments and data (of which it reads
        only its contiguous block of rows), computes its part of each minibatch, and
        applies the same update.  The weights are the same bits on 1, 2, 4, ... ranks.
        Not with DP-SGD.
    micro_shards : int or None
        With ``comm``: leaves per minibatch (a power of two, dividing ``batch_size``;
        default 4), the most ranks the run can use; results depend on it, never on the
        number of ranks.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float | None = None
    optimizer: object = None
    shuffle: bool = True
    seed: int | None = None
    validation_data: tuple | None = None
    validation_fraction: float = 0.0
    early_stopping: bool = False
    patience: int = 10
    backend: str = "scalar"
    verbose: int = 0
    callbacks: tuple = ()
    sample_weight: object = None
    class_weight: object = None
    schedule: object = None
    warmup_steps: int = 0
    clip_norm: float | None = None
    dp_clip: float | None = None
    dp_noise: float | None = None
    dp_delta: float | None = None
    dp_sampling: str = "poisson"
    target_epsilon: float | None = None
    comm: object = None
    micro_shards: int | None = None
    dp_insecure_seed: int | None = None
    dp_key_file: object = None


def signature(function):
    """``function(self, X, y, *args, **options)`` as introspection shows it: with the
    options of :class:`FitOptions`, and their defaults, in their place."""
    own = inspect.signature(function)
    options = [inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=field.default)
               for field in fields(FitOptions)]
    parameters = [p for p in own.parameters.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    function.__signature__ = own.replace(parameters=parameters + options)
    return function
