"""The kernel cache damaged, full, unwritable or stale: every run still gets the right
numbers, a damaged entry is recompiled once with one warning, and the next run loads it.

Each case runs a small compiled function of the package's own kind
(:data:`scalarbp.jit.kernel`, cached by :class:`scalarbp.jit.cache.SharedCache`)
in fresh processes: one to fill the cache, then the damage, then two more.  (A cache
cannot be filled once and copied: Numba's cache folder names hash the source's folder.)
"""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = '''
from scalarbp.jit import kernel


@kernel
def doubled_sum(x):
    s = x.dtype.type(0)
    for i in range(x.shape[0]):
        s += 2 * x[i]
    return s
'''

# Two signatures, so that a cache holds two data files (one can be swapped for the other).
RUN = '''
import numpy as np
import probe
print(probe.doubled_sum(np.arange(4.0)), probe.doubled_sum(np.arange(5, dtype=np.float32)),
      len(probe.doubled_sum.stats.cache_hits))
'''
RIGHT = "12.0 20.0"

FULL_DISK = '''
import errno
from numba.core import caching
def full(self, path):
    raise OSError(errno.ENOSPC, "No space left on device", path)
caching.IndexDataCacheFile._open_for_write = full
''' + RUN


def run(folder, code=RUN, **env):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "cache"),
           "PYTHONPATH": os.pathsep.join([str(folder), ROOT]), **env}
    env = {k: v for k, v in env.items() if v is not None}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=folder, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    numbers = done.stdout.split()
    assert " ".join(numbers[:2]) == RIGHT
    warnings = [line for line in done.stderr.splitlines() if "CacheWarning" in line]
    return int(numbers[2]), warnings


def cache_files(folder, suffix):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(folder / "cache") for f in files
                  if f.startswith("probe.") and f.endswith(suffix))


def truncate_data(folder):
    for path in cache_files(folder, ".nbc"):
        os.truncate(path, os.path.getsize(path) // 2)


def truncate_index(folder):
    for path in cache_files(folder, ".nbi"):
        os.truncate(path, 10)


def garbage_index(folder):
    for path in cache_files(folder, ".nbi"):
        with open(path, "wb") as f:
            f.write(os.urandom(300))


def flip_a_byte(folder):  # in the middle of the machine code: pickle would still load it
    for path in cache_files(folder, ".nbc"):
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))


def swap_data_files(folder):  # each signature's index entry now names the other's code
    first, second = cache_files(folder, ".nbc")
    os.replace(first, first + ".x")
    os.replace(second, first)
    os.replace(first + ".x", second)


def lock_made_a_directory(folder):
    for path in cache_files(folder, ".nbi.lock"):
        os.unlink(path)
        os.makedirs(os.path.join(path, "inside"))


@pytest.mark.parametrize("damage", [truncate_data, truncate_index, garbage_index, flip_a_byte, swap_data_files,
                                    lock_made_a_directory], ids=lambda f: f.__name__)
def test_a_damaged_cache_entry_is_recompiled_once_with_one_warning_and_heals(tmp_path, damage):
    (tmp_path / "probe.py").write_text(PROBE)
    assert run(tmp_path) == (0, [])  # compiled and saved
    damage(tmp_path)
    hits, warnings = run(tmp_path)
    assert len(warnings) == 1 and "discarded the damaged entry of probe.doubled_sum" in warnings[0], warnings
    assert run(tmp_path) == (2, [])  # healed: both loaded, no warning


def test_a_full_disk_compiles_in_memory_with_one_warning(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    hits, warnings = run(tmp_path, FULL_DISK)
    assert hits == 0
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "in memory" in warnings[0]
    assert run(tmp_path) == (0, [])  # nothing half-written was left to load


def test_nowhere_writable_to_cache_still_imports_and_runs(tmp_path):
    """A read-only install and a read-only home: Numba finds no place for a cache (here the
    ``__pycache__`` beside the module and the user's cache directory are files, which
    stops even root), and ``cache=True`` would fail the import."""
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "__pycache__").write_text("")
    (tmp_path / "home").write_text("")
    home = tmp_path / "home"
    hits, warnings = run(tmp_path, NUMBA_CACHE_DIR=None, HOME=str(home), XDG_CACHE_HOME=str(home / "cache"),
                         PYTHONDONTWRITEBYTECODE="1")
    assert hits == 0
    assert len(warnings) == 1 and "compiled in memory" in warnings[0]


EDITED = '''
from scalarbp.definitions.activations import RELU, activation
from scalarbp.jit import kernel


@kernel
def g(a):
    return activation(RELU, a)
'''


def test_a_cached_caller_notices_an_edited_callee_in_another_file(tmp_path):
    """``g`` is cached; then ``activations.py`` (not ``g``'s file) changes ReLU.  Numba keys
    an entry on its own file only, and would load the old ``g``."""
    shutil.copytree(os.path.join(ROOT, "scalarbp"), tmp_path / "scalarbp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "scalarbp" / "probe_edited.py").write_text(EDITED)
    code = "from scalarbp.probe_edited import g; print(g(-3.0), len(g.stats.cache_hits))"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path)}

    def value():
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.split()

    assert value() == ["0.0", "0"]
    assert value() == ["0.0", "1"]  # cached
    source = tmp_path / "scalarbp" / "definitions" / "activations.py"
    text = source.read_text()
    assert "    return np.maximum(a, 0)\n" in text
    source.write_text(text.replace("    return np.maximum(a, 0)\n", "    return np.maximum(a, 0) + 1\n"))
    assert value() == ["1.0", "0"]  # recompiled with the new ReLU
