"""scikit-learn compatibility (skipped without the optional scikit-learn)."""
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from scalarbp import datasets  # noqa: E402
from scalarbp.sklearn import ScalarMLPClassifier, ScalarMLPRegressor  # noqa: E402

# Checks skipped by scikit-learn itself (it raises SkipTest) on a machine without their
# optional packages: check_*_data_not_an_array needs pandas, check_array_api_input needs
# array-api-compat and SCIPY_ARRAY_API.  No check is skipped by us.


@parametrize_with_checks([ScalarMLPClassifier(epochs=50, random_state=0),
                          ScalarMLPRegressor(epochs=50, random_state=0)])
def test_passes_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


def test_classifier_in_a_pipeline_with_cross_validation():
    (X, y), _ = datasets.load_digits()
    pipeline = make_pipeline(StandardScaler(), ScalarMLPClassifier(hidden_layer_sizes=(32,), epochs=20,
                                                                   lr=0.003, random_state=0))
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.min() > 0.9


def test_classifier_maps_arbitrary_labels():
    X, y = datasets.make_blobs(120, centers=2, seed=0)
    names = np.array(["cat", "dog"])[y]
    model = ScalarMLPClassifier(hidden_layer_sizes=(8,), epochs=30, random_state=0).fit(X, names)
    assert set(model.predict(X)) <= {"cat", "dog"} and model.score(X, names) > 0.95
    assert model.predict_proba(X).shape == (120, 2)


def test_regressor_fits_a_line():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    y = 3 * X[:, 0] - X[:, 1]
    model = ScalarMLPRegressor(hidden_layer_sizes=(16,), activation="tanh", epochs=100, lr=0.01,
                               random_state=0).fit(X, y)
    assert model.predict(X).shape == (200,) and model.score(X, y) > 0.95
