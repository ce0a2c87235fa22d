"""Scalar versus vector: compare the three backends' gradients and finite differences.

    python scripts/compare_backends.py --sizes 8 16 16 4 --hidden tanh --output softmax

prints, per layer, the largest absolute and relative differences between the scalar
kernels, the row reference, the column reference and central finite differences.  It is
``scalarbp compare`` (same options: ``--help``), kept as a script for the profiling and
comparison runs the design asks for.
"""
import sys

from scalarbp.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
