"""The ``scalarbp`` command: train, evaluate, predict, gradcheck, compare, explain.

Bad arguments or files end with a one-line message on stderr and exit status 1 (2 for
arguments argparse itself rejects), never a traceback.
"""
import argparse
import contextlib
import copy
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np

from . import __version__, checks, datasets
from .definitions.activations import HIDDEN
from .backends import ALL, BACKENDS
from .definitions.losses import LOSSES, OUTPUTS
from .training.optimizers import OPTIMIZERS
from .training.options import DEFAULT_OPTIMIZER, FitOptions


class UsageError(ValueError):
    """A combination of arguments that cannot work."""


class HELP(argparse.ArgumentDefaultsHelpFormatter):
    """Every command's --help shows every default (an option whose help already says what
    its absence means, or whose default is None, is left as it is)."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or "") or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _data_options(parser, required):
    parser.add_argument("--data", required=required, metavar="PATH",
                        help="data file: .npz (arrays X, y), .npy (with --labels), CSV, or IDX (with --labels)")
    parser.add_argument("--format", choices=datasets.files.FORMATS, help="data format (default: from the file name)")
    parser.add_argument("--labels", metavar="PATH", help="labels file for .npy or IDX data")
    parser.add_argument("--label-column", default="-1", metavar="COL",
                        help="CSV label column: index or name (default -1, the last); 'none' for features only")
    parser.add_argument("--delimiter", default=",", help="CSV delimiter (default ',')")
    parser.add_argument("--header", choices=["auto", "yes", "no"], default="auto",
                        help="CSV header line (auto: only if no field of line 1 is a number and line 2 has one)")
    parser.add_argument("--drop-columns", nargs="+", default=[], metavar="COL",
                        help="CSV columns to skip: indices or names")


def _load(args, path=None, labels=None):
    column = args.label_column
    column = None if column.lower() == "none" else int(column) if column.lstrip("-").isdigit() else column
    header = {"auto": None, "yes": True, "no": False}[args.header]
    drop = [int(c) if c.lstrip("-").isdigit() else c for c in args.drop_columns]
    return datasets.load(path or args.data, format=args.format, labels=labels or args.labels,
                         label_column=column, delimiter=args.delimiter, header=header, drop_columns=drop)


def _architecture(parser, hidden_sizes, activation, output="softmax"):
    """The net's options, spelt the same in every command: ``--hidden-sizes``,
    ``--activation`` (alias ``--hidden``), ``--output``, ``--loss``, ``--l2``, ``--dtype``."""
    parser.add_argument("--hidden-sizes", type=int, nargs="*", default=hidden_sizes, metavar="D",
                        help="hidden layer widths" + (f" (default {' '.join(map(str, hidden_sizes))})"
                                                      if hidden_sizes else ""))
    parser.add_argument("--activation", "--hidden", nargs="+", default=[activation], choices=HIDDEN, metavar="ACT",
                        help=f"hidden activation(s), one or one per hidden layer: {', '.join(HIDDEN)} "
                             f"(default {activation})")
    parser.add_argument("--output", default=output, choices=OUTPUTS,
                        help="output activation" + ("" if output else " (default: softmax for classification, "
                                                                       "identity for regression)"))
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
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"], help="parameter dtype")
    parser.add_argument("--batch-size", "--batch", type=int, default=batch_size,
                        help=f"samples in the random batch (default {batch_size}; explain: more than 1 shows "
                             f"the batch form of seeds 003 and 004)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the net and the random batch")


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


#: Integer labels with more distinct values than this are a regression target unless
#: ``--task classification`` says otherwise.
MAX_INFERRED_CLASSES = 20

#: Seconds a first fit of the default float32 net spends compiling on this project's
#: 2-core machines with an empty cache (README, "Set up").
COMPILE_SECONDS = 15


def _check_train_options(args):
    """The ``train`` options no parser type checks, refused before any data is read."""
    _threads(args.threads)
    args.plot = _figure(args.plot)
    for path in (args.save, args.plot):
        if path:
            _writable(path)
    if args.plot:
        _needs_matplotlib()
    if args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    if args.seed < 0:  # (before the seeded split, whose own message would not name it)
        raise UsageError(f"--seed must be an integer >= 0, got {args.seed}")
    if args.checkpoint_every is not None:
        if args.checkpoint_every < 1:
            raise UsageError(f"--checkpoint-every must be at least 1 (epochs between saves), got {args.checkpoint_every}")
        if not args.save:
            raise UsageError("--checkpoint-every needs --save MODEL: the checkpoints are written there")


def _resumed(args):
    """``(net, task, note)`` of ``--resume MODEL``, whose architecture no option may contradict."""
    from .model import MLP

    net = MLP.load(args.resume)
    task = "classification" if net.is_classifier else "regression"
    theirs = {"hidden_sizes": list(net.sizes[1:-1]), "activation": list(net.hidden), "output": net.output,
              "loss": net.loss, "l2": net.l2, "dtype": net.dtype.name, "no_standardize": net.standardizer is None,
              "task": task}
    ours = {**vars(args), "activation": args.activation * (len(net.hidden) if len(args.activation) == 1 else 1)}
    refused = sorted(name for name in args.given & set(theirs) if ours[name] != theirs[name])
    if refused:
        raise UsageError(f"--resume takes the architecture from {args.resume}; drop "
                         f"{', '.join('--' + name.replace('_', '-') for name in refused)}")
    return net, task, f"from {args.resume}: {net.epochs_trained} epochs trained"


def _labelled_net(args, X, y, task, validation, y_test):
    """A new net for the data, its classes every label that occurs in any of the three roles."""
    classes = None
    if task == "classification":
        classes, _ = checks.encode(np.concatenate([y, *([validation[1]] if validation else []), y_test]))
    K = len(classes) if classes is not None else (1 if np.ndim(y) == 1 else np.shape(y)[1])
    net = _new_net(args, X, y, task, K)
    if classes is not None and (classes.dtype.kind == "U" or not np.array_equal(classes, np.arange(K))):
        net.classes = classes  # (labels 0..K-1 are their own indices)
    return net


def cmd_train(args):
    from .training import optimizers
    from .training import Checkpoint, DivergedError, TrainingInterrupted

    _check_train_options(args)
    (X, y), (X_test, y_test), source = _training_data(args)
    if args.resume:
        net, task, note = _resumed(args)
    else:
        task, note = _task(args.task, np.asarray(y))
    if args.class_weight and task != "classification":
        raise UsageError("--class-weight needs a classification task")
    (X, y), validation, (X_test, y_test) = _roles(args, task, X, y, X_test, y_test)
    if not args.resume:
        net = _labelled_net(args, X, y, task, validation, y_test)
    encode = (lambda labels: net.class_indices(labels)) if task == "classification" else np.asarray
    optimizer = _optimizer(args)
    if optimizer is None and net.optimizer is None:
        optimizer = optimizers.make(DEFAULT_OPTIMIZER, args.lr)
    print(f"{net}\ndata: {source}: {len(X)} train / {len(validation[0]) if validation else 0} validation / "
          f"{len(X_test)} test\ntask: {task} ({note})\noptimizer: {optimizer or net.optimizer} "
          f"({'continued' if optimizer is None else 'new'}), {args.epochs} epochs, batch {args.batch_size}, "
          f"backend {args.backend}", flush=True)

    with _compile_notice(net.dtype):  # a throwaway copy's two-sample fit compiles what fit needs
        copy.deepcopy(net).fit(X[:2], encode(y[:2]), epochs=1, batch_size=2, lr=args.lr, backend=args.backend,
                               optimizer=copy.deepcopy(optimizer or net.optimizer),
                               validation_data=(X[:2], encode(y[:2])))
    start = time.perf_counter()
    validation_data = None if validation is None else (validation[0], encode(validation[1]))
    checkpoints = [] if args.checkpoint_every is None else [Checkpoint(args.save, args.checkpoint_every, verbose=True)]
    key_file = _key_file(args)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line  # (a key file not resumed from, say: one line)
            history = net.fit(X, encode(y), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              optimizer=optimizer, seed=args.seed, validation_data=validation_data,
                              early_stopping=args.early_stopping, patience=args.patience, backend=args.backend,
                              verbose=0 if args.quiet else 2, schedule=args.schedule,
                              callbacks=checkpoints,
                              warmup_steps=args.warmup_steps, clip_norm=args.clip_norm,
                              class_weight=args.class_weight if task == "classification" else None,
                              dp_clip=args.dp_clip, dp_noise=args.dp_noise, dp_delta=args.dp_delta,
                              dp_sampling=args.dp_sampling, target_epsilon=args.target_epsilon, dp_key_file=key_file)
    except TrainingInterrupted as err:
        where = f"epoch {net.epochs_trained}" + (f", step {net.epoch_steps} of the next" if net.epoch_steps else "")
        _keep(args, net, err.history, f"{'terminated' if err.signal == signal.SIGTERM else 'interrupted'} at {where}")
        if key_file is not None and os.path.exists(key_file):
            print(f"kept the run's secret key in {key_file} for --resume {args.save} (keep it private: with it and "
                  f"the checkpoints the noise can be subtracted)", flush=True)
        return 128 + err.signal  # (130 for Ctrl-C, 143 for SIGTERM, as a shell reports a signal)
    except DivergedError as err:
        _keep(args, net, err.history, "diverged; the last good weights")
        raise
    _trained_report(args, net, history, validation, time.perf_counter() - start)
    print(_test_line(net, X_test, y_test, args.backend))


def _trained_report(args, net, history, validation, seconds):
    """What a finished ``train`` prints, and its model and plot kept."""
    from .training import epoch_line

    if args.quiet and history.epochs:
        print(epoch_line(history, history.epochs - 1, args.epochs))
    if history.stopped_early and args.quiet:
        print(f"stopped early after epoch {history.epochs}; restored the weights of epoch {history.best_epoch + 1}")
    print(f"trained {history.epochs} epochs in {seconds:.2f} s")
    if history.private:
        _privacy_report(args, net, history, validation)
    _keep(args, net, history, None)


def _key_file(args):
    """Where a DP-SGD run saved to ``--save MODEL`` keeps its secret key while unfinished
    (``MODEL.dpkey``), the resumed model's key moved there first; None if not private."""
    if args.dp_clip is None or not args.save:
        return None
    from .privacy import keyfile

    key_file = keyfile.beside(args.save)
    if args.resume and os.path.realpath(args.resume) != os.path.realpath(args.save):
        keyfile.move(keyfile.beside(args.resume), key_file)
    return key_file


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"scalarbp: warning: {message}", file=sys.stderr, flush=True)


def _privacy_report(args, net, history, validation):
    """What DP-SGD guarantees for this run, and what it released outside the guarantee."""
    if args.dp_delta is not None:
        uncovered = net.privacy_ledger.uncovered()
        print(f"privacy: epsilon {net.privacy_ledger.epsilon(args.dp_delta):.4g} at delta {args.dp_delta:g} over "
              f"{net.privacy_ledger.steps} steps" + (f" (inf: {uncovered})" if uncovered else ""))
    named = list(history.outside_epsilon)
    if net.standardizer is not None:
        named.append("the standardizer: the mean and scale of the training data")
    if validation is not None and args.validation_data is None:
        named.append("the validation split is carved from the training data: its records are not protected")
    print("training loss withheld; not covered by epsilon: " + "; ".join(named))


def _keep(args, net, history, why):
    """Save the model and the curves where asked, saying so (``why``: an early end)."""
    prefix = f"{why}: " if why else ""
    if args.save:
        net.save(args.save)
        print(f"{prefix}saved model to {args.save}", flush=True)
    if args.plot and history.epochs:
        history.plot(args.plot)
        print(f"{prefix}saved curves to {args.plot}", flush=True)
    if why and not args.save:
        print(f"{why}; nothing saved (no --save)", flush=True)


def _test_line(net, X, y, backend):
    """The test set's score, computed once, after training."""
    if net.is_classifier:
        return f"test accuracy: {net.score(X, y, backend=backend):.4f}"
    F = net.predict_proba(X, backend=backend)
    rmse = float(np.sqrt(np.mean((F - np.asarray(y, np.float64).reshape(F.shape)) ** 2)))
    return f"test R^2: {net.score(X, y, backend=backend):.4f}, RMSE: {rmse:.4g}"


def _training_data(args):
    """``(X, y), (X_test, y_test), source``: the embedded digits or --data; the test set
    from --test-data or split off with --test-fraction (stratified for labels)."""
    ignored = sorted(args.given & {"test_data", "test_labels", "test_fraction"} if args.data is None else
                     args.given & {"test_fraction"} if args.test_data else ())
    if ignored:  # (a split that would not happen, or a fraction of nothing)
        options = ", ".join("--" + name.replace("_", "-") for name in ignored)
        raise UsageError(f"{options} needs --data (the embedded digits come with their own test set)"
                         if args.data is None else f"{options} splits --data; --test-data gives the test set")
    if args.data is None:
        train, test = datasets.load_digits()
        return train, test, "embedded UCI digits"
    X, y = _load(args)
    if y is None:
        raise UsageError(f"{args.data}: training needs labels or targets")
    if args.test_data:
        X_test, y_test = _load(args, args.test_data, args.test_labels)
        if y_test is None:
            raise UsageError(f"{args.test_data}: the test set needs labels (--test-labels, or a file that "
                             f"holds them)")
        return (X, y), (X_test, y_test), args.data
    train, test = datasets.train_test_split(X, y, args.test_fraction, seed=args.seed)
    return train, test, args.data


def _task(told, y):
    """``(task, note)``: classification or regression, as told or inferred from the labels."""
    names = y.dtype.kind == "U"
    whole = y.ndim == 1 and (y.dtype.kind in "iub" or names)
    if told == "regression" and names:
        raise UsageError("class names cannot be a regression target")
    if told == "classification" and not whole:
        raise UsageError("classification needs 1-D integer labels or class names")
    if told:
        return told, "as told by --task"
    if names:
        return "classification", f"{len(np.unique(y))} class names"
    if not whole:
        return "regression", f"{'non-integer' if y.ndim == 1 else f'{y.shape[1]} target columns of'} values"
    found = np.unique(y)
    contiguous = found[-1] - found[0] + 1 == len(found)
    if len(found) <= MAX_INFERRED_CLASSES and contiguous:
        return "classification", f"{len(found)} classes, labels {found[0]}..{found[-1]}; --task to choose"
    why = f"{len(found)} distinct integer values" + ("" if contiguous else ", not contiguous")
    print(f"note: {why}: training a regression; give --task classification to treat them as classes",
          file=sys.stderr)
    return "regression", f"inferred: {why}"


def _roles(args, task, X, y, X_test, y_test):
    """Training data, validation data (or None) and test data, never mixed: validation
    from --validation-data or split off the training data (--validation-fraction,
    stratified for labels); the test set is used once, after training."""
    if args.validation_data:
        X_val, y_val = _load(args, args.validation_data, args.validation_labels)
        if y_val is None:
            raise UsageError(f"{args.validation_data}: validation needs labels (--validation-labels)")
        return (X, y), (X_val, y_val), (X_test, y_test)
    if not args.validation_fraction:
        return (X, y), None, (X_test, y_test)
    if not 0 < args.validation_fraction < 1:
        raise UsageError(f"--validation-fraction must lie in (0, 1), got {args.validation_fraction}")
    if task == "classification":
        _, indices = checks.encode(np.asarray(y))
        (train, _), (held_out, _) = datasets.train_test_split(np.arange(len(y)), indices,
                                                              args.validation_fraction, seed=args.seed)
    else:
        (train, _), (held_out, _) = datasets.train_test_split(np.arange(len(y)), np.zeros(len(y)),
                                                              args.validation_fraction, seed=args.seed)
    y = np.asarray(y)
    return (X[train], y[train]), (X[held_out], y[held_out]), (X_test, y_test)


def _new_net(args, X, y, task, K):
    from .model import MLP

    output = args.output or ("softmax" if task == "classification" else "identity")
    net = MLP([X.shape[1], *args.hidden_sizes, K], hidden=_activation(args), output=output, loss=args.loss,
              l2=args.l2, dtype=args.dtype, seed=args.seed)
    if not args.no_standardize:
        net.standardizer = datasets.Standardizer().fit(X)
    return net


@contextlib.contextmanager
def _compile_notice(dtype):
    """Say once on stderr that the kernels are compiling, when the first call takes over a
    second (the disk cache makes later runs start at once)."""
    timer = threading.Timer(1.0, lambda: print(
        f"compiling kernels for {np.dtype(dtype).name}, first run only, ~{COMPILE_SECONDS} s ...",
        file=sys.stderr, flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _needs_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'scalarbp[plot]'") from None


def _optimizer(args):
    """The optimiser the options describe; options it does not take are refused."""
    from .training.optimizers import make

    given = {"momentum": args.momentum, "nesterov": args.nesterov or None, "centered": args.centered or None,
             "weight_decay": args.weight_decay}
    given = {name: value for name, value in given.items() if value is not None}
    if args.optimizer is None:
        if given:
            raise UsageError(f"{', '.join('--' + name.replace('_', '-') for name in sorted(given))} "
                             f"need(s) --optimizer")
        return None  # fit's default: the net's own optimizer (--resume), else Adam
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
    X = _width(net, X, args)
    with _compile_notice(net.dtype):
        J, _, _ = net.loss_and_grad(net.transform(X), net.class_indices(y), backend=args.backend)
    print(f"{net}\nsamples: {len(X)}\nloss: {J:.4f}\n{_test_line(net, X, y, args.backend).removeprefix('test ')}")


def cmd_predict(args):
    from .model import MLP
    from .fileio import write_atomically

    if not args.out.endswith((".npy", ".csv")):
        raise UsageError(f"--out must end in .npy or .csv, got {args.out}")
    _writable(args.out)
    net = MLP.load(args.model)
    X, _ = _load(args)
    X = _width(net, X, args)
    with _compile_notice(net.dtype):
        result = net.predict_proba(X, backend=args.backend) if args.proba else net.predict(X, backend=args.backend)
    if args.out.endswith(".npy"):
        write_atomically(args.out, lambda file: np.save(file, result))
    else:
        header = ""
        if args.proba and net.output == "softmax":
            names = net.classes if net.classes is not None else np.arange(net.sizes[-1])
            header = ",".join(_csv_name(name) for name in names)
        fmt = "%s" if result.dtype.kind in "iU" else "%.9g"
        rows = np.vectorize(_csv_name)(result) if result.dtype.kind == "U" else result  # (class names quoted)
        write_atomically(args.out, lambda file: np.savetxt(file, rows.reshape(len(X), -1), delimiter=",", fmt=fmt,
                                                           header=header, comments=""))
    print(f"wrote {len(X)} predictions to {args.out}")


def _csv_name(name):
    """A class name as a CSV field (quoted when it holds a delimiter, a quote or a newline)."""
    name = str(name)
    return f'"{name.replace(chr(34), chr(34) * 2)}"' if any(c in name for c in ',"\n') else name


def _width(net, X, args):
    if X.shape[1] != net.sizes[0]:
        hint = ""
        if X.shape[1] == net.sizes[0] - 1 and str(args.label_column).lower() != "none" \
                and (args.format or datasets.files.guess_format(args.data)) == "csv":
            hint = (f"; the column {args.label_column} was taken as labels: give --label-column none for a file "
                    f"of features only")
        raise UsageError(f"{args.data}: {X.shape[1]} features per sample, the model expects {net.sizes[0]}{hint}")
    return X


def cmd_gradcheck(args):
    from .diagnostics.gradcheck import gradcheck

    net, X, Y = _random_problem(args)
    print(net)
    worst = 0.0
    for backend in BACKENDS:
        error = gradcheck(net, X, Y, backend=backend)
        worst = max(worst, error)
        print(f"{backend:>7}: largest relative error vs finite differences {error:.2e}")
    tolerance = 1e-6 if net.dtype == np.float64 else 1e-3  # (float32: its own rounding, ~1e-5)
    if worst > tolerance:
        raise UsageError(f"gradient check failed: {worst:.2e} > {tolerance:g}")


def cmd_compare(args):
    from .diagnostics.compare import differences, gradients, table

    net, X, Y = _random_problem(args)
    print(net)
    print(table(differences(net, gradients(net, X, Y))))


def _figure(path):
    """The file a figure saved to ``path`` lands in: without an extension, matplotlib adds ``.png``."""
    return path + ".png" if path and not os.path.splitext(path)[1] else path


def _writable(path):
    """Refuse an output path the save would fail on, before any work: checked as the save
    will write it, through a temporary file beside it (:func:`.fileio.check_writable`)."""
    from .fileio import check_writable

    try:
        check_writable(path)
    except OSError as err:
        reason = err.strerror or str(err).split(": ", 1)[-1]  # (the OS's reason, or the refusal's, without the path)
        raise UsageError(f"{path}: cannot save there ({reason})") from None


def cmd_explain(args):
    from .diagnostics.explain import SEED_002_NAMES, SEED_002_WRONG_DELTAS, explain, explain_seed_002, plot, seed_002
    from .diagnostics.notation import errata_lines

    args.plot = _figure(args.plot)
    if args.plot:
        _writable(args.plot)
    if args.errata:
        print("\n".join(errata_lines()))
        return
    if args.per_example:
        from .diagnostics.explain import explain_per_example

        if args.sizes is None and args.hidden_sizes is None:
            args.sizes = [2, 3, 2]
        args.batch_size = max(args.batch_size, 2)
        args.l2 = 0.0 if args.l2 is None else args.l2
        net, X, Y = _random_problem(args)
        print("\n".join(explain_per_example(net, X, Y)))
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

    from .bench import timing

    if args.repeats < 1:
        raise UsageError(f"--repeats must be at least 1 (timed epochs per case), got {args.repeats}")
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

    _train_command(sub)

    for name, run, text in (("evaluate", cmd_evaluate, "loss and accuracy (or R^2) of a saved model"),
                            ("predict", cmd_predict, "predictions of a saved model")):
        command = sub.add_parser(name, help=text, description=text, formatter_class=HELP)
        command.add_argument("model", help="a model saved by 'scalarbp train --save'")
        _data_options(command, required=True)
        command.add_argument("--backend", default="scalar", choices=ALL, help="implementation")
        if name == "predict":
            command.add_argument("--out", required=True, help="output file, .npy or .csv")
            command.add_argument("--proba", action="store_true", help="write output activations, not labels")
        command.set_defaults(run=run)

    for name, run, text in (("gradcheck", cmd_gradcheck, "every backend against finite differences"),
                            ("compare", cmd_compare, "scalar vs row vs column vs finite differences, per layer")):
        command = sub.add_parser(name, help=text, description=f"{text}, on a random net and batch",
                                 formatter_class=HELP)
        _random_net_options(command, [8, 8], 16)
        command.set_defaults(run=run)

    bench = sub.add_parser("bench", help="a quick side-by-side timing against PyTorch and scikit-learn",
                           formatter_class=HELP,
                           description="One epoch of small cases, scalarbp next to PyTorch and scikit-learn "
                                       "when they are installed (pip install 'scalarbp[bench]'). The full "
                                       "profiling runs are scripts/bench.py.")
    bench.add_argument("--cases", nargs="+", default=["digits", "mnist1d"], choices=["digits", "mnist1d"],
                       help="benchmark cases")
    bench.add_argument("--repeats", type=int, default=3, help="timed epochs per case and library")
    bench.add_argument("--threads", type=int, help="threads for every library (default: all cores)")
    bench.set_defaults(run=cmd_bench)

    explain = sub.add_parser("explain", help="every quantity of seed 002's worked example, or of a small net",
                             formatter_class=HELP,
                             description="Recompute seed 002's worked example (or a small net of your own "
                                         "with --sizes or --hidden-sizes) and print every forward and backward quantity "
                                         "next to its formula.")
    _random_net_options(explain, None, 1, "relu")
    explain.add_argument("--errata", action="store_true", help="list every erratum of the notes, with its test")
    explain.add_argument("--per-example", action="store_true",
                         help="each sample's own gradient (seed 004's outer products) and the norm identity")
    explain.add_argument("--plot", metavar="PNG", help="draw the net: units, weights, deltas (needs matplotlib)")
    explain.set_defaults(run=cmd_explain, l2=None)
    return top


def _train_command(sub):
    """The ``train`` command's parser: data and its roles, architecture, training, files."""
    train = sub.add_parser("train", help="train an MLP (default: the embedded digits)", formatter_class=HELP,
                           description="Train an MLP. With no arguments: the embedded UCI digits, 64-128-10, "
                                       "ReLU, softmax, Adam; prints the test accuracy. Three roles, never mixed: "
                                       "the training data; a validation split of it for the epoch lines and "
                                       "early stopping; the test set, scored once at the end.")
    _data_options(train, required=False)
    train.add_argument("--validation-fraction", type=float, default=0.1,
                       help="fraction of the training data held out for validation (stratified for labels); "
                            "0 for none")
    train.add_argument("--validation-data", metavar="PATH", help="validation data instead of a split")
    train.add_argument("--validation-labels", metavar="PATH", help="labels file for --validation-data")
    train.add_argument("--test-data", metavar="PATH", help="test data (default: split off --test-fraction)")
    train.add_argument("--test-labels", metavar="PATH", help="labels file for --test-data")
    train.add_argument("--test-fraction", type=float, default=0.2, help="fraction of --data held out as test set")
    train.add_argument("--task", choices=["classification", "regression"],
                       help=f"default: inferred (integer labels with at most {MAX_INFERRED_CLASSES} contiguous "
                            f"values, or names, are classes)")
    _architecture(train, [128], "relu", output=None)
    _optimization_options(train)
    train.add_argument("--early-stopping", action="store_true",
                       help="stop after --patience epochs without a lower validation loss; restore the best")
    train.add_argument("--patience", type=int, default=FitOptions.patience,
                       help="epochs without improvement before stopping")
    train.add_argument("--backend", default=FitOptions.backend, choices=ALL, help="implementation")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="parameter dtype")
    train.add_argument("--threads", type=int, help="Numba threads (default: all cores)")
    train.add_argument("--seed", type=int, default=0, help="seeds the initialisation, the splits and the shuffles")
    train.add_argument("--no-standardize", action="store_true", help="do not standardize the inputs")
    train.add_argument("--save", metavar="MODEL", help="save the trained model (.npz); also on Ctrl-C")
    train.add_argument("--checkpoint-every", type=int, metavar="N",
                       help="save the model to --save every N epochs (atomically)")
    train.add_argument("--resume", metavar="MODEL",
                       help="continue training a saved model: its architecture, optimizer state and epoch count")
    train.add_argument("--plot", metavar="PNG", help="save loss/accuracy curves (needs matplotlib)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines or progress bar")
    train.set_defaults(run=cmd_train)


def _optimization_options(train):
    """``train``'s penalty, optimiser, schedule, clipping and DP-SGD options."""
    train.add_argument("--l2", type=float, default=0.0, help="L2 penalty weight")
    train.add_argument("--optimizer", choices=tuple(OPTIMIZERS),
                       help="default: adam, or the --resume model's own, continued")
    train.add_argument("--lr", type=float, help="learning rate (default: the optimizer's: adam 0.001, others 0.01; "
                                               "with --resume the model's)")
    train.add_argument("--momentum", type=float,
                       help="for --optimizer momentum (default 0.9) and rmsprop (default 0)")
    train.add_argument("--nesterov", action="store_true", help="Nesterov momentum (--optimizer momentum)")
    train.add_argument("--centered", action="store_true", help="centered RMSprop (--optimizer rmsprop)")
    train.add_argument("--weight-decay", type=float, help="for --optimizer adamw (default 0.01)")
    train.add_argument("--epochs", type=int, default=FitOptions.epochs,
                       help="epochs to train (with --resume: more epochs)")
    train.add_argument("--batch-size", type=int, default=FitOptions.batch_size, help="samples per minibatch")
    train.add_argument("--schedule", choices=["step", "cosine", "reduce_on_plateau"],
                       help="learning-rate schedule over the epochs of this run (default: constant)")
    train.add_argument("--warmup-steps", type=int, default=FitOptions.warmup_steps,
                       help="linear learning-rate warm-up steps")
    train.add_argument("--clip-norm", type=float, help="clip the gradient's global norm to this")
    train.add_argument("--class-weight", choices=["balanced"], help="weigh classes by N / (K * count)")
    train.add_argument("--dp-clip", type=float, metavar="C", help="DP-SGD: clip each sample's gradient to norm C")
    train.add_argument("--dp-noise", type=float, metavar="SIGMA", help="DP-SGD: noise multiplier (std sigma C)")
    train.add_argument("--dp-delta", type=float, metavar="DELTA", help="DP-SGD: report epsilon at this delta "
                                                                        "(needs scalarbp[privacy])")
    train.add_argument("--dp-sampling", choices=["poisson", "shuffle"], default=FitOptions.dp_sampling,
                       help="DP-SGD batches: Poisson sampling (the analysis assumes it) or shuffled fixed-size")
    train.add_argument("--target-epsilon", type=float, help="DP-SGD: stop at this epsilon, or choose the noise "
                                                            "for it when --dp-noise is not given")


def _as_option(message, command):
    """``message`` with a leading parameter name (``batch_size must ...``, as the Python API
    says it) written as the command's option (``--batch-size must ...``)."""
    for action in command._actions:
        if action.option_strings and message.startswith(f"{action.dest} "):
            return max(action.option_strings, key=len) + message[len(action.dest):]
    return message


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    top = parser()
    args = top.parse_args(argv)
    tokens = {token.split("=")[0] for token in argv if token.startswith("-")}
    command = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    args.given = {action.dest for action in command._actions if tokens & set(action.option_strings)}
    from .model.persistence import ModelFileError
    from .training import DivergedError

    try:
        code = args.run(args)
    except BrokenPipeError:  # the reader of our output went away (e.g. "| head")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError, RuntimeError, ModelFileError, DivergedError) as err:
        message = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else \
            _as_option(str(err), command)
        print(f"scalarbp: error: {message}", file=sys.stderr)
        return 1
    except MemoryError as err:  # (sizes are checked against the machine's memory; this is what remains)
        print(f"scalarbp: error: out of memory ({str(err)[:200] or 'MemoryError'})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scalarbp: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
