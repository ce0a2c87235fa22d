"""The profiling runs' cases, targets and measurements beyond one epoch's time: the
forward/backward/update split, peak memory, and compile time from an empty cache.

Used by ``scripts/bench.py`` (and its tests); the timing machinery they share with the
quick ``scalarbp bench`` is :mod:`scalarbp.timing`.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from scalarbp.backends import scalar
from scalarbp.definitions.layout import Layout
from scalarbp.model import MLP
from scalarbp.optimizers import make
from scalarbp.bench.timing import QUICK_CASES, Case, _timed, data

#: The cases of the performance issue, with its target time ratios to PyTorch.
CASES = {
    **QUICK_CASES,
    "mnist": Case("mnist", (784, 256, 128, 10), 60000, 64),
    "wide": Case("wide", (1024, 1024, 1024, 10), 16384, 256),
}
TARGETS = {"digits": 0.2, "mnist1d": 0.3, "mnist": 0.7, "wide": 0.75}

#: The GPU cases (``--device cuda``: scalarbp's cuda backend against PyTorch CUDA) and their
#: targets; "big" is about 25 TFLOP/s for PyTorch on an H100.
GPU_CASES = {
    "mnist-gpu": Case("mnist-gpu", (784, 256, 128, 10), 60000, 64),
    "wide-gpu": Case("wide-gpu", (1024, 1024, 1024, 10), 16384, 256),
    "big-gpu": Case("big-gpu", (784, 2048, 2048, 10), 262144, 1024),
}
TARGETS.update({"mnist-gpu": 0.3, "wide-gpu": 1.0, "big-gpu": 3.0})


def sweep_cases():
    """More shapes: batch sizes, depth, width (two hidden layers of w on mnist's input, so
    that the operands outgrow the caches), float64."""
    cases = [Case(f"batch {b}", (784, 256, 128, 10), 8192 if b >= 16 else 1024, b)
             for b in (1, 4, 16, 64, 256, 1024)]
    cases += [Case(f"depth {d}", (256,) + (256,) * d + (10,), 8192, 128) for d in (1, 2, 4, 8)]
    cases += [Case(f"width {w}", (w, w, 10), 8192, 128) for w in (64, 256, 1024, 2048)]
    cases += [Case(f"784-{w}-{w}-10", (784, w, w, 10), 8192, 256) for w in (128, 512, 1024, 2048)]
    cases += [Case("mnist float64", (784, 256, 128, 10), 16384, 64, dtype="float64")]
    return cases


def phases(case, repeats=5):
    """Seconds per epoch spent in the forward pass, the backward pass and the update."""
    X, y = data(case)
    net = MLP(case.sizes, dtype=case.dtype, seed=0)
    net.optimizer = make(case.optimizer, case.lr)
    Y = np.eye(case.sizes[-1], dtype=case.dtype)[y]
    engine = scalar.BACKEND
    grad = np.empty_like(net.theta)
    batches = [(np.ascontiguousarray(X[s:s + case.batch]), np.ascontiguousarray(Y[s:s + case.batch]))
               for s in range(0, case.N, case.batch)]

    def forward():
        for xb, _ in batches:
            engine.forward(net, xb)

    def forward_backward():
        for xb, yb in batches:
            engine.loss_and_grad(net, xb, yb, grad)

    zero = np.zeros_like(grad)

    def update():
        for _ in batches:
            net.optimizer.step(net.theta, zero)

    runs = {"forward": forward, "forward+backward": forward_backward, "update": update}
    times = {name: [] for name in runs}
    for _ in range(repeats):  # in turn, so that a change of the machine's load falls on all three
        for name, run in runs.items():
            times[name].append(_timed(run))
    result = {name: float(np.median(t)) for name, t in times.items()}
    result["backward"] = result["forward+backward"] - result["forward"]
    return result


def peak_memory(case):
    """Memory of one training epoch of ``case`` in a fresh process (Linux).

    The process makes the data and loads the compiled kernels (a two-batch ``fit``), then
    resets its peak-RSS counter (``/proc/self/clear_refs``) and trains one epoch.  Returns
    ``{"before": RSS before the epoch, "peak": peak RSS during it}`` in bytes.
    """
    code = ("import numpy as np\n"
            "from scalarbp import MLP\n"
            "from scalarbp.bench.timing import Case, data\n"
            f"case = Case(*{tuple(vars(case).values())!r})\n"
            "X, y = data(case)\n"
            "net = MLP(case.sizes, dtype=case.dtype, seed=0)\n"
            "kw = dict(epochs=1, batch_size=case.batch, optimizer=case.optimizer, shuffle=False)\n"
            "net.fit(X[:2 * case.batch], y[:2 * case.batch], **kw)\n"
            "status = lambda key: int(open('/proc/self/status').read().split(key + ':')[1].split()[0]) * 1024\n"
            "before = status('VmRSS')\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "net.fit(X, y, **kw)\n"
            "print(before, status('VmHWM'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, peak = map(int, out.stdout.split()[-2:])
    return {"before": before, "peak": peak}


def expected_memory(case):
    """Bytes of data + parameters + optimiser state + gradient + work buffers, as scalarbp
    allocates them (the data is float32 already, so ``fit`` does not copy it)."""
    item = np.dtype(case.dtype).itemsize
    data_bytes = case.N * case.sizes[0] * item + case.N * 8
    layout = Layout(case.sizes)
    params = layout.size * item
    states = len(make(case.optimizer, case.lr).state_names)
    work = scalar.Workspace(layout, case.batch, case.dtype)
    work_bytes = sum(b.nbytes for b in work.work if isinstance(b, np.ndarray))
    return {"data": data_bytes, "parameters": params, "optimizer state": states * params,
            "gradient": params, "work buffers": work_bytes}


#: The start-up cases: the default model (``scalarbp train``: 64-128-10 on the digits, the
#: serial engine) and the mnist shape (the parallel engine), each in float32 and float64.
COMPILE_CASES = [Case("default", (64, 128, 10), 1437, 32), Case("mnist", (784, 256, 128, 10), 1024, 64)]
COMPILE_DTYPES = ("float32", "float64")

#: A new process's first fit (with a validation split, as ``scalarbp train`` has) and
#: first predict, timed apart, and the signatures each compiled function then holds.
_START = """import json, sys, time
t0 = time.perf_counter()
import numpy as np, scalarbp
from numba.core.registry import CPUDispatcher
sizes, dtype, N, batch = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.normal(size=(N, sizes[0])).astype(dtype); y = rng.integers(0, sizes[-1], N)
net = scalarbp.MLP(sizes, dtype=dtype, seed=0)
t1 = time.perf_counter()
net.fit(X, y, epochs=1, batch_size=batch, optimizer="adam", validation_fraction=0.1)
t2 = time.perf_counter()
net.predict(X)
t3 = time.perf_counter()
import gc
signatures = {}
for d in gc.get_objects():
    if isinstance(d, CPUDispatcher) and d.signatures and d.py_func.__module__.startswith("scalarbp"):
        signatures[f"{d.py_func.__module__.split('.')[-1]}.{d.py_func.__qualname__}"] = len(d.signatures)
print(json.dumps({"import": t1 - t0, "fit": t2 - t1, "predict": t3 - t2, "total": t3 - t0,
                  "signatures": signatures}))
"""


def compile_times(cases=COMPILE_CASES, dtypes=COMPILE_DTYPES):
    """Per case and dtype, a new process's import, first fit and first predict in seconds,
    with an empty Numba cache (cold: compiling) and again with the cache it left (warm),
    and the compiled signatures per function (the entry points and what links into them)."""
    results = []
    for case in cases:
        for dtype in dtypes:
            with tempfile.TemporaryDirectory() as cache:
                env = {**os.environ, "NUMBA_CACHE_DIR": cache}
                argument = json.dumps([list(case.sizes), dtype, case.N, case.batch])
                runs = [json.loads(subprocess.run([sys.executable, "-c", _START, argument], env=env,
                                                  capture_output=True, text=True, check=True).stdout.split("\n")[-2])
                        for _ in range(2)]
            results.append({"case": case.name, "dtype": dtype, "cold": runs[0], "warm": runs[1]})
    return results


#: The DP-SGD cases: the issue's mnist shape on 16,384 samples (Opacus is slow), and wide.
DP_CASES = {
    "mnist-dp": Case("mnist-dp", (784, 256, 128, 10), 16384, 64),
    "wide-dp": Case("wide-dp", (1024, 1024, 1024, 10), 4096, 256),
}


def dp_epochs(case, repeats, opacus_repeats):
    """Seconds per epoch (median) of plain scalarbp, scalarbp's DP-SGD with and without
    noise, and Opacus' DP-SGD (hooks mode, Poisson sampling) on the same model and data:
    clip 1.0, noise 1.1, SGD at the case's rate."""
    X, y = data(case)
    results = {}
    runs = {"scalarbp": {}, "scalarbp DP-SGD": dict(dp_clip=1.0, dp_noise=1.1),
            "scalarbp DP-SGD, no noise": dict(dp_clip=1.0, dp_noise=0.0)}
    for name, options in runs.items():
        net = MLP(case.sizes, dtype=case.dtype, seed=0)
        net.fit(X[:2 * case.batch], y[:2 * case.batch], epochs=1, batch_size=case.batch, optimizer="sgd",
                lr=case.lr, seed=0, **options)  # compiled first
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            net.fit(X, y, epochs=1, batch_size=case.batch, optimizer="sgd", lr=case.lr, seed=0, **options)
            seconds.append(time.perf_counter() - start)
        results[name] = float(np.median(seconds))
    try:
        import torch
        from opacus import PrivacyEngine
    except ImportError:
        return results
    layers = []
    for k, (d_in, d_out) in enumerate(zip(case.sizes[:-1], case.sizes[1:])):
        layers += [torch.nn.Linear(d_in, d_out)] + ([torch.nn.ReLU()] if k < len(case.sizes) - 2 else [])
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=case.lr)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
                                         batch_size=case.batch)
    model, optimizer, loader = PrivacyEngine().make_private(module=model, optimizer=optimizer, data_loader=loader,
                                                            noise_multiplier=1.1, max_grad_norm=1.0)
    seconds = []
    for _ in range(opacus_repeats):
        start = time.perf_counter()
        for xb, yb in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    results["Opacus DP-SGD"] = float(np.median(seconds))
    return results
