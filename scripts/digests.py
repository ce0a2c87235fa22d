"""Digests of what scalarbp computes: weights after training, gradients, outputs.

A refactor must leave every line of this script's output as it was (bit-identical
results)::

    python scripts/digests.py > before.txt     # on the old code
    python scripts/digests.py > after.txt      # on the new code
    diff before.txt after.txt

Each line is a case and the first 16 hex digits of the SHA-256 of its arrays' bytes.  The
cases cover every backend, activation, output and loss, the penalty at a weight that
shows its last bit in J, optimiser, schedule, sample and class weights, validation and
early stopping, DP-SGD (on the compiled and the Python stepper), L-BFGS, the estimators
and the ``train`` command; ``--cuda`` adds the CUDA backend in Numba's simulator (slow; a
child process, as the simulator must be switched on before Numba is imported).  Digests
are of one machine's arithmetic: compare them on the same machine and thread count, never
across machines.

The cases run in a child process once Numba's cache holds every kernel (a first child
fills it), the state of every run but an install's first.  Before ``jit/linking.py`` a
kernel compiled in the running process and the same kernel loaded from the cache could
round a fused multiply-add differently; they now give the same lines.
"""
import argparse
import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

import scalarbp
from scalarbp.datasets import make_spirals

HIDDEN = ["relu", "leaky_relu", "sigmoid", "tanh", "identity"]
OUTPUT_LOSS = [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"), ("identity", "mse"),
               ("tanh", "mse"), ("softmax", "mse"), ("exp", "poisson")]


def digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def problem(hidden="tanh", output="softmax", loss=None, dtype="float64", N=40, l2=0.01, seed=0):
    """A 4-7-5-3 net and data for it, from one seed."""
    net = scalarbp.MLP([4, 7, 5, 3], hidden=hidden, output=output, loss=loss, l2=l2, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for b in net.biases:
        b[...] = rng.normal(0, 0.1, b.shape)
    X = rng.normal(size=(N, 4))
    if net.loss == "cross_entropy":
        y = rng.integers(0, 3, N)
    elif net.loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (N, 3)).astype(float)
    elif net.loss == "poisson":
        y = rng.poisson(1.5, (N, 3)).astype(float)
    else:
        y = rng.normal(size=(N, 3))
    return net, X, y


def passes(backend, dtype="float64"):
    """Forward, loss and gradient, per-example gradients and DP's clipped sum."""
    for hidden in HIDDEN:
        for output, loss in OUTPUT_LOSS:
            net, X, y = problem(hidden, output, loss, dtype)
            J, dW, db = net.loss_and_grad(X, y, backend=backend)
            losses, G = net.per_example_grads(X, y, backend=backend, flat=True)
            yield f"passes/{backend}/{dtype}/{hidden}/{output}/{loss}", digest(
                net.forward(X, backend=backend), np.float64(J), *dW, *db, losses, G)


def penalties():
    """J with a penalty large enough that its last bit reaches J's (at l2 = 0.01 the penalty's
    rounding falls below J's last place), on every CPU backend, for nets of 8 seeds."""
    X = np.random.default_rng(6).normal(size=(40, 4))
    y = np.random.default_rng(7).integers(0, 3, 40)
    for backend in ("scalar", "literal", "row", "column"):
        for sizes in ([4, 7, 5, 3], [4, 64, 48, 3]):
            J = [net.loss_and_grad(X, y, backend=backend)[0]
                 for net in (scalarbp.MLP(sizes, hidden="tanh", l2=40.0, seed=seed) for seed in range(8))]
            yield f"penalty/{backend}/{'-'.join(map(str, sizes))}", digest(np.array(J, np.float64))


def trained(name, backend="scalar", make=problem, **fit):
    net, X, y = make()
    history = net.fit(X, y, backend=backend, seed=3, **{"epochs": 3, "batch_size": 8, **fit})
    return name, digest(net.theta, np.asarray(history.loss, np.float64), net.forward(X))


def fits():
    for backend in ("scalar", "literal", "row", "column"):
        yield trained(f"fit/{backend}/adam", backend)
        yield trained(f"fit/{backend}/dp", backend, optimizer="sgd", lr=0.1, dp_clip=0.5, dp_noise=1.0,
                      dp_insecure_seed=1)
    for dtype in ("float32", "float64"):
        yield trained(f"fit/{dtype}", make=lambda: problem(dtype=dtype))
    for optimizer in ("sgd", "momentum", "adam", "adamw", "rmsprop",
                      scalarbp.optimizers.Momentum(0.05, nesterov=True)):
        yield trained(f"fit/optimizer/{optimizer}", optimizer=optimizer)
    for schedule in ("step", "cosine"):
        yield trained(f"fit/schedule/{schedule}", schedule=schedule, epochs=5)
    yield trained("fit/reduce_on_plateau", schedule="reduce_on_plateau", epochs=5, validation_fraction=0.25)
    yield trained("fit/warmup+clip", warmup_steps=7, clip_norm=0.3, optimizer="sgd")
    yield trained("fit/weights", sample_weight=np.linspace(0.5, 2, 40), class_weight="balanced")
    yield trained("fit/early_stopping", validation_fraction=0.2, early_stopping=True, patience=2, epochs=8)
    yield trained("fit/no-shuffle", shuffle=False)
    yield trained("fit/lbfgs", optimizer="lbfgs", epochs=15)
    yield trained("fit/lbfgs-weights", optimizer="lbfgs", epochs=15, sample_weight=np.linspace(0.5, 2, 40))
    yield trained("fit/dp-shuffle", optimizer="sgd", lr=0.1, dp_clip=0.5, dp_noise=1.0, dp_sampling="shuffle",
                  dp_insecure_seed=2)
    yield trained("fit/dp-adam-l2", optimizer="adam", dp_clip=0.5, dp_noise=0.7, dp_insecure_seed=4,
                  make=lambda: problem(l2=0.1))
    yield trained("fit/partial", batch_size=8, epochs=1, shuffle=False)
    with contextlib.suppress(ImportError):
        import dp_accounting  # noqa: F401

        yield from secret_key_fits()


def secret_key_fits():
    """DP-SGD from a secret key, here a fixed one (as the tests fix it: the library has no
    way to choose the key), with the noise picked for a target epsilon."""
    from scalarbp.privacy import sampler

    new_key = sampler.new_key
    sampler.new_key = lambda: np.arange(8, dtype=np.uint32)
    try:
        yield trained("fit/dp-target-epsilon", optimizer="sgd", lr=0.1, dp_clip=0.5, dp_delta=1e-3,
                      target_epsilon=8.0)
        yield trained("fit/dp-target-epsilon/row", "row", optimizer="sgd", lr=0.1, dp_clip=0.5, dp_delta=1e-3,
                      target_epsilon=8.0)
    finally:
        sampler.new_key = new_key


def estimators():
    with contextlib.suppress(ImportError):
        from scalarbp.sklearn import ScalarMLPClassifier, ScalarMLPRegressor

        X, y = make_spirals(60, seed=0)
        for solver in ("adam", "sgd", "lbfgs"):
            est = ScalarMLPClassifier((6,), solver=solver, max_iter=20, random_state=0).fit(X, y)
            yield f"sklearn/classifier/{solver}", digest(*est.coefs_, *est.intercepts_, est.predict_proba(X))
        est = ScalarMLPRegressor((6,), max_iter=20, random_state=0, early_stopping=True).fit(X, X[:, 0])
        yield "sklearn/regressor", digest(*est.coefs_, *est.intercepts_, est.predict(X))


def train_command():
    from scalarbp.cli import main

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "net.npz")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(["train", "--epochs", "2", "--seed", "0", "--save", path])
        net = scalarbp.MLP.load(path)
        yield "cli/train", digest(net.theta)


def cuda_cases():
    """The CUDA backend in the simulator (run in the child: see the module's docstring)."""
    for hidden in HIDDEN:
        for output, loss in OUTPUT_LOSS:
            net, X, y = problem(hidden, output, loss, N=6)
            J, dW, db = net.loss_and_grad(X, y, backend="cuda")
            losses, G = net.per_example_grads(X, y, backend="cuda", flat=True)
            yield f"cuda/{hidden}/{output}/{loss}", digest(net.forward(X, backend="cuda"), np.float64(J), *dW, *db,
                                                          losses, G)
    yield trained("cuda/fit/adam", "cuda", epochs=2)
    yield trained("cuda/fit/dp", "cuda", epochs=2, optimizer="sgd", lr=0.1, dp_clip=0.5, dp_noise=1.0,
                  dp_insecure_seed=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuda", action="store_true", help="add the CUDA backend in Numba's simulator")
    parser.add_argument("--child", choices=["cpu", "cuda"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        warnings.simplefilter("ignore")  # (the estimators' convergence warnings: a digest is the output)
        cases = cuda_cases() if args.child == "cuda" else (
            case for group in ([passes(b) for b in ("scalar", "literal", "row", "column")]
                               + [penalties(), passes("scalar", "float32"), fits(), estimators(), train_command()])
            for case in group)
        for name, value in cases:
            print(f"{name} {value}", flush=True)
        return
    for child in ["cpu"] + ["cuda"] * args.cuda:
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1") if child == "cuda" else None
        run = [sys.executable, __file__, "--child", child]
        if child == "cpu":  # (fills the cache; the simulator compiles nothing)
            subprocess.run(run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(run, env=env, check=True, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
