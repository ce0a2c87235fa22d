"""The two ways ``fit`` ends early with the work kept: a divergence and an interruption,
and the codes of a run of steps that stopped at a non-finite number.

Their own module, so that the training loop, the MPI session (which lets both pass on
every rank), the steppers and the optimisers import them without importing each other.
"""
import signal

#: Why a stepper stopped early (see :meth:`scalarbp.backends.Backend.stepper`): a step's
#: loss or gradient was not finite (not applied), or its update was not (applied; the
#: caller rolls it back).
BAD_GRADIENT, BAD_UPDATE = 1, 2


class DivergedError(FloatingPointError):
    """The loss, the gradient or the updated weights became NaN or inf; the net keeps the
    weights of the last good step, and its counters describe them.

    ``history`` holds the epochs completed before the divergence.
    """

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM (what ``kill``, systemd, Slurm and Kubernetes send) during
    ``fit``: training stopped at a step boundary, the net holds the weights of the last
    completed step and its counters describe them.

    ``history`` holds the epochs completed before the interruption; ``signal`` is the signal
    this process received (``signal.SIGINT`` on an MPI rank that stopped because another
    one was interrupted).
    """

    def __init__(self, message, history, signal=signal.SIGINT):
        super().__init__(message)
        self.history, self.signal = history, signal
