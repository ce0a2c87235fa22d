"""Timing one epoch of training, scalarbp side by side with PyTorch, JAX, scikit-learn and
the NumPy row backend, in one process: the machinery behind ``scalarbp bench`` (a quick
run of :data:`QUICK_CASES`) and ``scripts/bench.py`` (the profiling runs, their cases and
targets).

Protocol (the performance issue's): float32, synthetic data from ``default_rng(0)``, one
epoch through the public ``fit()`` with no shuffling, SGD at lr 0.01 (Adam where a case
says so).  PyTorch runs with ``torch.set_num_threads`` equal to Numba's thread count, an
``nn.Sequential`` of ``Linear`` + ``ReLU`` layers, ``CrossEntropyLoss`` and its own
optimiser over manual tensor slices (its best case); scikit-learn runs
``MLPClassifier(solver="sgd", momentum=0, alpha=0, max_iter=1)``.  The competitors are
timed in turn inside each repetition, so that the machine's changing load falls on all of
them alike; tables report medians and ratios.  Optional packages that are missing are
skipped.
"""
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    sizes: tuple
    N: int
    batch: int
    optimizer: str = "sgd"
    lr: float = 0.01
    dtype: str = "float32"

    @property
    def steps(self):
        return -(-self.N // self.batch)

    def flops(self):
        """Floating-point operations of one epoch: 2 per multiply-add, forward sums, weight
        gradients, and delta sums for every layer but the first."""
        macs = 0
        for k, (d_in, d_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            macs += d_in * d_out * (2 if k == 0 else 3)
        return 2 * macs * self.N


#: The quick run of ``scalarbp bench``: the two small nets of the profiling runs.
QUICK_CASES = {
    "digits": Case("digits", (64, 64, 10), 1797, 32),
    "mnist1d": Case("mnist1d", (40, 256, 256, 10), 4000, 100, "adam"),
}


def data(case):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(case.N, case.sizes[0])).astype(case.dtype)
    y = rng.integers(0, case.sizes[-1], case.N)
    return X, y


def _timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def scalarbp_epoch(case, X, y, backend="scalar"):
    from ..model import MLP

    net = MLP(case.sizes, hidden="relu", dtype=case.dtype, seed=0)
    kwargs = dict(epochs=1, batch_size=case.batch, lr=case.lr, optimizer=case.optimizer, shuffle=False,
                  backend=backend)
    net.fit(X[:2 * case.batch], y[:2 * case.batch], **kwargs)  # compiles (or loads) the kernels
    return lambda: net.fit(X, y, **kwargs)


def torch_epoch(case, X, y, threads, device="cpu"):
    try:
        import torch
    except ImportError:
        return None
    if device == "cuda" and not torch.cuda.is_available():
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dtype = getattr(torch, case.dtype)
    layers = []
    for d_in, d_out in zip(case.sizes[:-1], case.sizes[1:]):
        layers += [torch.nn.Linear(d_in, d_out, dtype=dtype, device=device), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    loss = torch.nn.CrossEntropyLoss()
    optimizer = (torch.optim.Adam if case.optimizer == "adam" else torch.optim.SGD)(model.parameters(), lr=case.lr)
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)

    def epoch():
        for start in range(0, case.N, case.batch):
            optimizer.zero_grad()
            loss(model(Xt[start:start + case.batch]), yt[start:start + case.batch]).backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
    epoch()
    return epoch


def jax_epoch(case, X, y, device="cpu"):
    """One epoch in JAX with the whole epoch jitted: ``jax.lax.scan`` of the SGD (or Adam)
    step over the full minibatches, plus one jitted step for a last partial batch.

    This is JAX's best case: one compiled program per epoch, no Python between steps.
    Returns ``None`` where JAX (or, with ``device="cuda"``, a GPU for it) is missing.
    """
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if case.dtype == "float64" and not jax.config.jax_enable_x64:
        return None
    try:
        target = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    except RuntimeError:
        return None
    rng = np.random.default_rng(0)
    params = [((rng.normal(size=(d_out, d_in)) * np.sqrt(2.0 / d_in)).astype(case.dtype),
               np.zeros(d_out, case.dtype)) for d_in, d_out in zip(case.sizes[:-1], case.sizes[1:])]
    params = jax.device_put(params, target)
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def loss(params, xb, yb):
        h = xb
        for k, (W, b) in enumerate(params):
            a = h @ W.T + b
            h = jax.nn.relu(a) if k < len(params) - 1 else a
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), yb[:, None], axis=1))

    def step(carry, batch):
        params, m, v, t = carry
        g = jax.grad(loss)(params, *batch)
        if case.optimizer == "adam":
            t = t + 1
            m = jax.tree_util.tree_map(lambda m, g: beta1 * m + (1 - beta1) * g, m, g)
            v = jax.tree_util.tree_map(lambda v, g: beta2 * v + (1 - beta2) * g * g, v, g)
            c1, c2 = 1 - beta1 ** t, 1 - beta2 ** t
            params = jax.tree_util.tree_map(
                lambda p, m, v: p - case.lr * (m / c1) / (jnp.sqrt(v / c2) + eps), params, m, v)
        else:
            params = jax.tree_util.tree_map(lambda p, g: p - case.lr * g, params, g)
        return (params, m, v, t), None

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry = (params, zeros, zeros, jnp.asarray(0, case.dtype))
    full = case.N // case.batch * case.batch
    Xs = jax.device_put(X[:full].reshape(-1, case.batch, X.shape[1]), target)
    ys = jax.device_put(y[:full].reshape(-1, case.batch).astype(np.int32), target)
    tail = jax.device_put((X[full:], y[full:].astype(np.int32)), target)
    scan = jax.jit(lambda carry, Xs, ys: jax.lax.scan(step, carry, (Xs, ys))[0])
    last = jax.jit(lambda carry, batch: step(carry, batch)[0])

    def epoch():
        nonlocal carry
        carry = scan(carry, Xs, ys)
        if full < case.N:
            carry = last(carry, tail)
        jax.block_until_ready(carry)
    epoch()
    return epoch


def start_torch(threads):
    """Start PyTorch's OpenMP threads before Numba's, if PyTorch is installed.

    Measured here: when Numba's OpenMP pool starts first in a process, PyTorch's epochs
    run about 10 times slower (mnist1d: 0.41 s instead of 0.04 s), while in this order
    both run at their own speed.
    """
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)
    torch.ones(256, 256) @ torch.ones(256, 256)


def sklearn_epoch(case, X, y):
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None

    def epoch():
        model = MLPClassifier(hidden_layer_sizes=case.sizes[1:-1], activation="relu",
                              solver="adam" if case.optimizer == "adam" else "sgd", momentum=0, alpha=0,
                              batch_size=case.batch, learning_rate_init=case.lr, max_iter=1, shuffle=False,
                              random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
    return epoch


def products_epoch(case, X):
    """An epoch of the matrix products alone, through NumPy's BLAS: a floor for the cases.

    Every step's forward sums ``h W^T``, weight gradients ``delta^T h`` and delta sums
    ``delta W`` (all layers but the first), into preallocated arrays, and nothing else: no
    activation, loss, bias or update.  An implementation whose products ran at BLAS
    speed with everything else free would take this long; a target ratio below this
    floor's ratio to PyTorch asks for products faster than the machine's BLAS.
    """
    rng = np.random.default_rng(0)
    B = case.batch
    Ws = [(rng.normal(size=(d_out, d_in)) / np.sqrt(d_in)).astype(case.dtype)
          for d_in, d_out in zip(case.sizes[:-1], case.sizes[1:])]
    h = [np.empty((B, d), case.dtype) for d in case.sizes]
    delta = [rng.normal(size=(B, d)).astype(case.dtype) for d in case.sizes]
    dW = [np.empty_like(W) for W in Ws]

    def epoch():
        for start in range(0, case.N, B):
            n = min(B, case.N - start)
            below = [X[start:start + n]] + [hk[:n] for hk in h[1:-1]]
            for k, W in enumerate(Ws):
                np.dot(below[k], W.T, out=h[k + 1][:n])
            for k in range(len(Ws) - 1, -1, -1):
                np.dot(delta[k + 1][:n].T, below[k], out=dW[k])
                if k > 0:
                    np.dot(delta[k + 1][:n], Ws[k], out=delta[k][:n])
    return epoch


def gemm_peak(dtype="float32", n=2048, repeats=5):
    """GFLOP/s of NumPy's matrix product (its BLAS), the machine's practical peak."""
    A = np.random.default_rng(0).normal(size=(n, n)).astype(dtype)
    A @ A
    return 2 * n ** 3 / np.median([_timed(lambda: A @ A) for _ in range(repeats)]) / 1e9


def _name(device):
    """The device's name (bytes in older numba-cuda releases, str in newer ones)."""
    name = device.name
    return name.decode() if isinstance(name, bytes) else name


def gpu_name():
    from numba import cuda

    return _name(cuda.get_current_device()) if cuda.is_available() else "none"


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return ", ".join(f"{i['internal_api']} {i.get('architecture') or ''} ({i['num_threads']} threads)".replace("  ", " ")
                     for i in threadpool_info())


#: Seconds of rest before each timed epoch: OpenMP runtimes keep their threads spinning
#: for a while after a parallel region (Intel's for 200 ms), which would steal the cores
#: from whichever implementation runs next.
PAUSE = 0.3


def run_case(case, repeats, threads, competitors=("torch", "sklearn", "row", "products"), device="cpu"):
    """Median seconds per epoch of each implementation, timed in turn in each repetition.

    ``competitors``: any of ``torch``, ``jax``, ``sklearn``, ``row`` (the NumPy row backend) and
    ``products`` (:func:`products_epoch`, the BLAS floor).

    ``device="cuda"``: scalarbp's cuda backend against PyTorch on the GPU.
    """
    X, y = data(case)
    runs = {}
    if "torch" in competitors:  # first: see start_torch
        runs["pytorch"] = torch_epoch(case, X, y, threads, device)
    runs["scalarbp"] = scalarbp_epoch(case, X, y, backend="cuda" if device == "cuda" else "scalar")
    if "jax" in competitors:
        runs["jax"] = jax_epoch(case, X, y, device)
    if "sklearn" in competitors and case.dtype == "float32":
        runs["sklearn"] = sklearn_epoch(case, X, y)
    if "row" in competitors:
        runs["numpy row"] = scalarbp_epoch(case, X, y, backend="row")
    if "products" in competitors:
        runs["blas products"] = products_epoch(case, X)
    runs = {name: run for name, run in runs.items() if run is not None}
    times = {name: [] for name in runs}
    slow = {"sklearn", "numpy row"}
    for rep in range(repeats):
        for name, run in runs.items():
            if name in slow and rep >= max(1, repeats // 3):
                continue  # the slow references: fewer repetitions
            time.sleep(PAUSE)
            times[name].append(_timed(run))
    return {name: float(np.median(t)) for name, t in times.items()}


def table(results, peak, targets=None):
    """Markdown table: seconds per epoch, ratios to PyTorch, GFLOP/s and % of the GEMM peak.

    "BLAS floor" is :func:`products_epoch`'s time, and its ratio to PyTorch the lowest
    ratio an implementation reaches with products at BLAS speed and nothing else.
    """
    lines = ["| case | sizes | N | batch | scalarbp s | PyTorch s | JAX s | scikit-learn s | NumPy row s | "
             "BLAS floor s | scalarbp / PyTorch | scalarbp / JAX | target | floor / PyTorch | GFLOP/s | "
             "% of GEMM peak |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case, times in results:
        def cell(name):
            return f"{times[name]:.4f}" if name in times else "—"

        def ratio(name, to="pytorch"):
            return f"{times[name] / times[to]:.2f}" if name in times and to in times else "—"
        gflops = case.flops() / times["scalarbp"] / 1e9
        target = (targets or {}).get(case.name)
        lines.append(
            f"| {case.name} | {'-'.join(map(str, case.sizes))} | {case.N} | {case.batch} | {cell('scalarbp')} | "
            f"{cell('pytorch')} | {cell('jax')} | {cell('sklearn')} | {cell('numpy row')} | "
            f"{cell('blas products')} | {ratio('scalarbp')} | {ratio('scalarbp', 'jax')} | "
            f"{'—' if target is None else f'≤ {target}'} | {ratio('blas products')} | "
            f"{gflops:.0f} | {100 * gflops / peak:.0f}% |")
    return "\n".join(lines)


def machine():
    import platform

    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu} ({vector_isa()}), {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, Numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads, "
            f"{numba.threading_layer() if _threading_layer_known() else 'threading layer not yet chosen'})")


def vector_isa():
    """LLVM's name for this CPU and the widest vector instructions it offers the kernels
    (Zen 4 executes AVX-512 on 256-bit datapaths, Zen 5 on 512-bit: the name tells them
    apart; LLVM's tuning for some Intel CPUs also prefers 256-bit vectors)."""
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    widest = next((name for flag, name in (("avx512f", "AVX-512, 512-bit"), ("avx2", "AVX2, 256-bit"),
                                            ("avx", "AVX, 256-bit"), ("sse2", "SSE2, 128-bit"))
                   if features.get(flag)), "no x86 vectors")
    return f"LLVM target {binding.get_host_cpu_name()}, {widest}"


#: The competing job of ``scripts/bench.py --busy``: a 2-thread PyTorch matrix-product
#: loop (NumPy's BLAS where PyTorch is missing), until it is stopped.
BUSY_JOB = """
try:
    import torch
    torch.set_num_threads(2)
    a = torch.randn(1024, 1024)
except ImportError:
    import os
    os.environ["OPENBLAS_NUM_THREADS"] = "2"
    import numpy as np
    a = np.random.default_rng(0).normal(size=(1024, 1024)).astype(np.float32)
while True:
    a @ a
"""


def busy_ratios(case, epochs=8):
    """``(quiet one-thread seconds, busy seconds)`` of scalarbp's epoch: the median of
    ``epochs`` epochs on one thread with the machine quiet, then the mean of ``epochs``
    epochs on all threads beside :data:`BUSY_JOB`, which is started and stopped here."""
    import numba

    X, y = data(case)
    run = scalarbp_epoch(case, X, y)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        quiet = float(np.median([_timed(run) for _ in range(epochs)]))
    finally:
        numba.set_num_threads(threads)
    job = subprocess.Popen([sys.executable, "-c", BUSY_JOB])
    try:
        time.sleep(2)  # let the job start its threads
        busy = float(np.mean([_timed(run) for _ in range(epochs)]))
    finally:
        job.kill()
        job.wait()
    return quiet, busy


def _threading_layer_known():
    import numba

    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False
