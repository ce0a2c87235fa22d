"""Per-example gradients (seed 001 before seed 004's sum) and their norms without them."""
import numpy as np
import pytest
from conftest import HIDDEN, OUTPUT_LOSS, problem

import scalarbp
from scalarbp.backends import BACKENDS


def single_sample_gradients(net, X, Y, backend):
    """N separate single-sample loss_and_grad calls, each flat like theta."""
    rows, losses = [], []
    for n in range(len(X)):
        J, dW, db = net.loss_and_grad(X[n:n + 1], Y[n:n + 1], backend=backend)
        losses.append(J)
        rows.append(np.concatenate([np.concatenate([W.ravel(), b]) for W, b in zip(dW, db)]))
    return np.array(losses), np.array(rows)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hidden, output_loss", [(h, OUTPUT_LOSS[0]) for h in HIDDEN] +
                         [(HIDDEN[3], pair) for pair in OUTPUT_LOSS[1:]])
def test_per_example_gradients_equal_single_sample_calls(backend, hidden, output_loss):
    net, X, Y = problem([4, 6, 5, 3], hidden, *output_loss, N=7)
    losses, G = net.per_example_grads(X, Y, backend=backend, flat=True)
    single_losses, single = single_sample_gradients(net, X, Y, backend)
    np.testing.assert_allclose(losses, single_losses, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(G, single, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_norm_identity_holds_on_every_backend(backend):
    net, X, Y = problem([5, 8, 6, 4], "tanh", N=9)
    _, G = net.per_example_grads(X, Y, backend=backend, flat=True)
    losses, norms = net.per_example_grad_norms(X, Y, backend=backend)
    np.testing.assert_allclose(norms, np.linalg.norm(G, axis=1), rtol=1e-13)


def test_per_example_gradients_sum_to_the_batch_gradient_with_the_penalty():
    net, X, Y = problem([3, 5, 2], "relu", N=6, l2=0.3)
    losses, dW, db = net.per_example_grads(X, Y)
    J, dW_batch, db_batch = net.loss_and_grad(X, Y)
    assert [w.shape for w in dW] == [(6, 5, 3), (6, 2, 5)] and [b.shape for b in db] == [(6, 5), (6, 2)]
    penalty = 0.5 * 0.3 * sum((W ** 2).sum() for W in net.weights)
    assert losses.mean() + penalty == pytest.approx(J, rel=1e-14)
    for k in range(2):
        np.testing.assert_allclose(dW[k].mean(axis=0) + 0.3 * net.weights[k], dW_batch[k], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(db[k].mean(axis=0), db_batch[k], rtol=1e-12, atol=1e-15)


def test_chunks_of_per_example_gradients_equal_the_whole():
    net, X, Y = problem([4, 6, 3], "sigmoid", N=11)
    _, whole = net.per_example_grads(X, Y, flat=True)
    parts = list(net.iter_per_example_grads(X, Y, chunk=4))
    assert [start for start, _, _ in parts] == [0, 4, 8]
    np.testing.assert_array_equal(np.vstack([G for _, _, G in parts]), whole)


def test_norms_need_no_per_example_gradients_in_memory():
    """64 samples of a net with 600,000 parameters: N x P would be 307 MB in float64."""
    import tracemalloc
    rng = np.random.default_rng(0)
    net = scalarbp.MLP([500, 1000, 100, 10], seed=0)
    X, y = rng.normal(size=(64, 500)), rng.integers(0, 10, 64)
    net.per_example_grad_norms(X[:2], y[:2])  # compiled first
    tracemalloc.start()
    _, norms = net.per_example_grad_norms(X, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20 and norms.shape == (64,) and (norms > 0).all()
    _, G = net.per_example_grads(X[:4], y[:4], flat=True)
    np.testing.assert_allclose(norms[:4], np.linalg.norm(G, axis=1), rtol=1e-12)


def test_float32_per_example_gradients_follow_float64():
    net, X, Y = problem([4, 6, 3], "tanh", N=5)
    _, G64 = net.per_example_grads(X, Y, flat=True)
    _, G32 = net.astype("float32").per_example_grads(X, Y, flat=True)
    assert G32.dtype == np.float32
    np.testing.assert_allclose(G32, G64, rtol=1e-4, atol=1e-6)


def test_explain_per_example_shows_each_samples_outer_products_and_the_norm_identity(capsys):
    from scalarbp.cli import main
    assert main(["explain", "--per-example"]) == 0
    out = capsys.readouterr().out
    assert "sample 1:" in out and "sample 2:" in out and "dLoss/dW2      = δ2_1 h1_1^T" in out
    for line in out.splitlines():
        if "||g_n||^2 from the gradient" in line:
            values = [float(part.split("=")[-1].split(";")[0].split(":")[-1]) for part in line.split(";")]
            assert values[0] == pytest.approx(values[1], rel=1e-5) == pytest.approx(values[2], rel=1e-5)
