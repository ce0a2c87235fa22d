"""The engine beside other processes and threads: multiprocessing pools of every start
method after a parallel fit, and two threads fitting at once.  (Each pool runs in a child
with a timeout, so a hang fails instead of stalling the suite.)"""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import scalarbp
from scalarbp import jit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A net large enough for the parallel kernels, fitted (so Numba's threads run) before the pool.
POOL = """
import multiprocessing, sys
import numpy as np
import scalarbp

X = np.random.default_rng(0).normal(size=(256, 784))


def predict(job):
    net, rows = job
    return net.predict(X[rows]).tolist()


if __name__ == "__main__":
    net = scalarbp.MLP([784, 64, 10], seed=0)
    net.fit(X, np.arange(256) % 10, epochs=1, batch_size=64)
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        got = pool.map(predict, [(net, slice(0, 100)), (net, slice(100, 256))])
    print(got == [net.predict(X[:100]).tolist(), net.predict(X[100:]).tolist()])
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_pool_of_any_start_method_predicts_after_a_parallel_fit(tmp_path, method):
    """With GNU OpenMP (Numba's "omp" layer) a forked child cannot start threads: Numba
    ended it and the pool waited for ever.  A forked child now runs the serial kernels,
    which give the same numbers."""
    assert scalarbp.MLP([784, 64, 10]).layout.macs >= jit.PARALLEL_MACS
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    done = subprocess.run([sys.executable, str(script), method], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True"], done.stderr[-3000:]


def test_a_forked_child_refuses_what_has_only_a_parallel_kernel(tmp_path):
    """DP-SGD's noise and the literal backend have no serial form: in such a child they
    raise at once, naming the way out, instead of ending the process."""
    script = tmp_path / "refuse.py"
    script.write_text("""
import os
import numpy as np
import scalarbp
from scalarbp import privacy
from scalarbp.privacy import sampler

net = scalarbp.MLP([784, 64, 10], seed=0)
X = np.random.default_rng(0).normal(size=(64, 784))
net.fit(X, np.arange(64) % 10, epochs=1, batch_size=64)
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        privacy.noise(sampler.seeded_key(0), 1, 10, np.float64)
        message = "no error"
    except RuntimeError as err:
        message = str(err)
    os.write(write, message.encode())
    os._exit(0)
os.close(write)  # (so that a child which dies unheard reads as an empty answer)
os.waitpid(pid, 0)
print(os.read(read, 1000).decode() or "the child died")
""")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DP-SGD's noise runs parallel kernels" in done.stdout and "'spawn' or 'forkserver'" in done.stdout


def test_two_threads_fitting_at_once_get_what_each_gets_alone():
    X = np.random.default_rng(0).normal(size=(512, 784))
    y = np.arange(512) % 10

    def fit(seed, out):
        net = scalarbp.MLP([784, 48, 10], seed=seed)
        net.fit(X, y, epochs=2, batch_size=64, seed=seed)
        out[seed] = net.theta

    alone, together = {}, {}
    for seed in (0, 1):
        fit(seed, alone)
    threads = [threading.Thread(target=fit, args=(seed, together)) for seed in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads)
    for seed in (0, 1):
        assert np.array_equal(alone[seed], together[seed])
