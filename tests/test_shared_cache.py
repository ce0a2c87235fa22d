"""Many processes compiling into one on-disk kernel cache at the same moment.

Four processes start from an empty ``NUMBA_CACHE_DIR`` together, as a search's workers
or MPI ranks do on a fresh install, and compile the same kernels for float32 and float64
in opposite orders.  Their writes are slowed down at random (a busy or network disk),
which without :class:`scalarbp.jit.cache.SharedCache` makes two processes give
different signatures the same data file.  Then: every process got the right numbers,
every index entry of the cache holds the machine code of its own signature, and a fifth
process loads every kernel from the cache and gets the right numbers too.
"""
import glob
import json
import os
import pickle
import subprocess
import sys

import numpy as np

import scalarbp as sb
from scalarbp.jit.cache import SEAL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, random, sys, time
import numpy as np
from numba.core import caching

if sys.argv[2] == "slow":  # every index and data write waits 0-0.2 s first
    for name in ("_save_index", "_save_data"):
        def slow(self, *args, _write=getattr(caching.IndexDataCacheFile, name)):
            time.sleep(random.uniform(0, 0.2))
            return _write(self, *args)
        setattr(caching.IndexDataCacheFile, name, slow)

import scalarbp as sb
from scalarbp.backends import kernels

dtypes = ["float32", "float64"]
if int(sys.argv[1]) % 2:
    dtypes.reverse()
out = {}
for dtype in dtypes:
    net = sb.MLP([7, 9, 3], dtype=dtype, seed=1)
    X = np.linspace(-1, 1, 5 * 7).reshape(5, 7).astype(dtype)
    out[dtype] = net.predict_proba(X).astype(float).tolist()
out["compiled"] = sum(len(d.stats.cache_misses) for d in kernels.TRAIN_EPOCH)
print(json.dumps(out))
"""


def expected():
    out = {}
    for dtype in ("float32", "float64"):
        net = sb.MLP([7, 9, 3], dtype=dtype, seed=1)
        X = np.linspace(-1, 1, 5 * 7).reshape(5, 7).astype(dtype)
        out[dtype] = net.predict_proba(X)
    return out


def index_entries(cache):
    """(index file, signature's argument types, argument types of the code in its data file)."""
    for index in glob.glob(os.path.join(cache, "**", "*.nbi"), recursive=True):
        with open(index, "rb") as f:
            pickle.load(f)  # Numba's version
            _, overloads = pickle.loads(f.read())
        for key, name in overloads.items():
            with open(os.path.join(os.path.dirname(index), name), "rb") as f:
                stored_key, data = pickle.loads(f.read()[SEAL:])  # (after the seal: the entry's key, Numba's data)
            assert stored_key == key
            signature = next(x for x in data if type(x).__name__ == "Signature")
            yield index, tuple(key[0]), tuple(signature.args)


def run_children(cache, count, mode):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": ROOT}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(i), mode], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(count)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=900)
        assert child.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_four_processes_compiling_into_one_empty_cache_leave_it_correct(tmp_path):
    want = expected()
    for result in run_children(tmp_path, 4, "slow"):
        for dtype, probabilities in want.items():
            np.testing.assert_array_equal(np.asarray(result[dtype], dtype=dtype), probabilities)

    entries = list(index_entries(tmp_path))
    assert len(entries) >= 4  # predict's serial engine and the product, each in two dtypes
    wrong = [(os.path.basename(index), key, found) for index, key, found in entries if key != found]
    assert not wrong, f"index entries pointing at another signature's code: {wrong}"

    [again] = run_children(tmp_path, 1, "plain")
    assert again["compiled"] == 0  # every kernel came from the cache
    for dtype, probabilities in want.items():
        np.testing.assert_array_equal(np.asarray(again[dtype], dtype=dtype), probabilities)
