"""The on-disk cache of the compiled kernels: shared by many processes, and never in the way.

Numba keeps each function's compiled code in an index file (``*.nbi``: signature to data
file) and numbered data files (``*.nbc``: the machine code), beside the source or under
``NUMBA_CACHE_DIR``.  Numba itself trusts those files: a truncated one fails every later
run with an ``UnpicklingError``, a full or read-only disk fails the run that compiles, and
an entry stays valid while the function's own source file is unchanged, even after a
function it calls, in another file, was edited.  :class:`SharedCache` replaces Numba's
cache of each function of the package (:func:`scalarbp.jit.compiled`) with these
rules:

* **Entries are checked before use.**  A data file starts with the SHA-256 of its name and
  bytes, and holds its entry's key (signature, CPU, bytecode): a truncated, corrupted or
  swapped file is found before any machine code of it is loaded.
* **A damaged entry heals.**  Anything that fails while an entry is read (the files, the
  lock, the unpickling) discards that function's files, with one :class:`CacheWarning`;
  the function is compiled and saved anew, so the next run loads it.
* **An unusable cache degrades to memory.**  A save that fails (a full disk, a read-only
  directory) or a function with nowhere to cache (a read-only install and a read-only
  home) warns once and keeps the code compiled in this process: the run goes on.
* **Entries are keyed on every kernel source.**  The stamp that Numba compares is, besides
  the function's own file, a digest of every module of the package that compiles code
  (:func:`sources_digest`): editing a callee's file recompiles its callers.
* **Many processes at once.**  Reading the index, choosing a data file's number and writing
  both happen under a lock file beside the index (``*.nbi.lock``).  Without it, two
  processes compiling different signatures of one function at the same moment (a float32
  and a float64 model) can pick the same number, and the index then sends one signature to
  the other's machine code.

``tests/test_shared_cache.py`` and ``tests/test_cache_healing.py`` check these as a
careless user or a crash would break them.
"""
import functools
import glob
import hashlib
import os
import pickle
import shutil
import warnings

from filelock import FileLock
from numba.core.caching import FunctionCache, IndexDataCacheFile

#: Length of a data file's seal (a SHA-256 digest).
SEAL = hashlib.sha256().digest_size


class CacheWarning(UserWarning):
    """The kernel cache could not be used as it was; the run goes on (a damaged entry is
    recompiled, an unusable cache compiles in memory)."""


class DamagedEntry(Exception):
    """A cache entry's files are not what was saved."""


#: The kinds of trouble already reported by this process, and the warnings' registry
#: (:func:`warn`).
_reported, _registry = set(), {}


def warn(message, once=None):
    """A :class:`CacheWarning`, once per message; with ``once``, only the first of that kind
    in this process."""
    if once is not None:
        if once in _reported:
            return
        _reported.add(once)
    # (a location of its own and no source line: the warning is one line)
    warnings.warn_explicit(message, CacheWarning, "scalarbp kernel cache", 0, registry=_registry)


@functools.lru_cache(maxsize=None)
def sources_digest():
    """SHA-256 of every module of the package that compiles code (those that import Numba or
    the package's compile options), in path order: the part of each entry's stamp that
    changes when any kernel source does."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(package, "**", "*.py"), recursive=True)):
        with open(path, "rb") as f:
            source = f.read()
        if b"numba" in source or b"jit import" in source:
            digest.update(os.path.relpath(path, package).encode() + b"\0" + source)
    return digest.hexdigest()


def seal(name, payload):
    return hashlib.sha256(name.encode() + b"\0" + payload).digest()


class SealedFiles(IndexDataCacheFile):
    """Numba's index and data files of one function, each data file sealed with the
    SHA-256 of its name and bytes and holding the key of its entry."""

    def save(self, key, data):
        super().save(key, (key, data))

    def load(self, key):
        entry = super().load(key)
        if entry is None:
            return None
        stored, data = entry
        if stored != key:
            raise DamagedEntry("a data file holds another signature's code")
        return data

    def _save_data(self, name, data):
        payload = self._dump(data)
        with self._open_for_write(self._data_path(name)) as f:
            f.write(seal(name, payload))
            f.write(payload)

    def _load_data(self, name):
        with open(self._data_path(name), "rb") as f:
            blob = f.read()
        if len(blob) < SEAL or blob[:SEAL] != seal(name, blob[SEAL:]):
            raise DamagedEntry(f"{name} is truncated or corrupted")
        return pickle.loads(blob[SEAL:])


class SharedCache(FunctionCache):
    """Numba's on-disk cache of one function, with the rules of this module."""

    def __init__(self, py_func):
        super().__init__(py_func)
        self._qualname = f"{py_func.__module__}.{py_func.__qualname__}"
        stamp = (self._impl.locator.get_source_stamp(), sources_digest())
        self._cache_file = SealedFiles(self._cache_path, self._impl.filename_base, stamp)

    def _lock(self):
        self._impl.locator.ensure_cache_path()
        return FileLock(self._cache_file._index_path + ".lock")

    def load_overload(self, sig, target_context):
        try:
            with self._lock():
                return super().load_overload(sig, target_context)
        except Exception as error:  # (whatever failed, the source can compile it again)
            self._discard()
            warn(f"discarded the damaged entry of {self._qualname} ({type(error).__name__}: {error}); recompiling it")
            return None

    def save_overload(self, sig, data):
        try:
            with self._lock():
                super().save_overload(sig, data)
        except Exception as error:
            self.disable()
            warn(f"cannot save compiled kernels in {self._cache_path} ({type(error).__name__}: {error}); "
                 "they stay compiled in memory for this process", once="save")

    def _discard(self):
        """Remove this function's index, data files and a lock path that is not a file."""
        index = self._cache_file._index_path
        lock = index + ".lock"
        for path in [index] + glob.glob(glob.escape(index[:-len(".nbi")]) + ".*.nbc"):
            try:
                os.unlink(path)
            except OSError:
                pass
        if os.path.isdir(lock) and not os.path.islink(lock):
            shutil.rmtree(lock, ignore_errors=True)


def attach(dispatcher):
    """Give ``dispatcher`` (compiled with ``cache=False``) a :class:`SharedCache`; where there
    is nowhere to keep one, it compiles in memory, with one warning."""
    try:
        dispatcher._cache = SharedCache(dispatcher.py_func)
    except RuntimeError as error:  # Numba: "cannot cache function ...: no locator available"
        warn(f"nowhere writable to keep compiled kernels ({error}): they are compiled in memory in "
             "each process (set NUMBA_CACHE_DIR to a writable directory to keep them)", once="locator")
    return dispatcher
