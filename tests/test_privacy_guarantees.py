"""DP-SGD's guarantee, tried as an attacker would.

The threat model (docs/privacy.md, "Threat model and guarantee"): the adversary knows the
code, the initial weights, the seed, every training record but one, and the trained
weights; the noise and the batches must be secret, the noise Gaussian, each record's
contribution bounded, epsilon counted over every step the weights took, and every other
release either withheld or named.  Each test is one way the guarantee broke before."""
import numpy as np
import pytest

import scalarbp
from scalarbp import privacy
from scalarbp.backends import get
from scalarbp.datasets import load_digits
from scalarbp.privacy.stepper import clipped_grad

DP = dict(batch_size=64, lr=0.5, optimizer="sgd", dp_clip=1.0, dp_noise=1.1)


@pytest.fixture(scope="module")
def digits():
    (X, y), _ = load_digits()
    return X[:640], y[:640]


def test_the_seed_does_not_give_the_noise_back(digits):
    """Before, the noise was keyed by ``seed``: two fits with one seed on neighbouring data
    differed by exactly the clipped sums' difference, and ``model - init - noise(seed)``
    gave the clipped gradient back.  Now each fit draws its key: the same seed, data and
    init give other weights, and a one-step fit minus the seed's reproducible noise is not
    the clipped step."""
    X, y = digits
    thetas = []
    for _ in range(2):
        net = scalarbp.MLP([64, 16, 10], seed=0)
        net.fit(X, y, epochs=1, seed=0, **DP)
        thetas.append(net.theta)
    assert not np.array_equal(*thetas)
    difference = thetas[0] - thetas[1]  # pure noise differences: about lr * sigma C / B * sqrt(2 * steps)
    assert np.std(difference) > 0.5 * 0.5 * 1.1 / 64 * np.sqrt(2 * 10)


def test_the_estimators_noise_is_not_a_function_of_random_state(digits):
    pytest.importorskip("sklearn")
    from scalarbp.sklearn import ScalarMLPClassifier

    X, y = digits
    fits = [ScalarMLPClassifier((16,), solver="sgd", momentum=0, learning_rate_init=0.5, batch_size=64, max_iter=1,
                                random_state=0, dp_clip=1.0, dp_noise=1.1).fit(X, y).net_.theta for _ in range(2)]
    assert not np.array_equal(*fits)


def test_the_key_is_never_written_to_the_model_file(digits, tmp_path, monkeypatch):
    X, y = digits
    keys = []
    real = privacy.sampler.new_key
    monkeypatch.setattr(privacy.sampler, "new_key", lambda: keys.append(real()) or keys[-1])
    net = scalarbp.MLP([64, 16, 10], seed=0)
    net.fit(X, y, epochs=1, seed=0, **DP)
    net.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    assert len(keys) == 1 and keys[0].tobytes() not in data and keys[0].tobytes()[:8] not in data


def test_float64_nets_get_float64_noise(digits):
    """Before, the noise was float32 in a float64 net: every value on the float32 grid,
    which a residual test told apart from data.  One step with and without noise (the
    reproducible opt-in, so that both draw the same batch): the difference is the noise."""
    X, y = digits
    thetas = []
    for noise in (0.0, 1.0):
        net = scalarbp.MLP([64, 16, 10], seed=0)
        net.fit(X[:64], y[:64], epochs=1, batch_size=64, lr=1.0, optimizer="sgd", dp_clip=1.0, dp_noise=noise,
                dp_sampling="shuffle", shuffle=False, dp_insecure_seed=1)
        thetas.append(net.theta)
    xi = (thetas[0] - thetas[1]) * 64
    assert np.mean(xi.astype(np.float32).astype(np.float64) == xi) < 0.01


@pytest.mark.parametrize("backend", ["scalar", "literal", "row", "column"])
def test_a_record_whose_norm_is_not_finite_is_left_out_not_kept_whole(backend):
    """A huge input with every ReLU of the first layer dead gives a gradient norm of
    ``inf * 0`` = NaN on the backends that use the norm identity; ``min(1, C / NaN)`` was 1
    in compiled code, and the record contributed 138 C.  Now its contribution is at most
    C on every backend, and exactly 0 where its norm is not finite."""
    net = scalarbp.MLP([4, 6, 3], seed=0)
    net.biases[0] = -np.ones(6)
    net.weights[0] = -np.abs(net.weights[0])  # every unit of the first layer dead for a positive input
    X = np.vstack([np.full((1, 4), 1e200), np.random.default_rng(0).normal(size=(5, 4))])
    T = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    grad, rest = np.empty_like(net.theta), np.empty_like(net.theta)
    _, norms = clipped_grad(get(backend), net, X, T, 0.5, grad)
    clipped_grad(get(backend), net, X[1:], T[1:], 0.5, rest)
    assert np.isfinite(grad).all() and np.linalg.norm(grad - rest) <= 0.5 * (1 + 1e-9)
    if not np.isfinite(norms[0]):
        np.testing.assert_allclose(grad, rest, rtol=1e-12, atol=1e-15)
    assert backend != "scalar" or not np.isfinite(norms[0])  # (the compiled path meets the NaN norm)


def _ledger_epsilon(runs, delta=1e-5):
    return privacy.Ledger([("poisson", steps, q, noise) for q, noise, steps in runs]).epsilon(delta)


def test_epsilon_is_inf_after_non_private_steps(digits):
    X, y = digits
    net = scalarbp.MLP([64, 16, 10], seed=0)
    net.fit(X, y, epochs=5, batch_size=64, lr=0.5, optimizer="sgd", seed=0)
    history = net.fit(X, y, epochs=1, seed=0, dp_delta=1e-5, **DP)
    assert history.epsilon == [np.inf] and "non-private" in net.privacy_ledger.uncovered()


def test_epsilon_is_inf_after_steps_without_noise(digits):
    X, y = digits
    net = scalarbp.MLP([64, 16, 10], seed=0)
    net.fit(X, y, epochs=1, seed=0, **{**DP, "dp_noise": 0.0})
    assert net.fit(X, y, epochs=1, seed=0, dp_delta=1e-5, **DP).epsilon == [np.inf]


def test_epsilon_composes_fits_on_data_of_another_size_and_another_sigma(digits):
    """128 samples then 640 (q changes), then sigma 0.5 then 5: epsilon is the
    composition of every run, not the last fit's alone."""
    X, y = digits
    net = scalarbp.MLP([64, 16, 10], seed=0)
    net.fit(X[:128], y[:128], epochs=2, seed=0, **DP)
    net.fit(X, y, epochs=1, seed=0, **{**DP, "dp_noise": 0.5})
    history = net.fit(X, y, epochs=1, seed=0, dp_delta=1e-5, **{**DP, "dp_noise": 5.0})
    composed = _ledger_epsilon([(0.5, 1.1, 4), (0.1, 0.5, 10), (0.1, 5.0, 10)])
    alone = privacy.epsilon(0.1, 5.0, 24, 1e-5)  # what was reported before: the last fit's q and sigma
    assert history.epsilon[-1] == pytest.approx(composed) and composed > 5 * alone


def test_switching_optimizer_neither_resets_the_count_nor_reuses_noise(digits):
    X, y = digits
    net = scalarbp.MLP([64, 16, 10], seed=0)
    net.fit(X, y, epochs=1, seed=0, dp_insecure_seed=3, **DP)
    first = net.privacy_ledger.steps
    net.fit(X, y, epochs=1, seed=0, dp_insecure_seed=3, **{**DP, "optimizer": "adam", "lr": 0.01})
    # a new optimizer counts from 0, the ledger (whose count numbers the noise and batches) does not
    assert net.optimizer.t == 10 and net.privacy_ledger.steps == first + 10 == 20


def test_repeated_partial_fit_composes_every_call(digits):
    pytest.importorskip("dp_accounting")
    pytest.importorskip("sklearn")
    from scalarbp.sklearn import ScalarMLPClassifier

    X, y = digits
    model = ScalarMLPClassifier((16,), solver="sgd", momentum=0, learning_rate_init=0.5, batch_size=64,
                                random_state=0, dp_clip=1.0, dp_noise=1.1, dp_delta=1e-5)
    for _ in range(5):
        model.partial_fit(X, y, classes=np.arange(10))
    assert model.epsilon_ == pytest.approx(privacy.epsilon(0.1, 1.1, 50, 1e-5))


def test_resume_with_another_batch_size_keeps_the_ledger(tmp_path, capsys):
    """``scalarbp train --resume`` with another batch size reported the new fit's epsilon
    alone (14.4 dropped to 0.83); the ledger travels in the model file."""
    pytest.importorskip("dp_accounting")
    from scalarbp.cli import main

    model = str(tmp_path / "m.npz")
    common = ["train", "--dp-clip", "1", "--dp-noise", "1.1", "--dp-delta", "1e-5", "--optimizer", "sgd",
              "--lr", "0.5", "--quiet", "--save", model]
    assert main(common + ["--epochs", "2", "--batch-size", "256"]) == 0
    before = scalarbp.MLP.load(model).privacy_ledger
    assert main(common + ["--epochs", "1", "--batch-size", "16", "--resume", model]) == 0
    after = scalarbp.MLP.load(model).privacy_ledger
    assert after.entries[:len(before.entries)] == before.entries and after.steps > before.steps
    assert after.epsilon(1e-5) > before.epsilon(1e-5)


@pytest.mark.parametrize("target", [float("nan"), 0.0, -1.0, float("inf")])
def test_a_target_epsilon_that_cannot_be_accounted_is_refused(digits, target):
    X, y = digits
    with pytest.raises(ValueError, match="target_epsilon"):
        scalarbp.MLP([64, 16, 10]).fit(X, y, epochs=1, batch_size=64, dp_clip=1.0, dp_delta=1e-5,
                                       target_epsilon=target)


def test_noise_that_underflows_the_dtype_is_refused(digits):
    """dp_clip=1e-50 in float32 rounded sigma C to 0 while epsilon was reported."""
    X, y = digits
    net = scalarbp.MLP([64, 16, 10], dtype="float32")
    with pytest.raises(ValueError, match="dp_clip"):
        net.fit(X, y, epochs=1, batch_size=64, lr=1e49, optimizer="sgd", dp_clip=1e-50, dp_noise=1.1)
    with pytest.raises(ValueError, match="rounded away"):
        net.fit(X, y, epochs=1, batch_size=64, optimizer="sgd", dp_clip=1e-30, dp_noise=1e-10)


def test_target_epsilon_counts_the_past_and_is_never_passed(digits):
    pytest.importorskip("dp_accounting")
    X, y = digits
    net = scalarbp.MLP([64, 16, 10], seed=0)
    net.fit(X, y, epochs=2, seed=0, dp_delta=1e-5, **DP)
    spent = net.privacy_ledger.epsilon(1e-5)
    history = net.fit(X, y, epochs=50, seed=0, dp_delta=1e-5, target_epsilon=spent + 2, **DP)
    assert history.stopped_by.startswith("target_epsilon") and 0 < history.epochs < 50
    assert spent < history.epsilon[-1] <= spent + 2
    with pytest.raises(ValueError, match="cannot be met"):
        net.fit(X, y, epochs=1, batch_size=64, dp_clip=1.0, dp_delta=1e-5, target_epsilon=spent)


def test_the_training_loss_is_withheld_and_nothing_unnamed_depends_on_the_data(digits):
    """Before, ``history.loss`` gave back one record's exact loss (error 3e-14) to anyone
    who knew the others.  Two fits on neighbouring data with the same (reproducible)
    randomness: every record of the History that is not named in ``outside_epsilon`` is
    the same."""
    X, y = digits
    histories = []
    for data in ((X, y), (np.vstack([X[:-1], X[:1]]), np.concatenate([y[:-1], y[:1]]))):
        net = scalarbp.MLP([64, 16, 10], seed=0)
        histories.append(net.fit(*data, epochs=3, seed=0, dp_insecure_seed=5, dp_delta=1e-5, **DP))
    a, b = histories
    assert np.isnan(a.loss).all() and "loss" not in a.columns()
    named = {"seconds"}
    for name in set(a.columns()) - named:
        assert np.array_equal(a.columns()[name], b.columns()[name]), name
    assert (a.stopped_by, a.best_epoch, a.stopped_early) == (b.stopped_by, b.best_epoch, b.stopped_early)
    assert any(line.startswith("seconds") for line in a.outside_epsilon)


def test_decisions_on_the_training_loss_are_refused_under_dp(digits):
    X, y = digits
    net = scalarbp.MLP([64, 16, 10])
    with pytest.raises(ValueError, match="early stopping"):
        net.fit(X, y, epochs=1, early_stopping=True, **DP)
    with pytest.raises(ValueError, match="reduce_on_plateau"):
        net.fit(X, y, epochs=1, schedule="reduce_on_plateau", **DP)
    history = net.fit(X, y, epochs=2, early_stopping=True, validation_fraction=0.2, **DP)
    assert any("validation" in line and "private training data" in line for line in history.outside_epsilon)
    assert any(line.startswith("early stopping") for line in history.outside_epsilon)


def test_the_estimators_do_not_stop_on_the_withheld_loss(digits):
    pytest.importorskip("sklearn")
    from scalarbp.sklearn import ScalarMLPClassifier

    X, y = digits
    model = ScalarMLPClassifier((16,), solver="sgd", momentum=0, learning_rate_init=0.5, batch_size=64, max_iter=6,
                                n_iter_no_change=1, tol=10.0, random_state=0, dp_clip=1.0, dp_noise=1.1)
    with pytest.warns(Warning):
        model.fit(X, y)
    assert model.n_iter_ == 6 and model.loss_curve_ == []  # tol=10 would stop a plain fit after 2 epochs


def test_nets_of_unknown_history_report_infinite_epsilon(digits, tmp_path):
    X, y = digits
    net = scalarbp.MLP([64, 16, 10], seed=0)
    assert net.privacy_ledger.epsilon(1e-5) == 0.0
    net.theta = net.theta * 1.0
    assert net.privacy_ledger.epsilon(1e-5) == np.inf
    fresh = scalarbp.MLP([64, 16, 10], seed=0)
    fresh.weights[0] = fresh.weights[0]
    assert fresh.privacy_ledger.uncovered() == "parameters of unknown history"
    history = net.fit(X, y, epochs=1, seed=0, dp_delta=1e-5, **DP)  # (DP steps do not make them private)
    assert history.epsilon == [np.inf]
    trained = scalarbp.MLP([64, 16, 10], seed=0)
    trained.fit(X, y, epochs=1, seed=0, **DP)
    trained.save(tmp_path / "m.npz")
    loaded = scalarbp.MLP.load(tmp_path / "m.npz")
    assert loaded.privacy_ledger == trained.privacy_ledger
    assert loaded.astype("float32").privacy_ledger == trained.privacy_ledger
    import copy
    assert copy.deepcopy(trained).privacy_ledger == trained.privacy_ledger


def test_a_model_file_from_before_the_ledger_has_unknown_history(tmp_path):
    from scalarbp import persistence

    net = scalarbp.MLP([4, 3, 2], seed=0)
    net.save(tmp_path / "m.npz")
    config, arrays = persistence.read(str(tmp_path / "m.npz"), lambda c: {"theta": ((net.theta.size,), net.dtype)})
    del config["privacy_ledger"]
    for key in ("format", "version"):
        config.pop(key)
    persistence.save(tmp_path / "old.npz", config, arrays)
    assert scalarbp.MLP.load(tmp_path / "old.npz").privacy_ledger.epsilon(1e-5) == np.inf


def test_from_sklearn_has_unknown_history():
    sklearn = pytest.importorskip("sklearn.neural_network")
    from scalarbp.sklearn import ScalarMLPClassifier

    (X, y), _ = load_digits()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = sklearn.MLPClassifier((8,), max_iter=2, random_state=0).fit(X[:200], y[:200])
    assert ScalarMLPClassifier.from_sklearn(est).net_.privacy_ledger.epsilon(1e-5) == np.inf


def test_a_reproducible_run_is_bit_exact_and_reported_as_not_private(digits):
    X, y = digits
    runs = []
    for _ in range(2):
        net = scalarbp.MLP([64, 16, 10], seed=0)
        runs.append((net.fit(X, y, epochs=1, seed=0, dp_insecure_seed=9, dp_delta=1e-5, **DP), net.theta))
    assert np.array_equal(runs[0][1], runs[1][1]) and runs[0][0].epsilon == [np.inf]
