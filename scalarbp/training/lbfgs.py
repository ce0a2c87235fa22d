"""Full-batch L-BFGS: SciPy's L-BFGS-B on the scalar-form objective (``fit(...,
optimizer="lbfgs")``, the estimators' ``solver="lbfgs"``; SciPy comes with scikit-learn).

The objective is the one every other solver descends, on the whole training set: seed
003's ``J(theta) = (1/N) sum_n Loss_n + (l2/2) sum_k ||W_k||_F^2`` (or the weighted mean
with sample weights), with the gradient of the flat ``theta`` from the backend's
``loss_and_grad``, which is exactly what ``scipy.optimize.minimize(method="L-BFGS-B",
jac=True)`` takes.  The data are visited in blocks of :data:`BLOCK_ROWS` rows, each
block's J and gradient weighted by its share of the samples (of the weights): the memory
is one block's work, whatever N, and a sparse X is made dense one block at a time.

Each iteration of L-BFGS is at least one pass over the data; ``epochs`` bounds the
iterations (scikit-learn's ``max_iter``), ``max_fun`` the passes.  The iterations count as
epochs trained and enter the privacy ledger as non-private steps; the net's stepping
optimiser, if any, is left as it was.  Ctrl-C or SIGTERM stops at the current evaluation
with the weights of the last completed iteration (:class:`~scalarbp.training.TrainingInterrupted`).
"""
from dataclasses import dataclass

import numpy as np

from .. import checks

#: Rows per evaluation block.
BLOCK_ROWS = 4096


@dataclass(frozen=True)
class LBFGS:
    """The L-BFGS solver's settings: ``max_fun`` passes over the data at most, and ``tol``,
    the largest projected gradient component at which it stops (SciPy's ``gtol``,
    scikit-learn's ``tol``)."""

    max_fun: int = 15000
    tol: float = 1e-4
    name = "lbfgs"

    def __post_init__(self):
        checks.integer("max_fun", self.max_fun, 1)
        if not (isinstance(self.tol, (int, float, np.floating)) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")


class _Stop(Exception):
    """Raised inside the objective to leave SciPy's loop on Ctrl-C."""


def fit(net, engine, X, y, epochs, solver, weights, history, interrupts, verbose):
    """Minimise J over ``theta`` in place; fills ``history`` (one entry per iteration) and
    returns SciPy's result."""
    try:
        import scipy
        from scipy.optimize import minimize
    except ImportError:
        raise RuntimeError("optimizer='lbfgs' needs SciPy: pip install scipy (it comes with scikit-learn)") from None
    if tuple(int(part) for part in scipy.__version__.split(".")[:2]) < (1, 11):
        raise RuntimeError(f"optimizer='lbfgs' needs SciPy >= 1.11 (its iterates reach the callback), got "
                           f"{scipy.__version__}")
    N = X.shape[0]
    T = checks.targets(y, N, net.sizes[-1], net.loss, net.dtype)
    total = N if weights is None else float(weights.sum())
    if not total > 0:
        raise ValueError("sample weights must not all be 0 for optimizer='lbfgs' (a full batch)")
    blocks = [(start, min(start + BLOCK_ROWS, N)) for start in range(0, N, BLOCK_ROWS)]
    grad, block_grad = np.empty(net.theta.shape[0]), np.empty_like(net.theta)
    last = net.theta.copy()  # (the last completed iteration's weights)

    def objective(theta):
        if interrupts.requested:
            raise _Stop
        net.theta[...] = theta
        J = 0.0
        grad[...] = 0
        for start, stop in blocks:
            xb = checks.dense(X[start:stop])  # (X is checked: rows of a sparse matrix made dense)
            wb = None if weights is None else weights[start:stop]
            share = (stop - start) / N if wb is None else float(wb.sum()) / total
            if share == 0:
                continue
            Jb, _ = engine.loss_and_grad(net, np.ascontiguousarray(xb, net.dtype), T[start:stop], block_grad, wb)
            J += share * Jb
            grad[...] += share * block_grad
        return J, grad.copy()

    def iteration(intermediate_result):  # (SciPy passes the iterate under this name)
        last[...] = intermediate_result.x
        history.loss.append(float(intermediate_result.fun))
        history.lr.append(np.nan)
        if verbose:
            print(f"lbfgs iteration {len(history.loss)}, loss = {intermediate_result.fun:.8f}", flush=True)

    start = net.theta.astype(np.float64)
    try:
        result = minimize(objective, start, method="L-BFGS-B", jac=True, callback=iteration,
                          options={"maxiter": epochs, "maxfun": solver.max_fun, "gtol": solver.tol})
    except _Stop:
        net.theta[...] = last
        return None
    except BaseException:  # (an error in SciPy's loop or the objective: the last iteration's weights)
        net.theta[...] = last
        raise
    net.theta[...] = result.x if np.isfinite(result.x).all() else last
    return result
