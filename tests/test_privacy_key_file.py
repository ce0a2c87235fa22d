"""A DP-SGD run's key file (``dp_key_file``, the CLI's ``MODEL.dpkey``): an interrupted run
resumed from its checkpoint equals the uninterrupted run bit for bit, and the key drives
one trajectory only.

The threat (docs/privacy.md, "Threat model and guarantee"): the adversary sees the released
model files and every checkpoint; the key is secret.  Reusing a key's noise on another
trajectory (the same checkpoint resumed on other data or with other settings, or another
net) would let the difference of two releases cancel the noise, so those fits must draw a
fresh key; the model files must never hold the key; the key file is owner-only.
"""
import json
import os
import pickle
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest

import scalarbp
from scalarbp import training
from scalarbp.cli import main
from scalarbp.datasets import load_digits
from scalarbp.privacy import keyfile, sampler

DP = dict(batch_size=64, optimizer="sgd", lr=0.3, dp_clip=1.0, dp_noise=1.0, seed=0)
K0 = np.arange(1, 9, dtype=np.uint32) * np.uint32(0x01010101)  # the run's key, known to the test alone
K1 = np.arange(11, 19, dtype=np.uint32) * np.uint32(0x01010101)  # the next key the OS would give


@pytest.fixture(scope="module")
def digits():
    (X, y), _ = load_digits()
    return X[:640], y[:640]


def keys(monkeypatch, *queue):
    """The OS's next keys: ``queue`` in order (as ``secrets`` would draw them)."""
    queue = list(queue)
    monkeypatch.setattr(sampler, "new_key", lambda: queue.pop(0).copy())


class InterruptAfter(training.Callback):
    """Ctrl-C at the end of epoch ``epoch`` (the fit stops before the next one)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, history, net):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)
        return False


def interrupted_mid_epoch(monkeypatch, call):
    """Ctrl-C during the ``call``-th minibatch gather (the Python-stepped backends)."""
    gather, calls = training.Batches.gather, []

    def gathering(self, rows):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGINT)
        return gather(self, rows)
    monkeypatch.setattr(training.Batches, "gather", gathering)
    return lambda: monkeypatch.setattr(training.Batches, "gather", gather)


def uninterrupted(digits, monkeypatch, epochs, backend, **options):
    keys(monkeypatch, K0)
    net = scalarbp.MLP([64, 16, 10], seed=1)
    net.fit(*digits, epochs=epochs, backend=backend, **DP, **options)
    return net


@pytest.mark.parametrize("backend,where", [("scalar", "epoch end"), ("row", "mid-epoch")])
def test_an_interrupted_run_resumed_with_its_key_file_equals_the_uninterrupted_run(digits, monkeypatch, tmp_path,
                                                                                   backend, where):
    """Before: a resumed DP run drew a new key, so its noise and batches were not the run's."""
    twin = uninterrupted(digits, monkeypatch, 4, backend)
    key_file, model = tmp_path / "m.dpkey", tmp_path / "m.npz"
    keys(monkeypatch, K0, K1)
    net = scalarbp.MLP([64, 16, 10], seed=1)
    restore = interrupted_mid_epoch(monkeypatch, 3) if where == "mid-epoch" else None
    with pytest.raises(training.TrainingInterrupted):
        net.fit(*digits, epochs=4, backend=backend, dp_key_file=key_file,
                callbacks=[] if restore else [InterruptAfter(1)], **DP)
    if restore:
        restore()
        assert 0 < net.epoch_steps
    net.save(model)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert K0.tobytes() not in model.read_bytes() and K0.tobytes() not in pickle.dumps(net)

    resumed = scalarbp.MLP.load(model)
    resumed.fit(*digits, epochs=4 - resumed.epochs_trained, backend=backend, dp_key_file=key_file, **DP)
    assert resumed.privacy_ledger.steps == twin.privacy_ledger.steps
    assert np.array_equal(resumed.theta, twin.theta)
    assert not key_file.exists()  # (the run is finished: nothing is left to resume)


def test_a_resumed_target_epsilon_run_keeps_its_noise_and_equals_the_uninterrupted_run(digits, monkeypatch,
                                                                                       tmp_path):
    """The noise for a target is chosen for the steps left: the resumed fit keeps the run's
    sigma while it still spends no more than the target, instead of a recomputed one."""
    pytest.importorskip("dp_accounting")
    options = dict(DP, dp_noise=None, dp_delta=1e-5, target_epsilon=8.0)
    keys(monkeypatch, K0)
    twin = scalarbp.MLP([64, 16, 10], seed=1)
    twin.fit(*digits, epochs=3, **options)
    key_file = tmp_path / "m.dpkey"
    keys(monkeypatch, K0, K1)
    net = scalarbp.MLP([64, 16, 10], seed=1)
    with pytest.raises(training.TrainingInterrupted):
        net.fit(*digits, epochs=3, dp_key_file=key_file, callbacks=[InterruptAfter(0)], **options)
    net.fit(*digits, epochs=2, dp_key_file=key_file, **options)
    assert net.privacy_ledger.entries == twin.privacy_ledger.entries
    assert np.array_equal(net.theta, twin.theta)


def test_the_cli_keeps_the_key_beside_the_model_until_the_run_finishes(digits, monkeypatch, tmp_path, capsys):
    data = tmp_path / "d.npz"
    np.savez(data, X=digits[0], y=digits[1])
    model = tmp_path / "m.npz"
    common = ["train", "--data", str(data), "--batch-size", "64", "--dp-clip", "1", "--dp-noise", "1", "--quiet",
              "--seed", "0"]
    new = ["--hidden-sizes", "16", "--optimizer", "sgd", "--lr", "0.3"]  # (a resumed run continues its own)
    keys(monkeypatch, K0)
    assert main(common + new + ["--epochs", "3", "--save", str(tmp_path / "twin.npz")]) == 0
    assert not (tmp_path / "twin.npz.dpkey").exists()
    twin = scalarbp.MLP.load(tmp_path / "twin.npz")

    keys(monkeypatch, K0, K1)
    checkpoint = training.Checkpoint.on_epoch_end
    monkeypatch.setattr(training.Checkpoint, "on_epoch_end",
                        lambda self, epoch, history, net: checkpoint(self, epoch, history, net)
                        or (epoch == 0 and os.kill(os.getpid(), signal.SIGINT)) or False)
    assert main(common + new + ["--epochs", "3", "--save", str(model), "--checkpoint-every", "1"]) == 130
    assert "kept the run's secret key in " + str(model) + ".dpkey" in capsys.readouterr().out
    other = tmp_path / "renamed.npz"  # (resumed under another name: the key travels with it)
    assert main(common + ["--epochs", "2", "--resume", str(model), "--save", str(other)]) == 0
    assert np.array_equal(scalarbp.MLP.load(other).theta, twin.theta)
    assert not (tmp_path / "renamed.npz.dpkey").exists()
    assert not (tmp_path / "m.npz.dpkey").exists()  # (moved, not copied: no key is left beside the old name)


def interrupted_run(digits, monkeypatch, tmp_path, epochs=3, after=0, **options):
    """A run keyed by K0, stopped by Ctrl-C at the end of epoch ``after`` and saved:
    ``(key file, model file)``."""
    key_file, model = tmp_path / "m.dpkey", tmp_path / "m.npz"
    keys(monkeypatch, K0)
    net = scalarbp.MLP([64, 16, 10], seed=1)
    with pytest.raises(training.TrainingInterrupted):
        net.fit(*digits, epochs=epochs, dp_key_file=key_file, callbacks=[InterruptAfter(after)], **{**DP, **options})
    net.save(model)
    return key_file, model


def first_key_written(key_file):
    """A callback that reads, at the first epoch's end, which key the file then keeps."""
    class Read(training.Callback):
        key = None

        def on_epoch_end(self, epoch, history, net):
            if Read.key is None:
                Read.key = np.array(json.loads(key_file.read_text())["key"], np.uint32)
            return False
    return Read()


@pytest.mark.parametrize("change", ["none", "one record", "learning rate", "noise", "batch size", "backend",
                                    "other weights"])
def test_a_key_drives_one_trajectory_only(digits, monkeypatch, tmp_path, change):
    """The checkpoint resumed with anything changed would have reused the run's noise on
    another trajectory (the difference of the two releases cancels it): a fresh key."""
    key_file, model = interrupted_run(digits, monkeypatch, tmp_path)

    X, y = digits[0].copy(), digits[1]
    options = dict(DP)
    resumed = scalarbp.MLP.load(model)
    if change == "one record":
        X[17, 5] += 1.0
    elif change == "learning rate":
        options["lr"] = 0.2
    elif change == "noise":
        options["dp_noise"] = 1.2
    elif change == "batch size":
        options["batch_size"] = 32
    elif change == "other weights":
        resumed.theta[0] += 1e-12
    backend = "row" if change == "backend" else "scalar"
    keys(monkeypatch, K1)
    read = first_key_written(key_file)
    if change == "none":
        resumed.fit(X, y, epochs=1, backend=backend, dp_key_file=key_file, callbacks=[read], **options)
        assert np.array_equal(read.key, K0)
    else:
        with pytest.warns(keyfile.KeyFileWarning, match="not resumed"):
            resumed.fit(X, y, epochs=1, backend=backend, dp_key_file=key_file, callbacks=[read], **options)
        assert np.array_equal(read.key, K1)


def test_resuming_one_checkpoint_twice_gives_the_same_bits(digits, monkeypatch, tmp_path):
    """What the key may do twice: the same trajectory, so the same release."""
    key_file, model = interrupted_run(digits, monkeypatch, tmp_path)
    kept = key_file.read_bytes()
    keys(monkeypatch, K1, K1)
    first = scalarbp.MLP.load(model)
    first.fit(*digits, epochs=2, dp_key_file=key_file, **DP)
    key_file.write_bytes(kept)
    second = scalarbp.MLP.load(model)
    second.fit(*digits, epochs=2, dp_key_file=key_file, **DP)
    assert np.array_equal(first.theta, second.theta)


@pytest.mark.parametrize("content", [b"PK\x03\x04 a model", b'{"format": "scalarbp DP-SGD key file", "version": 1}',
                                     b'{"format": "scalarbp DP-SGD key file", "version": 1, "key": [1, 2], '
                                     b'"plan": "x", "noise": 1.0, "states": []}', b"\xff" * 10])
def test_a_file_that_is_not_a_whole_key_file_is_refused_and_left_as_it_was(digits, tmp_path, content):
    path = tmp_path / "k.dpkey"
    path.write_bytes(content)
    with pytest.raises(keyfile.KeyFileError, match="k.dpkey"):
        scalarbp.MLP([64, 16, 10]).fit(*digits, epochs=1, dp_key_file=path, **DP)
    assert path.read_bytes() == content


def test_a_key_file_needs_a_secret_key_and_dp(digits, tmp_path):
    with pytest.raises(ValueError, match="dp_insecure_seed"):
        scalarbp.MLP([64, 16, 10]).fit(*digits, epochs=1, dp_key_file=tmp_path / "k", dp_insecure_seed=1, **DP)
    with pytest.raises(ValueError, match="need dp_clip"):
        scalarbp.MLP([64, 16, 10]).fit(*digits, epochs=1, dp_key_file=tmp_path / "k")


def test_steps_taken_before_an_error_enter_the_ledger_so_their_noise_is_never_reused(digits, monkeypatch, tmp_path):
    """A NaN met mid-epoch in a memmap left the steps already taken out of the ledger: the
    next fit numbered its steps from there and drew their noise again."""
    X = np.lib.format.open_memmap(tmp_path / "X.npy", "w+", np.float64, digits[0].shape)
    X[...] = digits[0]
    X[4, 0] = np.nan
    keys(monkeypatch, K0)  # (a key whose Poisson batches first take row 4 at step 12, inside a run of 16 steps)
    net = scalarbp.MLP([64, 16, 10], seed=1)
    with pytest.raises(ValueError, match="NaN"):
        net.fit(X, digits[1], epochs=2, backend="row", **{**DP, "batch_size": 16})
    assert net.optimizer.t == 11
    assert net.privacy_ledger.steps == net.optimizer.t


RUN = """
import sys
import numpy as np
from scalarbp.privacy import sampler
sampler.new_key = lambda: np.array({key}, np.uint32)  # (the test's stand-in for the OS's secret)
from scalarbp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint_bit_for_bit(digits, tmp_path):
    """kill -9 gives no chance to save: the key file must already name the checkpoint's state."""
    data = tmp_path / "d.npz"
    np.savez(data, X=digits[0], y=digits[1])
    common = ["train", "--data", str(data), "--batch-size", "16", "--dp-clip", "1", "--dp-noise", "1", "--quiet",
              "--seed", "0"]
    new = ["--hidden-sizes", "16", "--optimizer", "sgd", "--lr", "0.1"]  # (a resumed run continues its own)

    def cli(key, *argv, **popen):
        return subprocess.Popen([sys.executable, "-c", RUN.format(key=[int(w) for w in key]), *common, *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    twin = cli(K0, *new, "--epochs", "30", "--save", str(tmp_path / "twin.npz"))
    model = tmp_path / "m.npz"
    child = cli(K0, *new, "--epochs", "30", "--save", str(model), "--checkpoint-every", "2")
    try:
        for line in child.stdout:
            if "checkpoint: epoch 4 saved" in line:
                child.kill()
                break
        child.wait(timeout=120)
        assert twin.wait(timeout=300) == 0, twin.stderr.read()
    finally:
        child.kill()
        twin.kill()
    saved = scalarbp.MLP.load(model)
    assert 4 <= saved.epochs_trained < 30 and (tmp_path / "m.npz.dpkey").exists()
    resumed = cli(K1, "--epochs", str(30 - saved.epochs_trained), "--resume", str(model), "--save", str(model))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "warning" not in err, err
    assert np.array_equal(scalarbp.MLP.load(model).theta, scalarbp.MLP.load(tmp_path / "twin.npz").theta)


def test_a_symlinked_key_file_leaves_no_key_behind_when_the_run_finishes(digits, tmp_path):
    target, link = tmp_path / "keys" / "run.dpkey", tmp_path / "m.dpkey"
    target.parent.mkdir()
    link.symlink_to(target)  # (dangling: the run's first write makes the target)
    net = scalarbp.MLP([64, 16, 10], seed=1)
    net.fit(*digits, epochs=1, dp_key_file=link, callbacks=[first_key_written(link)], **DP)
    assert not target.exists() and not os.path.lexists(link)


def test_a_stateful_schedule_is_part_of_the_state_so_a_fresh_count_draws_a_fresh_key(digits, monkeypatch, tmp_path):
    """reduce_on_plateau's counts are not in a model file: a fit resumed from a checkpoint
    would count afresh and cut the rate at other epochs than the run, on the run's noise."""
    options = dict(DP, schedule="reduce_on_plateau", validation_data=(digits[0][:64], digits[1][:64]))
    key_file, model = interrupted_run(digits, monkeypatch, tmp_path, epochs=4, after=1, **options)
    keys(monkeypatch, K1)
    read = first_key_written(key_file)
    with pytest.warns(keyfile.KeyFileWarning, match="not a state of its run"):
        scalarbp.MLP.load(model).fit(*digits, epochs=1, dp_key_file=key_file, callbacks=[read], **options)
    assert np.array_equal(read.key, K1)


def test_a_key_file_that_cannot_be_written_warns_and_loses_no_training(digits, monkeypatch, tmp_path):
    from scalarbp import fileio

    write, calls = fileio.write_atomically, []

    def failing(path, *args, **kw):
        calls.append(path)
        if len(calls) >= 2:
            raise OSError(28, "No space left on device")
        return write(path, *args, **kw)
    monkeypatch.setattr(fileio, "write_atomically", failing)
    net = scalarbp.MLP([64, 16, 10], seed=1)
    with pytest.warns(keyfile.KeyFileWarning, match="cannot keep the run's key"):
        history = net.fit(*digits, epochs=3, dp_key_file=tmp_path / "m.dpkey", **DP)
    assert history.epochs == 3 and net.epochs_trained == 3
