"""Profiling runs: scalarbp against PyTorch, scikit-learn and the NumPy row backend.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py --json bench.json --png bench.png

runs the performance issue's four cases (digits, mnist1d, mnist, wide) and prints a
Markdown table of seconds per epoch, the ratio to PyTorch, GFLOP/s and the share of
NumPy's float32 GEMM peak, with the BLAS floor (the epoch's matrix products alone
through NumPy's BLAS).  ``--sweep`` adds batch sizes 1..1024, depth, width and a
float64 case; ``--threads 1`` runs everything on one thread (default: all of Numba's;
NumPy's BLAS too when threadpoolctl is installed);
``--phases`` breaks scalarbp's epoch into forward, backward and update; ``--busy`` times
each case beside a competing 2-thread PyTorch job against its quiet one-thread time;
``--memory``
measures each case's peak RSS in a fresh process; ``--compile`` times a new process's first fit and predict
with an empty and a warm Numba cache, and lists what each compiled (alone, unless
``--cases`` names cases to time as well; ``--compile float64`` in one dtype only).

Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only, or NumPy's BLAS (the
peak and the row backend) runs a slower kernel; the script says which kernel it got.
Needs ``pip install ".[bench]"`` for PyTorch, scikit-learn and matplotlib; what is
missing is skipped.
"""
import argparse
import json
import os
import sys

import numba

from scalarbp.bench import runs as benchmark, timing


def parser():
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+",
                        choices=list(benchmark.CASES) + list(benchmark.GPU_CASES) + list(benchmark.DP_CASES),
                        help="default: the four CPU cases, or the GPU cases with --device cuda")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: scalarbp's cuda backend against PyTorch CUDA")
    parser.add_argument("--sweep", action="store_true", help="also batch sizes, depth, width, float64")
    parser.add_argument("--repeats", type=int, default=7, help="epochs timed per implementation (median)")
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    parser.add_argument("--only-torch", action="store_true",
                        help="skip scikit-learn and the NumPy row backend (PyTorch and the BLAS floor only)")
    parser.add_argument("--phases", action="store_true", help="forward / backward / update breakdown")
    parser.add_argument("--memory", action="store_true", help="RSS of each case's epoch in a fresh process")
    parser.add_argument("--compile", nargs="*", choices=benchmark.COMPILE_DTYPES, metavar="DTYPE",
                        help="cold and warm start-up times and compiled signatures, in these dtypes (default: "
                             "both; alone unless --cases is given)")
    parser.add_argument("--busy", action="store_true",
                        help="each case's epoch beside a competing 2-thread PyTorch job (mean of 8), against its "
                             "quiet one-thread time")
    parser.add_argument("--dp", action="store_true",
                        help="DP-SGD (clip 1, noise 1.1) beside plain scalarbp and Opacus, on the DP cases")
    parser.add_argument("--json", help="write every number to this file")
    parser.add_argument("--png", help="bar chart of the ratios to PyTorch (needs matplotlib)")
    return parser


def main(argv=None):
    command = parser()
    args = command.parse_args(argv)
    if args.repeats < 1:
        command.error(f"--repeats must be at least 1 (epochs timed per implementation), got {args.repeats}")
    if args.compile == []:  # --compile alone: every dtype
        args.compile = benchmark.COMPILE_DTYPES

    if args.dp:
        return dp_report(args)
    if args.compile is not None and not args.cases:  # the start-up table alone (CI prints it)
        print(f"machine: {timing.machine()}")
        results = benchmark.compile_times(dtypes=args.compile)
        print_compile_times(results)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": timing.machine(), "compile_seconds": results}, f, indent=1)
        return
    report, blas_limit = setup(args)  # noqa: F841  (the limit held for the run)
    results = timed_cases(args, report)
    print()
    print(timing.table(results, report["gemm_peak_gflops"], benchmark.TARGETS))
    extra_tables(args, report, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.png:
        chart(report, args.png)


def setup(args):
    """Threads for every library, the BLAS warnings, and the report's machine and peak
    (printed); returns the report and the BLAS thread limit, to be held for the run."""
    timing.start_torch(args.threads)  # before any Numba parallel region: see its docstring
    numba.set_num_threads(args.threads)
    blas_limit = None
    try:  # NumPy's BLAS (the peak, the floor, the row backend) on as many threads as the rest
        from threadpoolctl import threadpool_limits
        blas_limit = threadpool_limits(limits=args.threads, user_api="blas")
    except ImportError:
        print("warning: threadpoolctl is not installed; NumPy's BLAS uses its own thread count",
              file=sys.stderr)
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if name in os.environ:
            print(f"warning: {name} is set; NumPy's BLAS may run a slow kernel (unset it for benchmarks)",
                  file=sys.stderr)
    peak = timing.gemm_peak()
    report = {"machine": timing.machine(), "blas": timing.blas_info(), "threads": args.threads,
              "gemm_peak_gflops": peak, "cases": []}
    print(f"machine: {report['machine']}\nBLAS: {report['blas']}\nNumPy float32 GEMM peak: {peak:.0f} GFLOP/s "
          f"(2048^3); threads: {args.threads}\n")
    return report, blas_limit


def timed_cases(args, report):
    """Each case timed beside its competitors: ``[(case, times)]``, their entries in ``report``."""
    known = {**benchmark.CASES, **benchmark.GPU_CASES}
    names = args.cases or list(benchmark.GPU_CASES if args.device == "cuda" else benchmark.CASES)
    cases = [known[name] for name in names] + (benchmark.sweep_cases() if args.sweep else [])
    if args.device == "cuda":
        competitors = ("torch", "jax")
    else:
        competitors = ("torch", "jax", "products") if args.only_torch else ("torch", "jax", "sklearn", "row",
                                                                          "products")
    if args.device == "cuda":
        report["gpu"] = timing.gpu_name()
        print(f"GPU: {report['gpu']}")
    results = []
    for case in cases:
        times = timing.run_case(case, args.repeats, args.threads, competitors, args.device)
        results.append((case, times))
        entry = {"case": vars(case), "seconds_per_epoch": times,
                 "gflops": case.flops() / times["scalarbp"] / 1e9}
        if "pytorch" in times:
            entry["ratio_to_pytorch"] = times["scalarbp"] / times["pytorch"]
            if "blas products" in times:
                entry["floor_ratio_to_pytorch"] = times["blas products"] / times["pytorch"]
        if args.phases:
            entry["phases"] = benchmark.phases(case)
        if args.memory:
            entry["peak_rss"] = benchmark.peak_memory(case)
            entry["expected_bytes"] = benchmark.expected_memory(case)
        report["cases"].append(entry)
        print(f"  {case.name}: " + ", ".join(f"{k} {v:.4f} s" for k, v in times.items()), flush=True)
    return results


def extra_tables(args, report, results):
    """The tables of ``--phases``, ``--memory``, ``--busy`` and ``--compile``."""
    if args.phases:
        print("\n| case | forward s | backward s | update s |\n|---|---|---|---|")
        for entry in report["cases"]:
            p = entry["phases"]
            print(f"| {entry['case']['name']} | {p['forward']:.4f} | {p['backward']:.4f} | {p['update']:.4f} |")
    if args.memory:
        print("\n| case | RSS before the epoch MiB | peak RSS in the epoch MiB | the epoch adds MiB | "
              "data + params + state + grad + buffers MiB |\n|---|---|---|---|---|")
        for entry in report["cases"]:
            rss, parts = entry["peak_rss"], entry["expected_bytes"]
            print(f"| {entry['case']['name']} | {rss['before'] / 2**20:.0f} | {rss['peak'] / 2**20:.0f} | "
                  f"{(rss['peak'] - rss['before']) / 2**20:.1f} | {sum(parts.values()) / 2**20:.1f} "
                  f"({', '.join(f'{k} {v / 2**20:.1f}' for k, v in parts.items())}) |")
    if args.busy:
        print("\n| case | quiet, 1 thread s | beside a 2-thread job s | busy / quiet 1-thread | target |\n"
              "|---|---|---|---|---|")
        report["busy"] = {}
        for case, _ in results:
            quiet, busy = timing.busy_ratios(case)
            report["busy"][case.name] = {"quiet_one_thread": quiet, "busy": busy}
            print(f"| {case.name} | {quiet:.4f} | {busy:.4f} | {busy / quiet:.2f} | ≤ 1.3 |", flush=True)
    if args.compile is not None:
        report["compile_seconds"] = benchmark.compile_times(dtypes=args.compile)
        print_compile_times(report["compile_seconds"])


def print_compile_times(results):
    """The start-up table of ``--compile``: seconds of a new process's first fit and first
    predict with an empty and a warm Numba cache, and the signatures each compiled."""
    print("\n| case | dtype | cold: import s | fit s | predict s | total s | warm total s | compiled signatures |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in results:
        cold, warm = r["cold"], r["warm"]
        signatures = ", ".join(f"{name} {count}" for name, count in sorted(cold["signatures"].items()))
        print(f"| {r['case']} | {r['dtype']} | {cold['import']:.2f} | {cold['fit']:.2f} | {cold['predict']:.2f} | "
              f"{cold['total']:.2f} | {warm['total']:.2f} | {signatures} |", flush=True)


def dp_report(args):
    """The DP-SGD table: seconds per epoch and the ratios the privacy issue asks for."""
    timing.start_torch(args.threads)
    numba.set_num_threads(args.threads)
    print(f"machine: {timing.machine()}; threads: {args.threads}; clip 1.0, noise 1.1, SGD, float32\n")
    print("| case | sizes, N, batch | scalarbp | DP-SGD | DP-SGD, no noise | Opacus | DP / plain | DP / Opacus |")
    print("|---|---|---|---|---|---|---|---|")
    report = {}
    for name in args.cases or list(benchmark.DP_CASES):
        case = benchmark.DP_CASES[name]
        r = report[name] = benchmark.dp_epochs(case, args.repeats, max(1, min(args.repeats, 2)))
        plain, private, opacus = r["scalarbp"], r["scalarbp DP-SGD"], r.get("Opacus DP-SGD")
        theirs = ("-", "-") if opacus is None else (f"{opacus:.2f} s", f"{private / opacus:.3f}")
        print(f"| {name} | {'-'.join(map(str, case.sizes))}, {case.N:,}, {case.batch} | {plain:.3f} s | "
              f"{private:.3f} s | {r['scalarbp DP-SGD, no noise']:.3f} s | {theirs[0]} | {private / plain:.2f} | "
              f"{theirs[1]} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": timing.machine(), "dp": report}, f, indent=1)


def chart(report, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--png needs matplotlib", file=sys.stderr)
        return
    entries = [e for e in report["cases"] if "ratio_to_pytorch" in e]
    names = [e["case"]["name"] for e in entries]
    fig, ax = plt.subplots(figsize=(max(6, len(names)), 4))
    ax.bar(names, [e["ratio_to_pytorch"] for e in entries])
    ax.axhline(1.0, color="grey", linewidth=1)
    for i, e in enumerate(entries):
        target = benchmark.TARGETS.get(e["case"]["name"])
        if target:
            ax.plot([i - 0.4, i + 0.4], [target, target], color="C3")
        if "floor_ratio_to_pytorch" in e:
            ax.plot([i - 0.4, i + 0.4], [e["floor_ratio_to_pytorch"]] * 2, color="k", linestyle=":")
    ax.set(ylabel="scalarbp time / PyTorch time",
           title="one epoch, float32 (lower is faster)\nred: target; dotted: the BLAS floor")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
