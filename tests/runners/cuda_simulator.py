"""Run by test_cuda_backend.py in a child process, with NUMBA_ENABLE_CUDASIM=1 for Numba's
CUDA simulator (the variable must be set before Numba is imported, so not inside the
pytest process) or without it on a machine with a GPU.  Prints one JSON object of
results for the test to check."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # (conftest)

import scalarbp  # noqa: E402
from conftest import HIDDEN, OUTPUT_LOSS, problem  # noqa: E402
from scalarbp.datasets import make_spirals  # noqa: E402
from scalarbp.training import DivergedError  # noqa: E402


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# Every activation, and every output/loss pair (the simulator is slow: not all 30 pairs).
COMBINATIONS = [(hidden, "softmax", "cross_entropy") for hidden in HIDDEN] + \
               [(hidden, output, loss) for hidden, (output, loss) in zip(HIDDEN * 2, OUTPUT_LOSS[1:])]

results = {"agreement": {}, "float32": None}
for hidden, output, loss in COMBINATIONS:
    net, X, Y = problem([3, 5, 4, 2], hidden, output, loss, N=6, l2=0.1)
    J_row, dW_row, db_row = net.loss_and_grad(X, Y, backend="row")
    J, dW, db = net.loss_and_grad(X, Y, backend="cuda")
    grads = max(rel(g, r) for g, r in zip(dW + db, dW_row + db_row))
    forward = rel(net.forward(X, backend="cuda"), net.forward(X, backend="row"))
    results["agreement"][f"{hidden}/{output}/{loss}"] = [abs(J - J_row) / abs(J_row), grads, forward]

# Shapes that span several thread blocks (BLOCK x BLOCK results each) with partial edges.
net, X, Y = problem([19, 18, 17, 3], "tanh", N=21, l2=0.1)
J_row, dW_row, db_row = net.loss_and_grad(X, Y, backend="row")
J, dW, db = net.loss_and_grad(X, Y, backend="cuda")
results["blocks"] = max([abs(J - J_row) / abs(J_row)] + [rel(g, r) for g, r in zip(dW + db, dW_row + db_row)])

net, X, Y = problem([3, 5, 2], "tanh", N=7, dtype="float32")
J32, dW32, _ = net.loss_and_grad(X, Y, backend="cuda")
J_ref, dW_ref, _ = net.astype("float64").loss_and_grad(X, Y, backend="row")
results["float32"] = [abs(J32 - J_ref) / J_ref, max(rel(a, b) for a, b in zip(dW32, dW_ref))]

# Per-example gradients and norms (seed 001 before the sum), and a DP-SGD run through them.
net, X, Y = problem([19, 18, 17, 3], "tanh", N=21, l2=0.1)
losses_row, G_row = net.per_example_grads(X, Y, backend="row", flat=True)
losses, G = net.per_example_grads(X, Y, backend="cuda", flat=True)
_, norms = net.per_example_grad_norms(X, Y, backend="cuda")
results["per_example"] = [rel(losses, losses_row), rel(G, G_row), rel(norms, np.linalg.norm(G_row, axis=1))]
private = {}
for backend in ("cuda", "scalar"):
    net = scalarbp.MLP([2, 8, 3], hidden="tanh", seed=0)
    X, y = make_spirals(24, seed=0)
    net.fit(X, y, epochs=2, batch_size=8, lr=0.05, optimizer="sgd", seed=0, backend=backend, dp_clip=0.5,
            dp_noise=1.0, dp_insecure_seed=0)
    private[backend] = net.theta.copy()
results["dp_sgd"] = rel(private["cuda"], private["scalar"])

trained = {}
for backend in ("cuda", "scalar"):
    net = scalarbp.MLP([2, 8, 3], hidden="tanh", seed=0)
    X, y = make_spirals(24, seed=0)
    history = net.fit(X, y, epochs=3, batch_size=8, lr=0.05, optimizer="adam", seed=0, backend=backend,
                      validation_data=(X, y))
    trained[backend] = (net.theta.copy(), history.loss, net.optimizer.t)
results["training"] = {
    "weights": rel(trained["cuda"][0], trained["scalar"][0]),
    "losses": rel(trained["cuda"][1], trained["scalar"][1]),
    "loss_falls": trained["cuda"][1][-1] < trained["cuda"][1][0],
    "steps": [trained["cuda"][2], trained["scalar"][2]],
}

# Every optimiser's rule on the device against the CPU's, through a short training run.
results["optimizers"] = {}
for name, options in (("momentum", dict(nesterov=True)), ("adamw", {}), ("rmsprop", dict(momentum=0.5, centered=True))):
    theta = {}
    for backend in ("cuda", "scalar"):
        net = scalarbp.MLP([2, 6, 3], hidden="tanh", seed=1)
        X, y = make_spirals(16, seed=1)
        net.fit(X, y, epochs=1, batch_size=8, lr=0.05, optimizer=scalarbp.optimizers.make(name, 0.05, **options),
                seed=0, backend=backend)
        theta[backend] = net.theta.copy()
    results["optimizers"][name] = rel(theta["cuda"], theta["scalar"])

rng = np.random.default_rng(0)
X, y = rng.normal(size=(16, 3)), 100 * rng.normal(size=16)
net = scalarbp.MLP([3, 6, 1], output="identity", seed=0)
try:
    net.fit(X, y, epochs=40, batch_size=16, lr=0.2, optimizer="sgd", seed=0, backend="cuda")
    results["diverged"] = None
except DivergedError as err:
    twin = scalarbp.MLP([3, 6, 1], output="identity", seed=0)
    twin.fit(X, y, epochs=net.epochs_trained, batch_size=16, lr=0.2, optimizer="sgd", seed=0, backend="cuda")
    results["diverged"] = {"message": str(err), "finite": bool(np.isfinite(net.theta).all()),
                           "same_as_twin": bool(np.array_equal(net.theta, twin.theta))}
# An update that overflows (AdamW's decay factor 1 - 1e-3 * 1e5 = -99 a step takes the
# weights past float32's range at epoch 2, step 5; X = 0 keeps the loss and gradient
# finite): rolled back to the last good step, as on the CPU.
X, y = np.zeros((60, 3)), np.random.default_rng(0).integers(0, 3, 60)
finals = {}
for backend in ("cuda", "scalar"):
    net = scalarbp.MLP([3, 3], seed=0, dtype="float32")
    try:
        net.fit(X, y, epochs=3, batch_size=4, optimizer=scalarbp.optimizers.AdamW(1e-3, weight_decay=1e5),
                shuffle=False, backend=backend)
    except DivergedError as err:
        finals[backend] = (str(err), net.theta.copy(), net.optimizer.t, net.epochs_trained, net.epoch_steps)
cuda_run, cpu_run = finals.get("cuda"), finals.get("scalar")
results["update_overflow"] = None if cuda_run is None else {
    "message": cuda_run[0], "finite": bool(np.isfinite(cuda_run[1]).all()),
    "same_as_cpu": bool(cpu_run is not None and rel(cuda_run[1], cpu_run[1]) < 1e-6
                        and cuda_run[2:] == cpu_run[2:])}
print(json.dumps(results))
