"""Hyperparameter search on a Dask cluster, through joblib's Dask backend.

The test starts its own ``LocalCluster`` of two worker processes with one thread each.
Searches run there give exactly the cross-validation losses of the same search run with
``n_jobs=1`` in this process, and a fit inside a worker's task runs its kernels on one
thread, however many cores the machine has.
"""
import numba
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("sklearn")

from joblib import parallel_config  # noqa: E402  (scikit-learn's dependency)
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV  # noqa: E402

from scalarbp.sklearn import ScalarMLPClassifier, ScalarMLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)
    return X, y


def test_a_fit_in_a_dask_task_runs_its_kernels_on_one_thread(client):
    """On both CPU backends whose loops run on Numba's threads."""
    X, y = data()

    def fit_and_count_threads():
        import scalarbp as sb

        seen = []

        class Record:
            def on_epoch_end(self, epoch, history, net):
                seen.append(numba.get_num_threads())

        for backend in ("literal", "scalar"):  # (the setting stays with the thread: literal first)
            sb.MLP([6, 8, 3], seed=0).fit(X, y, epochs=2, callbacks=[Record()], backend=backend)
        return seen, numba.config.NUMBA_NUM_THREADS

    workers = list(client.scheduler_info()["workers"])
    assert len(workers) == 2
    for worker in workers:
        seen, pool = client.submit(fit_and_count_threads, workers=[worker], pure=False).result()
        assert seen == [1, 1, 1, 1], (seen, pool)

    threads = numba.get_num_threads()  # outside a worker, nothing changes
    ScalarMLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
    assert numba.get_num_threads() == threads


def assert_same_search(on_cluster, serial):
    assert on_cluster.best_params_ == serial.best_params_
    for key, values in serial.cv_results_.items():
        if "score" in key and "time" not in key:
            np.testing.assert_array_equal(on_cluster.cv_results_[key], values, err_msg=key)


def test_grid_search_on_a_dask_cluster_equals_the_search_with_one_job(client):
    X, y = data()
    estimator = ScalarMLPClassifier(max_iter=15, batch_size=16, random_state=0)
    grid = {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2], "learning_rate_init": [1e-3, 1e-2]}
    with parallel_config(backend="dask"):
        on_cluster = GridSearchCV(estimator, grid, cv=3, scoring="neg_log_loss").fit(X, y)
    serial = GridSearchCV(estimator, grid, cv=3, scoring="neg_log_loss", n_jobs=1).fit(X, y)
    assert len(serial.cv_results_["params"]) == 8
    assert_same_search(on_cluster, serial)


def test_randomized_search_of_a_regressor_on_a_dask_cluster_equals_the_search_with_one_job(client):
    X, _ = data(1)
    y = np.sin(X[:, 0]) + X[:, 1] ** 2
    estimator = ScalarMLPRegressor(max_iter=15, batch_size=16, random_state=0)
    space = {"hidden_layer_sizes": [(8,), (16,), (8, 8)], "alpha": [1e-4, 1e-3, 1e-2],
             "activation": ["relu", "tanh"]}
    searches = []
    for backend in ("dask", None):
        search = RandomizedSearchCV(estimator, space, n_iter=6, cv=3, random_state=0,
                                    scoring="neg_mean_squared_error")
        if backend:
            with parallel_config(backend=backend):
                searches.append(search.fit(X, y))
        else:
            searches.append(search.fit(X, y))
    assert_same_search(*searches)
