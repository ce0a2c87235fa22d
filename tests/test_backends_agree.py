"""The scalar kernels, the row reference and the column reference compute the same
forward and backward pass, and all three match central finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import scalarbp
from conftest import HIDDEN, OUTPUT_LOSS, assert_close, make_targets, problem


@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_scalar_matches_row_and_column_for_every_activation_and_loss(hidden, output, loss):
    net, X, Y = problem([5, 6, 4, 3], hidden, output, loss, N=9, l2=0.1)
    J_row, dW_row, db_row = net.loss_and_grad(X, Y, backend="row")
    for backend in ("scalar", "column"):
        J, dW, db = net.loss_and_grad(X, Y, backend=backend)
        assert J == pytest.approx(J_row, rel=1e-12)
        for k in range(3):
            assert_close(dW[k], dW_row[k], 1e-10)
            assert_close(db[k], db_row[k], 1e-10)
        assert_close(net.forward(X, backend=backend), net.forward(X, backend="row"), 1e-12)


@pytest.mark.parametrize("sizes,N", [
    # forward: outer form from the 40-wide input (W^T), tiles into 256 and into 10 outputs;
    # weight gradient: into dW^T then transposed (layer 1), outer form (layers 2, 3);
    # delta: outer form over a W small enough for the cache (256 x 256), and from 10 units
    ([40, 256, 256, 10], 100),
    # forward: tiles with a last partial panel (600 = 4 x 128 + 88, 280) and rows in no
    # block of four; weight gradient over a batch of 141: tiles over transposed operands
    # (layer 1), into dW^T (layer 2), outer form over an h small enough for the cache
    # (layer 3); delta: tiles over W^T (280 x 600)
    ([600, 600, 280, 10], 141),
    # outer form with sums whose length is no multiple of four, into rows of 64
    ([64, 64, 9], 33),
])
def test_scalar_matches_row_on_shapes_that_take_every_product_form(sizes, N):
    net, X, Y = problem(sizes, N=N, l2=0.01)
    J_row, dW_row, db_row = net.loss_and_grad(X, Y, backend="row")
    J, dW, db = net.loss_and_grad(X, Y, backend="scalar")
    assert J == pytest.approx(J_row, rel=1e-12)
    for k in range(len(sizes) - 1):
        assert_close(dW[k], dW_row[k], 1e-12)
        assert_close(db[k], db_row[k], 1e-12)
    assert_close(net.forward(X, backend="scalar"), net.forward(X, backend="row"), 1e-12)


@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_every_backend_matches_finite_differences(hidden, output, loss):
    net, X, Y = problem([4, 5, 3, 3], hidden, output, loss, N=6, l2=0.05)
    for backend in ("scalar", "row", "column"):
        assert scalarbp.gradcheck(net, X, Y, backend=backend) < 1e-6


def test_gradcheck_catches_a_gradient_off_by_the_notes_factor(monkeypatch):
    """A backend that scales its gradient by 1.403 (seed 002's mistake) is caught."""
    from scalarbp.backends import row

    net, X, Y = problem([3, 4, 2], N=5)
    original = row.BACKEND.loss_and_grad
    monkeypatch.setattr(row.BACKEND, "loss_and_grad", lambda *a: (lambda J, g: (J, 1.403 * g))(*original(*a)))
    assert scalarbp.gradcheck(net, X, Y, backend="row") > 0.2


names = st.sampled_from(HIDDEN)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), depth=st.integers(1, 5), N=st.integers(1, 257),
       pair=st.sampled_from(OUTPUT_LOSS), seed=st.integers(0, 2 ** 16))
def test_backends_agree_on_random_architectures(data, depth, N, pair, seed):
    sizes = data.draw(st.lists(st.integers(1, 64), min_size=depth + 1, max_size=depth + 1))
    output, loss = pair
    if output == "softmax" and sizes[-1] == 1:
        sizes[-1] = 2
    hidden = data.draw(st.lists(names, min_size=depth - 1, max_size=depth - 1))
    net = scalarbp.MLP(sizes, hidden=hidden, output=output, loss=loss, l2=0.01, seed=seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, sizes[0]))
    Y = make_targets(rng, loss, N, sizes[-1])
    J_row, dW_row, db_row = net.loss_and_grad(X, Y, backend="row")
    for backend in ("scalar", "column"):
        J, dW, db = net.loss_and_grad(X, Y, backend=backend)
        assert J == pytest.approx(J_row, rel=1e-12)
        for k in range(depth):
            assert_close(dW[k], dW_row[k], 1e-10)
            assert_close(db[k], db_row[k], 1e-10)
