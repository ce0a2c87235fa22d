"""How the CPU kernels are compiled: options, parallel thresholds, loops compiled twice,
and on how many threads they run.

Every CPU kernel module imports its decorators from here, so the compile options are
decided once.

* ``FASTMATH`` lets LLVM reassociate sums (to use vector lanes) and fuse multiply-adds,
  but keeps IEEE NaN and inf semantics, so that a diverging run is still detected.
* ``error_model="numpy"``: ``x / 0`` gives inf or NaN as IEEE arithmetic does, instead of
  raising ``ZeroDivisionError``, whose check would also stop LLVM from vectorising loops
  that divide.
* ``cache=True``: compiled code is kept on disk beside the sources, so only the first
  process of an install compiles; :mod:`.cache` makes that cache safe for many processes
  at once (a search's workers, MPI ranks), checks it, heals it, and does without it where
  it cannot be written.
* Each compiled function calls its own copies of its callees (:mod:`.linking`), so the
  first run of an install computes what every later run loads from the cache.

Every compiled function of the package is made by :func:`compiled`.
"""
import os
import sys
import types

import numba
from numba import njit

from . import linking
from .cache import attach

linking.install()

FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
OPTIONS = dict(cache=True, fastmath=FASTMATH, error_model="numpy")


def compiled(**options):
    """``numba.njit(**options)``, its on-disk cache (``cache=True``) a
    :class:`.cache.SharedCache`."""
    def decorate(function):
        dispatcher = njit(**{**options, "cache": False})(function)
        return attach(dispatcher) if options.get("cache") else dispatcher
    return decorate


#: A compiled function of its own: a library every caller links (no parallel loops).
kernel = compiled(**OPTIONS)

#: A helper compiled into each caller (Numba inlines it at the IR level): it links no
#: library of its own, so a caller's compile does not re-optimise one more module, and a
#: ``prange`` in it is a parallel loop of the caller when the caller is parallel.
inlined = njit(inline="always", fastmath=FASTMATH, error_model="numpy")

#: Multiply-adds per sample (``sum_k d_k d_{k+1}``) below which a net runs the serial
#: compilation of the engine: waking the other threads costs more than it saves, and only
#: the variant a net uses is ever compiled.
PARALLEL_MACS = 1 << 15


def serial_and_parallel(function, **options):
    """``function`` (an entry point whose loops over blocks are ``prange``) compiled twice:
    as plain loops on the calling thread, and as parallel loops over Numba's threads.

    One body serves both, so the two can never disagree, and each is compiled only when a
    net first calls it (:func:`parallel_for`).  The serial copy is a clone of the function
    under its own qualified name, which Numba's on-disk cache uses to tell the two compiled
    versions apart (it keys entries by name and signature, not by compile options).
    ``options`` replace entries of :data:`OPTIONS`.
    """
    options = {**OPTIONS, **options}
    serial = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                                function.__defaults__, function.__closure__)
    serial.__qualname__ = f"{function.__qualname__}.serial"
    serial.__doc__ = function.__doc__
    return compiled(**options)(serial), compiled(parallel=True, **options)(function)


def parallel_for(macs):
    """Whether a net of ``macs`` multiply-adds per sample runs the parallel compilation
    (never in a process forked from one running GNU OpenMP threads: :func:`forked_from_openmp`)."""
    return macs >= PARALLEL_MACS and not forked_from_openmp()


#: Set in a child process forked while Numba's GNU OpenMP threads ran (:func:`forked_from_openmp`).
_forked_from_openmp = False


def _after_fork_in_child():
    global _forked_from_openmp
    try:
        layer = numba.threading_layer()  # (raises until the parent started its threads)
    except ValueError:
        return
    if layer == "omp":
        from numba.np.ufunc import omppool

        _forked_from_openmp = omppool.openmp_vendor == "GNU"


os.register_at_fork(after_in_child=_after_fork_in_child)


def forked_from_openmp():
    """Whether this process was forked (a ``multiprocessing`` "fork" pool, ``os.fork``) from
    one whose GNU OpenMP threads had run a parallel kernel.  GNU OpenMP cannot start threads
    in such a child: Numba ends it ("fork() called from a process already using GNU
    OpenMP") and a pool waits for ever for its answer.  The engine then runs its serial
    compilation, which gives the same numbers (its blocks do not depend on threads);
    :func:`require_parallel` refuses what has no serial form."""
    return _forked_from_openmp


def require_parallel(what):
    """Raise a clear ``RuntimeError`` where ``what`` would run a parallel-only kernel in a
    process :func:`forked_from_openmp`."""
    if forked_from_openmp():
        raise RuntimeError(f"{what} runs parallel kernels, which GNU OpenMP cannot run in a process forked from "
                           f"one that ran them: use a 'spawn' or 'forkserver' multiprocessing context, or "
                           f"NUMBA_THREADING_LAYER=workqueue")


def start_threads():
    """Start Numba's thread pool, and choose this call's thread count; call before any
    kernel of :mod:`.kernels` (and before :mod:`.literal`'s, for the thread count).

    Those kernels are not ``parallel=True`` themselves: their parallel loops are in their
    callees.  Numba starts its threads when it loads a cached parallel function, but a
    cached caller that was compiled in a process which had itself loaded those callees
    from the cache does not carry that start-up, and loading it in a new process then
    crashes that process (numba issues 8578 and 4807; seen here after editing
    ``kernels.py``, and reproduced by ``tests/test_kernel_cache.py``).
    ``numba.get_num_threads()`` starts the pool, and does nothing once it runs.

    Inside a task of a Dask worker, the kernels run on one thread: a worker given ``k``
    threads runs up to ``k`` tasks at once, one per thread, so that ``k`` kernel threads
    in all keep the worker to what it was given (Numba's pool would otherwise put as many
    threads as the machine has cores behind every task).  ``numba.set_num_threads`` holds
    for the calling thread only, so the setting stays with the worker's task thread.
    """
    numba.get_num_threads()
    if in_dask_task():
        numba.set_num_threads(1)


def in_dask_task():
    """Whether this thread is running a task of a ``dask.distributed`` worker."""
    distributed = sys.modules.get("distributed")  # never imported here: only where Dask runs
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True
