"""Synchronous data-parallel training over MPI (``fit(..., comm=MPI.COMM_WORLD)``).

Every rank computes part of each minibatch's gradient with the same kernels, the parts
are summed in one fixed order, and every rank applies the same update.  The weights
after training are the same bits on 1, 2, 4, ... ranks:

* **Micro-shards.**  A minibatch of B samples is made of ``L = micro_shards`` leaves,
  leaf k of ``m_k`` samples: ``B / L`` each when L divides B, else ``B // L`` and one more
  for the first ``B % L`` leaves (fewer in an epoch's last minibatch).  Leaf k's value is
  its weight ``w_k`` (its number of samples, or the sum of its sample weights, over ``B / L``) times
  the leaf's J and gradient from the backend's ``loss_and_grad``; the minibatch's J and
  gradient are the sum of the leaves' values divided by the sum of their weights (seed
  004's sum over the batch, grouped by leaf).
* **One tree.**  The leaves are summed in a perfect binary tree,
  ``((v_0 + v_1) + (v_2 + v_3)) + ((v_4 + v_5) + (v_6 + v_7))``.  Rank r of R computes
  leaves ``r L/R .. (r+1) L/R - 1``, a subtree, and sums them in that tree; then
  exchanges with the ranks ``r ^ 1``, ``r ^ 2``, ``r ^ 4``, ... add the subtrees' sums
  level by level up the same tree (recursive halving, then doubling: a reduce-scatter
  and an allgather).  No sum depends on R, only on L, so R must be a power of two no
  larger than L.
* **Each rank its shard.**  The training samples are cut into L contiguous streams, stream
  k of ``N m_k / B`` of them (rounded down at its ends); leaf k of every minibatch comes
  from stream k, shuffled within the stream each epoch
  (seeded by the seed, the epoch and k).  Rank r reads only the rows of its streams, one
  contiguous block of the data: pass X as ``np.load(path, mmap_mode="r")`` and no rank
  reads more than its block.  (The minibatches are not those of ``fit`` without ``comm``,
  which shuffles the whole set, so the weights differ from that fit's as another
  shuffle's would; they never differ between rank counts.)

What it costs: each leaf is a call of its own over ``B / L`` samples, where one rank
without ``comm`` makes one call over B (smaller products, each weight matrix read once
per leaf), plus ``L - 1`` vector additions per step and, per rank, ``2 (R - 1) / R``
gradients' worth of numbers sent and received; BENCHMARKS.md has the measured figures.

Failures: before training, the ranks meet (a rank that does not arrive within
:data:`MEET_SECONDS`, such as one calling ``fit`` without ``comm``, stops every rank with
``MPI_Abort`` and the reason), then compare what they are about to do (network, data
size, a digest of the labels, of sample weights and of sampled rows of X, the
standardizer, the validation data, seed, batch plan, clipping, warm-up and schedule, a
digest of the weights and optimiser state) and every rank raises the same clear error if
any rank failed or disagrees.  During training, a
divergence or Ctrl-C is seen by every rank at the same step (they hold the same numbers)
and raises the usual error on all of them; any other exception on one rank prints the
rank and the error and stops every rank (``MPI_Abort``) rather than leaving the others
waiting.  Checkpoints (:class:`scalarbp.training.Checkpoint`) are written by rank 0 alone.
"""
import os
import socket
import sys
import time
import traceback

import numba
import numpy as np

from .. import checks
from ..backends import python_steps
from ..errors import DivergedError, TrainingInterrupted
from ..plans import digest, rows_digest  # noqa: F401  (the ranks' digests; named here as before)

#: How long a rank waits for the others to reach training (``fit`` with ``comm``) before it
#: stops them all with the reason, instead of waiting for ever.
MEET_SECONDS = 600.0

#: Leaves per minibatch unless told otherwise: up to 4 ranks.  More leaves allow more
#: ranks but cost more on few (measured on the wide case, one rank: 1.6-1.8x the time of
#: fit without comm with 4 leaves, 2.4x with 8; BENCHMARKS.md).
MICRO_SHARDS = 4


def check(comm, micro_shards, batch_size):
    """``(rank, ranks, L)`` after checking the plan."""
    L = checks.integer("micro_shards", micro_shards, 1)
    rank, ranks = comm.Get_rank(), comm.Get_size()
    if L & (L - 1):
        raise ValueError(f"micro_shards must be a power of two, got {L}")
    if ranks & (ranks - 1) or ranks > L:
        raise ValueError(f"the number of MPI ranks must be a power of two no larger than micro_shards={L}, "
                         f"got {ranks} ranks")
    return rank, ranks, L


class Shards:
    """Which samples make each leaf of each minibatch (see the module's notes)."""

    def __init__(self, subset, batch_size, L, rank, ranks):
        N = subset.shape[0]
        self.L, self.m, self.steps, self.B = L, batch_size / L, -(-N // batch_size), batch_size
        self.sizes = batch_size // L + (np.arange(L) < batch_size % L)  # m_k: leaf k's samples per minibatch
        self.full = np.concatenate([[0], np.cumsum(self.sizes)])  # leaf offsets in every minibatch but the last
        bounds = N * self.full // batch_size  # (stream k can give m_k to every minibatch but the last)
        self.streams = [subset[bounds[k]:bounds[k + 1]] for k in range(L)]
        self.leaves = range(rank * L // ranks, (rank + 1) * L // ranks)  # this rank's: rows of its streams only
        last = np.array([len(stream) for stream in self.streams]) - (self.steps - 1) * self.sizes
        self.last = np.concatenate([[0], np.cumsum(last)])  # ... and in the epoch's last

    def order(self, shuffle, seed, epoch):
        """The epoch's sample indices, minibatch after minibatch, each the L leaves in order."""
        streams = self.streams if not shuffle else \
            [stream[np.random.default_rng([seed, epoch, k]).permutation(len(stream))]
             for k, stream in enumerate(self.streams)]
        return np.concatenate([stream[b * m:(b + 1) * m] for b in range(self.steps)
                               for stream, m in zip(streams, self.sizes)])

    def offsets(self, n):
        """Where the leaves start and end in a minibatch of n samples."""
        return self.full if n == self.B else self.last


def stepper(engine, net, data, comm, shards):
    """A stepper (:meth:`scalarbp.backends.Backend.stepper`) whose steps sum the leaves of
    each minibatch over the ranks in the fixed tree."""
    rank, ranks = comm.Get_rank(), comm.Get_size()
    height = (len(shards.leaves) - 1).bit_length()
    free = [(np.empty_like(net.theta), np.empty(2)) for _ in range(height + 2)]
    received = (np.empty_like(net.theta), np.empty(2))

    def leaf(batch, buffer):
        """Leaf value into buffer: (w J and w grad, [w J, w])."""
        grad, sums = buffer
        if batch.shape[0] == 0:
            grad[...] = 0
            sums[...] = 0
            return buffer
        xb, tb, wb = data.gather(batch)
        J, _ = engine.loss_and_grad(net, xb, tb, grad, wb)
        w = (batch.shape[0] if wb is None else float(np.sum(wb, dtype=np.float64))) / shards.m
        if w != 1:  # (a full leaf without sample weights: nothing to scale)
            grad *= net.dtype.type(w)
        sums[0], sums[1] = J * w, w
        return buffer

    def add(left, right):
        for into, term in zip(left, right):
            np.add(into, term, out=into)

    def minibatch(batch, grad):
        """The minibatch's gradient into ``grad`` and its J: the tree's sum over every
        rank's leaves, divided by their weight."""
        offsets, stack = shards.offsets(batch.shape[0]), []
        for k in shards.leaves:  # this rank's subtree, one leaf at a time (a binary counter)
            value, level = leaf(batch[offsets[k]:offsets[k + 1]], free.pop()), 0
            while stack and stack[-1][0] == level:
                _, left = stack.pop()
                add(left, value)
                free.append(value)
                value, level = left, level + 1
            stack.append((level, value))
        [(_, total)] = stack
        up_the_tree(*total)
        summed, (J, weight) = total
        np.divide(summed, net.dtype.type(weight), out=grad)
        free.append(total)
        return J / weight

    def up_the_tree(grad, sums):
        """Join the ranks' subtree sums, level by level: at level k, rank r and partner
        ``r ^ 2^k`` each add half of their common segment of the gradient (recursive
        halving: what each element sums is the same tree on every rank count); then the
        halves travel back (recursive doubling), so every rank holds the whole sum.
        ``2 P (R - 1) / R`` numbers sent per rank, where sending the whole gradient at
        every level would send ``P log2 R``.  The two sums travel whole."""
        theirs, their_sums = received
        segments, lo, hi, distance = [], 0, grad.shape[0], 1
        while distance < ranks:
            partner, mid = rank ^ distance, (lo + hi) // 2
            (keep, give) = ((mid, hi), (lo, mid)) if rank & distance else ((lo, mid), (mid, hi))
            comm.Sendrecv(grad[give[0]:give[1]], dest=partner, recvbuf=theirs[keep[0]:keep[1]], source=partner)
            comm.Sendrecv(sums, dest=partner, recvbuf=their_sums, source=partner)
            np.add(grad[keep[0]:keep[1]], theirs[keep[0]:keep[1]], out=grad[keep[0]:keep[1]])
            np.add(sums, their_sums, out=sums)
            segments.append((lo, hi))
            (lo, hi), distance = keep, distance * 2
        while segments:  # the summed halves, back down: partner ^ 2^k holds the other half
            distance //= 2
            parent_lo, parent_hi = segments.pop()
            other = (parent_lo, lo) if lo > parent_lo else (hi, parent_hi)
            comm.Sendrecv(grad[lo:hi], dest=rank ^ distance, recvbuf=grad[other[0]:other[1]],
                          source=rank ^ distance)
            lo, hi = parent_lo, parent_hi

    def steps(rows, batch_size, grad, hypers, clip):
        return python_steps(net, -(-rows.shape[0] // batch_size),
                            lambda b, grad: minibatch(rows[b * batch_size:(b + 1) * batch_size], grad), grad,
                            hypers, clip)
    return steps


def local_threads(ranks_here):
    """Kernel threads per rank: the cores this process may use, shared among the
    ``ranks_here`` ranks on its machine (two ranks on two cores: one thread each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(numba.config.NUMBA_NUM_THREADS, cores // ranks_here))


class Session:
    """Keeps the ranks together around a fit: :meth:`ready` before training, and what
    happens to an exception (see the module's notes)."""

    def __init__(self, comm):
        if not all(callable(getattr(comm, name, None)) for name in ("Get_rank", "Get_size", "Sendrecv", "allgather",
                                                                      "bcast", "Abort", "Ibarrier")):
            raise TypeError(f"comm must be an mpi4py communicator such as MPI.COMM_WORLD, got {comm!r}")
        self.comm, self.met, self.started, self.threads = comm, False, False, None

    def __enter__(self):
        return self

    def meet(self):
        """Wait for every rank to arrive, at most :data:`MEET_SECONDS`; past it, stop them
        all (a rank that calls ``fit`` without ``comm``, or not at all, never arrives)."""
        arrived = self.comm.Ibarrier()
        deadline = time.monotonic() + MEET_SECONDS
        while not arrived.Test():
            if time.monotonic() > deadline:
                sys.stderr.write(f"scalarbp: MPI rank {self.comm.Get_rank()} of {self.comm.Get_size()}: not every "
                                 f"rank reached fit(..., comm=...) within {MEET_SECONDS:g} s (does every rank call "
                                 f"fit with the same comm?); stopping all ranks\n")
                sys.stderr.flush()
                self.comm.Abort(1)
            time.sleep(0.01)

    def ready(self, plan):
        """Every rank's ``plan`` (a dict) must be rank 0's; raises on every rank if not, or
        if a rank failed before getting here."""
        self.meet()
        reports = self.comm.allgather((None, plan, socket.gethostname()))
        self.met = True
        for rank, (error, _, _) in enumerate(reports):
            if error is not None:
                raise RuntimeError(f"MPI rank {rank} failed before training: {error}")
        plans = [other for _, other, _ in reports]
        differ = sorted(key for key in plan if any(other[key] != plans[0][key] for other in plans))
        if differ:
            raise ValueError(f"the MPI ranks disagree on {', '.join(differ)}: give every rank the same network, "
                             f"data, seed and fit arguments")
        self.threads = numba.get_num_threads()
        numba.set_num_threads(local_threads(sum(host == socket.gethostname() for _, _, host in reports)))
        self.started = True

    def any(self, flag):
        """Whether ``flag`` holds on any rank (every rank calls this at the same point)."""
        return any(self.comm.allgather(bool(flag)))

    def __exit__(self, kind, error, tb):
        if self.threads is not None:
            numba.set_num_threads(self.threads)
        if error is None or isinstance(error, (DivergedError, TrainingInterrupted)):
            return False  # (these happen on every rank at the same step)
        if not self.met:  # the others wait in ready(): tell them, then raise here
            self.meet()
            self.comm.allgather((f"{kind.__name__}: {error}", None, None))
            return False
        if not self.started:  # (ready() raised the same error on every rank)
            return False
        rank, ranks = self.comm.Get_rank(), self.comm.Get_size()
        sys.stderr.write(f"scalarbp: MPI rank {rank} of {ranks} failed during training; stopping all ranks\n"
                         + "".join(traceback.format_exception(kind, error, tb)))
        sys.stderr.flush()
        self.comm.Abort(1)
        return False  # (not reached)
