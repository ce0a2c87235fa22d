"""The configuration cannot drift from theta: a read-only architecture, checked
assignments, buffers the kernels can write, one thread at a time, copies that share the
compiled code."""
import threading

import numpy as np
import pytest

import scalarbp
from scalarbp.datasets import make_blobs, make_spirals

# --- the configuration reaches the kernels, or cannot be changed ---------------------------


@pytest.mark.parametrize("attribute, value", [
    ("hidden", ("relu",)), ("sizes", (2, 4, 3)), ("output", "sigmoid"), ("loss", "mse"), ("dtype", np.float32),
    ("layout", None),
])
def test_the_architecture_is_read_only(attribute, value):
    net = scalarbp.MLP([2, 8, 8, 3], seed=0)
    with pytest.raises(AttributeError):
        setattr(net, attribute, value)


def test_the_layer_lists_cannot_grow_or_shrink_and_edits_reach_every_backend():
    net = scalarbp.MLP([2, 8, 3], seed=0)
    X, y = make_spirals(20, seed=0)
    before = net.forward(X)
    for method in ("pop", "append", "clear", "insert", "extend"):
        assert not hasattr(net.weights, method) and not hasattr(net.biases, method)
    with pytest.raises(AttributeError):
        del net.weights[0]
    np.testing.assert_array_equal(net.forward(X), before)
    net.weights[1] = np.zeros((3, 8))
    for backend in scalarbp.backends.BACKENDS:
        np.testing.assert_allclose(net.forward(X, backend=backend), 1 / 3)


def test_l2_and_the_counters_are_checked_when_assigned():
    net = scalarbp.MLP([2, 3], seed=0)
    with pytest.raises(ValueError, match="l2 must be finite and >= 0"):
        net.l2 = -1
    with pytest.raises(ValueError, match="epochs_trained must be an integer >= 0|in \\[0,"):
        net.epochs_trained = -5
    with pytest.raises(TypeError, match="epochs_trained must be an integer"):
        net.epochs_trained = 2.5
    net.l2 = 0.5
    assert net.l2 == 0.5


@pytest.mark.parametrize("value, error, message", [
    (np.zeros((3, 2), complex), TypeError, "must hold real numbers, got dtype complex128"),
    (np.full((3, 2), "a"), TypeError, "must hold real numbers"),
    (np.full((3, 2), np.inf), ValueError, "holds NaN or inf"),
])
def test_weights_that_would_be_cast_or_poison_the_net_are_refused(value, error, message):
    net = scalarbp.MLP([2, 3], seed=0)
    with pytest.raises(error, match=message):
        net.weights[0] = value
    with pytest.raises(error, match=message):
        net.theta = np.resize(value, net.theta.shape)


def test_a_read_only_or_memory_mapped_theta_is_copied_so_training_works(tmp_path):
    net = scalarbp.MLP([2, 3], seed=0)
    X, y = make_spirals(30, seed=0)
    frozen = net.theta.copy()
    frozen.flags.writeable = False
    net.theta = frozen
    net.fit(X, y, epochs=1, seed=0)
    mapped = np.memmap(tmp_path / "theta.dat", dtype=np.float64, mode="w+", shape=frozen.shape)
    mapped[...] = frozen
    mapped.flush()
    net.theta = np.memmap(tmp_path / "theta.dat", dtype=np.float64, mode="r", shape=frozen.shape)
    net.fit(X, y, epochs=1, seed=0)
    assert type(net.theta) is np.ndarray and net.theta.flags.writeable


def test_optimizer_state_the_kernels_could_not_write_is_copied_and_the_step_count_checked():
    X, y = make_spirals(40, seed=0)
    nets = [scalarbp.MLP([2, 4, 3], seed=0) for _ in range(2)]
    for net in nets:
        net.fit(X, y, epochs=1, optimizer="adam", seed=0)
    m = nets[0].optimizer.state["m"]
    nets[0].optimizer.state["m"] = np.broadcast_to(m, m.shape)  # read-only
    nets[0].optimizer.state["v"] = np.repeat(nets[0].optimizer.state["v"], 2)[::2]  # strided
    for net in nets:
        net.fit(X, y, epochs=1, optimizer="adam", seed=0)
    assert np.array_equal(nets[0].theta, nets[1].theta)
    with pytest.raises(ValueError, match="optimizer step count must be an integer >= 0"):
        nets[0].optimizer.t = -3



def test_a_second_thread_cannot_use_a_net_while_it_trains():
    X, y = make_blobs(2000, n_features=8, centers=3, seed=0)
    net = scalarbp.MLP([8, 64, 3], seed=0)
    net.fit(X[:10], y[:10], epochs=1)  # compiled before the race
    worker = threading.Thread(target=lambda: net.fit(X, y, epochs=30, batch_size=8, seed=0))
    worker.start()
    refused = []
    while worker.is_alive() and not refused:
        try:
            net.fit(X[:10], y[:10], epochs=1)
        except RuntimeError as err:
            refused.append(str(err))
    worker.join()
    assert refused and "in use by another thread" in refused[0]


def test_copies_and_pickles_of_a_net_keep_a_read_only_layout_and_need_no_second_compile():
    import copy
    import pickle
    net = scalarbp.MLP([2, 4, 3], seed=0)
    for other in (copy.deepcopy(net), copy.copy(net), pickle.loads(pickle.dumps(net))):
        assert not other.layout.table.flags.writeable
    with pytest.raises(AttributeError, match="a Layout is fixed"):
        net.layout.size = 3
    from scalarbp.backends import kernels
    X, _ = make_spirals(10, seed=0)
    net.predict(X)
    before = [len(d.signatures) for d in kernels.TRAIN_EPOCH]
    copy.deepcopy(net).predict(X)
    pickle.loads(pickle.dumps(net)).predict(X)
    assert [len(d.signatures) for d in kernels.TRAIN_EPOCH] == before
