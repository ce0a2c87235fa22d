"""scikit-learn compatibility (skipped without the optional scikit-learn): the estimator
checks, scikit-learn's parameter names and attributes, and models imported from it."""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from scalarbp import datasets  # noqa: E402
from scalarbp.datasets import make_blobs  # noqa: E402
from scalarbp.sklearn import ScalarMLPClassifier, ScalarMLPRegressor  # noqa: E402

# Checks skipped by scikit-learn itself (it raises SkipTest) on a machine without their
# optional packages: check_*_data_not_an_array needs pandas, check_array_api_input needs
# array-api-compat and SCIPY_ARRAY_API.  One check is expected to fail, as it does for
# scikit-learn's own MLP: minibatch training puts a repeated sample into other batches
# than its weight would, so weights equal repetition only for full batches (tested below).
EXPECTED_FAILURES = {name: "minibatches: a repeated sample lands in other batches than its weight"
                     for name in ("check_sample_weight_equivalence_on_dense_data",
                                  "check_sample_weight_equivalence_on_sparse_data")}


@parametrize_with_checks([ScalarMLPClassifier(max_iter=50, random_state=0),
                          ScalarMLPRegressor(max_iter=200, random_state=0)],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_passes_scikit_learns_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_classifier_in_a_pipeline_with_cross_validation():
    (X, y), _ = datasets.load_digits()
    pipeline = make_pipeline(StandardScaler(), ScalarMLPClassifier(hidden_layer_sizes=(32,), max_iter=200,
                                                                   learning_rate_init=0.003, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.min() > 0.9


def test_classifier_maps_arbitrary_labels():
    X, y = datasets.make_blobs(120, centers=2, seed=0)
    names = np.array(["cat", "dog"])[y]
    model = ScalarMLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(X, names)
    assert set(model.predict(X)) <= {"cat", "dog"} and model.score(X, names) > 0.95
    assert model.predict_proba(X).shape == (120, 2)


def test_regressor_fits_a_line():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    y = 3 * X[:, 0] - X[:, 1]
    model = ScalarMLPRegressor(hidden_layer_sizes=(16,), activation="tanh", max_iter=300, learning_rate_init=0.01,
                               random_state=0).fit(X, y)
    assert model.predict(X).shape == (200,) and model.score(X, y) > 0.95


def test_scikit_learns_parameters_mean_what_they_mean_there():
    X, y = datasets.make_blobs(300, n_features=4, centers=3, seed=0)
    model = ScalarMLPClassifier((16, 8), activation="logistic", solver="sgd", momentum=0.5,
                                nesterovs_momentum=False, learning_rate_init=0.05, alpha=0.01, batch_size=50,
                                max_iter=500, tol=1e-3, n_iter_no_change=3, random_state=0).fit(X, y)
    net = model.net_
    assert net.hidden == ("sigmoid", "sigmoid") and net.optimizer.name == "momentum"
    assert net.optimizer.hyper == {"momentum": 0.5, "nesterov": False} and net.l2 == pytest.approx(0.01 / 50)
    assert model.n_iter_ == len(model.loss_curve_) < 500  # stopped by tol / n_iter_no_change
    assert model.best_loss_ == min(model.loss_curve_) and model.best_validation_score_ is None
    assert [W.shape for W in model.coefs_] == [(4, 16), (16, 8), (8, 3)]
    assert [b.shape for b in model.intercepts_] == [(16,), (8,), (3,)]
    assert model.out_activation_ == "softmax" and model.n_layers_ == 4 and model.t_ == model.n_iter_ * 300


def test_early_stopping_keeps_the_best_validation_score():
    (X, y), _ = datasets.load_digits()
    model = ScalarMLPClassifier((32,), early_stopping=True, n_iter_no_change=3, max_iter=200,
                                random_state=0).fit(X, y)
    assert len(model.validation_scores_) == model.n_iter_ < 200
    assert model.best_validation_score_ == max(model.validation_scores_) and model.best_loss_ is None


def test_partial_fit_needs_classes_first_and_warm_start_continues():
    X, y = datasets.make_blobs(200, n_features=3, centers=3, seed=0)
    model = ScalarMLPClassifier((8,), learning_rate_init=0.05, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X, y)
    for _ in range(30):
        model.partial_fit(X, y, classes=[0, 1, 2])
    assert model.n_iter_ == 1 and model.t_ == 30 * 200 and model.score(X, y) > 0.9  # (scikit-learn's counts)
    warm = ScalarMLPClassifier((8,), max_iter=5, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
        first = warm.net_.theta.copy()
        warm.fit(X, y)
    assert warm.n_iter_ == 5 and warm.t_ == 10 * 200 and not np.array_equal(first, warm.net_.theta)


def test_multilabel_targets_get_sigmoid_outputs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 1] > 0]).astype(int)
    model = ScalarMLPClassifier((16,), max_iter=300, random_state=0).fit(X, Y)
    assert model.net_.output == "sigmoid" and model.out_activation_ == "logistic"
    assert model.predict(X).shape == (300, 3) and model.score(X, Y) > 0.8


def test_a_random_state_object_gives_the_same_model():
    X, y = datasets.make_blobs(100, n_features=3, centers=2, seed=0)
    a, b = (ScalarMLPClassifier((8,), max_iter=3, random_state=np.random.RandomState(0)) for _ in range(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert np.array_equal(a.fit(X, y).net_.theta, b.fit(X, y).net_.theta)


@pytest.mark.parametrize("kwargs", [dict(), dict(activation="tanh", hidden_layer_sizes=(7, 5))])
def test_a_scikit_learn_model_imports_with_the_same_probabilities(kwargs):
    (X, y), (X_test, _) = datasets.load_digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = MLPClassifier(max_iter=5, random_state=0, **kwargs).fit(X, y)
        binary = MLPClassifier(max_iter=5, random_state=0, **kwargs).fit(X, y % 2)
        regressor = MLPRegressor(max_iter=5, random_state=0, **kwargs).fit(X, y.astype(float))
    for est in (theirs, binary):
        ours = ScalarMLPClassifier.from_sklearn(est)
        np.testing.assert_allclose(ours.predict_proba(X_test), est.predict_proba(X_test), rtol=1e-10, atol=1e-12)
        assert np.array_equal(ours.predict(X_test), est.predict(X_test))
    np.testing.assert_allclose(ScalarMLPRegressor.from_sklearn(regressor).predict(X_test), regressor.predict(X_test),
                               rtol=1e-10, atol=1e-10)


def test_grid_search_with_two_jobs_gives_the_results_of_one():
    X, y = datasets.make_blobs(200, n_features=4, centers=3, seed=0)
    grid = {"hidden_layer_sizes": [(8,), (16,)], "learning_rate_init": [0.001, 0.01]}
    results = []
    for jobs in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search = GridSearchCV(ScalarMLPClassifier(max_iter=20, random_state=0), grid, cv=2, n_jobs=jobs).fit(X, y)
        results.append(search.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(*results)


def test_sample_weights_equal_repeated_samples_with_full_batches():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    weights = rng.integers(1, 4, 40)
    options = dict(hidden_layer_sizes=(6,), alpha=0.0, batch_size=1000, shuffle=False, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = ScalarMLPRegressor(**options).fit(X, y, sample_weight=weights)
        repeated = ScalarMLPRegressor(**options).fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
    np.testing.assert_allclose(weighted.net_.theta, repeated.net_.theta, rtol=1e-10, atol=1e-12)


def test_a_private_fit_takes_no_adaptive_rate_decision_on_the_withheld_loss():
    """learning_rate="adaptive" divides the rate when the loss stops improving: under DP-SGD
    the training loss is withheld, so without validation data the rate never moves."""
    pytest.importorskip("dp_accounting")
    X, y = datasets.make_blobs(300, n_features=4, centers=3, seed=0)
    model = ScalarMLPClassifier((8,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.05,
                                max_iter=30, tol=1e9, n_iter_no_change=1, random_state=0, dp_clip=1.0,
                                dp_noise=1.0, dp_delta=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model._optimizer.learning_rate == 0.05 and model.loss_curve_ == [] and model.n_iter_ == 30
    public = ScalarMLPClassifier((8,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.05,
                                 max_iter=30, tol=1e9, n_iter_no_change=1, random_state=0).fit(X, y)
    assert public._optimizer.learning_rate < 0.05  # (the same settings without DP: the rule acts)


def test_estimators_take_a_random_state_object_reproducibly():
    pytest.importorskip("sklearn")
    from scalarbp.sklearn import ScalarMLPClassifier
    X, y = make_blobs(100, n_features=3, centers=2, seed=0)
    fitted = [ScalarMLPClassifier((8,), max_iter=2, random_state=np.random.RandomState(0)).fit(X, y) for _ in range(2)]
    assert np.array_equal(fitted[0].net_.theta, fitted[1].net_.theta)
    with pytest.raises(TypeError, match="hidden_layer_sizes must be an integer, got 2.7"):
        ScalarMLPClassifier((2.7,), max_iter=1).fit(X, y)
