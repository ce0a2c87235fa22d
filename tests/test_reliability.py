"""Careless hands: the configuration cannot drift from theta, every argument is checked,
nothing is silently wrong, and nothing is lost (diverging updates, Ctrl-C, saves)."""
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import scalarbp
from scalarbp.datasets import load_digits, make_blobs, make_spirals
from scalarbp.optimizers import AdamW, Momentum
from scalarbp.training import DivergedError

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


# --- numbers and booleans ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(shuffle="no"), TypeError, "shuffle must be True or False, got 'no'"),
    (dict(early_stopping="yes"), TypeError, "early_stopping must be True or False"),
    (dict(epochs=2.0), TypeError, "epochs must be an integer, got 2.0"),
    (dict(batch_size=True), TypeError, "batch_size must be an integer, got True"),
    (dict(seed=-1), ValueError, "seed must be an integer >= 0"),
    (dict(optimizer=Momentum), TypeError, "unknown optimizer|must be"),
])
def test_fit_refuses_arguments_that_would_be_misread(kwargs, error, message):
    X, y = make_spirals(30, seed=0)
    with pytest.raises((error, ValueError), match=message):
        scalarbp.MLP([2, 3], seed=0).fit(X, y, **kwargs)


def test_string_booleans_in_optimizers_are_refused():
    with pytest.raises(TypeError, match="nesterov must be True or False, got 'no'"):
        Momentum(0.1, nesterov="no")
    with pytest.raises(TypeError, match="centered must be True or False"):
        scalarbp.optimizers.make("rmsprop", 0.01, centered="false")


def test_huge_and_numpy_integer_batch_sizes_work():
    X, y = make_spirals(40, seed=0)
    a, b, c = (scalarbp.MLP([2, 3], seed=0) for _ in range(3))
    a.fit(X, y, epochs=1, batch_size=2 ** 63, seed=0)
    b.fit(X, y, epochs=1, batch_size=np.uint64(80), seed=0)
    c.fit(X, y, epochs=1, batch_size=40, seed=0)
    assert np.array_equal(a.theta, c.theta) and np.array_equal(b.theta, c.theta)


def test_float_labels_too_large_for_int64_are_refused_not_wrapped():
    X, _ = make_spirals(3, seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values from 0 to 1e\+20"):
        scalarbp.MLP([2, 3]).fit(X[:3], np.array([0.0, 1.0, 1e20]), epochs=1)


def test_a_float32_net_says_when_a_value_is_too_large_for_float32():
    net = scalarbp.MLP([2, 3], dtype="float32")
    with pytest.raises(ValueError, match=r"X holds a value too large for float32 \(1e\+40 at index \(1, 0\)"):
        net.predict(np.array([[0.0, 1.0], [1e40, 2.0]]))


@pytest.mark.parametrize("y, error, message", [
    (np.array(["a", "b", "c", "d"]), TypeError, "must hold real numbers"),
    (np.zeros((4, 5)), ValueError, "Y has 5 target columns, the network has 3 outputs"),
    (np.array([0.5, 1, 2, 0]), ValueError, "labels must be integers"),
    (np.array([0, 1, 2]), ValueError, "Y has 3 rows but X has 4 samples"),
    (np.array([0, 1, 2, 7]), ValueError, r"labels must lie in \[0, 3\)"),
])
def test_score_checks_y_as_fit_does(y, error, message):
    net = scalarbp.MLP([2, 3], seed=0)
    X, _ = make_spirals(4, seed=0)
    with pytest.raises(error, match=message):
        net.score(X[:4], y)


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


# --- an update that overflows ----------------------------------------------------------------


def overflowing_problem(dtype):
    """AdamW's decay factor 1 - lr wd = -2 doubles every weight each step, while X = 0 keeps
    the loss and the gradient finite: the run ends in an update that overflows."""
    X = np.zeros((60, 3))
    y = np.random.default_rng(0).integers(0, 3, 60)
    return scalarbp.MLP([3, 3], seed=0, dtype=dtype), X, y


@pytest.mark.parametrize("backend", ["scalar", "row"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_update_that_overflows_rolls_back_to_the_last_good_step(backend, dtype):
    net, X, y = overflowing_problem(dtype)
    with pytest.raises(DivergedError, match="the update gave NaN or inf weights"):
        net.fit(X, y, epochs=100, batch_size=4, optimizer=AdamW(1e-3, weight_decay=3000), shuffle=False,
                backend=backend)
    assert np.isfinite(net.theta).all() and 0 < net.epoch_steps < 15
    assert net.optimizer.t == 15 * net.epochs_trained + net.epoch_steps
    twin, _, _ = overflowing_problem(dtype)  # exactly as many steps, in two fits
    opt = AdamW(1e-3, weight_decay=3000)
    twin.fit(X, y, epochs=net.epochs_trained, batch_size=4, optimizer=opt, shuffle=False, backend=backend)
    twin.fit(X[:4 * net.epoch_steps], y[:4 * net.epoch_steps], epochs=1, batch_size=4, optimizer=opt,
             shuffle=False, backend=backend)
    assert np.array_equal(net.theta, twin.theta)
    for key in ("m", "v"):
        assert np.array_equal(net.optimizer.state[key], twin.optimizer.state[key])


# --- Ctrl-C -------------------------------------------------------------------------------------

CHILD = """
import json, sys, numpy as np, scalarbp
from scalarbp import training
from scalarbp.datasets import load_digits
training.SECONDS_PER_CALL = 0.002  # short runs of steps: the signal lands inside an epoch
(X, y), _ = load_digits()
scalarbp.MLP([64, 32, 10], seed=0).fit(X[:64], y[:64], epochs=1, batch_size=8, optimizer="adam")  # compile
net = scalarbp.MLP([64, 32, 10], seed=0)
print("ready", flush=True)
try:
    net.fit(X, y, epochs=100000, batch_size=8, lr=0.001, optimizer="adam", seed=3)
except training.TrainingInterrupted as err:
    net.save(sys.argv[1])
    print(json.dumps({"message": str(err), "epochs": err.history.epochs}), flush=True)
"""


def test_ctrl_c_keeps_the_last_step_and_counters_that_describe_it(tmp_path):
    path = tmp_path / "interrupted.npz"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=120)
    finally:
        child.kill()  # (never left running, whatever failed)
    assert child.returncode == 0, out
    report = json.loads(out)
    assert "training interrupted" in report["message"]
    net = scalarbp.MLP.load(path)
    steps_per_epoch = -(-1438 // 8)
    assert net.epochs_trained == report["epochs"] > 0
    assert net.optimizer.t == steps_per_epoch * net.epochs_trained + net.epoch_steps
    # Resuming finishes the interrupted epoch and goes on: the same weights as never stopping.
    (X, y), _ = load_digits()
    net.fit(X, y, epochs=2, batch_size=8, lr=0.001, optimizer="adam", seed=3)
    twin = scalarbp.MLP([64, 32, 10], seed=0)
    twin.fit(X, y, epochs=net.epochs_trained, batch_size=8, lr=0.001, optimizer="adam", seed=3)
    assert net.optimizer.t == twin.optimizer.t
    assert np.array_equal(net.theta, twin.theta)


# --- saving -----------------------------------------------------------------------------------


def small_net():
    net = scalarbp.MLP([2, 3], seed=0)
    X, y = make_spirals(30, seed=0)
    net.fit(X, y, epochs=1, seed=0, optimizer="adam")
    return net


def test_saving_through_a_symlink_replaces_its_target(tmp_path):
    target = tmp_path / "real.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    small_net().save(link)
    assert link.is_symlink() and scalarbp.MLP.load(target).sizes == (2, 3)


def test_saving_over_a_non_regular_file_or_a_read_only_file_is_refused(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        small_net().save(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    locked = tmp_path / "locked.npz"
    locked.write_bytes(b"keep me")
    locked.chmod(0o444)
    with pytest.raises(PermissionError, match="read-only"):
        small_net().save(locked)
    assert locked.read_bytes() == b"keep me"


def test_a_new_file_honours_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path):
    old = os.umask(0o027)
    try:
        small_net().save(tmp_path / "new.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o640
    (tmp_path / "new.npz").chmod(0o604)
    small_net().save(tmp_path / "new.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o604


def test_temporary_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    from scalarbp.persistence import _process_id
    abandoned = tmp_path / ".model.npz.999999999-12345.abc123.tmp"  # no such process
    abandoned.write_bytes(b"x" * 1000)
    live = tmp_path / f".model.npz.{_process_id()}.def456.tmp"  # this process: maybe mid-save
    live.write_bytes(b"y")
    other = tmp_path / ".other.npz.999999999-12345.abc.tmp"  # another file's: not ours to judge
    other.write_bytes(b"z")
    small_net().save(tmp_path / "model.npz")
    assert not abandoned.exists() and live.exists() and other.exists()


def test_kill_9_during_a_save_leaves_the_old_file_and_a_temporary_the_next_save_removes(tmp_path):
    path = tmp_path / "model.npz"
    small_net().save(path)
    before = path.read_bytes()
    code = ("import sys, numpy as np, scalarbp\n"
            "from scalarbp import persistence\n"
            "def stall(file, **arrays):\n"
            "    file.write(b'PK partial'); file.flush(); print('writing', flush=True); import time; time.sleep(60)\n"
            "np.savez = stall\n"
            "scalarbp.MLP([2, 3]).save(sys.argv[1])\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.kill()
    child.wait()
    assert path.read_bytes() == before
    assert len([p for p in os.listdir(tmp_path) if p.endswith(".tmp")]) == 1
    small_net().save(path)
    assert os.listdir(tmp_path) == ["model.npz"]


# --- labels, estimators ---------------------------------------------------------------------------


def test_the_train_command_encodes_the_labels_that_occur(tmp_path, capsys):
    from scalarbp.cli import main
    X, y = make_blobs(300, n_features=4, centers=3, seed=0)
    labels = np.array([7, 10 ** 9, 2_000_000])[y]
    np.savez(tmp_path / "d.npz", X=X, y=labels)
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(tmp_path / "d.npz"), "--epochs", "5", "--quiet", "--save", str(model),
                 "--task", "classification"]) == 0
    net = scalarbp.MLP.load(model)
    assert net.sizes[-1] == 3 and net.classes.tolist() == [7, 2_000_000, 10 ** 9]
    assert set(net.predict(X).tolist()) <= {7, 2_000_000, 10 ** 9}
    assert net.score(X, labels) > 0.9
    np.savez(tmp_path / "many.npz", X=np.zeros((20001, 1)), y=np.arange(20001))
    capsys.readouterr()
    many = str(tmp_path / "many.npz")
    assert main(["train", "--data", many, "--test-data", many, "--epochs", "1", "--quiet", "--task",
                 "classification"]) == 1
    assert "more than 10000 classes for a softmax" in capsys.readouterr().err


def test_estimators_take_a_random_state_object_reproducibly():
    pytest.importorskip("sklearn")
    from scalarbp.sklearn import ScalarMLPClassifier
    X, y = make_blobs(100, n_features=3, centers=2, seed=0)
    fitted = [ScalarMLPClassifier((8,), max_iter=2, random_state=np.random.RandomState(0)).fit(X, y) for _ in range(2)]
    assert np.array_equal(fitted[0].net_.theta, fitted[1].net_.theta)
    with pytest.raises(TypeError, match="hidden_layer_sizes must be an integer, got 2.7"):
        ScalarMLPClassifier((2.7,), max_iter=1).fit(X, y)


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
