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


# J and the gradient of a net whose loss multiplies a target by an output's logit (where
# LLVM may fuse a multiply and an add), on the scalar backend, as bits.
LOSS_BITS = """
import hashlib
import numpy as np
from scalarbp import MLP
rng = np.random.default_rng(1)
X = rng.normal(size=(40, 4))
for output, loss, y in [("exp", "poisson", rng.uniform(0, 3, (40, 3))),
                        ("sigmoid", "binary_cross_entropy", rng.random((40, 3)))]:
    net = MLP([4, 7, 5, 3], hidden="relu", output=output, loss=loss, seed=0)
    J, dW, db = net.loss_and_grad(X, y, backend="scalar")
    print(loss, float(J).hex(), hashlib.sha256(b"".join(g.tobytes() for g in (*dW, *db))).hexdigest())
"""


def test_the_process_that_compiles_computes_the_bits_that_later_processes_load_from_the_cache(tmp_path):
    """The first process of an install used to call the callees' standalone libraries, and
    every later one the copies linked into the cached caller: the Poisson J of the scalar
    backend came out 0x1.5c3df825182afp+0 in the first and 0x1.5c3df825182b0p+0 after
    (:mod:`scalarbp.jit.linking`)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    first, later = [subprocess.run([sys.executable, "-c", LOSS_BITS], env=env, capture_output=True, text=True,
                                   timeout=300) for _ in range(2)]
    assert first.returncode == 0 and later.returncode == 0, (first.stderr + later.stderr)[-2000:]
    assert len(first.stdout.splitlines()) == 2
    assert first.stdout == later.stdout


IR = """
define i32 @{entry}(double* %x) {{
  %r = call i32 @{callee}(double* %x)
  ret i32 %r
}}
define linkonce_odr i32 @{callee}(double* %x) {{
  ret i32 0
}}
define linkonce_odr void @NRT_incref(i8* %p) {{
  ret void
}}
"""


@pytest.mark.parametrize("ours", [True, False])
def test_the_package_s_libraries_bind_their_callees_copies_to_themselves_and_leave_others_alone(ours):
    import llvmlite.binding as ll

    from scalarbp.jit.linking import own_copies
    prefix = "_ZN8scalarbp" if ours else "_ZN5other"
    module = ll.parse_assembly(IR.format(entry=f"{prefix}6kernel", callee=f"{prefix}6callee"))
    own_copies(module)
    linkage = {fn.name: fn.linkage for fn in module.functions}
    assert linkage[f"{prefix}6kernel"] == ll.Linkage.external
    assert linkage[f"{prefix}6callee"] == (ll.Linkage.internal if ours else ll.Linkage.linkonce_odr)
    assert linkage["NRT_incref"] == ll.Linkage.linkonce_odr
