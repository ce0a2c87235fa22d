"""Data for scalarbp: the embedded digits, loaders for users' files, synthetic sets and a
standardizer.

* :func:`load_digits`: UCI optical-recognition 8x8 handwritten digits, shipped in the package.
* :func:`load`: a file by its format (``npz``, ``npy``, ``csv``, ``idx``), and the
  per-format loaders :func:`load_npz`, :func:`load_npy`, :func:`load_csv`, :func:`load_idx`.
* :func:`make_spirals`, :func:`make_blobs`: seeded synthetic classification data.
* :class:`Standardizer`: zero mean, unit variance, fitted on training data only.
"""
from .digits import load_digits
from .files import DataError, load, load_csv, load_idx, load_npy, load_npz
from .preprocessing import Standardizer, train_test_split
from .synthetic import make_blobs, make_spirals

__all__ = ["load_digits", "load", "load_npz", "load_npy", "load_csv", "load_idx", "DataError",
           "make_spirals", "make_blobs", "Standardizer", "train_test_split"]
