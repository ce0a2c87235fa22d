"""Loaders for users' own data.  Each returns ``(X, y)`` and names the problem in a bad file.

* ``.npz``: arrays ``X`` and ``y`` (other names via ``x_key``/``y_key``), no pickle;
* ``.npy``: X in one file, y in another (``labels=``);
* CSV: one sample per line, a label column, optional header, any delimiter;
* IDX (MNIST's format), plain or gzip-compressed: images and labels files.

``y`` comes back as int64 labels when every value is a whole number, else as float64.
"""
import csv
import gzip
import os
import zipfile

import numpy as np


class DataError(ValueError):
    """A data file that cannot be used, with the file and the problem named."""


FORMATS = ("npz", "npy", "csv", "idx")


def guess_format(path):
    name = os.path.basename(os.fspath(path)).lower().removesuffix(".gz")
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if "idx" in name or name.endswith("-ubyte"):
        return "idx"
    raise DataError(f"{path}: cannot tell the format from the name; give one of {', '.join(FORMATS)}")


def load(path, format=None, labels=None, label_column=-1, delimiter=",", header=None):
    """``(X, y)`` from a file of the given (or guessed) format.

    ``labels`` names the file holding y for ``npy`` and ``idx``; ``label_column``,
    ``delimiter`` and ``header`` apply to CSV.  Without labels (no ``labels`` file, an
    ``.npz`` without ``y``, ``label_column=None``) y is None: enough for prediction.
    """
    format = format or guess_format(path)
    if format == "npz":
        return load_npz(path, y_key="y" if _has(path, "y") else None)
    if format == "csv":
        return load_csv(path, label_column=label_column, delimiter=delimiter, header=header)
    if format == "npy":
        return load_npy(path, labels)
    if format == "idx":
        return load_idx(path, labels)
    raise DataError(f"unknown data format {format!r}; expected one of {', '.join(FORMATS)}")


def _has(path, key):
    try:
        with np.load(path, allow_pickle=False) as data:
            return isinstance(data, np.lib.npyio.NpzFile) and key in data.files
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        return True  # let load_npz report what is wrong with the file


def _checked(path, X, y):
    """Numeric 2-D X (images are flattened) and 1-D/2-D y of the same length (or None), finite."""
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X must be numeric, got dtype {X.dtype}")
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    elif X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    if X.shape[0] == 0:
        raise DataError(f"{path}: no samples")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise DataError(f"{path}: X holds NaN or inf")
    if y is None:
        return X, None
    if y.dtype.kind not in "biuf":
        raise DataError(f"{path}: y must be numeric, got dtype {y.dtype}")
    if y.ndim not in (1, 2):
        raise DataError(f"{path}: y must be 1-D labels or 2-D targets, got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{path}: X has {X.shape[0]} samples but y has {y.shape[0]}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"{path}: y holds NaN or inf")
    if y.dtype.kind == "f" and (y == np.round(y)).all():
        y = y.astype(np.int64)
    return X, y


def load_npz(path, x_key="X", y_key="y"):
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: not an .npz archive")
            missing = [k for k in (x_key, y_key) if k is not None and k not in data.files]
            if missing:
                raise DataError(f"{path}: no array {' or '.join(map(repr, missing))}; it holds "
                                f"{', '.join(data.files) or 'nothing'}")
            X, y = data[x_key], None if y_key is None else data[y_key]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot read as .npz ({err})") from None
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: {err}") from None
    return _checked(path, X, y)


def load_npy(x_path, y_path=None):
    arrays = []
    for path in (x_path, y_path):
        if path is None:
            arrays.append(None)
            continue
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except (OSError, EOFError, ValueError) as err:
            raise DataError(f"{path}: cannot read as .npy ({err})") from None
        if not isinstance(arrays[-1], np.ndarray):
            arrays[-1].close()
            raise DataError(f"{path}: an .npz archive, not a single .npy array")
    return _checked(x_path, *arrays)


def load_csv(path, label_column=-1, delimiter=",", header=None):
    """One sample per line; ``label_column`` is an index, a column name (with a header),
    or None for a file of features only.

    ``header=None`` detects a header: a first line with a field that is not a number.
    """
    with open(path, newline="") as file:
        rows = [row for row in csv.reader(file, delimiter=delimiter) if row]
    if not rows:
        raise DataError(f"{path}: empty file")
    names = None
    if header is None:
        header = any(not _is_number(field) for field in rows[0])
    if header:
        names, rows = [name.strip() for name in rows[0]], rows[1:]
    if not rows:
        raise DataError(f"{path}: a header but no data")
    width = len(rows[0])
    if label_column is not None and width < 2:
        raise DataError(f"{path}: needs at least 2 columns (features and a label), got {width} "
                        f"(delimiter {delimiter!r})")
    column = None if label_column is None else _column(path, label_column, names, width)
    data = np.empty((len(rows), width))
    first_line = 2 if header else 1
    for n, row in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path}, line {n + first_line}: {len(row)} fields, expected {width}")
        for j, field in enumerate(row):
            try:
                data[n, j] = float(field)
            except ValueError:
                raise DataError(f"{path}, line {n + first_line}, column {j + 1}: {field!r} is not a number") from None
    if column is None:
        return _checked(path, data, None)
    return _checked(path, np.delete(data, column, axis=1), data[:, column])


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def _column(path, label_column, names, width):
    if isinstance(label_column, str):
        if names is None or label_column not in names:
            raise DataError(f"{path}: no column named {label_column!r}" +
                            (f"; columns are {', '.join(names)}" if names else " (the file has no header)"))
        return names.index(label_column)
    if not -width <= label_column < width:
        raise DataError(f"{path}: label column {label_column} out of range for {width} columns")
    return label_column % width


#: IDX type codes: (numpy big-endian dtype, name).
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """One IDX array (plain or gzip): magic 0 0 type ndim, ndim big-endian int32 sizes, data."""
    with open(path, "rb") as file:
        raw = file.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: damaged gzip file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (the first two bytes must be zero)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        raise DataError(f"{path}: unknown IDX data type 0x{type_code:02x}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: IDX header truncated or with 0 dimensions")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = len(raw) - 4 - 4 * ndim
    if body != expected:
        raise DataError(f"{path}: IDX header says shape {shape} ({expected} bytes of data) "
                        f"but the file holds {body} bytes")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def load_idx(images_path, labels_path=None):
    """MNIST-style images ``(N, rows, cols)`` (flattened to ``(N, rows * cols)``) and labels ``(N,)``."""
    labels = None if labels_path is None else read_idx(labels_path)
    return _checked(images_path, read_idx(images_path), labels)
