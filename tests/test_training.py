"""fit, partial_fit, predict, score: learning, determinism, early stopping, divergence."""
import numba
import numpy as np
import pytest

import scalarbp
from scalarbp.datasets import Standardizer, load_digits, make_spirals
from scalarbp.training import DivergedError
from conftest import BACKENDS, spirals_net


def test_fit_learns_the_spirals():
    net, X, y = spirals_net()
    history = net.fit(X, y, epochs=150, batch_size=16, lr=0.01, optimizer="adam", seed=0)
    assert history.loss[-1] < 0.3 * history.loss[0]
    assert net.score(X, y) > 0.9


def test_fit_reaches_96_percent_on_the_embedded_digits():
    (X, y), (X_test, y_test) = load_digits()
    net = scalarbp.MLP([64, 128, 10], dtype="float32", seed=0)
    net.standardizer = Standardizer().fit(X)
    net.fit(X, y, epochs=15, lr=0.002, optimizer="adam", seed=0)
    assert net.score(X_test, y_test) >= 0.96


def test_one_sgd_step_on_the_worked_example_moves_theta_by_lr_times_the_gradient(seed_002_net):
    """theta' = theta - 0.1 dJ/dtheta, with seed 002's (correct) gradient."""
    x, y = np.array([[6.0, 3.0]]), np.array([1])
    _, dW, db = seed_002_net.loss_and_grad(x, y)
    expected = seed_002_net.theta - 0.1 * np.concatenate([dW[0].ravel(), db[0], dW[1].ravel(), db[1]])
    seed_002_net.fit(x, y, epochs=1, batch_size=1, lr=0.1, optimizer="sgd")
    np.testing.assert_allclose(seed_002_net.theta, expected, rtol=1e-15)
    # e.g. w_11 of layer 2: 0.3 - 0.1 * 0.6947 = 0.23053
    assert seed_002_net.weights[1][0, 0] == pytest.approx(0.3 - 0.1 * 0.69470234, abs=1e-8)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_same_seed_and_data_give_identical_weights(optimizer):
    runs = []
    for _ in range(2):
        net, X, y = spirals_net()
        net.fit(X, y, epochs=3, lr=0.01, optimizer=optimizer, seed=7, validation_fraction=0.2)
        runs.append(net.theta.copy())
    assert np.array_equal(*runs)
    net, X, y = spirals_net()
    net.fit(X, y, epochs=3, lr=0.01, optimizer=optimizer, seed=8, validation_fraction=0.2)
    assert not np.array_equal(runs[0], net.theta)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_training_gives_identical_weights_on_1_and_2_threads():
    runs = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            net, X, y = spirals_net(dtype="float32")
            net.fit(X, y, epochs=3, batch_size=37, lr=0.01, optimizer="adam", seed=1)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        runs.append(net.theta.copy())
    assert np.array_equal(*runs)


@pytest.mark.parametrize("backend", ["row", "column"])
def test_training_on_a_reference_backend_follows_the_scalar_one(backend):
    finals = []
    for b in ("scalar", backend):
        net, X, y = spirals_net()
        net.fit(X, y, epochs=2, lr=0.01, optimizer="momentum", seed=3, backend=b)
        finals.append(net.theta.copy())
    np.testing.assert_allclose(finals[0], finals[1], rtol=1e-9, atol=1e-12)


def test_early_stopping_restores_the_best_weights():
    net, X, y = spirals_net()
    X_val, y_val = make_spirals(60, n_classes=3, noise=0.05, seed=1)
    history = net.fit(X, y, epochs=300, lr=0.05, optimizer="adam", seed=0, validation_data=(X_val, y_val),
                      early_stopping=True, patience=5)
    assert history.stopped_early
    best = history.best_epoch
    assert history.epochs == best + 6
    assert history.val_loss[best] == min(history.val_loss)
    J_now, _, _ = net.loss_and_grad(X_val, y_val)
    assert J_now == pytest.approx(history.val_loss[best], rel=1e-12)


def diverging_problem():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)), 100 * rng.normal(size=64)
    return scalarbp.MLP([4, 16, 1], output="identity", seed=0), X, y


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_diverging_run_stops_with_the_last_finite_weights(backend):
    """With one step per epoch, the run that fails in epoch E keeps exactly the weights of
    a twin trained for E - 1 epochs: nothing of the failing step is applied."""
    net, X, y = diverging_problem()
    with pytest.raises(DivergedError, match="diverged at epoch .*the weights are the last finite ones") as err:
        net.fit(X, y, epochs=100, batch_size=64, lr=1.0, optimizer="sgd", seed=0, backend=backend)
    failed_in = net.epochs_trained + 1
    assert f"epoch {failed_in}, step 1" in str(err.value)
    assert err.value.history.epochs == failed_in - 1 > 0
    assert np.isfinite(net.theta).all()
    twin, _, _ = diverging_problem()
    twin.fit(X, y, epochs=failed_in - 1, batch_size=64, lr=1.0, optimizer="sgd", seed=0, backend=backend)
    assert np.array_equal(net.theta, twin.theta)


def test_partial_fit_streams_chunks_and_continues_the_optimizer():
    net, X, y = spirals_net()
    for chunk in np.array_split(np.arange(300), 6):
        net.partial_fit(X[chunk], y[chunk], lr=0.01, optimizer="adam")
    assert net.optimizer.t == 6 * 2  # 50 samples per chunk, batches of 32
    streamed = net.theta.copy()
    twin, _, _ = spirals_net()
    twin.fit(X, y, epochs=1, lr=0.01, optimizer="adam", shuffle=False, batch_size=32)
    assert not np.array_equal(streamed, twin.theta)  # chunk edges differ from one pass in 32s
    assert net.epochs_trained == 6


def test_predict_returns_labels_for_classifiers_and_values_for_regression():
    net, X, y = spirals_net()
    assert net.predict(X).shape == (300,) and net.predict(X).dtype.kind == "i"
    assert net.predict_proba(X).shape == (300, 3)
    np.testing.assert_allclose(net.predict_proba(X).sum(axis=1), 1, rtol=1e-12)
    binary = scalarbp.MLP([2, 4, 1], output="sigmoid", seed=0)
    assert set(binary.predict(X)) <= {0, 1}
    multi = scalarbp.MLP([2, 4, 3], output="sigmoid", seed=0)
    assert multi.predict(X).shape == (300, 3)
    assert 0 <= multi.score(X, np.eye(3)[y]) <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_predictions_agree_across_backends(backend):
    net, X, y = spirals_net()
    np.testing.assert_allclose(net.predict_proba(X, backend=backend), net.predict_proba(X, backend="row"),
                               rtol=1e-12)
