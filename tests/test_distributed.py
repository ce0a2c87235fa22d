"""Data-parallel training's plan, in this process (no MPI needed): which samples make
each leaf, what a step computes, and the arguments it refuses.  ``tests/test_mpi.py``
runs it on real ranks."""
import numpy as np
import pytest

import scalarbp as sb
from scalarbp.backends import get
from scalarbp.distributed import Shards


class OneRank:
    """The part of an mpi4py communicator that a fit on one rank (or ``size`` claimed) uses."""

    def __init__(self, size=1):
        self.size = size

    def Get_rank(self):
        return 0

    def Get_size(self):
        return self.size

    def allgather(self, value):
        return [value] * self.size

    def bcast(self, value, root=0):
        return value

    def Sendrecv(self, *args, **kwargs):
        raise AssertionError("one rank exchanges nothing")

    def Abort(self, code):
        raise AssertionError("nothing failed during training")

    def Ibarrier(self):
        return Arrived()


class Arrived:
    def Test(self):
        return True


@pytest.mark.parametrize("N, B", [(203, 32), (256, 32), (40, 8), (203, 30), (256, 13), (40, 5)])
def test_each_rank_reads_only_its_block_and_every_sample_comes_once_per_epoch(N, B):
    """Batch sizes that 8 leaves do not divide (30, 13, 5) get uneven leaves in the same tree."""
    subset = np.arange(N) * 3  # sample indices of a training subset
    L = 8
    orders = {}
    for ranks in (1, 2, 4, 8):
        for rank in range(ranks):
            shards = Shards(subset, B, L, rank, ranks)
            order = shards.order(True, 5, 2)
            orders.setdefault(ranks, order)
            np.testing.assert_array_equal(order, orders[ranks])  # the same epoch on every rank
            assert sorted(order) == sorted(subset)
            block = np.concatenate([shards.streams[k] for k in shards.leaves])
            if len(block):  # (a batch of 5 in 8 leaves leaves 3 empty)
                start = np.flatnonzero(subset == block[0])[0]
                np.testing.assert_array_equal(block, subset[start:start + len(block)])  # one contiguous block
            for start in range(0, N, B):
                batch = order[start:start + B]
                offsets = shards.offsets(batch.shape[0])
                assert offsets[-1] == batch.shape[0]
                mine = batch[offsets[shards.leaves.start]:offsets[shards.leaves.stop]]
                assert np.isin(mine, block).all()  # a rank's leaves come from its contiguous block
    for ranks in (2, 4, 8):
        np.testing.assert_array_equal(orders[ranks], orders[1])  # minibatches do not depend on the rank count
    assert not np.array_equal(Shards(subset, B, L, 0, 1).order(True, 5, 3), orders[1])  # a new shuffle per epoch


@pytest.mark.parametrize("N", [24, 21])
def test_a_step_over_micro_shards_is_the_minibatch_gradient_step(N):
    """Over 8 leaves of 3 samples, or of 3 and 2 (21 samples): the same gradient."""
    rng = np.random.default_rng(3)
    X, y, w = rng.normal(size=(N, 5)), rng.integers(0, 3, N), rng.uniform(0.5, 2, N)
    net = sb.MLP([5, 7, 3], seed=2, l2=0.01)
    theta = net.theta.copy()
    net.fit(X, y, epochs=1, batch_size=N, optimizer="sgd", lr=0.1, sample_weight=w, comm=OneRank(),
            micro_shards=8, shuffle=False)
    reference = sb.MLP([5, 7, 3], seed=2, l2=0.01)
    T = np.eye(3)[y]
    _, grad = get("row").loss_and_grad(reference, X, T, None, w)
    np.testing.assert_allclose(net.theta, theta - 0.1 * grad, rtol=0, atol=1e-15)


def test_fit_over_mpi_refuses_what_it_cannot_do():
    X, y = np.random.default_rng(0).normal(size=(64, 4)), np.arange(64) % 2
    net = sb.MLP([4, 3, 2], seed=0)
    with pytest.raises(TypeError, match="mpi4py communicator"):
        net.fit(X, y, comm="MPI.COMM_WORLD")
    with pytest.raises(ValueError, match="micro_shards must be a power of two, got 6"):
        net.fit(X, y, comm=OneRank(), micro_shards=6)
    with pytest.raises(ValueError, match="power of two no larger than micro_shards=4, got 3 ranks"):
        net.fit(X, y, comm=OneRank(3), micro_shards=4)
    with pytest.raises(ValueError, match="power of two no larger than micro_shards=4, got 8 ranks"):
        net.fit(X, y, comm=OneRank(8), micro_shards=4)
    with pytest.raises(ValueError, match="DP-SGD"):
        net.fit(X, y, comm=OneRank(), dp_clip=1.0, dp_noise=1.0)
    with pytest.raises(ValueError, match="micro_shards needs comm"):
        net.fit(X, y, micro_shards=8)
    assert net.epochs_trained == 0


def test_the_mpi_session_does_not_import_the_training_loop():
    """training and distributed imported each other (distributed from inside a function);
    the two exceptions they share live in scalarbp.errors."""
    import ast
    import pathlib

    import scalarbp.distributed

    tree = ast.parse(pathlib.Path(scalarbp.distributed.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "training" not in imported
    assert scalarbp.training.DivergedError is scalarbp.errors.DivergedError  # (the old names still work)
