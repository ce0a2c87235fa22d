"""Learning-rate schedules: the rate of every step, as a factor of the optimiser's ``lr``.

A schedule gives the factors of a run of steps from the step's place in training (the
epoch, counted over the net's life by ``net.epochs_trained``, and the step within it), so
training resumed from a saved model follows the same schedule; ``fit`` hands the rates to
the compiled loop as one row of hyper-parameters per step.

* :class:`StepDecay` (``"step"``): ``gamma ** (epoch // step_size)``, PyTorch's ``StepLR``.
* :class:`Cosine` (``"cosine"``): ``min_factor + (1 - min_factor)(1 + cos(pi p)) / 2`` with
  ``p`` the fraction of ``epochs`` done, step by step (``CosineAnnealingLR``).
* :class:`ReduceOnPlateau` (``"reduce_on_plateau"``): after ``patience`` epochs without a
  lower monitored loss (validation loss if any, else training loss) by more than
  ``threshold`` (relative), the optimiser's ``lr`` is multiplied by ``factor``, down to
  ``min_lr`` (``ReduceLROnPlateau``; the reduced ``lr`` is the optimiser's, saved with it).
* ``warmup_steps=W`` in ``fit``: every schedule's factor times ``min(1, (s + 1) / W)`` for
  the ``s``-th step of training (linear warm-up).
"""
import math

import numpy as np

from .. import checks


class Schedule:
    """Constant rate: factor 1.  Subclasses override :meth:`factor` (and
    :meth:`epoch_end` to react to the losses).  Epochs count from ``start`` (0: the net's
    first epoch; a schedule made from a name starts at the fit's first epoch)."""

    start = 0

    def factor(self, epoch, progress):
        """The factor at ``epoch`` (0-based, over the net's life), ``progress`` in [0, 1)
        through it."""
        return 1.0

    def factors(self, epoch, first, count, steps_per_epoch):
        """Factors of steps ``first .. first + count - 1`` of ``epoch``."""
        return np.array([self.factor(epoch - self.start, (first + s) / steps_per_epoch) for s in range(count)])

    def epoch_end(self, history, optimizer):
        """Called after each epoch with the fit's history."""

    def settings(self):
        """What sets this schedule's rates, comparable: its kind and attributes (``start``
        only where the factor depends on the epoch)."""
        depends = type(self).factor is not Schedule.factor
        return type(self).__name__, sorted((name, value) for name, value in vars(self).items()
                                           if depends or name != "start")


class StepDecay(Schedule):
    def __init__(self, step_size=10, gamma=0.1):
        self.step_size = checks.integer("step_size", step_size, 1)
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}")
        self.gamma = float(gamma)

    def factor(self, epoch, progress):
        return self.gamma ** (epoch // self.step_size)

    def __repr__(self):
        return f"StepDecay(step_size={self.step_size}, gamma={self.gamma})"


class Cosine(Schedule):
    def __init__(self, epochs, min_factor=0.0):
        self.epochs = checks.integer("epochs", epochs, 1)
        if not 0 <= min_factor <= 1:
            raise ValueError(f"min_factor must lie in [0, 1], got {min_factor!r}")
        self.min_factor = float(min_factor)

    def factor(self, epoch, progress):
        p = min((epoch + progress) / self.epochs, 1.0)
        return self.min_factor + (1 - self.min_factor) * (1 + math.cos(math.pi * p)) / 2

    def __repr__(self):
        return f"Cosine(epochs={self.epochs}, min_factor={self.min_factor})"


class ReduceOnPlateau(Schedule):
    def __init__(self, factor=0.1, patience=10, threshold=1e-4, min_lr=0.0):
        if not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
        self.reduce_by, self.patience = float(factor), checks.integer("patience", patience, 0)
        self.threshold, self.min_lr = float(threshold), float(min_lr)
        self.best, self.bad = math.inf, 0

    def epoch_end(self, history, optimizer):
        loss = history.val_loss[-1] if history.val_loss else history.loss[-1]
        if loss < self.best * (1 - self.threshold):
            self.best, self.bad = loss, 0
            return
        self.bad += 1
        if self.bad > self.patience:
            optimizer.lr = max(optimizer.lr * self.reduce_by, self.min_lr) or optimizer.lr
            self.bad = 0

    def __repr__(self):
        return f"ReduceOnPlateau(factor={self.reduce_by}, patience={self.patience})"


def make(schedule, epochs, start):
    """A schedule from an instance, or from a name over the fit's ``epochs`` from epoch
    ``start`` (step: 0.1 times every third of them; cosine: down to 0 over them)."""
    if isinstance(schedule, Schedule):
        return schedule
    if schedule is None:
        made = Schedule()
    else:
        name = checks.choice("schedule", schedule, ("step", "cosine", "reduce_on_plateau"))
        made = StepDecay(max(1, epochs // 3)) if name == "step" else Cosine(max(1, epochs)) if name == "cosine" \
            else ReduceOnPlateau()
    made.start = start
    return made


def rates(schedule, lr, warmup_steps, epoch, first, count, steps_per_epoch):
    """The learning rate of each of ``count`` steps from step ``first`` of ``epoch``."""
    factors = schedule.factors(epoch, first, count, steps_per_epoch)
    if warmup_steps:
        done = epoch * steps_per_epoch + first + np.arange(count)
        factors = factors * np.minimum(1.0, (done + 1) / warmup_steps)
    return lr * factors
