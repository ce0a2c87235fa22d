"""Training: the loop (:mod:`.loop`) and its options (:mod:`.options`), the optimisers
(:mod:`.optimizers`) and their schedules (:mod:`.schedules`), the full-batch L-BFGS
solver (:mod:`.lbfgs`), and data-parallel runs over MPI (:mod:`.distributed`).

The loop's names are this package's, as they were before it was a folder:
``scalarbp.training.fit``, ``Checkpoint``, ``TrainingInterrupted``, ...
"""
from .loop import (  # noqa: F401  (the public names)
    SECONDS_PER_CALL, STEPS_PER_CALL, Batches, Callback, CallSizes, Checkpoint, DivergedError, History, Interrupts,
    Progress, Snapshot, TrainingInterrupted, epoch_line, fit, sample_weights)
from .options import DEFAULT_OPTIMIZER, FitOptions  # noqa: F401
