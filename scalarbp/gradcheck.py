"""Central finite differences against a backend's analytic gradient."""
import numpy as np

from . import backends, checks

#: Default step of the central difference, by dtype: about the cube root of machine epsilon.
DEFAULT_EPS = {"float64": 1e-6, "float32": 1e-2}


def numerical_gradient(net, X, T, backend, eps):
    """dJ/dtheta by central differences, ``(J(theta + eps e_m) - J(theta - eps e_m)) / 2 eps``."""
    grad = np.empty(net.theta.shape, np.float64)
    for m in range(net.theta.size):
        saved = net.theta[m]
        net.theta[m] = saved + eps
        J_plus, _ = backend.loss_and_grad(net, X, T)
        net.theta[m] = saved - eps
        J_minus, _ = backend.loss_and_grad(net, X, T)
        net.theta[m] = saved
        grad[m] = (J_plus - J_minus) / (2 * eps)
    return grad


def relative_error(g, g_ref, floor):
    """max_m |g_m - g_ref_m| / max(|g_m|, |g_ref_m|, floor)."""
    g, g_ref = np.asarray(g, np.float64), np.asarray(g_ref, np.float64)
    scale = np.maximum(np.maximum(np.abs(g), np.abs(g_ref)), floor)
    return float(np.max(np.abs(g - g_ref) / scale))


def gradcheck(net, X, Y, backend="scalar", eps=None):
    """Largest relative error between ``backend``'s gradient and central differences.

    Every parameter is perturbed in turn (2 passes each), so keep the net small.  The
    relative error of parameter m is ``|g_m - fd_m| / max(|g_m|, |fd_m|, eps^2)``: the
    floor keeps gradients that are zero up to rounding from dividing by zero.
    """
    module = net._backend(backend)
    X = checks.inputs(X, net.sizes[0], net.dtype)
    T = checks.targets(Y, X.shape[0], net.sizes[-1], net.loss, net.dtype)
    eps = DEFAULT_EPS[net.dtype.name] if eps is None else float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    _, grad = module.loss_and_grad(net, X, T)
    return relative_error(grad, numerical_gradient(net, X, T, module, eps), eps * eps)
