"""The multilayer perceptron: its architecture, its parameters, and the public passes."""
import numpy as np

from . import backends, checks
from .activations import ACTIVATIONS, RELU_LIKE
from .layout import Layout
from .losses import LOSSES, output_code


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
    weights : list of ndarray
        ``weights[k]`` has shape ``(sizes[k+1], sizes[k])``: entry ``[i, j]`` is seed
        001's ``w_ij``, from unit j below to unit i above.  Modify in place or replace
        with an array of the same shape.
    biases : list of ndarray
        ``biases[k]`` has shape ``(sizes[k+1],)``.
    theta : ndarray
        All parameters in one flat vector; ``weights`` and ``biases`` are views of it
        (see :mod:`scalarbp.layout`).
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
        self.weights, self.biases = self.layout.views(self.theta)
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

    @property
    def codes(self):
        """Kernel activation code of every layer above the input (the output's last)."""
        return [ACTIVATIONS[name].code for name in self.hidden] + [output_code(self.output)]

    @property
    def loss_code(self):
        return LOSSES[self.loss].code

    def sync(self):
        """Make ``weights``/``biases`` views of ``theta`` again after the user replaced some.

        Replaced entries are checked for shape and copied into ``theta``; called by every
        pass, so replacing ``net.weights[k]`` with a same-shape array simply works.
        """
        for name, arrays in (("weights", self.weights), ("biases", self.biases)):
            if not isinstance(arrays, list) or len(arrays) != self.layout.depth:
                raise ValueError(f"net.{name} must be a list of {self.layout.depth} arrays")
        W_views, b_views = self.layout.views(self.theta)
        for name, arrays, views in (("weights", self.weights, W_views),
                                    ("biases", self.biases, b_views)):
            for k, (array, view) in enumerate(zip(arrays, views)):
                if array is view or (isinstance(array, np.ndarray) and array.base is self.theta
                                     and array.shape == view.shape
                                     and array.ctypes.data == view.ctypes.data):
                    continue
                array = np.asarray(array)
                if array.shape != view.shape:
                    raise ValueError(f"net.{name}[{k}] has shape {array.shape}, expected {view.shape}")
                view[...] = array
                arrays[k] = view

    def _backend(self, backend):
        module = backends.get(backend)
        self.sync()
        return module

    def forward(self, X, backend="scalar"):
        """Output activations ``(N, sizes[-1])`` for inputs ``X`` of shape ``(N, sizes[0])``."""
        module = self._backend(backend)
        return module.forward(self, checks.inputs(X, self.sizes[0], self.dtype))

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
        module = self._backend(backend)
        X = checks.inputs(X, self.sizes[0], self.dtype)
        T = checks.targets(Y, X.shape[0], self.sizes[-1], self.loss, self.dtype)
        J, grad = module.loss_and_grad(self, X, T)
        dW, db = self.layout.views(grad)
        return J, dW, db
