"""Time data-parallel training over MPI: epochs of the benchmark's wide case (float32 SGD),
with and without ``comm``, and the share of each step spent exchanging gradients.

    pip install ".[mpi]"
    mpiexec -n 1 python scripts/mpi_bench.py     # also times fit without comm
    mpiexec -n 2 python scripts/mpi_bench.py

Rank 0 prints the CPU, the median epoch over ``--epochs`` epochs (after one epoch that
loads the kernels), the time inside ``Sendrecv`` (the exchanges, including waiting for
the partner), and a digest of the weights, which must be the same for every rank count.
Kernel threads per rank: the machine's cores shared among its ranks.

``--leaves`` (no mpiexec needed) times instead what a rank of a larger run would do per
step: ``loss_and_grad`` over one leaf of ``B / L`` samples for L = 1, 2, 4, ... 64, and
one addition of two gradients: the measured inputs of BENCHMARKS.md's extrapolation.
"""
import argparse
import statistics
import time

import numpy as np
from mpi4py import MPI

import scalarbp as sb
from scalarbp.distributed import MICRO_SHARDS, digest
from scalarbp.timing import machine


class Timed:
    """``comm`` with the time spent in ``Sendrecv`` added up."""

    def __init__(self, comm):
        self.comm, self.seconds = comm, 0.0

    def Sendrecv(self, *args, **kwargs):
        start = time.perf_counter()
        self.comm.Sendrecv(*args, **kwargs)
        self.seconds += time.perf_counter() - start

    def __getattr__(self, name):
        return getattr(self.comm, name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1024,1024,1024,10")
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--micro-shards", type=int, default=None, help="default: the library's (4)")
    parser.add_argument("--leaves", action="store_true")
    args = parser.parse_args()
    if args.leaves:
        return leaves(args)
    comm = Timed(MPI.COMM_WORLD)
    rank, ranks = comm.Get_rank(), comm.Get_size()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], args.samples)
    P = sb.MLP(sizes).theta.size
    if rank == 0:
        print(machine())
        print(f"{'-'.join(map(str, sizes))}, {args.samples} samples, batch {args.batch_size}, float32 SGD, "
              f"{args.micro_shards or MICRO_SHARDS} micro-shards, {ranks} rank(s); {P} parameters "
              f"({4 * P / 1e6:.1f} MB a gradient)")

    def epochs(**options):
        net = sb.MLP(sizes, dtype="float32", seed=0)
        fit = dict(batch_size=args.batch_size, optimizer="sgd", lr=0.01, seed=1, **options)
        net.fit(X, y, epochs=1, **fit)  # loads (or compiles) the kernels
        comm.seconds = 0.0
        history = net.fit(X, y, epochs=args.epochs, **fit)
        return statistics.median(history.seconds), comm.seconds / args.epochs, net

    median, exchange, net = epochs(comm=comm, micro_shards=args.micro_shards)
    shares = comm.comm.gather(exchange / median, root=0)
    if rank == 0:
        print(f"with comm: epoch {median:.3f} s (median of {args.epochs}); in Sendrecv "
              f"{100 * min(shares):.0f}-{100 * max(shares):.0f}% of it; weights {digest(net.theta)}")
    if ranks == 1:
        plain, _, _ = epochs()
        print(f"without comm (one call over each minibatch): epoch {plain:.3f} s; with comm / without "
              f"{median / plain:.2f}")


def leaves(args):
    from scalarbp.backends import get

    sizes = [int(s) for s in args.sizes.split(",")]
    net, engine = sb.MLP(sizes, dtype="float32", seed=0), get("scalar")
    rng = np.random.default_rng(0)
    B = args.batch_size
    X = rng.normal(size=(B, sizes[0])).astype(np.float32)
    T = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], B)]
    grad, other = np.empty_like(net.theta), np.ones_like(net.theta)
    print(machine())
    print(f"{'-'.join(map(str, sizes))}, batch {B}, float32; {net.theta.size} parameters")
    L = 1
    while L <= min(64, B):
        m = B // L
        engine.loss_and_grad(net, X[:m], T[:m], grad)
        times = []
        for _ in range(max(5, args.epochs)):
            start = time.perf_counter()
            engine.loss_and_grad(net, X[:m], T[:m], grad)
            times.append(time.perf_counter() - start)
        print(f"L = {L:2d}: one leaf of {m:3d} samples {1e3 * statistics.median(times):7.2f} ms")
        L *= 2
    times = []
    for _ in range(20):
        start = time.perf_counter()
        np.add(grad, other, out=grad)
        times.append(time.perf_counter() - start)
    print(f"one addition of two gradients: {1e3 * statistics.median(times):.2f} ms")


if __name__ == "__main__":
    main()
