"""Numba's on-disk cache of the kernels, across processes."""
import os
import subprocess
import sys

import pytest

# Process 1 compiles and caches a gradient (the engine's entry point, in its gradient
# mode) and the optimiser update from Python, but runs no training step.
CALLEES = """
import numpy as np
from scalarbp import MLP
from scalarbp.optimizers import SGD_RULE, update
net = MLP((8, 6, 3), dtype="float32", seed=0)
X = np.ones((4, 8), np.float32)
net.loss_and_grad(X, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]])
empty = np.empty(0, np.float32)
hyper = np.zeros(8)
hyper[0] = 0.1
update(SGD_RULE, net.theta.copy(), net.theta.copy(), (empty, empty, empty), hyper, 1.0)
"""

# Processes 2 and 3 train: the first from that cache (compiling what it lacks), the second
# from the cache the first left.
TRAIN = """
import numpy as np
from scalarbp import MLP
net = MLP((8, 6, 3), dtype="float32", seed=0)
X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
history = net.fit(X, np.arange(40) % 3, epochs=2, batch_size=8, lr=0.1, seed=0)
print(history.loss[-1])
"""


def test_an_epoch_loop_compiled_from_cached_kernels_loads_from_the_cache(tmp_path):
    """Numba does not record, in a cached caller compiled from cached parallel callees, that
    loading it must start the thread pool (numba issues 8578, 4807): with the earlier
    engine and without ``jit.start_threads`` the third process here died of a segmentation
    fault.  The engine's entry points are now parallel themselves (or serial, as for this
    small net); the test keeps the three processes' cache and training agreeing."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    run = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
           for code in (CALLEES, TRAIN, TRAIN)]
    for result in run:
        assert result.returncode == 0, result.stderr[-2000:]
    assert any(name.startswith("kernels._train_epoch") for _, _, files in os.walk(tmp_path) for name in files)
    assert run[1].stdout == run[2].stdout
    assert float(run[2].stdout) == pytest.approx(float(run[1].stdout))
