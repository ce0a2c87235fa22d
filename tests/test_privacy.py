"""DP-SGD: per-example clipping from the deltas, seeded noise, Poisson sampling, and the
privacy spent; Opacus' step and accountant where they are installed."""
import re

import numba
import numpy as np
import pytest
from conftest import problem

import scalarbp
from scalarbp import privacy
from scalarbp.backends import get
from scalarbp.datasets import load_digits
from scalarbp.privacy.stepper import clipped_grad


@pytest.mark.parametrize("backend", ["scalar", "literal", "row", "column"])
def test_the_clipped_sum_is_each_samples_gradient_scaled_to_at_most_the_bound(backend):
    net, X, Y = problem([4, 7, 5, 3], "tanh", N=9)
    T = np.eye(3)[Y]
    _, G = net.per_example_grads(X, Y, backend="row", flat=True)
    clip = np.median(np.linalg.norm(G, axis=1))  # half the samples clipped
    grad = np.empty_like(net.theta)
    total, norms = clipped_grad(get(backend), net, X, T, clip, grad)
    factors = np.minimum(1, clip / (np.linalg.norm(G, axis=1) + 1e-6))
    np.testing.assert_allclose(grad, factors @ G, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(norms, np.linalg.norm(G, axis=1), rtol=1e-12)
    assert (factors * norms <= clip * (1 + 1e-12)).all() and (factors < 1).any() and (factors == 1).any()


def test_dp_sgd_is_the_same_on_every_cpu_backend_and_any_thread_count():
    (X, y), _ = load_digits()
    runs = {}
    for backend, threads in (("scalar", 2), ("scalar", 1), ("row", 2)):
        numba.set_num_threads(threads)
        net = scalarbp.MLP([64, 16, 10], seed=0)
        net.fit(X[:400], y[:400], epochs=2, batch_size=40, lr=0.3, optimizer="sgd", seed=7, backend=backend,
                dp_clip=1.0, dp_noise=1.1, dp_insecure_seed=7)
        runs[(backend, threads)] = net.theta
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert np.array_equal(runs[("scalar", 2)], runs[("scalar", 1)])
    np.testing.assert_allclose(runs[("scalar", 2)], runs[("row", 2)], rtol=1e-10, atol=1e-12)


def test_the_noise_has_the_mechanisms_mean_and_variance():
    """One step with and without noise: the difference is -lr sigma C xi / B per parameter."""
    (X, y), _ = load_digits()
    thetas = []
    for noise in (0.0, 2.0):
        net = scalarbp.MLP([64, 128, 10], seed=0)
        net.fit(X[:32], y[:32], epochs=1, batch_size=32, lr=0.1, optimizer="sgd", seed=3, dp_clip=0.5, dp_noise=noise,
                dp_sampling="shuffle", shuffle=False, dp_insecure_seed=3)
        thetas.append(net.theta.copy())
    xi = (thetas[1] - thetas[0]) / (-0.1 * 2.0 * 0.5 / 32)
    assert abs(xi.mean()) < 4 / np.sqrt(xi.size) and abs(xi.std() - 1) < 0.02
    key = privacy.sampler.new_key()
    assert np.array_equal(privacy.noise(key, 1, 10, np.float64), privacy.noise(key, 1, 10, np.float64))


def test_poisson_sampling_draws_each_sample_independently_with_the_rate():
    subset, q = np.arange(10_000) * 3, 0.01
    poisson = privacy.Privacy(1.0, 1.0, None, "poisson")
    batches, offsets, divisors = privacy.batches(poisson, np.empty(200 * 64), 64, 1, subset, q)
    sizes = np.diff(offsets)
    assert sizes.shape == (200,) and (divisors == 100).all()
    assert abs(sizes.mean() - 100) < 3 and sizes.std() == pytest.approx(np.sqrt(100 * 0.99), rel=0.2)
    for b in range(200):  # members of subset, each at most once, in order
        batch = batches[offsets[b]:offsets[b + 1]]
        assert np.isin(batch, subset).all() and (np.diff(batch) > 0).all()
    joined = np.bincount(batches // 3, minlength=10_000).reshape(10, 1000).sum(axis=1) / (200 * 1000)
    assert np.abs(joined - q).max() < 5 * np.sqrt(q / (200 * 1000))  # the rate at every part of the subset
    later, later_offsets, _ = privacy.batches(poisson, np.empty(64), 64, 37, subset, q)
    assert np.array_equal(later, batches[offsets[36]:offsets[37]])  # a step's batch: its key and number alone
    everyone, _, _ = privacy.batches(poisson, np.empty(3 * 64), 64, 1, subset, 1.0)
    assert np.array_equal(everyone, np.tile(subset, 3))


def test_epsilon_is_recorded_and_a_target_stops_or_plans_training():
    pytest.importorskip("dp_accounting")
    (X, y), _ = load_digits()
    net = scalarbp.MLP([64, 16, 10], seed=0)
    history = net.fit(X, y, epochs=3, batch_size=64, lr=0.5, optimizer="sgd", seed=0, dp_clip=1.0, dp_noise=1.1,
                      dp_delta=1e-5)
    assert len(history.epsilon) == 3 and history.epsilon[0] < history.epsilon[1] < history.epsilon[2]
    q, steps = 64 / 1438, net.optimizer.t
    assert history.epsilon[-1] == pytest.approx(privacy.epsilon(q, 1.1, steps, 1e-5))
    stopped = scalarbp.MLP([64, 16, 10], seed=0).fit(X, y, epochs=10, batch_size=64, lr=0.5, optimizer="sgd", seed=0,
                                                     dp_clip=1.0, dp_noise=1.1, dp_delta=1e-5,
                                                     target_epsilon=history.epsilon[1])
    assert stopped.epochs == 2 and stopped.stopped_by.startswith("target_epsilon")
    sigma = privacy.noise_for(2.0, q, 3 * 23, 1e-5)
    assert privacy.epsilon(q, sigma, 3 * 23, 1e-5) == pytest.approx(2.0, rel=1e-3)


def test_epsilon_agrees_with_opacus_rdp_accountant():
    pytest.importorskip("dp_accounting")
    accountants = pytest.importorskip("opacus.accountants")
    q, sigma, steps, delta = 64 / 16384, 1.1, 3 * 256, 1e-5
    theirs = accountants.RDPAccountant()
    theirs.history = [(sigma, q, steps)]
    assert privacy.epsilon(q, sigma, steps, delta) == pytest.approx(theirs.get_epsilon(delta), rel=0.01)


def test_one_clipped_step_equals_opacus():
    torch = pytest.importorskip("torch")
    pytest.importorskip("opacus")
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    (X, y), _ = load_digits()
    X, y = X[:48], y[:48]
    net = scalarbp.MLP([64, 16, 10], seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)).double()
    with torch.no_grad():
        for layer, W, b in zip(model[::2], net.weights, net.biases):
            layer.weight.copy_(torch.from_numpy(W))
            layer.bias.copy_(torch.from_numpy(b))
    gsm = GradSampleModule(model, loss_reduction="mean")
    optimizer = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.1), noise_multiplier=0.0, max_grad_norm=0.5,
                            expected_batch_size=48, loss_reduction="mean")
    loss = torch.nn.functional.cross_entropy(gsm(torch.from_numpy(X)), torch.from_numpy(y))
    loss.backward()
    optimizer.step()
    net.fit(X, y, epochs=1, batch_size=48, lr=0.1, optimizer="sgd", shuffle=False, dp_clip=0.5, dp_noise=0.0,
            dp_sampling="shuffle")
    for layer, W, b in zip(model[::2], net.weights, net.biases):
        np.testing.assert_allclose(W, layer.weight.detach().numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b, layer.bias.detach().numpy(), rtol=1e-10, atol=1e-13)


def test_the_estimators_and_the_command_train_privately(capsys):
    pytest.importorskip("dp_accounting")
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    from scalarbp.cli import main
    from scalarbp.sklearn import ScalarMLPClassifier
    (X, y), (X_test, y_test) = load_digits()
    model = ScalarMLPClassifier((32,), solver="sgd", learning_rate_init=0.5, momentum=0.0, batch_size=64,
                                max_iter=4, n_iter_no_change=100, random_state=0, dp_clip=1.0, dp_noise=1.1,
                                dp_delta=1e-5)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    assert model.epsilon_ == pytest.approx(privacy.epsilon(64 / 1438, 1.1, model.net_.privacy_ledger.steps, 1e-5))
    assert model.loss_curve_ == [] and model.n_iter_ == 4  # (withheld, and no decision taken on it)
    assert model.score(X_test, y_test) > 0.7
    code = main(["train", "--dp-clip", "1", "--target-epsilon", "2", "--dp-delta", "1e-5", "--epochs", "3",
                 "--optimizer", "sgd", "--lr", "0.5", "--batch-size", "64", "--quiet"])
    out = capsys.readouterr().out
    spent = float(re.search(r"privacy: epsilon (\S+) at delta", out).group(1))
    assert code == 0 and 1.9 < spent <= 2 and "training loss withheld" in out and "standardizer" in out


def test_the_vectorised_noise_is_standard_normal_and_independent_of_threads():
    from scalarbp.privacy.sampler import add_noise, new_key
    key = new_key()
    x = privacy.noise(key, 3, 10_000_001, np.float32).astype(np.float64)
    assert abs(x.mean()) < 5 / np.sqrt(x.size) and abs(x.std() - 1) < 5 * np.sqrt(0.5 / x.size)
    assert ((x - x.mean()) ** 4).mean() / x.var() ** 2 == pytest.approx(3.0, abs=0.01)   # kurtosis
    for z, p, within in ((1, 0.31731, 0.003), (2, 0.04550, 0.01), (3, 0.00270, 0.03)):  # tails, to ~5 sigma
        assert np.mean(np.abs(x) > z) == pytest.approx(p, rel=within)
    assert x[-1] != 0 and not np.array_equal(privacy.noise(key, 4, 10, np.float32), privacy.noise(key, 3, 10, np.float32))
    a, b = np.zeros(100_001), np.zeros(100_001)
    numba.set_num_threads(1)
    add_noise(a, key, 1, 0.5)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    add_noise(b, key, 1, 0.5)
    assert np.array_equal(a, b)


def test_dp_sgd_resumes_bit_for_bit_and_stops_at_the_last_finite_weights():
    """The compiled DP-SGD loop keys batches and noise by step number: one fit of two epochs
    equals two fits of one; a diverging run keeps the weights of its last finite step."""
    from scalarbp.training import DivergedError

    (X, y), _ = load_digits()
    options = dict(batch_size=50, lr=0.3, optimizer="adam", seed=4, dp_clip=1.0, dp_noise=0.8, dp_insecure_seed=4)
    whole = scalarbp.MLP([64, 16, 10], seed=0)
    whole.fit(X[:500], y[:500], epochs=2, **options)
    halves = scalarbp.MLP([64, 16, 10], seed=0)
    halves.fit(X[:500], y[:500], epochs=1, **options)
    halves.fit(X[:500], y[:500], epochs=1, **options)
    assert np.array_equal(whole.theta, halves.theta) and whole.optimizer.t == halves.optimizer.t == 20
    net = scalarbp.MLP([64, 16, 10], seed=0)  # (under DP a step stops on its noisy gradient or update alone)
    start = net.theta.copy()
    with pytest.raises(DivergedError, match="diverged at epoch 1, step 1: the update"):
        net.fit(X[:500], y[:500], epochs=3, batch_size=50, lr=1e300, optimizer="sgd", seed=4, dp_clip=1e10,
                dp_noise=0.8)
    assert np.array_equal(net.theta, start) and net.optimizer.t == 0
