"""Central finite differences against a backend's analytic gradient."""
import numpy as np

from .. import checks

#: Default step of the differences (always taken in float64): about the fifth root of
#: machine epsilon, where the stencil's truncation error (eps^4) meets its rounding error
#: (epsilon / eps).
DEFAULT_EPS = 1e-4

#: Five-point central stencil: dJ/dtheta_m ~ sum_s c_s J(theta + s eps e_m) / eps, error O(eps^4).
STENCIL = ((-2, 1 / 12), (-1, -8 / 12), (1, 8 / 12), (2, -1 / 12))

#: Entries smaller than this fraction of the largest gradient entry are compared relative
#: to that fraction: finite differences cannot resolve them better than their rounding.
FLOOR = 1e-3


def numerical_gradient(net, X, T, backend, eps):
    """dJ/dtheta by central differences (:data:`STENCIL`), one parameter at a time."""
    grad = np.zeros(net.theta.shape, np.float64)
    for m in range(net.theta.size):
        saved = net.theta[m]
        for step, weight in STENCIL:
            net.theta[m] = saved + step * eps
            J, _ = backend.loss_and_grad(net, X, T)
            grad[m] += weight * J
        net.theta[m] = saved
    return grad / eps


def relative_error(g, g_ref, floor):
    """max_m |g_m - g_ref_m| / max(|g_m|, |g_ref_m|, floor)."""
    g, g_ref = np.asarray(g, np.float64), np.asarray(g_ref, np.float64)
    scale = np.maximum(np.maximum(np.abs(g), np.abs(g_ref)), floor)
    return float(np.max(np.abs(g - g_ref) / scale))


def gradcheck(net, X, Y, backend="scalar", eps=None):
    """Largest relative error between ``backend``'s gradient and central differences.

    The differences are taken in float64 whatever the net's dtype, on a float64 copy of
    the same weights and data (float32 differences would measure float32's rounding, not
    the gradient): a float32 net's gradient then shows its own rounding, about 1e-6.
    Every parameter is perturbed in turn (4 passes each), so keep the net small.  The
    relative error of parameter m is ``|g_m - fd_m| / max(|g_m|, |fd_m|, FLOOR max|fd|)``
    with ``FLOOR = 1e-3``: an entry a thousand times smaller than the largest is compared
    relative to that thousandth, since the differences' rounding error (about
    ``1e-13 |J|`` in float64) would swamp its own relative error.
    """
    module = net._backend(backend)
    X = checks.inputs(X, net.sizes[0], net.dtype)
    T = checks.targets(Y, X.shape[0], net.sizes[-1], net.loss, net.dtype)
    eps = DEFAULT_EPS if eps is None else float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    _, grad = module.loss_and_grad(net, X, T)
    exact = net.astype("float64")
    fd = numerical_gradient(exact, X.astype(np.float64), T.astype(np.float64), module, eps)
    floor = max(FLOOR * np.max(np.abs(fd)), np.finfo(np.float64).tiny)
    return relative_error(grad, fd, floor)
