"""solver="lbfgs" beside scikit-learn's, in one process: the same data, net, tolerance and
initial weights (the estimators draw scikit-learn's), medians of ``--repeats`` fits after
one warm-up fit of each (the compile and the import are timed apart, once), with the CPU.

    python scripts/lbfgs_bench.py [--repeats 5]
"""
import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from scalarbp.sklearn import ScalarMLPClassifier
from scalarbp.timing import machine


def timed(make, X, y, repeats):
    seconds, model = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        model = make().fit(X, y)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)), model


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    print(machine())
    warnings.simplefilter("ignore", ConvergenceWarning)
    print("| data | net | scalarbp s (iterations, accuracy) | scikit-learn s (iterations, accuracy) | ratio |")
    print("|---|---|---|---|---|")
    for name, load in (("breast cancer", load_breast_cancer), ("digits", load_digits)):
        X, y = load(return_X_y=True)
        X = StandardScaler().fit_transform(X)
        for hidden in ((50,), (100,)):
            settings = dict(hidden_layer_sizes=hidden, solver="lbfgs", max_iter=200, random_state=0)
            start = time.perf_counter()
            ScalarMLPClassifier(**{**settings, "max_iter": 1}).fit(X, y)  # (the compile, once per shape)
            first = time.perf_counter() - start
            ours, model = timed(lambda: ScalarMLPClassifier(**settings), X, y, args.repeats)
            theirs, reference = timed(lambda: MLPClassifier(**settings), X, y, args.repeats)
            print(f"| {name} {X.shape} | {hidden[0]} | {ours:.3f} ({model.n_iter_}, {model.score(X, y):.4f}) | "
                  f"{theirs:.3f} ({reference.n_iter_}, {reference.score(X, y):.4f}) | {theirs / ours:.2f}x "
                  f"(first fit {first:.1f} s) |", flush=True)


if __name__ == "__main__":
    main()
