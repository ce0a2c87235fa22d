"""The multilayer perceptron: its architecture, its parameters, and the public passes."""
import os

import numpy as np

from . import backends, checks, metrics, optimizers, persistence, training
from .datasets import Standardizer
from .activations import ACTIVATIONS, RELU_LIKE
from .layout import Layout
from .losses import LOSSES, output_code


class ParameterList(list):
    """Per-layer views of ``theta``; assigning an entry copies the new values into it.

    ``net.weights[k] = A`` checks A's shape and writes it into ``theta``, so the list keeps
    holding views and every backend sees the change; in-place edits need nothing.
    """

    def __init__(self, name, views):
        super().__init__(views)
        self.name = name

    def __setitem__(self, k, value):
        if not isinstance(k, int):
            raise TypeError(f"net.{self.name} takes one layer at a time, got index {k!r}")
        view = self[k]
        array = np.asarray(value)
        if array.shape != view.shape:
            raise ValueError(f"net.{self.name}[{k}] must have shape {view.shape}, got {array.shape}")
        view[...] = array

    def assign(self, arrays):
        arrays = list(arrays)
        if len(arrays) != len(self):
            raise ValueError(f"net.{self.name} needs {len(self)} arrays, got {len(arrays)}")
        for k, array in enumerate(arrays):
            self[k] = array


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
    """

    def __init__(self, sizes, hidden="relu", output="softmax", loss=None, l2=0.0,
                 dtype="float64", seed=None):
        self.sizes = checks.sizes(sizes)
        self.hidden = checks.hidden(hidden, len(self.sizes) - 2)
        self.output, self.loss = checks.output_and_loss(output, loss)
        self.l2 = checks.l2(l2)
        self.dtype = checks.dtype(dtype)
        self.layout = Layout(self.sizes)
        self.theta = np.zeros(self.layout.size, self.dtype)
        self.optimizer = None
        self.standardizer = None
        self.epochs_trained = 0
        self.backend_state = {}
        rng = np.random.default_rng(seed)
        for k, W in enumerate(self.weights):
            d_out, d_in = W.shape
            if k < len(self.hidden) and self.hidden[k] in RELU_LIKE:
                W[...] = rng.normal(0.0, np.sqrt(2.0 / d_in), W.shape)
            else:
                limit = np.sqrt(6.0 / (d_in + d_out))
                W[...] = rng.uniform(-limit, limit, W.shape)

    def __repr__(self):
        layers = "-".join(str(d) for d in self.sizes)
        return (f"MLP({layers}, hidden={list(self.hidden)}, output={self.output!r}, "
                f"loss={self.loss!r}, l2={self.l2}, dtype={self.dtype.name!r})")

    def __getstate__(self):
        """Pickle/copy support: the configuration and arrays, not views or backend state."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_weights", "_biases", "backend_state")}
        state["_theta"] = np.array(self._theta)
        return state

    def __setstate__(self, state):
        theta = np.array(state.pop("_theta"))  # a writable copy, even from a read-only memmap
        self.__dict__.update(state)
        self.backend_state = {}
        self.theta = theta

    def astype(self, dtype):
        """A copy of this network with parameters of another dtype."""
        copy = MLP(self.sizes, self.hidden, self.output, self.loss, self.l2, dtype)
        copy.theta[...] = self.theta
        return copy

    @property
    def theta(self):
        return self._theta

    @theta.setter
    def theta(self, value):
        value = np.asarray(value)
        if value.shape != (self.layout.size,):
            raise ValueError(f"theta has shape {value.shape}, expected ({self.layout.size},)")
        self._theta = np.ascontiguousarray(value, dtype=self.dtype)
        W, b = self.layout.views(self._theta)
        self._weights = ParameterList("weights", W)
        self._biases = ParameterList("biases", b)

    @property
    def weights(self):
        return self._weights

    @weights.setter
    def weights(self, arrays):
        self._weights.assign(arrays)

    @property
    def biases(self):
        return self._biases

    @biases.setter
    def biases(self, arrays):
        self._biases.assign(arrays)

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

    def forward(self, X, backend="scalar"):
        """Output activations ``(N, sizes[-1])`` for inputs ``X`` of shape ``(N, sizes[0])``."""
        return self._backend(backend).forward(self, checks.inputs(X, self.sizes[0], self.dtype))

    def loss_and_grad(self, X, Y, backend="scalar"):
        """The objective and its gradient on one batch.

        ``J = (1/N) sum_n Loss(f(x_n), y_n) + (l2/2) sum_k ||W_k||_F^2``.

        Parameters
        ----------
        X : array ``(N, sizes[0])``
        Y : integer labels ``(N,)`` or targets ``(N, sizes[-1])``

        Returns
        -------
        J : float
        dW : list of arrays shaped like ``weights``
        db : list of arrays shaped like ``biases``
        """
        engine = self._backend(backend)
        X = checks.inputs(X, self.sizes[0], self.dtype)
        T = checks.targets(Y, X.shape[0], self.sizes[-1], self.loss, self.dtype)
        J, grad = engine.loss_and_grad(self, X, T)
        dW, db = self.layout.views(grad)
        return J, dW, db

    # --- training and prediction ---------------------------------------------------------

    @property
    def is_classifier(self):
        """True for a softmax output or a sigmoid output trained with binary cross-entropy."""
        return self.output == "softmax" or self.loss == "binary_cross_entropy"

    def transform(self, X):
        """X through the net's standardizer (unchanged if there is none)."""
        return X if self.standardizer is None else self.standardizer.transform(X)

    def fit(self, X, y, epochs=10, batch_size=32, lr=0.01, optimizer="sgd", shuffle=True, seed=None,
            validation_data=None, validation_fraction=0.0, early_stopping=False, patience=10,
            backend="scalar", verbose=0):
        """Train by minibatch gradient descent on ``J``; returns a :class:`~scalarbp.training.History`.

        Parameters
        ----------
        X : array ``(N, sizes[0])`` or ``numpy.memmap`` (read one minibatch at a time)
        y : labels ``(N,)`` or targets ``(N, sizes[-1])``
        epochs, batch_size : int
        lr : float
            Learning rate.
        optimizer : ``"sgd"``, ``"momentum"``, ``"adam"`` or a
            :class:`scalarbp.optimizers.Optimizer` (e.g. ``Momentum(0.1, nesterov=True)``).
            Training continues the net's current optimiser state when the name matches.
        shuffle : bool
            Visit the samples in a new random order each epoch.
        seed : int or None
            Seeds the shuffles and the validation split: same seed and data, same weights,
            on any number of threads.
        validation_data : ``(X_val, y_val)`` or None
        validation_fraction : float
            Hold out this fraction of (X, y) for validation instead.
        early_stopping : bool
            Stop after ``patience`` epochs without a lower validation loss (training loss
            without validation data) and restore the best weights.
        backend : ``"scalar"``, ``"literal"`` (seed 001 one sample at a time: slow, for
            reading), ``"row"``, ``"column"`` or ``"cuda"``
        verbose : 0 silent, 1 a line per epoch, 2 also a progress bar on a terminal

        Raises
        ------
        scalarbp.training.DivergedError
            If the loss or gradient becomes NaN or inf; the weights are the last finite
            ones and ``err.history`` holds the completed epochs.
        """
        return training.fit(self, X, y, epochs=epochs, batch_size=batch_size, lr=lr,
                            optimizer=optimizer, shuffle=shuffle, seed=seed,
                            validation_data=validation_data,
                            validation_fraction=validation_fraction, early_stopping=early_stopping,
                            patience=patience, backend=backend, verbose=verbose)

    def partial_fit(self, X, y, batch_size=32, lr=0.01, optimizer="sgd", backend="scalar"):
        """One pass over a chunk of a stream, in order, continuing the optimiser's state."""
        training.fit(self, X, y, epochs=1, batch_size=batch_size, lr=lr, optimizer=optimizer,
                     shuffle=False, backend=backend)
        return self

    def predict_proba(self, X, backend="scalar"):
        """Output activations for (standardised) X: class probabilities for a softmax output."""
        return self.forward(self.transform(checks.inputs(X, self.sizes[0], self.dtype)), backend)

    def predict(self, X, backend="scalar"):
        """Class labels for classifiers (see :func:`scalarbp.metrics.predictions`), else values."""
        return metrics.predictions(self, self.predict_proba(X, backend))

    def score(self, X, y, backend="scalar"):
        """Accuracy for classifiers, R^2 for regression."""
        return metrics.score(self, self.predict_proba(X, backend), y)

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
            "optimizer": None if opt is None else {"name": opt.name, "lr": opt.lr, "hyper": opt.hyper, "t": opt.t},
        }
        arrays = {"theta": self.theta}
        if opt is not None:
            arrays.update({f"optimizer.{k}": v for k, v in opt.state.items()})
        if self.standardizer is not None:
            arrays["standardizer.mean"] = self.standardizer.mean
            arrays["standardizer.scale"] = self.standardizer.scale
        persistence.save(path, config, arrays)

    @classmethod
    def load(cls, path):
        """A model saved by :meth:`save`; loading never runs code (no pickle), and a file
        that is not a consistent model raises :class:`scalarbp.persistence.ModelFileError`."""
        name = os.fspath(path)
        config, arrays = persistence.read(name)
        try:
            size = Layout(checks.sizes(config["sizes"])).size
            if arrays["theta"].shape != (size,):  # before allocating what the config asks for
                raise persistence.ModelFileError(f"{name}: array 'theta' has shape {arrays['theta'].shape}, "
                                                 f"sizes {config['sizes']} need ({size},)")
            net = cls(config["sizes"], config["hidden"], config["output"], config["loss"], config["l2"],
                      config["dtype"])
            net.epochs_trained = persistence.count(config["epochs_trained"], "epochs_trained")
            net.theta[...] = persistence.array(name, arrays, "theta", net.theta.shape, net.dtype)
            if config["optimizer"] is not None:
                opt = config["optimizer"]
                net.optimizer = optimizers.make(opt["name"], opt["lr"], **opt["hyper"])
                net.optimizer.t = persistence.count(opt["t"], "optimizer step count")
                for key in net.optimizer.state_names:
                    net.optimizer.state[key] = persistence.array(name, arrays, f"optimizer.{key}", net.theta.shape,
                                                                 net.dtype)
            if "standardizer.mean" in arrays:
                width = (net.sizes[0],)
                net.standardizer = Standardizer.from_arrays(
                    persistence.array(name, arrays, "standardizer.mean", width, np.float64),
                    persistence.array(name, arrays, "standardizer.scale", width, np.float64))
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, persistence.ModelFileError):
                raise
            raise persistence.ModelFileError(f"{name}: inconsistent model file ({str(err) or type(err).__name__})") \
                from None
        return net
