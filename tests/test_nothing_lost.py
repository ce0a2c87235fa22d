"""Nothing is lost in training: an update that overflows rolls back to the last good step,
and Ctrl-C keeps the last step with counters that describe it (resuming equals never
stopping)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import scalarbp
from scalarbp.datasets import load_digits, make_spirals
from scalarbp.optimizers import AdamW
from scalarbp.training import DivergedError

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
from scalarbp.training import loop
from scalarbp.datasets import load_digits
loop.SECONDS_PER_CALL = 0.002  # short runs of steps: the signal lands inside an epoch
(X, y), _ = load_digits()
scalarbp.MLP([64, 32, 10], seed=0).fit(X[:64], y[:64], epochs=1, batch_size=8, optimizer="adam")  # compile
net = scalarbp.MLP([64, 32, 10], seed=0)
print("ready", flush=True)
try:
    net.fit(X, y, epochs=100000, batch_size=8, lr=0.001, optimizer="adam", seed=3)
except loop.TrainingInterrupted as err:
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


def test_ctrl_c_in_the_last_steps_of_a_fit_is_not_lost():
    from scalarbp.training import TrainingInterrupted

    class Press(scalarbp.training.Callback):
        def on_epoch_end(self, epoch, history, net):
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C during the last epoch would

    net = scalarbp.MLP([2, 3], seed=0)
    X, y = make_spirals(20, seed=0)
    with pytest.raises(TrainingInterrupted):
        net.fit(X, y, epochs=1, callbacks=[Press()])
    assert net.epochs_trained == 1 and net.epoch_steps == 0
