"""Time a 12-candidate grid search on a local Dask cluster of 1 and 2 single-threaded
workers, and the same search with ``n_jobs=1`` in this process (2 kernel threads).

    pip install ".[dask]"
    python scripts/dask_search.py [--workers 1 2] [--repeats 3]
    python scripts/dask_search.py --kill-worker-after 4 [--repeats 3]

``--kill-worker-after S`` instead runs a longer search (8 candidates, 300 epochs) on 2
workers and kills one of them (SIGKILL) S seconds in, ``--repeats`` times with the data
scattered as joblib does by default (to one worker) and as many with
``parallel_config(backend="dask", scatter=[X, y])`` (to every worker), and says how each
search ended.

Every search is checked to give the cross-validation scores of the ``n_jobs=1`` search,
bit for bit.  The clusters' workers load the kernels from the on-disk cache; a first
search is run on each cluster before timing, so that the times are the searches'.
"""
import argparse
import os
import signal
import statistics
import threading
import time
import warnings

import numpy as np
from distributed import Client, LocalCluster
from joblib import parallel_config
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from scalarbp.datasets import load_digits
from scalarbp.sklearn import ScalarMLPClassifier
from scalarbp.timing import machine

GRID = {"hidden_layer_sizes": [(32,), (64,), (128,)], "alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 3e-3]}


def search():
    estimator = ScalarMLPClassifier(max_iter=20, batch_size=32, random_state=0, dtype="float32")
    return GridSearchCV(estimator, GRID, cv=3, scoring="neg_log_loss")


def timed(fit, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kill-worker-after", type=float, metavar="S")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # 20 epochs on purpose
    (X, y), _ = load_digits()
    print(machine())
    candidates = len(search().get_params()["param_grid"]["hidden_layer_sizes"]) * 4
    print(f"digits: {X.shape[0]} samples, {candidates} candidates x 3 folds, 20 epochs each")
    search().set_params(n_jobs=1).fit(X, y)  # compiles, or loads the kernels
    if args.kill_worker_after is not None:
        return killed_worker(X, y, args.kill_worker_after, args.repeats)
    median, best, serial = timed(lambda: search().set_params(n_jobs=1).fit(X, y), args.repeats)
    print(f"n_jobs=1 in this process: median {median:.2f} s (best {best:.2f})")
    for workers in args.workers:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          worker_dashboard_address=None) as cluster, Client(cluster):
            with parallel_config(backend="dask"):
                search().fit(X, y)
                median_w, best_w, result = timed(lambda: search().fit(X, y), args.repeats)
        same = all(np.array_equal(result.cv_results_[key], serial.cv_results_[key])
                   for key in serial.cv_results_ if key.startswith("split") or key == "mean_test_score")
        print(f"Dask, {workers} worker(s) x 1 thread: median {median_w:.2f} s (best {best_w:.2f}), "
              f"{median / median_w:.2f}x n_jobs=1; scores equal to n_jobs=1's: {same}")


def killed_worker(X, y, after, repeats):
    """One of 2 workers killed ``after`` seconds into a search, without and with the data
    scattered to every worker."""
    longer = GridSearchCV(ScalarMLPClassifier(max_iter=300, random_state=0),
                          {"alpha": [1e-5, 1e-4, 1e-3, 1e-2], "learning_rate_init": [1e-3, 3e-3]}, cv=3)
    serial = longer.fit(X, y).cv_results_["mean_test_score"]
    for scatter in [[]] * repeats + [[X, y]] * repeats:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          worker_dashboard_address=None) as cluster, Client(cluster) as client:
            pid = list(client.run(os.getpid).values())[0]
            threading.Timer(after, os.kill, (pid, signal.SIGKILL)).start()
            start = time.perf_counter()
            try:
                with parallel_config(backend="dask", scatter=scatter or None):
                    result = longer.fit(X, y)
            except Exception as err:  # (what the search raises is the finding)
                outcome = f"failed: {type(err).__name__}"
            else:
                same = np.array_equal(result.cv_results_["mean_test_score"], serial)
                outcome = f"finished in {time.perf_counter() - start:.2f} s, scores equal to n_jobs=1's: {same}"
        print(f"a worker killed after {after:g} s, data scattered {'to every worker' if scatter else 'by default'}: "
              f"{outcome}")


if __name__ == "__main__":
    main()
