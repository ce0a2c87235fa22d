"""The ``scalarbp`` command: train, evaluate, predict, gradcheck, compare, explain.

Bad arguments or files end with a one-line message on stderr and exit status 1 (2 for
arguments argparse itself rejects), never a traceback.
"""
import argparse
import os
import sys
import time

import numpy as np

from . import __version__, checks, datasets
from .activations import HIDDEN
from .backends import ALL, BACKENDS
from .losses import LOSSES, OUTPUTS
from .optimizers import OPTIMIZERS


class UsageError(ValueError):
    """A combination of arguments that cannot work."""


def _data_options(parser, required):
    parser.add_argument("--data", required=required, metavar="PATH",
                        help="data file: .npz (arrays X, y), .npy (with --labels), CSV, or IDX (with --labels)")
    parser.add_argument("--format", choices=datasets.files.FORMATS, help="data format (default: from the file name)")
    parser.add_argument("--labels", metavar="PATH", help="labels file for .npy or IDX data")
    parser.add_argument("--label-column", default="-1", metavar="COL",
                        help="CSV label column: index or name (default -1, the last); 'none' for features only")
    parser.add_argument("--delimiter", default=",", help="CSV delimiter (default ',')")
    parser.add_argument("--header", choices=["auto", "yes", "no"], default="auto", help="CSV header line")


def _load(args, path=None, labels=None):
    column = args.label_column
    column = None if column.lower() == "none" else int(column) if column.lstrip("-").isdigit() else column
    header = {"auto": None, "yes": True, "no": False}[args.header]
    return datasets.load(path or args.data, format=args.format, labels=labels or args.labels,
                         label_column=column, delimiter=args.delimiter, header=header)


def _architecture(parser, hidden_sizes, activation):
    """The net's options, spelt the same in every command: ``--hidden-sizes``,
    ``--activation`` (alias ``--hidden``), ``--output``, ``--loss``, ``--l2``, ``--dtype``."""
    parser.add_argument("--hidden-sizes", type=int, nargs="*", default=hidden_sizes, metavar="D",
                        help="hidden layer widths" + (f" (default {' '.join(map(str, hidden_sizes))})"
                                                      if hidden_sizes else ""))
    parser.add_argument("--activation", "--hidden", nargs="+", default=[activation], choices=HIDDEN, metavar="ACT",
                        help=f"hidden activation(s), one or one per hidden layer: {', '.join(HIDDEN)} "
                             f"(default {activation})")
    parser.add_argument("--output", default="softmax", choices=OUTPUTS, help="output activation (default softmax)")
    parser.add_argument("--loss", choices=tuple(LOSSES), help="default: the output's natural loss")


def _activation(args):
    return args.activation[0] if len(args.activation) == 1 else args.activation


def _random_net_options(parser, hidden_sizes, batch_size, activation="tanh"):
    """A random net and batch: the architecture, and widths of the input and output."""
    _architecture(parser, hidden_sizes, activation)
    parser.add_argument("--input-size", type=int, default=6, metavar="D", help="input width (default 6)")
    parser.add_argument("--output-size", type=int, default=4, metavar="K", help="output width (default 4)")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="D",
                        help="every layer width, input first: instead of --input-size, --hidden-sizes, "
                             "--output-size")
    parser.add_argument("--l2", type=float, default=0.01,
                        help="penalty weight (default 0.01; explain: 1 for seed 002's example, else 0)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--batch-size", "--batch", type=int, default=batch_size,
                        help=f"samples in the random batch (default {batch_size}; explain: more than 1 shows "
                             f"the batch form of seeds 003 and 004)")
    parser.add_argument("--seed", type=int, default=0)


def _random_problem(args):
    from .model import MLP

    sizes = args.sizes or [args.input_size, *args.hidden_sizes, args.output_size]
    net = MLP(sizes, hidden=_activation(args), output=args.output, loss=args.loss, l2=args.l2, dtype=args.dtype,
              seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    X = rng.normal(size=(args.batch_size, net.sizes[0]))
    K = net.sizes[-1]
    Y = rng.integers(0, K, args.batch_size) if net.loss == "cross_entropy" else \
        rng.uniform(0, 1, (args.batch_size, K))
    return net, X, Y


def _threads(n):
    if n is None:
        return
    import numba

    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise UsageError(f"--threads must lie in [1, {numba.config.NUMBA_NUM_THREADS}], got {n}")
    numba.set_num_threads(n)


def cmd_train(args):
    from .model import MLP
    from .training import epoch_line

    _threads(args.threads)
    if args.data is None:
        (X, y), (X_test, y_test) = datasets.load_digits()
        source = "embedded UCI digits (1,438 train / 359 test)"
    else:
        X, y = _load(args)
        if y is None:
            raise UsageError(f"{args.data}: training needs labels or targets")
        if args.test_data:
            X_test, y_test = _load(args, args.test_data, args.test_labels)
        else:
            (X, y), (X_test, y_test) = datasets.train_test_split(X, y, args.test_fraction, seed=args.seed)
        source = f"{args.data} ({len(X)} train / {len(X_test)} test)"
    y_arr = np.asarray(y)
    classes = None
    if args.output == "softmax":
        if y_arr.ndim != 1 or y_arr.dtype.kind not in "iub":
            raise UsageError("softmax output needs integer class labels; use --output identity for regression")
        classes, encoded = checks.encode(np.concatenate([y_arr, np.asarray(y_test).reshape(-1)]))
        y, y_fit_test = encoded[:len(y_arr)], encoded[len(y_arr):]
        K = len(classes)
        if np.array_equal(classes, np.arange(K)):
            classes = None  # labels 0..K-1 are their own indices
    else:
        K, y_fit_test = (1 if y_arr.ndim == 1 else y_arr.shape[1]), y_test
    sizes = [X.shape[1], *args.hidden_sizes, K]
    net = MLP(sizes, hidden=_activation(args), output=args.output, loss=args.loss, l2=args.l2, dtype=args.dtype,
              seed=args.seed)
    net.classes = classes
    if not args.no_standardize:
        net.standardizer = datasets.Standardizer().fit(X)
    optimizer = _optimizer(args)
    print(f"{net}\ndata: {source}\noptimizer: {optimizer}, {args.epochs} epochs, "
          f"batch {args.batch_size}, backend {args.backend}", flush=True)
    start = time.perf_counter()
    history = net.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=optimizer,
                      seed=args.seed, validation_data=(X_test, y_fit_test), early_stopping=args.early_stopping,
                      patience=args.patience, backend=args.backend,
                      verbose=0 if args.quiet else 2)
    if args.quiet and history.epochs:
        print(epoch_line(history, history.epochs - 1, args.epochs))
    print(f"trained {history.epochs} epochs in {time.perf_counter() - start:.2f} s")
    if args.save:
        net.save(args.save)
        print(f"saved model to {args.save}")
    if args.plot:
        plot_history(history, args.plot)
        print(f"saved curves to {args.plot}")
    name = "accuracy" if net.is_classifier else "R^2"
    print(f"test {name}: {net.score(X_test, y_test, backend=args.backend):.4f}")


def plot_history(history, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'scalarbp[plot]'") from None
    epochs = np.arange(1, history.epochs + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, history.loss, label="train")
    if history.val_loss:
        left.plot(epochs, history.val_loss, label="validation")
        right.plot(epochs, history.val_score, color="C1")
    left.set(xlabel="epoch", ylabel="loss J", yscale="log", title="loss")
    left.legend()
    right.set(xlabel="epoch", ylabel=history.score_name, title=f"validation {history.score_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _optimizer(args):
    """The optimiser the options describe; options it does not take are refused."""
    from .optimizers import make

    given = {"momentum": args.momentum, "nesterov": args.nesterov or None, "centered": args.centered or None,
             "weight_decay": args.weight_decay}
    given = {name: value for name, value in given.items() if value is not None}
    takes = OPTIMIZERS[args.optimizer].defaults
    stray = sorted(set(given) - set(takes))
    if stray:
        raise UsageError(f"--optimizer {args.optimizer} takes no "
                         f"{', '.join('--' + name.replace('_', '-') for name in stray)}")
    return make(args.optimizer, args.lr, **given)


def cmd_evaluate(args):
    from .model import MLP

    net = MLP.load(args.model)
    X, y = _load(args)
    if y is None:
        raise UsageError(f"{args.data}: evaluation needs labels or targets")
    X = _width(net, X, args.data)
    J, _, _ = net.loss_and_grad(net.transform(X), net.class_indices(y), backend=args.backend)
    name = "accuracy" if net.is_classifier else "R^2"
    print(f"{net}\nsamples: {len(X)}\nloss: {J:.4f}\n{name}: {net.score(X, y, backend=args.backend):.4f}")


def cmd_predict(args):
    from .model import MLP
    from .persistence import write_atomically

    net = MLP.load(args.model)
    X, _ = _load(args)
    X = _width(net, X, args.data)
    result = net.predict_proba(X, backend=args.backend) if args.proba else net.predict(X, backend=args.backend)
    if args.out.endswith(".npy"):
        write_atomically(args.out, lambda file: np.save(file, result))
    elif args.out.endswith(".csv"):
        fmt = "%d" if result.dtype.kind == "i" else "%.9g"
        write_atomically(args.out, lambda file: np.savetxt(file, result.reshape(len(X), -1), delimiter=",", fmt=fmt))
    else:
        raise UsageError(f"--out must end in .npy or .csv, got {args.out}")
    print(f"wrote {len(X)} predictions to {args.out}")


def _width(net, X, path):
    if X.shape[1] != net.sizes[0]:
        raise UsageError(f"{path}: {X.shape[1]} features per sample, the model expects {net.sizes[0]}")
    return X


def cmd_gradcheck(args):
    from .gradcheck import gradcheck

    net, X, Y = _random_problem(args)
    print(net)
    worst = 0.0
    for backend in BACKENDS:
        error = gradcheck(net, X, Y, backend=backend)
        worst = max(worst, error)
        print(f"{backend:>7}: largest relative error vs finite differences {error:.2e}")
    tolerance = 1e-6 if net.dtype == np.float64 else 1e-2
    if worst > tolerance:
        raise UsageError(f"gradient check failed: {worst:.2e} > {tolerance:g}")


def cmd_compare(args):
    from .compare import differences, gradients, table

    net, X, Y = _random_problem(args)
    print(net)
    print(table(differences(net, gradients(net, X, Y))))


def _writable(path):
    """Refuse an output path whose folder does not exist or cannot be written, before any work."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UsageError(f"{path}: cannot write there (no such folder, or no permission)")


def cmd_explain(args):
    from .explain import SEED_002_NAMES, SEED_002_WRONG_DELTAS, explain, explain_seed_002, plot, seed_002
    from .notation import errata_lines

    if args.plot:
        _writable(args.plot)
    if args.errata:
        print("\n".join(errata_lines()))
        return
    if args.sizes is None and args.hidden_sizes is None:
        if args.batch_size != 1:
            raise UsageError("seed 002's example has one sample; give --sizes or --hidden-sizes with --batch-size")
        net, X, Y = seed_002(1.0 if args.l2 is None else args.l2)
        lines, names, wrong = explain_seed_002(net.l2), SEED_002_NAMES, SEED_002_WRONG_DELTAS
    else:
        args.hidden_sizes = [4] if args.hidden_sizes is None else args.hidden_sizes
        args.l2 = 0.0 if args.l2 is None else args.l2
        net, X, Y = _random_problem(args)
        lines, names, wrong = explain(net, X, Y), None, None
    print("\n".join(lines))
    if args.plot:
        plot(net, X, Y, args.plot, names, wrong)
        print(f"wrote {args.plot}")


def cmd_bench(args):
    import numba

    from . import timing

    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    timing.start_torch(threads)  # before Numba starts its threads: see its docstring
    _threads(threads)
    peak = timing.gemm_peak(n=1024)
    print(f"machine: {timing.machine()}\nNumPy float32 GEMM peak: {peak:.0f} GFLOP/s; "
          f"for the full profiling runs see scripts/bench.py", flush=True)
    results = []
    for name in args.cases:
        case = timing.QUICK_CASES[name]
        results.append((case, timing.run_case(case, args.repeats, threads,
                                              ("torch", "jax", "sklearn", "products"))))
    print(timing.table(results, peak))


def parser():
    top = argparse.ArgumentParser(prog="scalarbp", description="Backpropagation in scalar form.")
    top.add_argument("--version", action="version", version=f"scalarbp {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an MLP (default: the embedded digits)",
                           description="Train an MLP. With no arguments: the embedded UCI digits, 64-128-10, "
                                       "ReLU, softmax, Adam; prints the test accuracy.")
    _data_options(train, required=False)
    train.add_argument("--test-data", metavar="PATH", help="held-out data (default: split off --test-fraction)")
    train.add_argument("--test-labels", metavar="PATH")
    train.add_argument("--test-fraction", type=float, default=0.2)
    _architecture(train, [128], "relu")
    train.add_argument("--l2", type=float, default=0.0)
    train.add_argument("--optimizer", default="adam", choices=tuple(OPTIMIZERS))
    train.add_argument("--lr", type=float, default=0.002)
    train.add_argument("--momentum", type=float,
                       help="for --optimizer momentum (default 0.9) and rmsprop (default 0)")
    train.add_argument("--nesterov", action="store_true", help="Nesterov momentum (--optimizer momentum)")
    train.add_argument("--centered", action="store_true", help="centered RMSprop (--optimizer rmsprop)")
    train.add_argument("--weight-decay", type=float, help="for --optimizer adamw (default 0.01)")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--early-stopping", action="store_true")
    train.add_argument("--patience", type=int, default=10)
    train.add_argument("--backend", default="scalar", choices=ALL)
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--threads", type=int, help="Numba threads (default: all cores)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-standardize", action="store_true", help="do not standardize the inputs")
    train.add_argument("--save", metavar="MODEL", help="save the trained model (.npz)")
    train.add_argument("--plot", metavar="PNG", help="save loss/accuracy curves (needs matplotlib)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    train.set_defaults(run=cmd_train)

    for name, run, text in (("evaluate", cmd_evaluate, "loss and accuracy (or R^2) of a saved model"),
                            ("predict", cmd_predict, "predictions of a saved model")):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("model", help="a model saved by 'scalarbp train --save'")
        _data_options(command, required=True)
        command.add_argument("--backend", default="scalar", choices=ALL)
        if name == "predict":
            command.add_argument("--out", required=True, help="output file, .npy or .csv")
            command.add_argument("--proba", action="store_true", help="write output activations, not labels")
        command.set_defaults(run=run)

    for name, run, text in (("gradcheck", cmd_gradcheck, "every backend against finite differences"),
                            ("compare", cmd_compare, "scalar vs row vs column vs finite differences, per layer")):
        command = sub.add_parser(name, help=text, description=f"{text}, on a random net and batch")
        _random_net_options(command, [8, 8], 16)
        command.set_defaults(run=run)

    bench = sub.add_parser("bench", help="a quick side-by-side timing against PyTorch and scikit-learn",
                           description="One epoch of small cases, scalarbp next to PyTorch and scikit-learn "
                                       "when they are installed (pip install 'scalarbp[bench]'). The full "
                                       "profiling runs are scripts/bench.py.")
    bench.add_argument("--cases", nargs="+", default=["digits", "mnist1d"], choices=["digits", "mnist1d"])
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--threads", type=int)
    bench.set_defaults(run=cmd_bench)

    explain = sub.add_parser("explain", help="every quantity of seed 002's worked example, or of a small net",
                             description="Recompute seed 002's worked example (or a small net of your own "
                                         "with --sizes or --hidden-sizes) and print every forward and backward quantity "
                                         "next to its formula.")
    _random_net_options(explain, None, 1, "relu")
    explain.add_argument("--errata", action="store_true", help="list every erratum of the notes, with its test")
    explain.add_argument("--plot", metavar="PNG", help="draw the net: units, weights, deltas (needs matplotlib)")
    explain.set_defaults(run=cmd_explain, l2=None)
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    from .persistence import ModelFileError
    from .training import DivergedError

    try:
        args.run(args)
    except BrokenPipeError:  # the reader of our output went away (e.g. "| head")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError, RuntimeError, ModelFileError, DivergedError) as err:
        message = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else str(err)
        print(f"scalarbp: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scalarbp: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
