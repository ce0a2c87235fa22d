"""Training on data on disk (a memmap): the same weights as in memory, minibatches gathered
rather than copies, a NaN row reported when it is read, with the counters describing the weights."""
import numpy as np
import pytest

import scalarbp
from scalarbp.datasets import Standardizer, make_blobs


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
