"""scikit-learn estimators around :class:`scalarbp.MLP` (needs the optional scikit-learn).

``ScalarMLPClassifier`` and ``ScalarMLPRegressor`` take scikit-learn's ``MLPClassifier``
/ ``MLPRegressor`` parameters with the same meanings (``solver="sgd"`` is SGD with
``momentum`` and ``nesterovs_momentum``; ``alpha`` is the L2 weight per sample, as there;
training stops when the loss, or the validation score with ``early_stopping``, has not
improved by ``tol`` for ``n_iter_no_change`` epochs), plus scalarbp's own ``dtype``,
``backend`` and DP-SGD's ``dp_clip``, ``dp_noise``, ``dp_delta``, ``dp_sampling``,
``target_epsilon`` (:mod:`scalarbp.privacy`).  After ``fit`` they hold scikit-learn's attributes (``n_iter_``,
``loss_curve_``, ``best_loss_``, ``validation_scores_``, ``best_validation_score_``,
``coefs_`` and ``intercepts_`` in scikit-learn's ``(in, out)`` layout, ``classes_``,
``n_features_in_``, ``out_activation_``, ``t_``; with DP-SGD ``epsilon_``, the net's privacy
ledger's, and ``outside_epsilon_``, what the fit released that it does not cover; the training
loss is then withheld: ``loss_curve_`` stays empty and ``tol``/``n_iter_no_change`` act only
on the validation score of ``early_stopping``) and ``net_``, the trained :class:`scalarbp.MLP`.
They pass ``check_estimator`` and work in ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``; a fitted ``MLPClassifier`` or ``MLPRegressor``
is imported with ``from_sklearn``.
"""
import inspect
import warnings
from types import SimpleNamespace

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import _check_sample_weight as _sklearn_sample_weight
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("scalarbp.sklearn needs scikit-learn: pip install 'scalarbp[sklearn]'") from err

from . import checks
from .training import optimizers
from .training.lbfgs import LBFGS
from .model import MLP
from .training import Callback, DivergedError, Snapshot

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6
    def validate_data(estimator, X, y="no_validation", reset=True, **kwargs):
        return estimator._validate_data(X, y, reset=reset, **kwargs)

def _check_sample_weight(sample_weight, X):
    """scikit-learn's check of ``sample_weight`` (None stays None: unweighted)."""
    return None if sample_weight is None else _sklearn_sample_weight(sample_weight, X, dtype=np.float64)


#: scikit-learn's activation names and scalarbp's.
ACTIVATIONS = {"relu": "relu", "logistic": "sigmoid", "tanh": "tanh", "identity": "identity",
               "leaky_relu": "leaky_relu", "sigmoid": "sigmoid"}

#: scikit-learn's output activation names (``out_activation_``) for scalarbp's outputs.
OUT_ACTIVATIONS = {"softmax": "softmax", "sigmoid": "logistic", "identity": "identity", "exp": "exp"}

#: The loss of each output unit the estimators use (the others take the output's default).
OUTPUT_LOSS = {"sigmoid": "binary_cross_entropy", "exp": "poisson"}

#: The sparse formats the estimators take (scipy.sparse; minibatches are made dense).
SPARSE = ("csr", "csc")


def _stochastic(estimator):
    """scikit-learn's rule for ``partial_fit``: stochastic solvers only."""
    if estimator.solver == "lbfgs":
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. {estimator.solver} is not "
                             f"stochastic.")
    return True


#: scikit-learn's error for weights that are not finite after a fit.
NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and need "
              "to be preprocessed.")

#: The smallest rate ``learning_rate="adaptive"`` divides down to before it stops (scikit-learn's).
ADAPTIVE_FLOOR = 1e-6


class _Stopping(Callback):
    """scikit-learn's end of an epoch: ``t_`` and ``n_iter_`` counted, the SGD rate of
    ``learning_rate`` set (``invscaling``: ``learning_rate_init / (t_ + 1) ** power_t``),
    and the rule that stops training when the training loss (or, with early stopping, the
    validation score) has not improved by ``tol`` for more than ``n_iter_no_change``
    epochs (``adaptive``: divide the rate by 5 instead, while it is above 1e-6); with
    early stopping, the best epoch's weights are kept.  Under DP-SGD the training loss is
    withheld: ``loss_curve_`` stays empty and only the validation rule (named as outside
    epsilon) can stop training."""

    def __init__(self, estimator, validation, samples):
        self.estimator, self.validation, self.samples = estimator, validation, samples
        self.best = None

    def on_epoch_end(self, epoch, history, net):
        est = self.estimator
        est.n_iter_ += 1
        est.t_ += self.samples
        if not history.private:  # (under DP-SGD the training loss is withheld, and no decision is taken on it)
            est.loss_curve_.append(history.loss[-1])
            est.loss_ = history.loss[-1]
        if self.validation is not None:
            score = float(net.score(*self.validation))
            est.validation_scores_.append(score)
            est._no_improvement_count = est._no_improvement_count + 1 \
                if score < est.best_validation_score_ + est.tol else 0
            if score > est.best_validation_score_:
                est.best_validation_score_, self.best = score, Snapshot(net)
        elif not history.private:
            est._no_improvement_count = est._no_improvement_count + 1 \
                if history.loss[-1] > est.best_loss_ - est.tol else 0
            est.best_loss_ = min(est.best_loss_, history.loss[-1])
        if est.verbose:
            print(f"Iteration {est.n_iter_}, " + ("loss withheld (DP-SGD)" if history.private else
                                                 f"loss = {history.loss[-1]:.8f}"))
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            net.optimizer.lr = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            if est.solver == "sgd" and est.learning_rate == "adaptive" and net.optimizer.lr > ADAPTIVE_FLOOR:
                net.optimizer.lr /= 5
                est._no_improvement_count = 0
                return False
            return True
        return False


class _ScalarMLP(BaseEstimator):
    """Shared parameters and training of the two estimators."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None, backend="scalar", dp_clip=None,
                 dp_noise=None, dp_delta=None, dp_sampling="poisson", target_epsilon=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.backend = backend
        self.dp_clip = dp_clip
        self.dp_noise = dp_noise
        self.dp_delta = dp_delta
        self.dp_sampling = dp_sampling
        self.target_epsilon = target_epsilon

    # --- parameters, checked as scikit-learn checks them --------------------------------

    def _hidden(self):
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, (int, np.integer)) else tuple(sizes)
        return [checks.integer("hidden_layer_sizes", d, 1) for d in sizes]

    def _new_optimizer(self):
        lr = self.learning_rate_init
        if self.solver == "lbfgs":
            return LBFGS(checks.integer("max_fun", self.max_fun, 1), self.tol)
        if self.solver == "sgd":
            momentum = self.momentum
            if momentum == 0:
                return optimizers.make("sgd", lr)
            return optimizers.make("momentum", lr, momentum=momentum,
                                   nesterov=checks.boolean("nesterovs_momentum", self.nesterovs_momentum))
        if self.solver in ("adam", "adamw"):
            return optimizers.make(self.solver, lr, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)
        return optimizers.make(self.solver, lr)

    @property
    def _optimizer(self):
        """The stepping optimiser's current rate as scikit-learn's ``_optimizer`` shows it
        (``learning_rate``), for code that reads it there."""
        check_is_fitted(self, "net_")
        return SimpleNamespace(learning_rate=None if self.net_.optimizer is None else self.net_.optimizer.lr)

    def _batch(self, n_samples):
        if isinstance(self.batch_size, str) and self.batch_size == "auto":
            return min(200, n_samples)
        return min(checks.integer("batch_size", self.batch_size, 1), n_samples)

    def _check_parameters(self):
        checks.choice("activation", self.activation, tuple(ACTIVATIONS))
        checks.choice("learning_rate", self.learning_rate, ("constant", "invscaling", "adaptive"))
        checks.integer("max_iter", self.max_iter, 1)
        if not (isinstance(self.n_iter_no_change, (float, np.floating)) and self.n_iter_no_change == np.inf):
            checks.integer("n_iter_no_change", self.n_iter_no_change, 1)  # (or np.inf: never stop on it)
        for name in ("shuffle", "warm_start", "early_stopping"):
            checks.boolean(name, getattr(self, name))
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction}")
        checks.l2(self.alpha)
        if not (isinstance(self.tol, (int, float, np.floating)) and self.tol >= 0):
            raise ValueError(f"tol must be a number >= 0, got {self.tol!r}")
        checks.non_negative("power_t", self.power_t)
        if self.solver == "lbfgs" and self.dp_clip is not None:
            raise ValueError("solver='lbfgs' takes no dp_clip: DP-SGD is a stochastic solver ('sgd', 'adam', ...)")

    def _input_dtype(self):
        """The dtypes ``validate_data`` keeps: the input's (float32 or float64) unless
        ``dtype`` says which."""
        return [np.float64, np.float32] if self.dtype is None else np.dtype(self.dtype)

    # --- training -------------------------------------------------------------------------

    def _net(self, X, n_outputs, output):
        """The net to train: the fitted one with warm_start (same shapes), else a new one
        (in the input's dtype unless ``dtype`` says otherwise)."""
        sizes = [X.shape[1], *self._hidden(), n_outputs]
        if checks.boolean("warm_start", self.warm_start) and hasattr(self, "net_") \
                and list(self.net_.sizes) == sizes and self.net_.output == output:
            return self.net_, False
        net = MLP(sizes, hidden=ACTIVATIONS[self.activation], output=output, loss=OUTPUT_LOSS.get(output),
                  dtype=X.dtype if self.dtype is None else self.dtype, seed=self._seed)
        self._initialize(net)
        return net, True

    def _initialize(self, net):
        """scikit-learn's initial weights, drawn as it draws them from ``random_state``:
        Glorot's uniform bound ``sqrt(6 / (fan_in + fan_out))`` (2 for logistic units), each
        layer's weights then its biases; the same numbers as scikit-learn's for the same
        ``random_state`` (but for a binary classifier's output layer, here two softmax units).
        Written into the fresh net's parameters before any step, so its privacy ledger
        stays that of a new net (the initial weights are public in the DP threat model)."""
        rng = check_random_state(self.random_state)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b in zip(*net.layout.views(net.theta)):
            fan_out, fan_in = W.shape
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[...] = rng.uniform(-bound, bound, (fan_in, fan_out)).T
            b[...] = rng.uniform(-bound, bound, fan_out)

    def _fit(self, X, targets, n_outputs, output, epochs, incremental=False, partial=False, sample_weight=None):
        self._check_parameters()
        if partial and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        self._seed = int(check_random_state(self.random_state).randint(2 ** 31))
        net, new = (self.net_, False) if incremental and hasattr(self, "net_") else self._net(X, n_outputs, output)
        if new or not incremental and not self.warm_start:  # scikit-learn's first pass
            self.loss_curve_, self._no_improvement_count, self.t_ = [], 0, 0
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self.best_loss_ = None if self.early_stopping else np.inf
        self.n_iter_ = 0
        if self.solver == "lbfgs":
            return self._fit_lbfgs(net, X, targets, sample_weight)
        batch = self._batch(X.shape[0])
        net.l2 = self.alpha / batch  # scikit-learn's penalty: alpha/2 ||W||^2 per batch of n samples, / n
        continued = incremental and not new and net.optimizer is not None and not isinstance(net.optimizer, LBFGS)
        validation, X_train, y_train, w_train = None, X, targets, sample_weight
        if self.early_stopping and not incremental:
            X_train, validation, y_train, w_train = self._split(X, targets, sample_weight)
        stopping = _Stopping(self, validation, X_train.shape[0])
        start = Snapshot(net)  # (scikit-learn's first "best" weights: a fit that diverges at once keeps them)
        try:
            history = net.fit(X_train, y_train, epochs=epochs, batch_size=batch,
                              optimizer=None if continued else self._new_optimizer(),
                              lr=None if continued else self.learning_rate_init,
                              shuffle=checks.boolean("shuffle", self.shuffle), seed=self._seed + self.t_,
                              backend=self.backend, callbacks=[stopping], sample_weight=w_train,
                              dp_clip=self.dp_clip, dp_noise=self.dp_noise, dp_delta=self.dp_delta,
                              dp_sampling=self.dp_sampling, target_epsilon=self.target_epsilon)
        except DivergedError:
            if validation is None:  # (scikit-learn's weights go to inf or NaN, and it says so)
                raise ValueError(NON_FINITE) from None
            self.validation_scores_.append(float("nan"))  # (as scikit-learn's scores of such weights read)
            (stopping.best or start).restore(net)
            self.net_ = net
            self.epsilon_ = None if self.dp_clip is None or self.dp_delta is None else \
                net.privacy_ledger.epsilon(self.dp_delta)  # (every step taken, the diverging one included)
            return self
        self.epsilon_ = history.epsilon[-1] if history.epsilon else None
        self.outside_epsilon_ = history.outside_epsilon if history.private else None
        if stopping.best is not None:
            stopping.best.restore(net)
        self.net_ = net
        if not partial and history.epochs == epochs and self._no_improvement_count <= self.n_iter_no_change:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({epochs}) reached and the optimization "
                          f"hasn't converged yet.", ConvergenceWarning)
        return self

    def _fit_lbfgs(self, net, X, targets, sample_weight):
        """scikit-learn's ``solver="lbfgs"``: the whole set, at most ``max_iter`` iterations
        and ``max_fun`` passes, ``alpha / N`` as the penalty (:mod:`scalarbp.lbfgs`)."""
        net.l2 = self.alpha / (X.shape[0] if sample_weight is None else float(np.sum(sample_weight)))
        history = net.fit(X, targets, epochs=checks.integer("max_iter", self.max_iter, 1),
                          optimizer=self._new_optimizer(), backend=self.backend, sample_weight=sample_weight,
                          verbose=int(bool(self.verbose)))
        self.net_, self.n_iter_ = net, history.epochs
        self.loss_ = history.loss[-1] if history.loss else None
        self.loss_curve_ = list(history.loss)
        if not np.isfinite(net.theta).all():
            raise ValueError(NON_FINITE)
        if not history.converged:
            warnings.warn(f"lbfgs failed to converge after {history.epochs} iteration(s) ({history.stopped_by}). "
                          f"Increase the number of iterations (max_iter={self.max_iter}) or max_fun "
                          f"({self.max_fun}), or scale the data.", ConvergenceWarning)
        return self

    def _split(self, X, targets, sample_weight):
        """scikit-learn's validation split: ``(X_train, (X_val, y_val), y_train, w_train)``,
        stratified by class for single-label classification."""
        stratify = self._stratify(targets)
        parts = train_test_split(X, targets, *([] if sample_weight is None else [sample_weight]),
                                 test_size=self.validation_fraction, random_state=self._seed, stratify=stratify)
        X_train, X_val, y_train, y_val = parts[:4]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                             "your dataset.")
        return X_train, (X_val, y_val), y_train, parts[4] if sample_weight is not None else None

    def _stratify(self, targets):
        return None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # (scipy.sparse CSR/CSC: minibatches made dense as they are gathered)
        return tags

    def _outputs(self, X):
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], accept_sparse=SPARSE)
        return self.net_.predict_proba(X, backend=self.backend)

    @property
    def coefs_(self):
        """Weights per layer in scikit-learn's layout: ``coefs_[k]`` is ``(in, out)``.
        Assignable (a list of such arrays), as scikit-learn's users set weights by hand;
        the net's privacy ledger then says its history is unknown."""
        check_is_fitted(self, "net_")
        return [W.T.copy() for W in self.net_.weights]

    @coefs_.setter
    def coefs_(self, coefs):
        check_is_fitted(self, "net_")
        self.net_.weights = [np.asarray(W).T for W in coefs]

    @property
    def intercepts_(self):
        check_is_fitted(self, "net_")
        return [b.copy() for b in self.net_.biases]

    @intercepts_.setter
    def intercepts_(self, intercepts):
        check_is_fitted(self, "net_")
        self.net_.biases = [np.asarray(b) for b in intercepts]

    @property
    def n_layers_(self):
        check_is_fitted(self, "net_")
        return len(self.net_.sizes)

    @property
    def n_outputs_(self):
        check_is_fitted(self, "net_")
        return self.net_.sizes[-1]

    @property
    def out_activation_(self):
        check_is_fitted(self, "net_")
        return OUT_ACTIVATIONS[self.net_.output]

    @classmethod
    def _from_sklearn(cls, est, output, n_outputs):
        """An estimator with ``est``'s parameters and ``est``'s fitted weights (for a
        binary ``MLPClassifier``'s single logistic unit: two softmax units, the first with
        zero weights, which give the same probabilities)."""
        names = cls().get_params()
        params = {k: v for k, v in est.get_params().items() if k in names}
        model = cls(**params)
        coefs = [np.asarray(W, np.float64) for W in est.coefs_]
        intercepts = [np.asarray(b, np.float64) for b in est.intercepts_]
        if n_outputs == 2 and coefs[-1].shape[1] == 1:
            coefs[-1] = np.hstack([np.zeros_like(coefs[-1]), coefs[-1]])
            intercepts[-1] = np.concatenate([[0.0], intercepts[-1]])
        sizes = [coefs[0].shape[0], *(W.shape[1] for W in coefs)]
        model.net_ = MLP(sizes, hidden=ACTIVATIONS[est.activation], output=output, loss=OUTPUT_LOSS.get(output))
        model.net_.weights = [W.T for W in coefs]
        model.net_.biases = intercepts
        model.n_features_in_ = coefs[0].shape[0]
        for name in ("n_iter_", "loss_curve_", "best_loss_", "t_"):
            setattr(model, name, getattr(est, name, None))
        model.validation_scores_ = getattr(est, "validation_scores_", None) or []
        model.best_validation_score_ = getattr(est, "best_validation_score_", None)
        return model


class _TargetTag:
    """The tag of the targets an estimator takes, set on scikit-learn's after its mixin's
    (``ClassifierMixin`` makes ``classifier_tags`` anew): ``TARGET_TAG`` is the group, the
    field, and its name before scikit-learn 1.6."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        group, field, _ = self.TARGET_TAG
        setattr(getattr(tags, group), field, True)
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {self.TARGET_TAG[2]: True}


class ScalarMLPClassifier(_TargetTag, ClassifierMixin, _ScalarMLP):
    """A softmax MLP classifier trained with cross-entropy; multilabel targets (an
    indicator matrix) get sigmoid outputs and binary cross-entropy, as in scikit-learn."""

    TARGET_TAG = ("classifier_tags", "multi_label", "multilabel")

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y); ``sample_weight`` weighs each sample's loss."""
        X, y = validate_data(self, X, y, dtype=self._input_dtype(), multi_output=True, accept_sparse=SPARSE)
        previous = getattr(self, "classes_", None) if self.warm_start and hasattr(self, "net_") else None
        targets, n_outputs, output = self._targets(y, reset=True)
        if previous is not None and not np.array_equal(previous, self.classes_):
            self.classes_ = previous
            raise ValueError(f"warm_start can only be used where `y` has the same classes as in the previous call "
                             f"to fit. Previously got {previous}, `y` has {np.unique(y)}")
        return self._fit(X, targets, n_outputs, output, checks.integer("max_iter", self.max_iter, 1),
                         sample_weight=_check_sample_weight(sample_weight, X))

    @available_if(_stochastic)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), continuing the training; the first call needs ``classes``,
        and a later one may repeat them only unchanged."""
        first = not hasattr(self, "net_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if not first and classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={np.unique(classes)}` is not the same as on last call to partial_fit, was: "
                             f"{self.classes_}")
        X, y = validate_data(self, X, y, dtype=self._input_dtype(), multi_output=True, reset=first,
                             accept_sparse=SPARSE)
        if first:
            self.classes_ = np.unique(classes)
            self._binarizer = LabelBinarizer().fit(self.classes_) if type_of_target(y) == "multilabel-indicator" \
                else None
        targets, n_outputs, output = self._targets(y, reset=False)
        return self._fit(X, targets, n_outputs, output, 1, incremental=not first, partial=True,
                         sample_weight=_check_sample_weight(sample_weight, X))

    def _targets(self, y, reset):
        """Class indices (or a 0/1 matrix for multilabel), the output width and activation."""
        if np.ndim(y) == 2 and np.shape(y)[1] == 1:
            y = column_or_1d(y, warn=True)  # (a column of labels, as scikit-learn's MLPClassifier takes it)
        if reset:
            check_classification_targets(y)
            if type_of_target(y) == "multilabel-indicator":
                self._binarizer = LabelBinarizer().fit(y)
                self.classes_ = self._binarizer.classes_
            else:
                self._binarizer = None
                self.classes_ = np.unique(y)
        if self._binarizer is not None:
            return np.asarray(y, np.float64), len(self.classes_), "sigmoid"
        if len(self.classes_) < 2:
            raise ValueError(f"ScalarMLPClassifier needs at least 2 classes in y, got {len(self.classes_)} class")
        y = np.asarray(y).reshape(-1)
        at = np.searchsorted(self.classes_, y)
        if (at >= len(self.classes_)).any() or (self.classes_[np.minimum(at, len(self.classes_) - 1)] != y).any():
            raise ValueError(f"y holds labels not in classes: {sorted(set(y) - set(self.classes_))[:5]}")
        return at, len(self.classes_), "softmax"

    def predict_proba(self, X):
        return self._outputs(X)

    def predict_log_proba(self, X):
        """The log of :meth:`predict_proba` (0 probabilities give -inf, as scikit-learn's do)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def _stratify(self, targets):
        """The validation split's strata, as scikit-learn forms them: each sample's
        label-indicator row (none for multilabel targets)."""
        if self._binarizer is not None:
            return None
        K = len(self.classes_)
        return (targets == 1).reshape(-1, 1) if K == 2 else np.eye(K, dtype=bool)[targets]

    def predict(self, X):
        proba = self.predict_proba(X)  # checks fitted-ness before classes_ is touched
        if self._binarizer is not None:
            return (proba > 0.5).astype(int)
        return self.classes_[proba.argmax(axis=1)]

    @classmethod
    def from_sklearn(cls, est):
        """A ScalarMLPClassifier that predicts what a fitted ``MLPClassifier`` predicts."""
        multilabel = getattr(est, "_label_binarizer", None) is not None and est._label_binarizer.y_type_ == \
            "multilabel-indicator"
        model = cls._from_sklearn(est, "sigmoid" if multilabel else "softmax", len(est.classes_))
        model.classes_ = np.asarray(est.classes_)
        model._binarizer = est._label_binarizer if multilabel else None
        return model


class ScalarMLPRegressor(_TargetTag, RegressorMixin, _ScalarMLP):
    """An MLP regressor: ``loss="squared_error"`` (an identity output, mean squared error)
    or ``loss="poisson"`` (an exp output, half the Poisson deviance), as scikit-learn's."""

    TARGET_TAG = ("target_tags", "multi_output", "multioutput")

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error", **parameters):
        super().__init__(hidden_layer_sizes, activation, **parameters)
        self.loss = loss

    # (scikit-learn reads an estimator's parameters from its signature: the shared ones, and loss)
    __init__.__signature__ = inspect.signature(_ScalarMLP.__init__).replace(parameters=[
        *inspect.signature(_ScalarMLP.__init__).parameters.values(),
        inspect.Parameter("loss", inspect.Parameter.KEYWORD_ONLY, default="squared_error")])

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y); ``sample_weight`` weighs each sample's loss."""
        X, y = validate_data(self, X, y, dtype=self._input_dtype(), y_numeric=True, multi_output=True,
                             accept_sparse=SPARSE)
        targets = self._targets(y)
        return self._fit(X, targets, targets.shape[1], self._output(), checks.integer("max_iter", self.max_iter, 1),
                         sample_weight=_check_sample_weight(sample_weight, X))

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the training."""
        first = not hasattr(self, "net_")
        X, y = validate_data(self, X, y, dtype=self._input_dtype(), y_numeric=True, multi_output=True,
                             reset=first, accept_sparse=SPARSE)
        targets = self._targets(y)
        return self._fit(X, targets, targets.shape[1], self._output(), 1, incremental=not first, partial=True,
                         sample_weight=_check_sample_weight(sample_weight, X))

    def _output(self):
        """The output unit of ``loss``: identity for the squared error, exp for Poisson."""
        return {"squared_error": "identity", "poisson": "exp"}[checks.choice("loss", self.loss,
                                                                            ("squared_error", "poisson"))]

    def _targets(self, y):
        y = np.asarray(y, np.float64)
        self._flat = y.ndim == 1
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("Some value(s) of y are negative which is not allowed for Poisson regression.")
        return y.reshape(len(y), -1)

    def predict(self, X):
        F = self._outputs(X)
        return F[:, 0] if self._flat else F

    @classmethod
    def from_sklearn(cls, est):
        """A ScalarMLPRegressor that predicts what a fitted ``MLPRegressor`` predicts."""
        model = cls._from_sklearn(est, "exp" if getattr(est, "loss", "squared_error") == "poisson" else "identity",
                                  est.n_outputs_)
        model._flat = est.n_outputs_ == 1
        return model
