"""Where a cuda-backend epoch spends its GPU time, kernel by kernel.

    python scripts/gpu_profile.py --case big-gpu

trains one epoch of a benchmark case (``scalarbp/bench/runs.py: GPU_CASES``) twice: once
untimed (compiling), then with a CUDA event pair around every kernel launch, and prints
each kernel's launches, total milliseconds and share of the summed kernel time, with the
epoch's wall time without the events for comparison.  The events serialise the launches,
so the per-kernel times are what each kernel costs alone.  Needs a GPU.
"""
import argparse
import time
from collections import defaultdict

from numba import cuda

from scalarbp.bench import runs as benchmark
from scalarbp import timing
from scalarbp.backends import cuda as backend


class Timed:
    """A kernel whose launches record their GPU time into ``totals[name]``."""

    def __init__(self, name, kernel, totals):
        self.name, self.kernel, self.totals = name, kernel, totals

    def __getitem__(self, config):
        launch = self.kernel[config]

        def run(*args):
            start, stop = cuda.event(), cuda.event()
            start.record()
            launch(*args)
            stop.record()
            stop.synchronize()
            self.totals[self.name].append(cuda.event_elapsed_time(start, stop))
        return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="big-gpu", choices=list(benchmark.GPU_CASES))
    args = parser.parse_args()
    case = benchmark.GPU_CASES[args.case]
    X, y = timing.data(case)
    epoch = timing.scalarbp_epoch(case, X, y, backend="cuda")
    epoch()
    start = time.perf_counter()
    epoch()
    wall = time.perf_counter() - start
    totals = defaultdict(list)
    real = backend._kernels
    backend._kernels = lambda dtype: {name: Timed(name, k, totals) for name, k in real(dtype).items()}
    try:
        timing.scalarbp_epoch(case, X, y, backend="cuda")()
    finally:
        backend._kernels = real
    summed = sum(sum(t) for t in totals.values())
    print(f"{timing.gpu_name()}: case {case.name} {case.sizes}, N {case.N}, "
          f"batch {case.batch}; epoch {wall * 1e3:.1f} ms untimed, kernels {summed:.1f} ms summed")
    print("| kernel | launches | ms | share |\n|---|---|---|---|")
    for name, t in sorted(totals.items(), key=lambda item: -sum(item[1])):
        print(f"| {name} | {len(t)} | {sum(t):.1f} | {100 * sum(t) / summed:.0f}% |")


if __name__ == "__main__":
    main()
