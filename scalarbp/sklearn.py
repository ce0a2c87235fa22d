"""scikit-learn estimators around :class:`scalarbp.MLP` (needs the optional scikit-learn).

``ScalarMLPClassifier`` and ``ScalarMLPRegressor`` follow scikit-learn's conventions: the
constructor only stores its arguments, ``fit`` learns ``net_`` (the trained
:class:`scalarbp.MLP`), ``history_``, ``n_features_in_`` and, for the classifier,
``classes_`` (any labels, mapped to 0..K-1).  They work in ``Pipeline``, ``clone``,
``GridSearchCV`` and ``cross_val_score``.
"""
import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("scalarbp.sklearn needs scikit-learn: pip install 'scalarbp[sklearn]'") from err

from . import checks
from .model import MLP

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6
    def validate_data(estimator, X, y="no_validation", reset=True, **kwargs):
        return estimator._validate_data(X, y, reset=reset, **kwargs)


class _ScalarMLP(BaseEstimator):
    """Shared parameters and training of the two estimators."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", l2=0.0, optimizer="adam", lr=0.001,
                 epochs=200, batch_size=32, dtype="float64", backend="scalar", random_state=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.l2 = l2
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.dtype = dtype
        self.backend = backend
        self.random_state = random_state

    def _fit(self, X, targets, n_outputs, output):
        hidden = self.hidden_layer_sizes
        hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        sizes = [X.shape[1], *(checks.integer("hidden_layer_sizes", d, 1) for d in hidden), n_outputs]
        # One draw from the random_state, as scikit-learn's estimators do: an int or a fresh
        # RandomState(0) gives the same model every time; None a new one.
        seed = int(check_random_state(self.random_state).randint(2 ** 31))
        self.net_ = MLP(sizes, hidden=self.activation, output=output, l2=self.l2, dtype=self.dtype, seed=seed)
        self.history_ = self.net_.fit(X, targets, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                                      optimizer=self.optimizer, seed=seed, backend=self.backend)
        return self

    def _outputs(self, X):
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.net_.forward(X, backend=self.backend)


class ScalarMLPClassifier(ClassifierMixin, _ScalarMLP):
    """A softmax MLP classifier trained with cross-entropy (see :class:`scalarbp.MLP`)."""

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"ScalarMLPClassifier needs at least 2 classes in y, got {len(self.classes_)} class")
        return self._fit(X, labels, len(self.classes_), "softmax")

    def predict_proba(self, X):
        return self._outputs(X)

    def predict(self, X):
        proba = self.predict_proba(X)  # checks fitted-ness before classes_ is touched
        return self.classes_[proba.argmax(axis=1)]


class ScalarMLPRegressor(RegressorMixin, _ScalarMLP):
    """An MLP regressor with an identity output trained with mean squared error."""

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True, multi_output=True)
        y = np.asarray(y, np.float64)
        self._flat = y.ndim == 1
        targets = y.reshape(len(y), -1)
        return self._fit(X, targets, targets.shape[1], "identity")

    def predict(self, X):
        F = self._outputs(X)
        return F[:, 0] if self._flat else F

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}
