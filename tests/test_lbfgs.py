"""``fit(..., optimizer="lbfgs")`` and the estimators' ``solver="lbfgs"``: SciPy's L-BFGS-B
on the scalar-form J(theta) of the whole training set; and sparse input."""
import os
import signal

import numpy as np
import pytest

import scalarbp
from scalarbp import lbfgs, training
from scalarbp.datasets import load_digits

scipy = pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def digits():
    (X, y), (X_test, y_test) = load_digits()
    return X[:400], y[:400], X_test, y_test


def test_the_objective_is_the_whole_sets_j_and_gradient_whatever_the_blocks(digits, monkeypatch):
    X, y = digits[0], digits[1]
    net = scalarbp.MLP([64, 12, 10], seed=0, l2=1e-3)
    weights = np.random.default_rng(0).uniform(0.5, 2, len(X))
    J, dW, db = net.loss_and_grad(X, y, weights=weights)
    seen = []
    minimize = scipy.optimize.minimize

    def spy(fun, x0, **kw):
        seen.append(fun(x0))
        return minimize(fun, x0, **kw)
    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    monkeypatch.setattr(lbfgs, "BLOCK_ROWS", 64)  # (7 blocks of 64, the last of 16)
    net.fit(X, y, epochs=1, optimizer="lbfgs", sample_weight=weights)
    J_blocks, grad_blocks = seen[0]
    assert J_blocks == pytest.approx(J, rel=1e-14)
    flat = np.empty_like(net.theta)
    for view, g in zip([*net.layout.views(flat)[0], *net.layout.views(flat)[1]], [*dW, *db]):
        view[...] = g
    assert np.max(np.abs(grad_blocks - flat)) <= 1e-14 * np.max(np.abs(flat))


def test_lbfgs_trains_counts_its_iterations_and_enters_the_ledger_as_not_private(digits):
    X, y, X_test, y_test = digits
    net = scalarbp.MLP([64, 32, 10], seed=0)
    history = net.fit(X, y, epochs=100, optimizer=lbfgs.LBFGS(tol=1e-5))
    assert 0 < history.epochs <= 100 and net.epochs_trained == history.epochs
    assert net.privacy_ledger.entries == [("non-private", history.epochs, 0.0, 0.0)]
    assert history.loss[-1] < history.loss[0] and net.score(X_test, y_test) > 0.85
    assert net.optimizer is None  # (a stepping optimiser is neither made nor changed)


def test_lbfgs_refuses_what_a_full_batch_solver_cannot_do(digits):
    X, y = digits[0], digits[1]
    for options in (dict(dp_clip=1.0, dp_noise=1.0), dict(validation_fraction=0.2), dict(schedule="cosine"),
                    dict(clip_norm=1.0), dict(lr=0.1)):
        with pytest.raises(ValueError, match="optimizer='lbfgs' is a full-batch solver: it takes no"):
            scalarbp.MLP([64, 8, 10]).fit(X, y, epochs=2, optimizer="lbfgs", **options)
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    from scalarbp.sklearn import ScalarMLPClassifier

    with pytest.raises(ValueError, match="solver='lbfgs' takes no dp_clip"):
        ScalarMLPClassifier(solver="lbfgs", dp_clip=1.0, dp_noise=1.0).fit(X, y)
    assert not hasattr(ScalarMLPClassifier(solver="lbfgs"), "partial_fit")


def test_ctrl_c_during_lbfgs_keeps_the_last_completed_iteration(digits, monkeypatch):
    X, y = digits[0], digits[1]
    net = scalarbp.MLP([64, 8, 10], seed=0)
    calls = []
    loss_and_grad = scalarbp.backends.get("scalar").loss_and_grad

    def interrupting(*args, **kw):
        calls.append(1)
        if len(calls) == 8:
            os.kill(os.getpid(), signal.SIGINT)
        return loss_and_grad(*args, **kw)
    monkeypatch.setattr(type(scalarbp.backends.get("scalar")), "loss_and_grad",
                        lambda self, *args, **kw: interrupting(*args, **kw))
    with pytest.raises(training.TrainingInterrupted) as stopped:
        net.fit(X, y, epochs=50, optimizer="lbfgs")
    iterations = stopped.value.history.epochs
    assert 0 < iterations < 50 and net.epochs_trained == iterations
    J, _, _ = net.loss_and_grad(X, y)
    assert J == pytest.approx(stopped.value.history.loss[-1], rel=1e-12)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_trains_and_predicts_as_its_dense_twin_bit_for_bit(digits, fmt):
    import scipy.sparse as sparse

    X, y, X_test, _ = digits
    X_sparse = sparse.csr_matrix(X) if fmt == "csr" else sparse.csc_matrix(X)
    dense, sparse_net = scalarbp.MLP([64, 16, 10], seed=0), scalarbp.MLP([64, 16, 10], seed=0)
    dense.fit(X, y, epochs=2, batch_size=32, seed=1, validation_fraction=0.1)
    sparse_net.fit(X_sparse, y, epochs=2, batch_size=32, seed=1, validation_fraction=0.1)
    assert np.array_equal(dense.theta, sparse_net.theta)
    assert np.array_equal(dense.predict_proba(X_test), sparse_net.predict_proba(sparse.csr_matrix(X_test)))
    coo = scalarbp.MLP([64, 16, 10], seed=0)  # (COO has no rows to take: made CSR first)
    coo.fit(sparse.coo_matrix(X), y, epochs=2, batch_size=32, seed=1, validation_fraction=0.1)
    assert np.array_equal(coo.theta, dense.theta)
    scalarbp.MLP([64, 16, 10]).fit(X_sparse, y, epochs=1, validation_data=(sparse.csr_matrix(X_test), digits[3]))
    bad = X_sparse.tocsr(copy=True)
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        scalarbp.MLP([64, 16, 10]).fit(bad, y, epochs=1)


def test_an_error_inside_lbfgs_leaves_the_last_iteration_counted(digits, monkeypatch):
    """An exception from SciPy's loop left the weights of a point merely evaluated, and
    neither the epochs nor the privacy ledger counted the iterations taken."""
    X, y = digits[0], digits[1]
    net = scalarbp.MLP([64, 8, 10], seed=0)
    calls = []
    engine = type(scalarbp.backends.get("scalar"))
    loss_and_grad = engine.loss_and_grad

    def failing(self, *args, **kw):
        calls.append(1)
        if len(calls) == 9:
            raise ValueError("a failure in the middle of a line search")
        return loss_and_grad(self, *args, **kw)
    monkeypatch.setattr(engine, "loss_and_grad", failing)
    with pytest.raises(ValueError, match="line search"):
        net.fit(X, y, epochs=50, optimizer="lbfgs", verbose=0)
    monkeypatch.setattr(engine, "loss_and_grad", loss_and_grad)
    assert 0 < net.epochs_trained < 9 and net.privacy_ledger.steps == net.epochs_trained
    twin = scalarbp.MLP([64, 8, 10], seed=0)
    twin.fit(X, y, epochs=net.epochs_trained, optimizer="lbfgs")
    assert np.array_equal(net.theta, twin.theta)


def test_a_memmap_with_nan_is_refused_before_lbfgs_starts(digits, tmp_path):
    X = np.lib.format.open_memmap(tmp_path / "X.npy", "w+", np.float64, digits[0].shape)
    X[...] = digits[0]
    X[300, 2] = np.nan
    net = scalarbp.MLP([64, 8, 10], seed=0)
    before = net.theta.copy()
    with pytest.raises(ValueError, match=r"NaN or inf in rows 0\.\.399"):
        net.fit(X, digits[1], epochs=5, optimizer="lbfgs")
    assert np.array_equal(net.theta, before) and net.epochs_trained == 0
