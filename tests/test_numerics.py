"""Precision, determinism across thread counts, and stability at extreme logits."""
import numba
import numpy as np
import pytest

import scalarbp
from conftest import BACKENDS, HIDDEN, OUTPUT_LOSS, assert_close, problem


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
def test_float32_gradients_are_close_to_float64(backend, output, loss):
    net64, X, Y = problem([10, 16, 8, 4], "tanh", output, loss, N=33)
    net32 = scalarbp.MLP(net64.sizes, "tanh", output, loss, dtype="float32")
    net32.theta[...] = net64.theta
    J64, dW64, db64 = net64.loss_and_grad(X, Y, backend=backend)
    J32, dW32, db32 = net32.loss_and_grad(X, Y, backend=backend)
    assert all(g.dtype == np.float32 for g in dW32 + db32)
    assert J32 == pytest.approx(J64, rel=1e-5)
    for g32, g64 in zip(dW32 + db32, dW64 + db64):
        assert_close(g32, g64, 1e-4)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes,N", [
    ([37, 29, 23, 10], 203),      # long sums: tiled products over transposed operands
    ([300, 160, 140, 10], 97),    # short sums: outer-product form, long ones for 160 units
    ([40, 256, 256, 10], 100),    # outer-form forward sum and weight gradient into dW^T
])
def test_scalar_gradients_are_identical_for_1_and_2_threads(dtype, sizes, N):
    net, X, Y = problem(sizes, "relu", N=N, dtype=dtype)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            J, dW, db = net.loss_and_grad(X, Y)
            F = net.forward(X)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append((J, np.concatenate([g.ravel() for g in dW + db]), F))
    (J1, g1, F1), (J2, g2, F2) = results
    assert J1 == J2
    assert np.array_equal(g1, g2)
    assert np.array_equal(F1, F2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("output,loss", [pair for pair in OUTPUT_LOSS if pair[0] != "exp"])  # (e^1e4 is the
@pytest.mark.parametrize("dtype", ["float32", "float64"])                                   # Poisson loss itself)
def test_logits_of_1e4_give_a_finite_loss_and_gradient(backend, output, loss, dtype):
    net, X, Y = problem([3, 4], output=output, loss=loss, N=6, dtype=dtype)
    net.weights[0][...] = 0
    net.biases[0][...] = [1e4, -1e4, 5e3, -3e3]
    J, dW, db = net.loss_and_grad(X, Y, backend=backend)
    assert np.isfinite(J) and J > 0
    assert all(np.isfinite(g).all() for g in dW + db)
    assert np.isfinite(net.forward(X, backend=backend)).all()


def test_softmax_cross_entropy_of_huge_logits_is_exact():
    """Logits (1e4, -1e4) with label 1: the loss is 2e4, the output delta (1, -1) / N."""
    net = scalarbp.MLP([1, 2])
    net.weights[0][...] = 0
    net.biases[0][...] = [1e4, -1e4]
    for backend in BACKENDS:
        J, _, db = net.loss_and_grad([[0.0], [0.0]], [1, 1], backend=backend)
        assert J == 2e4
        np.testing.assert_array_equal(db[0], [1.0, -1.0])


@pytest.mark.parametrize("hidden", HIDDEN)
def test_forward_applies_the_named_activation(hidden):
    """A 1-1-1 identity-output net with unit weights returns g(x)."""
    net = scalarbp.MLP([1, 1, 1], hidden=hidden, output="identity")
    net.theta[...] = [1, 0, 1, 0]
    x = np.array([[-2.0], [-0.5], [0.0], [0.5], [3.0]])
    expected = {"relu": np.maximum(x, 0), "leaky_relu": np.where(x > 0, x, 0.01 * x),
                "sigmoid": 1 / (1 + np.exp(-x)), "tanh": np.tanh(x), "identity": x}[hidden]
    for backend in BACKENDS:
        np.testing.assert_allclose(net.forward(x, backend=backend), expected, rtol=1e-15, atol=1e-16)


def test_relu_derivative_is_a_0_or_1_of_the_input_dtype_even_at_infinity():
    from scalarbp.activations import step

    x = np.array([-np.inf, -1, 0, 2, np.inf], np.float32)
    assert step(x).dtype == np.float32 and step(x).tolist() == [0, 0, 0, 1, 1]
    compiled = numba.njit(step)
    assert [compiled(v) for v in x] == [0, 0, 0, 1, 1]
    # compiled for a float32 scalar, it stays float32 (no conversion per element)
    assert str(compiled.nopython_signatures[0].return_type) == "float32"
