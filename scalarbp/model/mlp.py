"""The multilayer perceptron: its architecture, its parameters, and the public passes."""
import contextlib
import os
import threading
from collections.abc import Sequence

import numpy as np

from .. import backends, checks, metrics, training
from ..datasets import Standardizer
from ..definitions.activations import ACTIVATIONS, RELU_LIKE
from ..definitions.layout import Layout
from ..definitions.losses import LOSSES, output_code
from ..privacy import Ledger
from ..training import optimizers, options
from . import persistence

#: The largest epoch or step count a model carries (exact in a float64, and in JSON).
MAX_COUNT = 2 ** 53


class ParameterList(Sequence):
    """Per-layer views of ``theta``; assigning an entry copies the new values into it.

    ``net.weights[k] = A`` checks A's shape and values and writes it into ``theta``, so the
    list keeps holding views and every backend sees the change; in-place edits need
    nothing.  The list itself cannot grow or shrink: the layers are the architecture's.
    """

    def __init__(self, name, views, on_assign):
        self.name = name
        self._views = tuple(views)
        self._on_assign = on_assign  # (the net's: assigned parameters have no known history)

    def __getitem__(self, k):
        return self._views[k]

    def __len__(self):
        return len(self._views)

    def __repr__(self):
        return f"ParameterList({self.name}: {[view.shape for view in self._views]})"

    def __setitem__(self, k, value):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"net.{self.name} takes one layer at a time, got index {k!r}")
        view = self[k]
        array = checks.real_array(f"net.{self.name}[{k}]", value)
        if array.shape != view.shape:
            raise ValueError(f"net.{self.name}[{k}] must have shape {view.shape}, got {array.shape}")
        checks.finite(f"net.{self.name}[{k}]", array, view.dtype)
        view[...] = array
        self._on_assign()

    def assign(self, arrays):
        arrays = list(arrays)
        if len(arrays) != len(self):
            raise ValueError(f"net.{self.name} needs {len(self)} arrays, got {len(arrays)}")
        for k, array in enumerate(arrays):
            self[k] = array


def checked(slot, check, doc):
    """A property kept in attribute ``slot``, whose every assignment stores
    ``check(net, value)``: the check raises on a bad value, or returns what to keep."""
    return property(lambda net: getattr(net, slot), lambda net, value: setattr(net, slot, check(net, value)),
                    doc=doc)


#: Rows of a sparse X made dense at a time for a prediction.
SPARSE_BLOCK_ROWS = 4096


class MLP:
    """A fully connected network trained by backpropagation.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(d_0, ..., d_T)``, input first.
    hidden : str or sequence of str
        Activation of every hidden layer, or one per hidden layer: ``relu``,
        ``leaky_relu`` (slope 0.01), ``sigmoid``, ``tanh``, ``identity``.
    output : str
        ``softmax``, ``sigmoid``, ``identity`` or ``tanh``.
    loss : str or None
        ``cross_entropy`` (softmax), ``binary_cross_entropy`` (sigmoid) or ``mse`` (any
        output); ``None`` picks the output's natural loss.
    l2 : float
        Weight of the penalty ``(l2 / 2) sum_k ||W_k||_F^2`` (biases are not penalised).
    dtype : ``"float32"`` or ``"float64"``
    seed : int or None
        Seed of the initialisation: He-normal for weights feeding ReLU-like units,
        Glorot-uniform otherwise; zero biases.

    Attributes
    ----------
    backend_state : dict
        What each backend keeps for this net between calls (work buffers, a device
        copy), by backend name; never saved or copied.
    weights : list of ndarray
        ``weights[k]`` has shape ``(sizes[k+1], sizes[k])``: entry ``[i, j]`` is seed
        001's ``w_ij``, from unit j below to unit i above.  Modify in place or replace
        with an array of the same shape.
    biases : list of ndarray
        ``biases[k]`` has shape ``(sizes[k+1],)``.
    theta : ndarray
        All parameters in one flat vector; ``weights`` and ``biases`` are views of it
        (see :mod:`scalarbp.layout`).  Assigning a new vector re-points both lists.
    optimizer : scalarbp.optimizers.Optimizer or None
        The optimiser of the last ``fit``, with its state; the next ``fit`` with the same
        optimiser name continues from it.
    standardizer : scalarbp.datasets.Standardizer or None
        An input transform that travels with the model: ``fit``, ``predict``,
        ``predict_proba`` and ``score`` apply it to X (``forward`` and
        ``loss_and_grad``, the passes of the notes, do not).
    epochs_trained : int
        Epochs of training so far; with a seed, it picks each epoch's shuffle, so training
        resumed from a saved model equals uninterrupted training.
    epoch_steps : int
        Steps done of an interrupted epoch (0 otherwise); the next ``fit`` finishes it.
    privacy_ledger : scalarbp.privacy.Ledger
        Every step the parameters took (:mod:`scalarbp.privacy.ledger`), saved with the
        model: ``privacy_ledger.epsilon(delta)`` is the privacy they spent, ``inf`` once any
        step was not a covered DP-SGD step.  Empty for a new net; of unknown history
        (epsilon inf) once ``theta``, ``weights`` or ``biases`` are assigned.
    classes : ndarray or None
        The original labels of the output units (integers or names) when they are not
        ``0..K-1`` (the ``train`` command and the estimators set them): ``predict``
        returns them and ``score`` takes them.

    The architecture (``sizes``, ``hidden``, ``output``, ``loss``, ``dtype``, ``layout``)
    is read-only: the kernels read the layout derived from it.  A net serves one thread
    at a time (its work buffers are shared); a second gets a ``RuntimeError``.
    """

    def __init__(self, sizes, hidden="relu", output="softmax", loss=None, l2=0.0,
                 dtype="float64", seed=None):
        self._sizes = checks.sizes(sizes)
        self._hidden = checks.hidden(hidden, len(self._sizes) - 2)
        self._output, self._loss = checks.output_and_loss(output, loss)
        self.l2 = l2
        self._dtype = checks.dtype(dtype)
        self._layout = Layout(self._sizes)
        checks.memory_for(f"the parameters of sizes={list(self._sizes)}", self.layout.size, self.dtype)
        self.theta = np.zeros(self.layout.size, self.dtype)
        self.optimizer = None
        self.standardizer = None
        self.classes = None
        self.epochs_trained = 0
        self.epoch_steps = 0
        self.backend_state = {}
        self._lock = threading.RLock()
        rng = np.random.default_rng(None if seed is None else checks.integer("seed", seed, 0))
        for k, W in enumerate(self.weights):
            d_out, d_in = W.shape
            if k < len(self.hidden) and self.hidden[k] in RELU_LIKE:
                W[...] = rng.normal(0.0, np.sqrt(2.0 / d_in), W.shape)
            else:
                limit = np.sqrt(6.0 / (d_in + d_out))
                W[...] = rng.uniform(-limit, limit, W.shape)
        self.privacy_ledger = Ledger()  # (the initialisation depends on the seed, not on data)

    # The architecture is fixed at construction: the kernels read the layout and codes
    # derived from it, so these are read-only (a new architecture is a new MLP).
    sizes = property(lambda self: self._sizes, doc="Layer widths, input first (read-only).")
    hidden = property(lambda self: self._hidden, doc="Hidden activations, one per hidden layer (read-only).")
    output = property(lambda self: self._output, doc="Output activation (read-only).")
    loss = property(lambda self: self._loss, doc="Loss name (read-only).")
    dtype = property(lambda self: self._dtype, doc="Parameter dtype (read-only; see astype).")
    layout = property(lambda self: self._layout, doc="Offsets of each layer in theta (read-only).")

    # Settable, each assignment checked:
    l2 = checked("_l2", lambda net, value: checks.l2(value),
                 "Weight of the penalty; may be changed between fits (checked on assignment).")
    epochs_trained = checked("_epochs_trained",
                             lambda net, value: checks.integer("epochs_trained", value, 0, MAX_COUNT),
                             "Epochs completed so far (with a seed it picks each epoch's shuffle).")
    epoch_steps = checked("_epoch_steps", lambda net, value: checks.integer("epoch_steps", value, 0, MAX_COUNT),
                          "Steps done of an epoch that was interrupted (0 after a completed epoch); the next "
                          "``fit`` finishes that epoch first, in the same order.")
    classes = checked("_classes", lambda net, value: None if value is None else checks.classes(value, net.sizes[-1]),
                      "The original class labels, sorted, when they are not ``0..K-1`` (else None): "
                      "``predict`` returns them and ``score`` compares with them.")
    # Views of theta, a list per kind (assigning a list assigns entry by entry):
    weights = property(lambda net: net._weights, lambda net, arrays: net._weights.assign(arrays),
                       doc="The weight matrices W^k (d_k x d_(k-1)), views of theta (:class:`ParameterList`).")
    biases = property(lambda net: net._biases, lambda net, arrays: net._biases.assign(arrays),
                      doc="The bias vectors b^k, views of theta (:class:`ParameterList`).")

    @contextlib.contextmanager
    def in_use(self):
        """Hold this net for one call into the kernels: they share its work buffers, so a
        second thread gets a clear RuntimeError instead of results that vary between runs."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this net is in use by another thread (fit, predict or loss_and_grad); "
                               "give each thread its own copy (copy.deepcopy(net))")
        try:
            yield
        finally:
            self._lock.release()

    def __repr__(self):
        layers = "-".join(str(d) for d in self.sizes)
        return (f"MLP({layers}, hidden={list(self.hidden)}, output={self.output!r}, "
                f"loss={self.loss!r}, l2={self.l2}, dtype={self.dtype.name!r})")

    def __getstate__(self):
        """Pickle/copy support: the configuration and arrays, not views, locks or backend state."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_weights", "_biases", "backend_state", "_lock")}
        state["_theta"] = np.array(self._theta)
        return state

    def __setstate__(self, state):
        theta = np.array(state.pop("_theta"))  # a writable copy, even from a read-only memmap
        self.__dict__.update(state)
        self.backend_state = {}
        self._lock = threading.RLock()
        ledger = self.__dict__.get("privacy_ledger")
        self.theta = theta
        self.privacy_ledger = Ledger.unknown() if ledger is None else ledger  # (a pickle from before the ledger)

    def astype(self, dtype):
        """A copy of this network with parameters of another dtype (and the same privacy ledger)."""
        copy = MLP(self.sizes, self.hidden, self.output, self.loss, self.l2, dtype)
        copy.theta[...] = self.theta
        copy.privacy_ledger = self.privacy_ledger.copy()
        return copy

    @property
    def theta(self):
        return self._theta

    @theta.setter
    def theta(self, value):
        value = checks.real_array("theta", value)
        if value.shape != (self.layout.size,):
            raise ValueError(f"theta has shape {value.shape}, expected ({self.layout.size},)")
        checks.finite("theta", value, self.dtype)
        theta = np.asarray(value, dtype=self.dtype)  # a plain ndarray, even from a memmap
        if not (theta.flags.c_contiguous and theta.flags.writeable and theta.flags.aligned):
            theta = theta.copy()  # the kernels write theta in place
        self._theta = theta
        W, b = self.layout.views(self._theta)
        self._weights = ParameterList("weights", W, self._assigned)
        self._biases = ParameterList("biases", b, self._assigned)
        self._assigned()

    def _assigned(self):
        """Parameters from outside training: their history is unknown to the privacy ledger."""
        self.privacy_ledger = Ledger.unknown()

    @property
    def codes(self):
        """Kernel activation code of every layer above the input (the output's last), as
        the int64 array the compiled kernels take."""
        return np.array([ACTIVATIONS[name].code for name in self.hidden] + [output_code(self.output)], np.int64)

    @property
    def loss_code(self):
        return LOSSES[self.loss].code

    def _backend(self, backend):
        return backends.get(backend)

    def _batch(self, X, Y):
        """``(X, T)``: inputs and targets checked and converted as the kernels take them."""
        X = checks.inputs(X, self.sizes[0], self.dtype)
        return X, checks.targets(Y, X.shape[0], self.sizes[-1], self.loss, self.dtype)

    def forward(self, X, backend="scalar"):
        """Output activations ``(N, sizes[-1])`` for inputs ``X`` of shape ``(N, sizes[0])``."""
        engine = self._backend(backend)
        X = checks.inputs(X, self.sizes[0], self.dtype)
        with self.in_use():
            return engine.forward(self, X)

    def loss_and_grad(self, X, Y, backend="scalar", weights=None):
        """The objective and its gradient on one batch.

        ``J = (1/N) sum_n Loss(f(x_n), y_n) + (l2/2) sum_k ||W_k||_F^2``, or with
        ``weights`` the weighted mean ``sum_n w_n Loss_n / sum_n w_n`` (plus the penalty).

        Parameters
        ----------
        X : array ``(N, sizes[0])``
        Y : integer labels ``(N,)`` or targets ``(N, sizes[-1])``
        weights : array ``(N,)`` of non-negative weights, or None

        Returns
        -------
        J : float
        dW : list of arrays shaped like ``weights``
        db : list of arrays shaped like ``biases``
        """
        engine = self._backend(backend)
        X, T = self._batch(X, Y)
        if weights is not None:
            weights = checks.weights_in(checks.sample_weights(weights, X.shape[0]), self.dtype)
        with self.in_use():
            J, grad = engine.loss_and_grad(self, X, T, weights=weights)
        dW, db = self.layout.views(grad)
        return J, dW, db

    # --- per-example gradients ---------------------------------------------------------------

    def per_example_grads(self, X, Y, backend="scalar", flat=False):
        """Every sample's own loss and gradient: seed 001's ``dPhi_n/dw_ij = delta_ni f_nj``
        before seed 004 sums them (:mod:`scalarbp.backends.per_example`).

        Returns ``(losses, dW, db)``, ``losses`` of shape ``(N,)`` and ``dW[k]``, ``db[k]``
        shaped like ``weights[k]``, ``biases[k]`` with a leading ``N`` axis; with
        ``flat=True``, ``(losses, G)`` with ``G`` of shape ``(N, P)``, each row laid out like
        ``theta``.  The loss of a sample has no ``1/N`` and no L2 penalty (whose gradient,
        ``l2 W``, is the same for every sample).  Memory is ``N x P`` values: for many
        samples, use :meth:`iter_per_example_grads`.
        """
        engine = self._backend(backend)
        X, T = self._batch(X, Y)
        G = np.empty((X.shape[0], self.layout.size), self.dtype)
        with self.in_use():
            losses, _ = engine.per_example(self, X, T, G)
        if flat:
            return losses, G
        N = X.shape[0]
        layers = self.layout.layers()
        return (losses, [G[:, k.w_at:k.b_at].reshape(N, k.d_out, k.d_in) for k in layers],
                [G[:, k.b_at:k.b_at + k.d_out] for k in layers])

    def iter_per_example_grads(self, X, Y, chunk=None, backend="scalar"):
        """``(start, losses, G)`` for consecutive chunks of samples, ``G`` of shape
        ``(n, P)``: per-example gradients in bounded memory (``chunk`` samples at a time; by
        default as many as fit in
        :data:`scalarbp.definitions.layout.PER_EXAMPLE_BYTES`)."""
        X, T = self._batch(X, Y)
        chunk = self.layout.samples_per_chunk(self.dtype.itemsize) if chunk is None else \
            checks.integer("chunk", chunk, 1)
        for start in range(0, X.shape[0], chunk):
            losses, G = self.per_example_grads(X[start:start + chunk], T[start:start + chunk], backend, flat=True)
            yield start, losses, G

    def per_example_grad_norms(self, X, Y, backend="scalar"):
        """``(losses, norms)``: every sample's loss and the norm of its gradient,
        ``||dLoss_n/dtheta||^2 = sum_k ||delta^k_n||^2 (||h^{k-1}_n||^2 + 1)`` (an outer
        product's norm is the product of its factors' norms), without forming the gradients
        on the scalar backend: ``O(N x units)`` extra work, no ``N x P`` memory."""
        engine = self._backend(backend)
        X, T = self._batch(X, Y)
        with self.in_use():
            losses, squares = engine.per_example(self, X, T, np.empty((0, self.layout.size), self.dtype))
        return losses, np.sqrt(squares)

    # --- training and prediction ---------------------------------------------------------

    @property
    def is_classifier(self):
        """True for a softmax output or a sigmoid output trained with binary cross-entropy."""
        return self.output == "softmax" or self.loss == "binary_cross_entropy"

    def transform(self, X):
        """X through the net's standardizer (unchanged if there is none)."""
        return X if self.standardizer is None else self.standardizer.transform(X)

    @options.signature
    def fit(self, X, y, *args, **kwargs):
        """Train by minibatch gradient descent on ``J``; returns a :class:`~scalarbp.training.History`.

        Parameters
        ----------
        X : array ``(N, sizes[0])`` or ``numpy.memmap`` (read one minibatch at a time)
        y : labels ``(N,)`` or targets ``(N, sizes[-1])``
        epochs, batch_size, lr, optimizer, ... :
            The options of :class:`scalarbp.options.FitOptions`, which documents each one
            and holds its default (``inspect.signature`` shows them here).

        Raises
        ------
        scalarbp.training.DivergedError
            If the loss, the gradient or the updated weights become NaN or inf; the weights
            are those of the last good step and ``err.history`` holds the completed epochs.
        scalarbp.training.TrainingInterrupted
            On Ctrl-C (a ``KeyboardInterrupt``), at the end of the current run of steps:
            the weights are those of the last completed step, the counters describe them,
            and the next ``fit`` finishes the interrupted epoch.
        """
        return training.fit(self, X, y, *args, **kwargs)

    def partial_fit(self, X, y, batch_size=options.FitOptions.batch_size, lr=None, optimizer=None, backend="scalar"):
        """One pass over a chunk of a stream, in order, continuing the optimiser's state."""
        training.fit(self, X, y, epochs=1, batch_size=batch_size, lr=lr, optimizer=optimizer,
                     shuffle=False, backend=backend)
        return self

    def predict_proba(self, X, backend="scalar"):
        """Output activations for (standardised) X: class probabilities for a softmax output.
        A SciPy sparse X is made dense :data:`SPARSE_BLOCK_ROWS` rows at a time."""
        if checks.is_sparse(X):
            X = checks.sparse_inputs(X, self.sizes[0], self.dtype)
            return np.vstack([self.predict_proba(X[start:start + SPARSE_BLOCK_ROWS].toarray(), backend)
                              for start in range(0, X.shape[0], SPARSE_BLOCK_ROWS)])
        return self.forward(self.transform(checks.inputs(X, self.sizes[0], self.dtype)), backend)

    def predict(self, X, backend="scalar"):
        """Class labels for classifiers (see :func:`scalarbp.metrics.predictions`; the
        original labels when :attr:`classes` is set), else values."""
        predicted = metrics.predictions(self, self.predict_proba(X, backend))
        return predicted if self.classes is None or self.output != "softmax" else self.classes[predicted]

    def class_indices(self, y):
        """Labels ``y`` as the output unit of each (indices into :attr:`classes` when it is
        set; labels it does not hold are refused, naming them)."""
        y = np.asarray(y)
        if self.classes is None or y.ndim != 1:
            return checks.real_array("y", y)
        if (y.dtype.kind == "U") != (self.classes.dtype.kind == "U"):
            raise ValueError(f"y holds {'names' if y.dtype.kind == 'U' else 'numbers'}, the model's classes are "
                             f"{'names' if self.classes.dtype.kind == 'U' else 'numbers'}")
        at = np.minimum(np.searchsorted(self.classes, y), len(self.classes) - 1)
        unknown = self.classes[at] != y
        if unknown.any():
            raise ValueError(f"y holds labels the model was not trained on: {np.unique(y[unknown])[:5].tolist()}")
        return at

    def score(self, X, y, backend="scalar"):
        """Accuracy for classifiers, R^2 for regression; ``y`` is checked as ``fit`` checks it."""
        F = self.predict_proba(X, backend)
        y = self.class_indices(y)
        checks.targets(y, F.shape[0], self.sizes[-1], self.loss, self.dtype)
        return metrics.score(self, F, y)

    # --- persistence -------------------------------------------------------------------------

    def save(self, path):
        """Write the model (configuration, parameters, optimiser state) to one ``.npz`` file.

        The file is written beside ``path`` and renamed into place: a failed save leaves
        any previous file intact.  Its layout: :mod:`scalarbp.persistence`.
        """
        opt = self.optimizer
        config = {
            "sizes": list(self.sizes), "hidden": list(self.hidden), "output": self.output,
            "loss": self.loss, "l2": self.l2, "dtype": self.dtype.name, "epochs_trained": self.epochs_trained,
            "epoch_steps": self.epoch_steps,
            "optimizer": None if opt is None else {"name": opt.name, "lr": opt.lr, "hyper": opt.hyper, "t": opt.t},
            "privacy_ledger": self.privacy_ledger.to_config(),
        }
        arrays = {"theta": self.theta}
        if opt is not None:
            arrays.update({f"optimizer.{k}": opt.state[k] for k in opt.state_names if k in opt.state})
        if self.standardizer is not None:
            arrays["standardizer.mean"] = self.standardizer.mean
            arrays["standardizer.scale"] = self.standardizer.scale
        if self.classes is not None:
            arrays["classes"] = self.classes
        persistence.save(path, config, arrays)

    @classmethod
    def load(cls, path):
        """A model saved by :meth:`save`; loading never runs code (no pickle), reads no more
        than the configuration describes, and a file that is not a consistent model raises
        :class:`scalarbp.persistence.ModelFileError` (:mod:`scalarbp.persistence`)."""
        name = os.fspath(path)
        config, arrays = persistence.read(name, _members)
        try:
            net = cls(config["sizes"], config["hidden"], config["output"], config["loss"], config["l2"],
                      config["dtype"])
            net.epochs_trained = config["epochs_trained"]
            net.epoch_steps = config.get("epoch_steps", 0)
            net.theta[...] = arrays["theta"]
            if config["optimizer"] is not None:
                net.optimizer = _optimizer(config["optimizer"])
                for key in net.optimizer.state_names:
                    if f"optimizer.{key}" in arrays:
                        net.optimizer.state[key] = arrays[f"optimizer.{key}"]
                    elif net.optimizer.t:  # (an optimiser that never stepped has no state yet)
                        raise ValueError(f"array 'optimizer.{key}' is missing")
                net.optimizer.check_state()
            standardizer = [arrays.get(f"standardizer.{key}") for key in ("mean", "scale")]
            if (standardizer[0] is None) != (standardizer[1] is None):
                raise ValueError("a standardizer needs both 'standardizer.mean' and 'standardizer.scale'")
            if standardizer[0] is not None:
                net.standardizer = Standardizer.from_arrays(*standardizer)
            net.classes = arrays.get("classes")
            net.privacy_ledger = Ledger.from_config(config["privacy_ledger"]) if "privacy_ledger" in config else \
                Ledger.unknown()  # (a file from before the ledger)
        except (TypeError, ValueError) as err:
            raise persistence.ModelFileError(f"{name}: inconsistent model file ({str(err) or type(err).__name__})") \
                from None
        return net


def _members(config):
    """The arrays a model file with this configuration may hold: ``{name: (shape, dtype)}``,
    the configuration checked first (types and ranges) without allocating anything."""
    sizes = checks.sizes(config["sizes"])
    if not isinstance(config["hidden"], list) or not all(isinstance(name, str) for name in config["hidden"]):
        raise TypeError(f"hidden must be a list of activation names, got {str(config['hidden'])[:100]}")
    checks.hidden(config["hidden"], len(sizes) - 2)
    checks.output_and_loss(config["output"], config["loss"])
    checks.l2(config["l2"])
    if not isinstance(config["dtype"], str):
        raise TypeError(f"dtype must be a name, got {str(config['dtype'])[:100]}")
    dtype = checks.dtype(config["dtype"])
    checks.integer("epochs_trained", config["epochs_trained"], 0, MAX_COUNT)
    checks.integer("epoch_steps", config.get("epoch_steps", 0), 0, MAX_COUNT)
    P = Layout(sizes).size
    members = {"theta": ((P,), dtype), "classes": ((sizes[-1],), persistence.LABELS),
               "standardizer.mean": ((sizes[0],), np.dtype(np.float64)),
               "standardizer.scale": ((sizes[0],), np.dtype(np.float64))}
    if config["optimizer"] is not None:
        members.update({f"optimizer.{key}": ((P,), dtype) for key in _optimizer(config["optimizer"]).state_names})
    return members


def _optimizer(config):
    """The optimiser a configuration's ``optimizer`` entry describes, every field checked."""
    if not isinstance(config, dict) or set(config) != {"name", "lr", "hyper", "t"}:
        raise ValueError(f"optimizer must be null or hold name, lr, hyper and t, got {str(config)[:100]}")
    if not isinstance(config["hyper"], dict):
        raise TypeError(f"optimizer hyper-parameters must be a mapping, got {str(config['hyper'])[:100]}")
    if not isinstance(config["name"], str):
        raise TypeError(f"optimizer name must be a string, got {str(config['name'])[:100]}")
    optimizer = optimizers.make(config["name"], config["lr"], **config["hyper"])
    optimizer.t = checks.integer("optimizer step count", config["t"], 0, MAX_COUNT)
    return optimizer
