"""How the CPU kernels are compiled: options, parallel thresholds, and loops compiled twice.

Every CPU kernel module imports its decorators from here, so the compile options are
decided once.

* ``FASTMATH`` lets LLVM reassociate sums (to use vector lanes) and fuse multiply-adds,
  but keeps IEEE NaN and inf semantics, so that a diverging run is still detected.
* ``error_model="numpy"``: ``x / 0`` gives inf or NaN as IEEE arithmetic does, instead of
  raising ``ZeroDivisionError``, whose check would also stop LLVM from vectorising loops
  that divide.
* ``cache=True``: compiled code is kept on disk beside the sources, so only the first
  process of an install compiles.
"""
import types

from numba import njit

FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
OPTIONS = dict(cache=True, fastmath=FASTMATH, error_model="numpy")

#: A compiled function (no parallel loops of its own).
kernel = njit(**OPTIONS)

#: Multiply-adds below which a product runs on one thread: waking the others costs more
#: than it saves (measured: digits steps take 35 us this way, 145 us with every loop
#: parallel).
PARALLEL_MACS = 1 << 18

#: Elements below which an element-wise pass runs on one thread.
PARALLEL_ELEMENTS = 1 << 15


def serial_and_parallel(loop, **options):
    """``loop`` (a function whose outer loop is a ``prange``) compiled twice: as a plain
    loop on the calling thread, and as a parallel loop over Numba's threads.

    One body serves both, so the two can never disagree: a small pass runs the serial
    copy, a large one the parallel copy, and the arithmetic is the same.  The serial copy
    is a clone of the function under its own qualified name, which Numba's on-disk cache
    uses to tell the two compiled versions apart (it keys entries by name and signature,
    not by compile options).  ``options`` replace entries of :data:`OPTIONS`.
    """
    options = {**OPTIONS, **options}
    serial = types.FunctionType(loop.__code__, loop.__globals__, loop.__name__, loop.__defaults__,
                                loop.__closure__)
    serial.__qualname__ = f"{loop.__qualname__}.serial"
    serial.__doc__ = loop.__doc__
    return njit(**options)(serial), njit(parallel=True, **options)(loop)
