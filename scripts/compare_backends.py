"""Scalar versus vector: compare the three backends' gradients and finite differences.

    python scripts/compare_backends.py --sizes 8 16 16 4 --hidden tanh --output softmax

prints, per layer, the largest absolute and relative differences between the scalar
kernels, the row reference, the column reference and central finite differences.
"""
import argparse

import numpy as np

import scalarbp
from scalarbp.activations import HIDDEN
from scalarbp.compare import differences, gradients, table
from scalarbp.losses import LOSSES, OUTPUTS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 16, 4])
    parser.add_argument("--hidden", nargs="+", default=["tanh"], choices=HIDDEN)
    parser.add_argument("--output", default="softmax", choices=OUTPUTS)
    parser.add_argument("--loss", default=None, choices=tuple(LOSSES))
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    hidden = args.hidden[0] if len(args.hidden) == 1 else args.hidden
    net = scalarbp.MLP(args.sizes, hidden=hidden, output=args.output, loss=args.loss,
                       l2=args.l2, dtype=args.dtype, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    X = rng.normal(size=(args.batch, args.sizes[0]))
    K = args.sizes[-1]
    Y = rng.integers(0, K, args.batch) if net.loss == "cross_entropy" else rng.uniform(0, 1, (args.batch, K))
    print(net)
    print(table(differences(net, gradients(net, X, Y))))


if __name__ == "__main__":
    main()
