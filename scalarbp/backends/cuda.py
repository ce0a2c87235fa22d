"""The ``"cuda"`` backend: the scalar form on an NVIDIA GPU, with ``numba.cuda``.

Thread layout, as the notes put it: each thread computes an RB x RB patch of
``a_ni = sum_j w_ij h_nj + b_i`` (then ``h_ni = g(a_ni)``), of
``delta_ni = (sum_s delta_ns w_si) g'(a_ni)`` (samples n, units i), or of
``dPhi/dw_ij = sum_n delta_ni h_nj + l2 w_ij`` (weights).  All three sums run through one
shared-memory routine, :func:`_kernels`' ``tile_sums``: a block of TILE x TILE threads
computes BLOCK x BLOCK results, staging slices of both operands in shared memory, and
each thread keeps its RB x RB sums in registers (measured on an H200: the big case's
three sums at about 5 TFLOP/s with one result per thread).

The activations, their derivatives, the softmax and the losses are the same
``register_jitable`` definitions the CPU kernels compile (:mod:`scalarbp.activations`,
:mod:`scalarbp.definitions.losses`), and the optimiser step is the CPU's per-parameter rule
(:func:`scalarbp.optimizers.rule`): no formula is written twice.

Training keeps the data, the parameters, the optimiser state and every work buffer on
the device for the whole run.  A step is about ``4 T + 4`` kernel launches for ``T``
layers and no host round trip: the loss and a "diverged" flag stay on the device, the
update kernel skips its work once the flag is set, and the host reads the flag and the
losses once per call of :meth:`Trainer.steps` (up to 256 steps).

Nothing here is imported unless the backend is asked for.  ``NUMBA_ENABLE_CUDASIM=1``
(set before Numba is imported) runs the same kernels in Numba's CUDA simulator, on the
CPU, for the tests.
"""
import math
import os
from collections import namedtuple

import numpy as np

from ..definitions.activations import IDENTITY, derivative, activation
from ..definitions.layout import B_AT, W_AT
from ..definitions.losses import SOFTMAX, output_row, outputs_row
from ..definitions.updates import coefficients, rule
from . import BAD_GRADIENT, BAD_UPDATE, Backend
from .per_example import outer_products_row

import numba

try:
    from numba import cuda
except ImportError as err:  # pragma: no cover - only where Numba lacks its CUDA target
    raise ImportError(f"backend 'cuda' needs Numba's CUDA target: pip install 'scalarbp[cuda]' ({err})") from None

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

#: Side of the thread blocks and of the shared-memory tiles' short side (smaller in the
#: simulator, where each simulated thread is a Python thread).
TILE = 4 if SIMULATOR else 16

#: Results per thread along each side (register blocking), and the side of a block's
#: results, BLOCK x BLOCK.
RB = 4
BLOCK = TILE * RB

#: The shared slices' padded sides (one spare column: no bank conflicts on transposed stores).
TILE_PADDED, BLOCK_PADDED = TILE + 1, BLOCK + 1

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


#: The kernels of one parameter dtype (:func:`_kernels`).
Kernels = namedtuple("Kernels", "forward_layer delta_layer weight_grad bias_grad output_layer outputs gather "
                                "finish_step update outer_products")


def _kernels(dtype):
    """The kernels for one parameter dtype: those that hold values in shared or local
    memory are typed at compile time (:func:`_layer_kernels`), the others are the module's."""
    if dtype not in _KERNELS:
        _KERNELS[dtype] = Kernels(*_layer_kernels(numba.from_dtype(np.dtype(dtype))), output_layer, outputs, gather,
                                  finish_step, update, outer_products)
    return _KERNELS[dtype]


@cuda.jit(device=True)
def entry(X, transposed, i, j, rows, cols):
    """opX[i, j], opX = X^T if ``transposed`` else X, or 0 outside its ``rows x cols``."""
    if i >= rows or j >= cols:
        return 0
    return X[j, i] if transposed else X[i, j]


def _tile_sums(real):
    """The tiled product of the layer kernels, for values of type ``real``."""
    @cuda.jit(device=True)
    def tile_sums(A, a_t, B, b_t, P, Q, R, acc):
        """acc[u, v] = sum_r opA[p_u, r] opB[r, q_v] for this thread's RB x RB results,
        p_u = p0 + ty + TILE u and q_v = q0 + tx + TILE v, where the block's BLOCK x BLOCK
        results start at (p0, q0); opA = A^T if a_t, opB = B^T if b_t (P x R and R x Q).

        Each step stages a BLOCK x TILE slice of opA and a TILE x BLOCK slice of opB in
        shared memory (each thread loads RB values of each, consecutive threads reading
        consecutive addresses whichever way the operand is stored), then every thread adds
        TILE terms to each of its RB x RB sums from registers: every value read from shared
        memory is used RB times, every value read from global memory BLOCK times.  Each sum
        runs over r in order, as the CPU kernels' do.
        """
        sA = cuda.shared.array((BLOCK, TILE_PADDED), real)
        sB = cuda.shared.array((TILE, BLOCK_PADDED), real)
        a = cuda.local.array(RB, real)
        b = cuda.local.array(RB, real)
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        p0, q0 = cuda.blockIdx.y * BLOCK, cuda.blockIdx.x * BLOCK
        for u in range(RB):
            for v in range(RB):
                acc[u, v] = 0
        for r0 in range(0, R, TILE):
            for u in range(RB):  # consecutive tx read consecutive addresses of A and of B
                pp, rr = (tx + TILE * u, ty) if a_t else (ty + TILE * u, tx)
                sA[pp, rr] = entry(A, a_t, p0 + pp, r0 + rr, P, R)
                qq, rr = (ty + TILE * u, tx) if b_t else (tx + TILE * u, ty)
                sB[rr, qq] = entry(B, b_t, r0 + rr, q0 + qq, R, Q)
            cuda.syncthreads()
            for k in range(TILE):
                for u in range(RB):
                    a[u] = sA[ty + TILE * u, k]
                    b[u] = sB[k, tx + TILE * u]
                for u in range(RB):
                    for v in range(RB):
                        acc[u, v] += a[u] * b[v]
            cuda.syncthreads()
    return tile_sums


@cuda.jit(device=True)
def result(u, v):
    """Row and column of this thread's result (u, v) of its RB x RB patch (see tile_sums)."""
    return (cuda.blockIdx.y * BLOCK + cuda.threadIdx.y + TILE * u,
            cuda.blockIdx.x * BLOCK + cuda.threadIdx.x + TILE * v)


@cuda.jit(device=True)
def forward_store(s, n, i, a, b, h, code):
    """a_ni = sum_j h_nj w_ij + b_i (``s`` is the sum), h_ni = g(a_ni)."""
    a[n, i] = s + b[i]
    h[n, i] = activation(code, a[n, i])


@cuda.jit(device=True)
def delta_store(s, n, i, below, a_below, h_below, code):
    """delta_ni = (sum_s delta_ns w_si) g'(a_ni) (``s`` is the sum)."""
    below[n, i] = s * derivative(code, a_below[n, i], h_below[n, i])


@cuda.jit(device=True)
def weight_grad_store(s, i, j, dW, W, state, l2):
    """dPhi/dw_ij = sum_n delta_ni h_nj + l2 w_ij (``s`` is the sum); a NaN or inf raises
    the step's "bad gradient" flag, ``state[BAD_FLAG]``."""
    dW[i, j] = s + l2 * W[i, j]
    if not math.isfinite(dW[i, j]):
        state[BAD_FLAG] = 1


def _summing_kernel(real, tile_sums, a_t, b_t, store):
    """A kernel ``(A, B, out, P, Q, x)``: the sums of opA opB (:func:`_tile_sums`, opA = A^T
    if ``a_t``, opB = B^T if ``b_t``), RB x RB of them per thread, each handed with its row
    and column to ``store(s, r, c, out, P, Q, x)``, which writes ``out[r, c]``."""
    @cuda.jit
    def kernel(A, B, out, P, Q, x):
        acc = cuda.local.array((RB, RB), real)
        rows, cols = out.shape
        tile_sums(A, a_t, B, b_t, rows, cols, A.shape[0] if a_t else A.shape[1], acc)
        for u in range(RB):
            for v in range(RB):
                r, c = result(u, v)
                if r < rows and c < cols:
                    store(acc[u, v], r, c, out, P, Q, x)
    return kernel


def _layer_kernels(real):
    """The forward, delta and gradient sums of one layer, for values of type ``real``:
    ``(forward_layer, delta_layer, weight_grad, bias_grad)``.  The first three take
    ``(h_below, W, a, b, h, code)``, ``(delta, W, below, a_below, h_below, code)`` and
    ``(delta, h_below, dW, W, state, l2)``."""
    tile_sums = _tile_sums(real)
    forward_layer = _summing_kernel(real, tile_sums, False, True, forward_store)
    delta_layer = _summing_kernel(real, tile_sums, False, False, delta_store)
    weight_grad = _summing_kernel(real, tile_sums, True, False, weight_grad_store)

    @cuda.jit
    def bias_grad(delta, W, l2, db, penalty, state):
        """db_i = sum_n delta_ni, and penalty_i = sum_j w_ij^2 when l2 is not 0: one thread
        per unit i; a NaN or inf db_i raises ``state[BAD_FLAG]``."""
        i = cuda.grid(1)
        if i < db.shape[0]:
            s = real(0)
            for n in range(delta.shape[0]):
                s += delta[n, i]
            db[i] = s
            if not math.isfinite(s):
                state[BAD_FLAG] = 1
            w2 = 0.0
            if l2 != 0:
                for j in range(W.shape[1]):
                    w2 += W[i, j] * W[i, j]
            penalty[i] = w2
    return forward_layer, delta_layer, weight_grad, bias_grad


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
def finish_step(losses, penalties, l2, step, state):
    """J of the step (mean loss + penalty) into ``state[LOSSES + step]``; a NaN or inf J or a
    raised ``state[BAD_FLAG]`` marks the run diverged.

    ``state[STOP_REASON]`` says why the run stopped (0: it did not; else ``BAD_GRADIENT`` or
    ``BAD_UPDATE``), ``state[STOP_STEP]`` the first failed step.  One
    block: each thread sums a strided share of the losses and penalties, thread 0 adds
    the shares in order, so J does not depend on timing.
    """
    t = cuda.threadIdx.x
    shares = cuda.shared.array((2, THREADS), numba.float64)
    loss, penalty = 0.0, 0.0
    for n in range(t, losses.shape[0], THREADS):
        loss += losses[n]
    for m in range(t, penalties.shape[0], THREADS):
        penalty += penalties[m]
    shares[0, t], shares[1, t] = loss, penalty
    cuda.syncthreads()
    if t == 0:
        loss, penalty = 0.0, 0.0
        for u in range(THREADS):
            loss += shares[0, u]
            penalty += shares[1, u]
        J = loss / losses.shape[0] + 0.5 * l2 * penalty
        state[LOSSES + step] = J
        if (state[BAD_FLAG] != 0 or not math.isfinite(J)) and state[STOP_REASON] == 0:
            state[STOP_REASON] = BAD_GRADIENT
            state[STOP_STEP] = step
        state[BAD_FLAG] = 0


@cuda.jit
def update(code, theta, g, s0, s1, s2, hyper, t, step, state):
    """The optimiser's rule (:func:`scalarbp.optimizers.rule`) on every parameter at step
    ``t``, skipped once the run has diverged; a new parameter that is NaN or inf marks
    the run diverged in its update (``state[STOP_REASON] = BAD_UPDATE``, the caller rolls back)."""
    m = cuda.grid(1)
    if m < theta.shape[0] and state[STOP_REASON] == 0:
        rule(code, theta, g, s0, s1, s2, m, coefficients(code, hyper, t, theta))
        if not math.isfinite(theta[m]):
            state[STOP_REASON] = BAD_UPDATE
            state[STOP_STEP] = step


@cuda.jit
def outer_products(delta, h_below, w_at, b_at, G, norms):
    """Each sample's outer products and squared gradient norm
    (:func:`.per_example.outer_products_row`): one thread per sample."""
    n = cuda.grid(1)
    if n < delta.shape[0]:
        outer_products_row(delta, h_below, w_at, b_at, G, norms, n)


def _grid2(rows, cols):
    """Launch configuration of a (rows, cols) result: TILE x TILE threads per BLOCK x BLOCK results."""
    return (-(-cols // BLOCK), -(-rows // BLOCK)), (TILE, TILE)


def _grid1(n):
    """Launch configuration of one thread per entry of a length-n result."""
    return -(-n // THREADS), THREADS


class DeviceNet:
    """The net's parameters, gradient and work buffers on the device, for batches of up to
    ``capacity`` samples; per-layer views of the flat vectors as in :mod:`scalarbp.layout`."""

    def __init__(self, net, capacity):
        self.net = net
        self.key = (net.sizes, net.dtype)
        self.capacity = capacity
        self.k = _kernels(net.dtype)
        self.theta = cuda.to_device(net.theta)
        self.grad = cuda.device_array_like(net.theta)
        self.W, self.b = net.layout.views(self.theta)
        self.dW, self.db = net.layout.views(self.grad)
        N, dt = capacity, net.dtype
        self.a = [cuda.device_array((N, d), dt) for d in net.sizes[1:]]
        self.h = [cuda.device_array((N, d), dt) for d in net.sizes[1:]]
        widest = max(net.sizes[1:])
        self.deltas = [cuda.device_array((N, widest), dt) for _ in range(2)]
        self.losses = cuda.device_array(N, dt)
        self.penalties = cuda.device_array(sum(net.sizes[1:]), np.float64)

    def fits(self, net, N):
        return self.key == (net.sizes, net.dtype) and self.capacity >= N

    def plan(self, X, Y, state):
        """The launches of one step (forward, output layer, backward, the step's J) for the
        device batch ``(X, Y)``: a list of ``(kernel, launch configuration, arguments)``, where
        :data:`STEP` stands for the step number.  Configured once per batch buffer and
        reused, a step costs the launches and nothing else on the host."""
        net, N, T, k = self.net, X.shape[0], len(self.W), self.k
        codes = net.codes
        launches = self.forward_launches(X)
        delta = self.deltas[0][:N, :net.sizes[-1]]
        launches.append((k.output_layer, _grid1(N), (self.a[-1][:N], self.h[-1][:N], Y, codes[-1],
                                                        net.loss_code, net.dtype.type(1.0 / N), delta,
                                                        self.losses[:N])))
        at = 0
        for layer in range(T - 1, -1, -1):
            d_out, d_in = net.sizes[layer + 1], net.sizes[layer]
            h_below = X if layer == 0 else self.h[layer - 1][:N]
            launches.append((k.weight_grad, _grid2(d_out, d_in),
                             (delta, h_below, self.dW[layer], self.W[layer], state, net.l2)))
            launches.append((k.bias_grad, _grid1(d_out), (delta, self.W[layer], net.l2, self.db[layer],
                                                             self.penalties[at:at + d_out], state)))
            at += d_out
            if layer > 0:
                below = self.deltas[(T - layer) % 2][:N, :d_in]
                launches.append((k.delta_layer, _grid2(N, d_in),
                                 (delta, self.W[layer], below, self.a[layer - 1][:N], h_below, codes[layer - 1])))
                delta = below
        launches.append((k.finish_step, (1, THREADS), (self.losses[:N], self.penalties, net.l2, STEP, state)))
        return launches

    def forward_launches(self, X):
        """The launches of the forward pass for the device batch X: a and h of every layer
        (the output layer's h: g(a), or the logits for softmax)."""
        N, codes = X.shape[0], self.net.codes
        launches, h_below = [], X
        for layer in range(len(self.W)):
            a, h = self.a[layer][:N], self.h[layer][:N]
            code = IDENTITY if codes[layer] >= SOFTMAX else codes[layer]  # (softmax and exp: the logits)
            launches.append((self.k.forward_layer, _grid2(N, a.shape[1]),
                             (h_below, self.W[layer], a, self.b[layer], h, code)))
            h_below = h
        return launches


#: Stands for the step number in a :meth:`DeviceNet.plan`.
STEP = object()


def _run(launches, step):
    # Configured at each launch: the simulator's kernels keep one configuration at a time.
    for kernel, config, arguments in launches:
        kernel[config](*(step if a is STEP else a for a in arguments))


#: Entries of a run's state array on the device (:func:`_state`): why the run stopped (0:
#: it did not; else BAD_GRADIENT or BAD_UPDATE), its first failed step, the current step's
#: "bad gradient" flag, then from LOSSES on each step's J.
STOP_REASON, STOP_STEP, BAD_FLAG, LOSSES = 0, 1, 2, 3


def _state(steps):
    """The run's state on the device (entries :data:`STOP_REASON` ... :data:`LOSSES`)."""
    return cuda.to_device(np.zeros(LOSSES + steps, np.float64))


class Cuda(Backend):
    """The scalar form on an NVIDIA GPU (see the module docstring)."""

    name = "cuda"

    def require(self):
        require_device()

    def device_net(self, net, N):
        """The net's device copy for batches of ``N``, with the current parameters."""
        held = net.backend_state.get(self.name)
        dev = self.held(net, lambda dev: dev.fits(net, N), lambda: DeviceNet(net, N))
        if dev is held:
            dev.theta.copy_to_device(net.theta)
        return dev

    def forward(self, net, X):
        N = X.shape[0]
        dev = self.device_net(net, N)
        _run(dev.forward_launches(cuda.to_device(X)), 0)
        out = cuda.device_array((N, net.sizes[-1]), net.dtype)
        dev.k.outputs[_grid1(N)](dev.a[-1][:N], out, net.codes[-1])
        return out.copy_to_host()

    def loss_and_grad(self, net, X, T, grad=None, weights=None):
        if weights is not None:
            raise RuntimeError("sample weights are not available on the cuda backend; use a CPU backend")
        dev = self.device_net(net, X.shape[0])
        state = _state(1)
        _run(dev.plan(cuda.to_device(X), cuda.to_device(T), state), 0)
        grad = np.empty_like(net.theta) if grad is None else grad
        dev.grad.copy_to_host(grad)
        return float(state.copy_to_host()[LOSSES]), grad

    def per_example(self, net, X, T, G):
        """Seed 001 before the batch sum (:mod:`.per_example`), on the device: the forward
        pass, the output deltas without 1/N, the delta recursion, and per layer each
        sample's outer products and their norms."""

        N, table = X.shape[0], net.layout.table
        dev = self.device_net(net, N)
        k, d_X = dev.k, cuda.to_device(X)
        launches = dev.forward_launches(d_X)
        delta = dev.deltas[0][:N, :net.sizes[-1]]
        launches.append((k.output_layer, _grid1(N), (dev.a[-1][:N], dev.h[-1][:N], cuda.to_device(T),
                                                        net.codes[-1], net.loss_code, net.dtype.type(1.0), delta,
                                                        dev.losses[:N])))
        d_G = cuda.device_array(G.shape, net.dtype) if G.shape[0] else cuda.device_array((0, 0), net.dtype)
        norms = cuda.to_device(np.zeros(N))
        T_layers = len(dev.W)
        for layer in range(T_layers - 1, -1, -1):
            h_below = d_X if layer == 0 else dev.h[layer - 1][:N]
            launches.append((k.outer_products, _grid1(N), (delta, h_below, int(table[layer, W_AT]),
                                                              int(table[layer, B_AT]), d_G, norms)))
            if layer > 0:
                below = dev.deltas[(T_layers - layer) % 2][:N, :net.sizes[layer]]
                launches.append((k.delta_layer, _grid2(N, net.sizes[layer]),
                                 (delta, dev.W[layer], below, dev.a[layer - 1][:N], h_below, net.codes[layer - 1])))
                delta = below
        _run(launches, 0)
        if G.shape[0]:
            d_G.copy_to_host(G)
        return dev.losses[:N].copy_to_host(), norms.copy_to_host()

    def stepper(self, net, data):
        """Steps on the device (:class:`Trainer`), the data uploaded once; data on disk
        (a memmap) goes step by step instead."""
        if not data.in_memory:
            return super().stepper(net, data)
        X, labels, Y, weights = data.whole()
        if weights.shape[0]:
            raise RuntimeError("sample weights are not available on the cuda backend; use a CPU backend")
        return Trainer(self, net, X, labels, Y).steps


class Trainer:
    """Minibatch steps on the device for one ``fit``: the data is uploaded once."""

    def __init__(self, backend, net, X, labels, Y):
        self.backend, self.net = backend, net
        self.X, self.labels, self.Y = cuda.to_device(X), cuda.to_device(labels), cuda.to_device(Y)
        self.state = _state(0)
        self.dev, self.plans = None, {}

    def steps(self, rows, batch_size, grad, hypers, clip):
        """Run the minibatches of ``rows``; returns (steps applied, losses of the steps
        tried, why it stopped early or 0), as :meth:`.Backend.stepper` describes."""
        net, opt = self.net, self.net.optimizer
        if clip:
            raise RuntimeError("gradient clipping is not available on the cuda backend; use a CPU backend")
        dev = self.backend.device_net(net, batch_size)
        if dev is not self.dev:  # (validation in between may have grown the device copy)
            self.dev, self.plans = dev, {}
        code, states, _, t = opt.arguments(net.theta)
        d_states = [cuda.to_device(s) for s in states]
        d_hypers = cuda.to_device(hypers)
        order = cuda.to_device(rows)
        n_steps = -(-rows.shape[0] // batch_size)
        if self.state.shape[0] < 3 + n_steps:
            self.state, self.plans = _state(n_steps), {}
        else:
            self.state.copy_to_device(np.zeros(self.state.shape[0]))
        state = self.state
        width = max(net.sizes[0], net.sizes[-1])
        for b in range(n_steps):
            start = b * batch_size
            n = min(batch_size, rows.shape[0] - start)
            xb, yb, launches = self.plan(dev, n)
            dev.k.gather[(-(-width // TILE), -(-n // TILE)), (TILE, TILE)](self.X, self.labels, self.Y, order,
                                                                               start, xb, yb)
            _run(launches, b)
            dev.k.update[_grid1(net.theta.shape[0])](code, dev.theta, dev.grad, *d_states, d_hypers[b],
                                                        t + b + 1, b, state)
        result = state.copy_to_host()
        reason = int(result[STOP_REASON])
        done = int(result[STOP_STEP]) if reason else n_steps
        opt.advance(done, reason)
        dev.theta.copy_to_host(net.theta)
        for host, device in zip(states, d_states):
            device.copy_to_host(host)
        return done, result[LOSSES:LOSSES + n_steps], reason

    def plan(self, dev, n):
        """For minibatches of ``n`` samples: the batch's device buffers and the step's
        launches (one set per batch size seen)."""
        if n not in self.plans:
            xb = cuda.device_array((n, self.net.sizes[0]), self.net.dtype)
            yb = cuda.device_array((n, self.net.sizes[-1]), self.net.dtype)
            self.plans[n] = (xb, yb, dev.plan(xb, yb, self.state))
        return self.plans[n]


BACKEND = Cuda()
