"""The literal backend (seed 001 transcribed, one sample at a time) computes what the
row reference and finite differences compute, in a fixed order whatever the thread
count or the memory budget."""
import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scalarbp
from conftest import HIDDEN, OUTPUT_LOSS, assert_close, problem
from scalarbp import layout


@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_literal_matches_the_row_reference_for_every_activation_output_and_loss(hidden, output, loss):
    net, X, Y = problem([5, 6, 4, 3], hidden, output, loss, N=9, l2=0.1)
    J_row, dW_row, db_row = net.loss_and_grad(X, Y, backend="row")
    J, dW, db = net.loss_and_grad(X, Y, backend="literal")
    assert J == pytest.approx(J_row, rel=1e-12)
    for k in range(3):
        assert_close(dW[k], dW_row[k], 1e-12)
        assert_close(db[k], db_row[k], 1e-12)
    assert_close(net.forward(X, backend="literal"), net.forward(X, backend="row"), 1e-12)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=5), N=st.integers(1, 12),
       hidden=st.sampled_from(HIDDEN), pair=st.sampled_from(OUTPUT_LOSS), seed=st.integers(0, 100))
def test_literal_matches_the_row_reference_on_random_architectures(sizes, N, hidden, pair, seed):
    output, loss = pair
    if output == "softmax" and sizes[-1] < 2:
        sizes = sizes[:-1] + [2]
    net, X, Y = problem(sizes, hidden, output, loss, N=N, seed=seed, l2=0.05)
    J_row, dW_row, db_row = net.loss_and_grad(X, Y, backend="row")
    J, dW, db = net.loss_and_grad(X, Y, backend="literal")
    assert J == pytest.approx(J_row, rel=1e-12, abs=1e-300)
    for ours, ref in zip(dW + db, dW_row + db_row):
        assert_close(ours, ref, 1e-12)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_literal_matches_finite_differences(hidden):
    net, X, Y = problem([4, 5, 3, 3], hidden, "sigmoid", "binary_cross_entropy", N=6, l2=0.05)
    assert scalarbp.gradcheck(net, X, Y, backend="literal") < 1e-6


def test_literal_gradients_are_bit_identical_on_1_and_2_threads():
    net, X, Y = problem([12, 16, 8, 5], "tanh", N=37, l2=0.01)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        results.append(net.loss_and_grad(X, Y, backend="literal"))
    (J1, dW1, db1), (J2, dW2, db2) = results
    assert J1 == J2
    assert all(np.array_equal(a, b) for a, b in zip(dW1 + db1, dW2 + db2))


def test_a_small_memory_budget_processes_the_batch_in_chunks_with_the_same_result(monkeypatch):
    net, X, Y = problem([6, 10, 4], "relu", N=23)
    whole = net.loss_and_grad(X, Y, backend="literal")
    P = net.theta.shape[0]
    monkeypatch.setattr(layout, "PER_EXAMPLE_BYTES", 5 * P * 8)  # five samples' gradients at a time
    chunked = net.loss_and_grad(X, Y, backend="literal")
    assert whole[0] == chunked[0]
    assert all(np.array_equal(a, b) for a, b in zip(whole[1] + whole[2], chunked[1] + chunked[2]))


def test_literal_computes_float32_nets_to_float32_accuracy():
    net, X, Y = problem([5, 6, 3], "sigmoid", N=8, dtype="float32")
    J, dW, _ = net.loss_and_grad(X, Y, backend="literal")
    J_ref, dW_ref, _ = net.astype("float64").loss_and_grad(X, Y, backend="row")
    assert J == pytest.approx(J_ref, rel=1e-5)
    assert dW[0].dtype == np.float32
    assert_close(dW[0], dW_ref[0], 1e-5)


def test_fit_trains_with_the_literal_backend_as_with_the_scalar_one():
    from scalarbp.datasets import make_spirals

    X, y = make_spirals(60, seed=0)
    thetas = []
    for backend in ("literal", "scalar"):
        net = scalarbp.MLP([2, 8, 3], hidden="tanh", seed=0)
        net.fit(X, y, epochs=3, batch_size=16, lr=0.05, optimizer="adam", seed=0, backend=backend)
        thetas.append(net.theta)
    assert_close(thetas[0], thetas[1], 1e-12)
