"""fit, partial_fit, predict, score: learning, determinism, early stopping, divergence, memmap."""
import numba
import numpy as np
import pytest

import scalarbp
from scalarbp.datasets import Standardizer, load_digits, make_blobs, make_spirals
from scalarbp.optimizers import SGD, Adam, Momentum
from scalarbp.training import DivergedError
from conftest import BACKENDS


def spirals_net(**kw):
    X, y = make_spirals(300, n_classes=3, noise=0.05, seed=0)
    return scalarbp.MLP([2, 32, 32, 3], hidden="tanh", seed=0, **kw), X, y


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


def test_optimizers_follow_pytorchs_formulas():
    rng = np.random.default_rng(0)
    theta0, grads = rng.normal(size=5), rng.normal(size=(3, 5))
    lr, mu, b1, b2, eps = 0.1, 0.9, 0.9, 0.999, 1e-8
    expected = {"sgd": theta0.copy(), "momentum": theta0.copy(), "nesterov": theta0.copy(), "adam": theta0.copy()}
    v = np.zeros(5)
    m1, m2 = np.zeros(5), np.zeros(5)
    for t, g in enumerate(grads, start=1):
        expected["sgd"] -= lr * g
        v = mu * v + g
        expected["momentum"] -= lr * v
        expected["nesterov"] -= lr * (g + mu * v)
        m1, m2 = b1 * m1 + (1 - b1) * g, b2 * m2 + (1 - b2) * g * g
        expected["adam"] -= lr / (1 - b1 ** t) * m1 / (np.sqrt(m2 / (1 - b2 ** t)) + eps)
    optimizers = {"sgd": SGD(lr), "momentum": Momentum(lr, momentum=mu), "nesterov": Momentum(lr, nesterov=True),
                  "adam": Adam(lr)}
    for name, opt in optimizers.items():
        theta = theta0.copy()
        for g in grads:
            opt.step(theta, g)
        np.testing.assert_allclose(theta, expected[name], rtol=1e-12, err_msg=name)


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


def test_history_records_every_epoch_with_validation_scores():
    net, X, y = spirals_net()
    history = net.fit(X, y, epochs=4, validation_data=(X[:50], y[:50]), seed=0)
    assert history.epochs == 4 and len(history.val_loss) == 4 and len(history.seconds) == 4
    assert history.val_accuracy == history.val_score
    assert all(0 <= a <= 1 for a in history.val_accuracy)
    assert all(s > 0 for s in history.seconds)
    assert net.epochs_trained == 4


def test_regression_history_reports_r2():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200)
    net = scalarbp.MLP([3, 16, 1], hidden="tanh", output="identity", seed=0)
    history = net.fit(X, y, epochs=60, lr=0.01, optimizer="adam", seed=0, validation_fraction=0.25)
    assert history.score_name == "r2" and history.val_accuracy == []
    assert history.val_score[-1] > 0.9
    assert net.score(X, y) > 0.9
    assert net.predict(X).shape == (200,)


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


def test_training_from_a_memmap_equals_training_in_memory(tmp_path):
    X, y = make_blobs(500, n_features=6, centers=4, seed=0)
    path = tmp_path / "X.dat"
    X_disk = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    X_disk[...] = X
    X_disk.flush()
    X_disk = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    nets = []
    for data in (X_disk, np.array(X_disk)):
        net = scalarbp.MLP([6, 16, 4], seed=0)
        net.standardizer = Standardizer().fit(data)
        net.fit(data, y, epochs=3, lr=0.01, optimizer="momentum", seed=0)
        nets.append(net)
    # Same steps; the in-memory run goes through the compiled epoch loop, where LLVM may
    # fuse multiply-adds differently, so agreement is to rounding, not to the bit.
    np.testing.assert_allclose(nets[0].theta, nets[1].theta, rtol=1e-10, atol=1e-13)
    assert nets[0].score(X, y) > 0.9


def test_a_nan_met_mid_run_in_a_memmap_leaves_the_counters_describing_the_weights(tmp_path):
    """Row 2000 of a memmap is NaN: step 200 (of batches of 10) refuses it.  The 200 steps
    before it were applied, and the counters say so (they stood at the run's start)."""
    X, y = make_blobs(4000, n_features=4, centers=3, seed=0)
    X[2000, 1] = np.nan
    disk = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64, shape=X.shape)
    disk[...] = X
    disk.flush()
    net = scalarbp.MLP([4, 5, 3], seed=0)
    with pytest.raises(ValueError, match=r"row\(s\) \[2000\]"):
        net.fit(np.load(tmp_path / "X.npy", mmap_mode="r"), y, epochs=1, batch_size=10, shuffle=False)
    assert net.optimizer.t == net.epoch_steps == 200
    twin = scalarbp.MLP([4, 5, 3], seed=0)
    twin.fit(np.load(tmp_path / "X.npy", mmap_mode="r")[:2000], y[:2000], epochs=1, batch_size=10, shuffle=False)
    assert np.array_equal(net.theta, twin.theta)


def test_memmap_gathers_minibatches_instead_of_copying(tmp_path, monkeypatch):
    X, y = make_blobs(256, n_features=4, centers=2, seed=0)
    X_disk = np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="w+", shape=X.shape)
    X_disk[...] = X
    converted = []
    original = scalarbp.checks.inputs
    monkeypatch.setattr(scalarbp.checks, "inputs", lambda X, *a: converted.append(len(X)) or original(X, *a))
    scalarbp.MLP([4, 8, 2], seed=0).fit(X_disk, y, epochs=1, batch_size=32)
    assert 256 not in converted  # no whole-array conversion


def test_a_nan_row_in_a_memmap_is_reported_when_read(tmp_path):
    X, y = make_blobs(64, n_features=3, centers=2, seed=0)
    X[17, 1] = np.nan
    X_disk = np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="w+", shape=X.shape)
    X_disk[...] = X
    with pytest.raises(ValueError, match=r"NaN or inf in row\(s\) \[17\]"):
        scalarbp.MLP([3, 4, 2]).fit(X_disk, y, epochs=1)


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


@pytest.mark.parametrize("kwargs,message", [
    (dict(epochs=-1), "epochs must be an integer >= 0"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(lr=0), "lr must be a positive number"),
    (dict(optimizer="adagrad"), "unknown optimizer 'adagrad'"),
    (dict(backend="gpu"), "unknown backend 'gpu'"),
    (dict(validation_fraction=1.5), r"validation_fraction must lie in \[0, 1\)"),
    (dict(validation_fraction=0.2, validation_data=([[0, 0]], [0])), "not both"),
])
def test_bad_training_options_are_refused(kwargs, message):
    net, X, y = spirals_net()
    with pytest.raises(ValueError, match=message):
        net.fit(X, y, **kwargs)


def test_bad_optimizer_hyperparameters_are_refused():
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\)"):
        Momentum(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="unknown adam option"):
        Adam(0.1, betas=(0.9, 0.99))


def test_a_validation_split_of_a_memmap_does_not_copy_the_training_set(tmp_path):
    import tracemalloc
    N, d = 40_000, 100  # 32 MB on disk
    X = np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="w+", shape=(N, d))
    X[...] = np.random.default_rng(0).normal(size=(N, d))
    X.flush()
    X = np.memmap(tmp_path / "X.dat", dtype=np.float64, mode="r", shape=(N, d))
    y = np.arange(N) % 2
    net = scalarbp.MLP([d, 4, 2], seed=0)
    net.fit(X[:100], y[:100], epochs=1, validation_fraction=0.1, seed=0)  # compiled first
    tracemalloc.start()
    net.fit(X, y, epochs=1, batch_size=500, validation_fraction=0.1, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.5 * X.nbytes  # the held-out tenth and its work buffers; a copy of the rest is 0.9
