"""The ``"cuda"`` backend: the scalar form on an NVIDIA GPU, with ``numba.cuda``.

Thread layout, as the notes put it: one thread per ``(sample n, unit i)`` computes
``a_ni = sum_j w_ij h_nj + b_i`` (then ``h_ni = g(a_ni)``) or
``delta_ni = (sum_s delta_ns w_si) g'(a_ni)``; one thread per weight computes
``dPhi/dw_ij = sum_n delta_ni h_nj + l2 w_ij``.  All three sums run through one
shared-memory tile routine, :func:`_kernels`' ``tile_sum``: a block of TILE x TILE
threads stages TILE x TILE tiles of both operands in shared memory and each thread adds
up its element, so that every value read from global memory is used TILE times.

The activations, their derivatives, the softmax and the losses are the same
``register_jitable`` definitions the CPU kernels compile (:mod:`scalarbp.activations`,
:mod:`scalarbp.losses`), and the optimiser step is the CPU's per-parameter rule
(:func:`scalarbp.optimizers.rule`): no formula is written twice.

Training keeps the data, the parameters, the optimiser state and every work buffer on
the device for the whole run.  A step is about ``4 T + 4`` kernel launches for ``T``
layers and no host round trip: the loss and a "diverged" flag stay on the device, the
update kernel skips its work once the flag is set, and the host reads the flag and the
losses once per call of :func:`train_epoch`.

Nothing here is imported unless the backend is asked for.  ``NUMBA_ENABLE_CUDASIM=1``
(set before Numba is imported) runs the same kernels in Numba's CUDA simulator, on the
CPU, for the tests.
"""
import math
import os

import numpy as np

from ..activations import IDENTITY, derivative, activation
from ..losses import SOFTMAX, output_row, outputs_row
from ..optimizers import adam_factors, rule

import numba

try:
    from numba import cuda
except ImportError as err:  # pragma: no cover - only where Numba lacks its CUDA target
    raise ImportError(f"backend 'cuda' needs Numba's CUDA target: pip install 'scalarbp[cuda]' ({err})") from None

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

#: Side of the thread blocks and shared-memory tiles (smaller in the simulator, where each
#: simulated thread is a Python thread).
TILE = 4 if SIMULATOR else 16

#: Threads per block of the one-dimensional kernels.
THREADS = 32 if SIMULATOR else 256


def require_device():
    """Raise a one-line error unless a CUDA device (or the simulator) is there."""
    try:
        available = cuda.is_available()
    except Exception as err:  # the driver itself failed to load  # pragma: no cover
        raise RuntimeError(f"backend 'cuda': the CUDA driver failed to load ({err})") from None
    if not available:
        raise RuntimeError("backend 'cuda' needs an NVIDIA GPU with a working CUDA driver, and none was "
                           "found (or set NUMBA_ENABLE_CUDASIM=1 for Numba's CPU simulator)")


_KERNELS = {}


def _kernels(dtype):
    """The kernels for one parameter dtype (shared-memory tiles are typed at compile time)."""
    if dtype in _KERNELS:
        return _KERNELS[dtype]
    real = numba.from_dtype(np.dtype(dtype))

    @cuda.jit(device=True)
    def tile_sum(A, a_t, B, b_t, p, q, R):
        """sum_r opA[p, r] opB[r, q] for this thread's (p, q), opA = A^T if a_t, opB = B^T if b_t."""
        sA = cuda.shared.array((TILE, TILE), real)
        sB = cuda.shared.array((TILE, TILE), real)
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        p0, q0 = cuda.blockIdx.y * TILE, cuda.blockIdx.x * TILE
        P = A.shape[1] if a_t else A.shape[0]
        Q = B.shape[0] if b_t else B.shape[1]
        acc = real(0)
        for r0 in range(0, R, TILE):
            pa, ra = p0 + ty, r0 + tx  # this thread stages opA[pa, ra] and opB[rb, qb]
            rb, qb = r0 + ty, q0 + tx
            if pa < P and ra < R:
                sA[ty, tx] = A[ra, pa] if a_t else A[pa, ra]
            else:
                sA[ty, tx] = 0
            if rb < R and qb < Q:
                sB[ty, tx] = B[qb, rb] if b_t else B[rb, qb]
            else:
                sB[ty, tx] = 0
            cuda.syncthreads()
            for k in range(TILE):
                acc += sA[ty, k] * sB[k, tx]
            cuda.syncthreads()
        return acc

    @cuda.jit
    def forward_layer(h_below, W, b, a, h, code):
        """a_ni = sum_j h_nj w_ij + b_i, h_ni = g(a_ni): one thread per (n, i)."""
        n, i = cuda.blockIdx.y * TILE + cuda.threadIdx.y, cuda.blockIdx.x * TILE + cuda.threadIdx.x
        s = tile_sum(h_below, False, W, True, n, i, W.shape[1])
        if n < a.shape[0] and i < a.shape[1]:
            a[n, i] = s + b[i]
            h[n, i] = activation(code, a[n, i])

    @cuda.jit
    def delta_layer(delta, W, a_below, h_below, code, below):
        """delta_ni = (sum_s delta_ns w_si) g'(a_ni): one thread per (n, i)."""
        n, i = cuda.blockIdx.y * TILE + cuda.threadIdx.y, cuda.blockIdx.x * TILE + cuda.threadIdx.x
        s = tile_sum(delta, False, W, False, n, i, W.shape[0])
        if n < below.shape[0] and i < below.shape[1]:
            below[n, i] = s * derivative(code, a_below[n, i], h_below[n, i])

    @cuda.jit
    def weight_grad(delta, h_below, W, l2, dW):
        """dPhi/dw_ij = sum_n delta_ni h_nj + l2 w_ij: one thread per weight."""
        i, j = cuda.blockIdx.y * TILE + cuda.threadIdx.y, cuda.blockIdx.x * TILE + cuda.threadIdx.x
        s = tile_sum(delta, True, h_below, False, i, j, delta.shape[0])
        if i < dW.shape[0] and j < dW.shape[1]:
            dW[i, j] = s + l2 * W[i, j]

    @cuda.jit
    def bias_grad(delta, W, db, penalty):
        """db_i = sum_n delta_ni and penalty_i = sum_j w_ij^2: one thread per unit i."""
        i = cuda.grid(1)
        if i < db.shape[0]:
            s = real(0)
            for n in range(delta.shape[0]):
                s += delta[n, i]
            db[i] = s
            w2 = 0.0
            for j in range(W.shape[1]):
                w2 += W[i, j] * W[i, j]
            penalty[i] = w2

    @cuda.jit
    def output_layer(a, f, y, out_code, loss_code, scale, delta, losses):
        """Outputs, per-sample loss and output delta: one thread per sample."""
        n = cuda.grid(1)
        if n < a.shape[0]:
            losses[n] = output_row(a, f, y, out_code, loss_code, scale, delta, n)

    @cuda.jit
    def outputs(a, f, out_code):
        """f_n = g(a_n), softmax across the row: one thread per sample."""
        n = cuda.grid(1)
        if n < a.shape[0]:
            outputs_row(a, f, out_code, n)

    @cuda.jit
    def gather(X, labels, Y, order, start, xb, yb):
        """Row m of the minibatch: X[order[start + m]] and its target (one-hot for labels)."""
        j, m = cuda.grid(2)  # x runs along the row, y over the minibatch
        if m < xb.shape[0]:
            row = order[start + m]
            if j < xb.shape[1]:
                xb[m, j] = X[row, j]
            if j < yb.shape[1]:
                if labels.shape[0] > 0:
                    yb[m, j] = 1 if labels[row] == j else 0
                else:
                    yb[m, j] = Y[row, j]

    @cuda.jit
    def finish_step(losses, penalties, l2, grad, step, state):
        """J of the step (mean loss + penalty) into state.losses[step]; flags a NaN or inf.

        ``state[0]`` is the diverged flag (0 or 1), ``state[1]`` the first failed step.
        One block: threads check slices of the gradient, thread 0 sums the loss in order.
        """
        t = cuda.threadIdx.x
        bad = False
        for m in range(t, grad.shape[0], cuda.blockDim.x):
            if not math.isfinite(grad[m]):
                bad = True
        if bad:
            state[2] = 1
        cuda.syncthreads()
        if t == 0:
            J = 0.0
            for n in range(losses.shape[0]):
                J += losses[n]
            J /= losses.shape[0]
            P = 0.0
            for m in range(penalties.shape[0]):
                P += penalties[m]
            J += 0.5 * l2 * P
            state[3 + step] = J
            if (state[2] != 0 or not math.isfinite(J)) and state[0] == 0:
                state[0] = 1
                state[1] = step

    @cuda.jit
    def update(code, theta, g, s1, s2, lr, h1, h2, h3, step1, bias2, c1, c2, state):
        """The optimiser's rule on every parameter, skipped once the run has diverged."""
        m = cuda.grid(1)
        if m < theta.shape[0] and state[0] == 0:
            theta[m], v1, v2 = rule(code, theta[m], g[m], s1[m] if s1.shape[0] else 0,
                                    s2[m] if s2.shape[0] else 0, lr, h1, h2, h3, step1, bias2, c1, c2)
            if s1.shape[0]:
                s1[m] = v1
            if s2.shape[0]:
                s2[m] = v2

    _KERNELS[dtype] = kernels = dict(forward_layer=forward_layer, delta_layer=delta_layer,
                                     weight_grad=weight_grad, bias_grad=bias_grad, output_layer=output_layer,
                                     outputs=outputs, gather=gather, finish_step=finish_step, update=update)
    return kernels


def _grid2(rows, cols):
    return (-(-cols // TILE), -(-rows // TILE)), (TILE, TILE)


def _grid1(n):
    return -(-n // THREADS), THREADS


class DeviceNet:
    """The net's parameters, gradient and work buffers on the device, for batches of up to
    ``capacity`` samples; per-layer views of the flat vectors as in scalarbp.layout."""

    def __init__(self, net, capacity):
        require_device()
        self.net = net
        self.sizes = net.sizes
        self.capacity = capacity
        self.k = _kernels(net.dtype)
        self.theta = cuda.to_device(net.theta)
        self.grad = cuda.device_array_like(net.theta)
        self.W, self.b = self._views(self.theta)
        self.dW, self.db = self._views(self.grad)
        N, dt = capacity, net.dtype
        self.a = [cuda.device_array((N, d), dt) for d in net.sizes[1:]]
        self.h = [cuda.device_array((N, d), dt) for d in net.sizes[1:]]
        widest = max(net.sizes[1:])
        self.deltas = [cuda.device_array((N, widest), dt) for _ in range(2)]
        self.losses = cuda.device_array(N, dt)
        self.penalties = [cuda.device_array(d, np.float64) for d in net.sizes[1:]]
        self.all_penalties = cuda.device_array(sum(net.sizes[1:]), np.float64)

    def _views(self, flat):
        W, b = [], []
        for k, (w_at, b_at) in enumerate(self.net.layout.offsets):
            d_out, d_in = self.net.layout.weight_shape(k)
            W.append(flat[w_at:b_at].reshape(d_out, d_in))
            b.append(flat[b_at:b_at + d_out])
        return W, b

    def forward(self, X):
        """a and h of every layer for the device batch X (the output layer's h: g(a) or logits)."""
        N = X.shape[0]
        h_below = X
        codes = self.net.codes
        for k in range(len(self.W)):
            a, h = self.a[k][:N], self.h[k][:N]
            code = IDENTITY if codes[k] == SOFTMAX else codes[k]
            grid, block = _grid2(N, a.shape[1])
            self.k["forward_layer"][grid, block](h_below, self.W[k], self.b[k], a, h, code)
            h_below = h

    def backward(self, X, Y, step, state):
        """Output delta, the delta recursion and the gradient of one batch; J into state."""
        net, N, T = self.net, X.shape[0], len(self.W)
        codes = net.codes
        K = self.sizes[-1]
        delta = self.deltas[0][:N, :K]
        grid, block = _grid1(N)
        self.k["output_layer"][grid, block](self.a[-1][:N], self.h[-1][:N], Y, codes[-1], net.loss_code,
                                            net.dtype.type(1.0 / N), delta, self.losses[:N])
        at = 0
        for k in range(T - 1, -1, -1):
            d_out, d_in = self.sizes[k + 1], self.sizes[k]
            h_below = X if k == 0 else self.h[k - 1][:N]
            grid, block = _grid2(d_out, d_in)
            self.k["weight_grad"][grid, block](delta, h_below, self.W[k], net.l2, self.dW[k])
            grid, block = _grid1(d_out)
            self.k["bias_grad"][grid, block](delta, self.W[k], self.db[k], self.all_penalties[at:at + d_out])
            at += d_out
            if k > 0:
                below = self.deltas[(T - k) % 2][:N, :d_in]
                grid, block = _grid2(N, d_in)
                self.k["delta_layer"][grid, block](delta, self.W[k], self.a[k - 1][:N], h_below, codes[k - 1],
                                                   below)
                delta = below
        self.k["finish_step"][1, THREADS](self.losses[:N], self.all_penalties, net.l2, self.grad, step, state)

    def step(self, X, Y, step, state, optimizer_args):
        self.forward(X)
        self.backward(X, Y, step, state)
        code, s1, s2, lr, h1, h2, h3, step1, bias2, c1, c2 = optimizer_args
        grid, block = _grid1(self.theta.shape[0])
        self.k["update"][grid, block](code, self.theta, self.grad, s1, s2, lr, h1, h2, h3, step1, bias2, c1, c2,
                                      state)


def _device_net(net, N):
    held = getattr(net, "_device", None)
    if held is None or held.capacity < N or held.sizes != net.sizes or held.net is not net:
        held = DeviceNet(net, N)
        net._device = held
    else:
        held.theta.copy_to_device(net.theta)
    return held


def forward(net, X):
    """Outputs ``(N, d_T)`` for inputs ``X`` ``(N, d_0)``."""
    dev = _device_net(net, X.shape[0])
    N = X.shape[0]
    dX = cuda.to_device(X)
    dev.forward(dX)
    out = cuda.device_array((N, net.sizes[-1]), net.dtype)
    grid, block = _grid1(N)
    dev.k["outputs"][grid, block](dev.a[-1][:N], out, net.codes[-1])
    return out.copy_to_host()


def _state(steps):
    return cuda.to_device(np.zeros(3 + steps, np.float64))


def loss_and_grad(net, X, T, grad=None):
    """``(J, grad)``: the penalised mean loss and its gradient, flat like ``net.theta``."""
    dev = _device_net(net, X.shape[0])
    state = _state(1)
    dX, dY = cuda.to_device(X), cuda.to_device(T)
    dev.forward(dX)
    dev.backward(dX, dY, 0, state)
    grad = np.empty_like(net.theta) if grad is None else grad
    dev.grad.copy_to_host(grad)
    return float(state.copy_to_host()[3]), grad


class Trainer:
    """Minibatch steps on the device for one ``fit``: the data is uploaded once."""

    def __init__(self, net, X, labels, Y, batch_size):
        self.net = net
        self.dev = _device_net(net, batch_size)
        self.X = cuda.to_device(X)
        self.labels = cuda.to_device(labels)
        self.Y = cuda.to_device(Y)
        self.xb = cuda.device_array((batch_size, net.sizes[0]), net.dtype)
        self.yb = cuda.device_array((batch_size, net.sizes[-1]), net.dtype)
        opt = net.optimizer
        opt.init_state(net.theta)
        empty = cuda.device_array(0, net.dtype)
        self.states = {name: cuda.to_device(opt.state[name]) for name in opt.state_names}
        self.s1 = self.states.get(opt.state_names[0], empty) if opt.state_names else empty
        self.s2 = self.states[opt.state_names[1]] if len(opt.state_names) > 1 else empty

    def steps(self, rows, batch_size, grad):
        """Run the minibatches of ``rows``; returns (steps applied, losses of the steps tried)."""
        net, opt, dev = self.net, self.net.optimizer, self.dev
        order = cuda.to_device(rows)
        n_steps = -(-rows.shape[0] // batch_size)
        state = _state(n_steps)
        width = max(net.sizes[0], net.sizes[-1])
        for b in range(n_steps):
            start = b * batch_size
            n = min(batch_size, rows.shape[0] - start)
            xb, yb = self.xb[:n], self.yb[:n]
            grid, block = (-(-width // TILE), -(-n // TILE)), (TILE, TILE)
            self.dev.k["gather"][grid, block](self.X, self.labels, self.Y, order, start, xb, yb)
            code, _, _, lr, h1, h2, h3, t = opt.arguments(net.theta)
            factors = adam_factors(lr, h1, h2, t + b + 1)
            dev.step(xb, yb, b, state, (code, self.s1, self.s2, lr, h1, h2, h3) + factors)
        result = state.copy_to_host()
        done = int(result[1]) if result[0] else n_steps
        opt.t += done
        dev.theta.copy_to_host(net.theta)
        for name, array in self.states.items():
            array.copy_to_host(opt.state[name])
        return done, result[3:3 + n_steps]
