"""What fit takes besides the data: the optimizer it continues, sample and class weights,
learning-rate schedules, gradient clipping, callbacks, and the History it returns."""
import numpy as np
import pytest

import scalarbp
from scalarbp.backends import BACKENDS
from scalarbp.datasets import make_blobs, make_spirals
from scalarbp.schedules import Cosine, ReduceOnPlateau, StepDecay
from scalarbp.training import Callback
from conftest import spirals_net


def problem(dtype="float64"):
    X, y = make_spirals(60, seed=0)
    return scalarbp.MLP([2, 7, 3], hidden="tanh", l2=0.01, seed=0, dtype=dtype), X, y


def test_fit_after_load_continues_the_saved_optimizer(tmp_path):
    net, X, y = problem()
    net.fit(X, y, epochs=2, optimizer="rmsprop", lr=0.01, seed=0)
    net.save(tmp_path / "m.npz")
    back = scalarbp.MLP.load(tmp_path / "m.npz")
    back.fit(X, y, epochs=1, seed=0)  # no optimizer given: the saved RMSprop, its state and rate
    net.fit(X, y, epochs=1, seed=0)
    assert back.optimizer.name == "rmsprop" and back.optimizer.lr == 0.01 and back.optimizer.t == net.optimizer.t
    assert np.array_equal(back.theta, net.theta)
    fresh, _, _ = problem()
    fresh.fit(X, y, epochs=1, seed=0)
    assert fresh.optimizer.name == "adam" and fresh.optimizer.lr == 0.001  # the one default, everywhere


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_sample_weights_equal_repeating_the_samples(backend):
    net, X, y = problem()
    weights = np.array([2.0, 1.0, 3.0, 1.0, 1.0, 2.0])
    J_w, dW_w, db_w = net.loss_and_grad(X[:6], y[:6], backend=backend, weights=weights)
    repeated = np.repeat(np.arange(6), weights.astype(int))
    J, dW, db = net.loss_and_grad(X[repeated], y[repeated], backend=backend)
    assert J_w == pytest.approx(J, rel=1e-13)
    for a, b in zip(dW_w + db_w, dW + db):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_weighted_gradients_match_finite_differences():
    net, X, y = problem()
    weights = np.random.default_rng(1).uniform(0.1, 2.0, 20)
    J, dW, db = net.loss_and_grad(X[:20], y[:20], weights=weights)
    theta, grad, eps = net.theta.copy(), np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(dW, db)]), 1e-6
    for m in (0, 5, 20, len(theta) - 1):
        net.theta[m] = theta[m] + eps
        up = net.loss_and_grad(X[:20], y[:20], weights=weights)[0]
        net.theta[m] = theta[m] - eps
        down = net.loss_and_grad(X[:20], y[:20], weights=weights)[0]
        net.theta[m] = theta[m]
        assert (up - down) / (2 * eps) == pytest.approx(grad[m], rel=1e-6, abs=1e-9)


def test_balanced_class_weights_are_scikit_learns():
    X, y = make_blobs(90, n_features=2, centers=3, seed=0)
    y = np.where(np.arange(90) < 60, 0, y)  # 60+ of class 0: imbalanced
    net = scalarbp.MLP([2, 4, 3], seed=0)
    weights = scalarbp.training.sample_weights(net, y, None, "balanced")
    counts = np.bincount(y, minlength=3)
    np.testing.assert_allclose(weights, (90 / (3 * counts))[y], rtol=1e-15)
    sklearn = pytest.importorskip("sklearn.utils.class_weight")
    np.testing.assert_allclose(weights, sklearn.compute_sample_weight("balanced", y), rtol=1e-15)


def test_weighted_training_agrees_across_backends():
    X, y = make_blobs(120, n_features=3, centers=3, seed=0)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, 120)
    thetas = []
    for backend in ("scalar", "row"):
        net = scalarbp.MLP([3, 6, 3], seed=0)
        net.fit(X, y, epochs=3, batch_size=16, lr=0.01, optimizer="sgd", seed=0, backend=backend,
                sample_weight=weights, class_weight={0: 2.0})
        thetas.append(net.theta)
    np.testing.assert_allclose(*thetas, rtol=1e-12, atol=1e-14)


def test_a_step_schedule_equals_changing_the_rate_by_hand():
    net, X, y = problem()
    net.fit(X, y, epochs=4, batch_size=16, optimizer="sgd", lr=0.1, seed=0, schedule=StepDecay(2, gamma=0.5))
    twin, _, _ = problem()
    for rate in (0.1, 0.1, 0.05, 0.05):
        twin.fit(X, y, epochs=1, batch_size=16, optimizer="sgd", lr=rate, seed=0)
    assert np.array_equal(net.theta, twin.theta)


def test_schedules_resume_where_they_stopped():
    net, X, y = problem()
    history = net.fit(X, y, epochs=6, batch_size=8, optimizer="adam", seed=0, schedule=Cosine(6), warmup_steps=10)
    twin, _, _ = problem()
    twin.fit(X, y, epochs=2, batch_size=8, optimizer="adam", seed=0, schedule=Cosine(6), warmup_steps=10)
    twin.fit(X, y, epochs=4, batch_size=8, seed=0, schedule=Cosine(6), warmup_steps=10)
    assert np.array_equal(net.theta, twin.theta)
    assert history.lr[0] < history.lr[1] and history.lr[-1] < 0.01 * history.lr[1]  # warm-up, then down to ~0


def test_warm_up_and_cosine_rates_step_by_step():
    from scalarbp import schedules
    rates = schedules.rates(Cosine(2), 1.0, 4, 0, 0, 8, 4)  # 2 epochs of 4 steps, warm-up over 4 steps
    expected = [(0.5 + 0.5 * np.cos(np.pi * s / 8)) * min(1, (s + 1) / 4) for s in range(8)]
    np.testing.assert_allclose(rates, expected, rtol=1e-15)


def test_reduce_on_plateau_cuts_the_optimizers_rate():
    net, X, y = problem()
    plateau = ReduceOnPlateau(factor=0.5, patience=1, threshold=10.0)  # no epoch is ever "better" enough
    history = net.fit(X, y, epochs=5, optimizer="sgd", lr=0.1, seed=0, schedule=plateau)
    assert net.optimizer.lr == pytest.approx(0.1 * 0.5 ** 2) and history.lr[0] == 0.1


@pytest.mark.parametrize("backend", ["scalar", "row"])
def test_clipping_scales_the_gradient_to_its_norm(backend):
    net, X, y = problem()
    J, dW, db = net.loss_and_grad(X[:16], y[:16])
    grad = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(dW, db)])
    norm = np.linalg.norm(grad)
    clip = norm / 4
    before = net.theta.copy()
    net.fit(X[:16], y[:16], epochs=1, batch_size=16, optimizer="sgd", lr=0.1, shuffle=False, clip_norm=clip,
            backend=backend)
    np.testing.assert_allclose(net.theta, before - 0.1 * grad * clip / (norm + 1e-6), rtol=1e-12, atol=1e-15)


def test_a_callback_sees_every_epoch_and_can_stop_training():
    class StopAtThree(Callback):
        seen = []

        def on_epoch_end(self, epoch, history, net):
            self.seen.append((epoch, history.epochs, net.epochs_trained))
            return epoch == 2

    net, X, y = problem()
    history = net.fit(X, y, epochs=10, seed=0, callbacks=[StopAtThree()])
    assert StopAtThree.seen == [(0, 1, 1), (1, 2, 2), (2, 3, 3)]
    assert history.epochs == 3 and history.stopped_by == "a callback"
    with pytest.raises(TypeError, match="on_epoch_end"):
        net.fit(X, y, epochs=1, callbacks=[print])


def test_history_prints_a_table_and_exports_csv_and_a_plot(tmp_path):
    net, X, y = problem()
    history = net.fit(X, y, epochs=12, seed=0, validation_fraction=0.2)
    text = str(history)
    assert text.splitlines()[0].split() == ["epoch", "loss", "val_loss", "val_accuracy", "lr", "seconds"]
    assert "..." in text and len(text.splitlines()) == 11
    history.to_csv(tmp_path / "h.csv")
    table = np.loadtxt(tmp_path / "h.csv", delimiter=",", skiprows=1)
    assert table.shape == (12, 6) and np.allclose(table[:, 1], history.loss)
    pytest.importorskip("matplotlib")
    history.plot(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("backend", ["scalar", "row"])
def test_a_minibatch_of_zero_weights_steps_on_the_penalty_alone(backend):
    """Legal input (the weights' sum is positive) whose first minibatch weighs nothing: its
    step is the L2 penalty's gradient, counted; the second is an ordinary step."""
    net, X, y = problem()
    X, y = X[:8], y[:8]
    weights = np.array([0.0, 0, 0, 0, 1, 1, 1, 1])
    theta0 = net.theta.copy()
    net.fit(X, y, epochs=1, batch_size=4, lr=0.1, optimizer="sgd", shuffle=False, sample_weight=weights,
            backend=backend)
    assert net.epochs_trained == 1 and net.optimizer.t == 2
    step = scalarbp.MLP([2, 7, 3], hidden="tanh", l2=0.01, seed=0)
    penalty = np.concatenate([np.concatenate([0.01 * W.ravel(), np.zeros_like(b)])
                              for W, b in zip(step.weights, step.biases)])
    step.theta = theta0 - 0.1 * penalty
    _, dW, db = step.loss_and_grad(X[4:], y[4:], backend=backend)
    expected = step.theta - 0.1 * np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(dW, db)])
    np.testing.assert_allclose(net.theta, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("weight", [1e39, 1e-50])
def test_float32_weights_beyond_float32s_range_keep_their_meaning(weight):
    """Only the weights' ratios count: 1e39 (inf in float32) and 1e-50 (0) for every sample
    train exactly as weights of 1 do."""
    X, y = make_blobs(40, n_features=3, centers=3, seed=0)
    thetas = []
    for w in (1.0, weight):
        net = scalarbp.MLP([3, 5, 3], dtype="float32", seed=0)
        net.fit(X, y, epochs=2, batch_size=8, seed=0, sample_weight=np.full(40, w))
        thetas.append(net.theta)
    assert np.array_equal(*thetas)
    net = scalarbp.MLP([3, 5, 3], dtype="float32", seed=0)
    J_big, _, _ = net.loss_and_grad(X, y, weights=np.full(40, weight))
    assert J_big == net.loss_and_grad(X, y)[0]


def test_fit_options_have_one_definition_with_their_defaults():
    import inspect
    from dataclasses import fields

    from scalarbp import cli, training
    from scalarbp.options import FitOptions

    shown = inspect.signature(scalarbp.MLP.fit).parameters
    assert list(shown) == ["self", "X", "y"] + [field.name for field in fields(FitOptions)]
    assert all(shown[field.name].default == field.default for field in fields(FitOptions))
    assert shown["epochs"].default == 30 and shown["batch_size"].default == 32
    args = cli.parser().parse_args(["train"])
    for name in ("epochs", "batch_size", "patience", "backend", "warmup_steps", "dp_sampling"):
        assert getattr(args, name) == getattr(FitOptions, name), name  # the command's defaults are fit's
    assert list(inspect.signature(training.fit).parameters) == ["net", "X", "y"] + list(shown)[3:]


def test_fit_takes_its_options_by_position_as_before_and_names_an_unknown_one():
    net, X, y = problem()
    by_name = net.fit(X, y, epochs=2, batch_size=16, seed=0).loss
    again, _, _ = problem()
    assert again.fit(X, y, 2, 16, None, None, True, 0).loss == by_name
    with pytest.raises(TypeError, match="epoch"):
        net.fit(X, y, epoch=2)
    with pytest.raises(TypeError, match="multiple values"):
        net.fit(X, y, 2, epochs=2)


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
