"""Loaders for users' own data.  Each returns ``(X, y)`` and names the problem in a bad file.

* ``.npz``: arrays ``X`` and ``y`` (other names via ``x_key``/``y_key``), no pickle;
* ``.npy``: X in one file, y in another (``labels=``);
* CSV: one sample per line, a label column, optional header, any delimiter;
* IDX (MNIST's format), plain or gzip-compressed: images and labels files.

``y`` comes back as int64 labels when every value is a whole number, else as float64.
"""
import contextlib
import csv
import gzip
import os
import stat
import struct
import tokenize
import zipfile
import zlib

import numpy as np

from ..fileio import npy_header


class DataError(ValueError):
    """A data file that cannot be used, with the file and the problem named."""


#: The most bytes of array data a compressed file (gzip IDX, deflated .npz member) may
#: expand to, per byte of the file (deflate itself stays under 1032).
MAX_EXPANSION = 1032

#: The most bytes of array data any one file may hold (raise it for larger data sets).
MAX_DATA_BYTES = 1 << 34

#: What a damaged file raises inside the readers this module uses, turned into DataError.
DAMAGE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, csv.Error, UnicodeDecodeError,
          NotImplementedError, RuntimeError, SyntaxError, OverflowError, MemoryError, struct.error, KeyError,
          TypeError, tokenize.TokenError, RecursionError)


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


def load(path, format=None, labels=None, label_column=-1, delimiter=",", header=None, drop_columns=()):
    """``(X, y)`` from a file of the given (or guessed) format.

    ``labels`` names the file holding y for ``npy`` and ``idx``; ``label_column``,
    ``delimiter``, ``header`` and ``drop_columns`` apply to CSV.  Without labels (no
    ``labels`` file, an ``.npz`` without ``y``, ``label_column=None``) y is None: enough
    for prediction.  Labels may be numbers or class names (strings).
    """
    format = format or guess_format(path)
    if format not in FORMATS:
        raise DataError(f"unknown data format {format!r}; expected one of {', '.join(FORMATS)}")
    _readable(path)
    if format == "npz":
        return load_npz(path, y_key="y" if _has(path, "y") else None)
    if format == "csv":
        return load_csv(path, label_column=label_column, delimiter=delimiter, header=header,
                        drop_columns=drop_columns)
    if format == "npy":
        return load_npy(path, labels)
    return load_idx(path, labels)


def _has(path, key):
    try:
        with zipfile.ZipFile(path) as archive:
            return f"{key}.npy" in archive.namelist()
    except DAMAGE:
        return True  # let load_npz report what is wrong with the file


def _checked(path, X, y):
    """Numeric 2-D X (images are flattened) and 1-D/2-D y of the same length (or None), finite."""
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X must be numeric, got dtype {X.dtype}")
    if X.ndim == 0:
        raise DataError(f"{path}: X is a single number, not samples")
    if X.shape[0] == 0 or X.size == 0:
        raise DataError(f"{path}: no samples (X has shape {X.shape})")
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    elif X.ndim > 2:
        X = X.reshape(X.shape[0], X.size // X.shape[0])
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise DataError(f"{path}: X holds NaN or inf")
    if y is None:
        return X, None
    if y.dtype.kind == "U" and y.ndim == 1:  # class names
        if X.shape[0] != y.shape[0]:
            raise DataError(f"{path}: X has {X.shape[0]} samples but y has {y.shape[0]}")
        return X, y
    if y.dtype.kind not in "biuf":
        raise DataError(f"{path}: y must be numbers or 1-D class names, got dtype {y.dtype}")
    if y.ndim not in (1, 2):
        raise DataError(f"{path}: y must be 1-D labels or 2-D targets, got shape {y.shape}")
    if y.size == 0:
        raise DataError(f"{path}: y is empty (shape {y.shape})")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{path}: X has {X.shape[0]} samples but y has {y.shape[0]}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"{path}: y holds NaN or inf")
    if y.dtype.kind == "f" and (y == np.round(y)).all() and np.abs(y).max() < 2 ** 53:
        y = y.astype(np.int64)  # (whole numbers beyond 2**53 stay float: int64 could wrap them)
    return X, y


def load_npz(path, x_key="X", y_key="y"):
    with _reading(path, "cannot read as .npz"), zipfile.ZipFile(path) as archive:
        size = os.fstat(archive.fp.fileno()).st_size
        for info in archive.infolist():
            if info.file_size > min(MAX_EXPANSION * max(info.compress_size, 1), MAX_DATA_BYTES) \
                    or info.compress_size > size:
                raise DataError(f"{path}: member {info.filename} declares {info.file_size} bytes, more than "
                                f"the limit (files.MAX_DATA_BYTES) or than the file can hold")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (x_key, y_key) if k is not None and k not in data.files]
            if missing:
                raise DataError(f"{path}: no array {' or '.join(map(repr, missing))}; it holds "
                                f"{', '.join(data.files) or 'nothing'}")
            X, y = data[x_key], None if y_key is None else data[y_key]
    return _checked(path, X, y)


def load_npy(x_path, y_path=None):
    arrays = []
    for path in (x_path, y_path):
        arrays.append(None if path is None else _read_npy(path))
    return _checked(x_path, *arrays)


def _read_npy(path):
    """One ``.npy`` array; its header is checked against the file's size before reading."""
    with _reading(path, "cannot read as .npy"), open(path, "rb") as file:
        if file.read(6) != b"\x93NUMPY":
            raise DataError(f"{path}: not an .npy array")
        file.seek(0)
        shape, _, dtype = npy_header(file)
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if nbytes != os.fstat(file.fileno()).st_size - file.tell():
            raise DataError(f"{path}: the header says shape {shape} of {dtype} ({nbytes} bytes) but the file "
                            f"holds {os.fstat(file.fileno()).st_size - file.tell()} bytes of data")
        file.seek(0)
        return np.load(file, allow_pickle=False)


def _readable(path):
    """Refuse what is not a file of data (a folder, a device such as ``/dev/zero``, which
    would be read for ever); a pipe is read, as far as :data:`MAX_DATA_BYTES`."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: a folder, not a data file")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise DataError(f"{path}: a device, not a data file")


@contextlib.contextmanager
def _reading(path, what):
    """Whatever reading ``path`` raises becomes a DataError naming it: ``what`` says how
    it was being read."""
    _readable(path)
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except DataError:
        raise
    except DAMAGE as err:
        raise DataError(f"{path}: {what} ({str(err)[:200] or type(err).__name__})") from None


def load_csv(path, label_column=-1, delimiter=",", header=None, drop_columns=()):
    """One sample per line; ``label_column`` is an index, a column name (with a header),
    or None for a file of features only; ``drop_columns`` (indices or names) are skipped.

    ``header=None`` decides from the file: the first line is a header only if none of its
    fields is a number and the next line has one (a first line like ``2O,3`` is then a
    malformed data line, reported as such, never silently dropped).  The file is read as
    UTF-8, a byte-order mark skipped.  The numbers are parsed by NumPy's C parser
    (``np.loadtxt``); labels that are not numbers are class names (strings).  A file
    that does not parse is read again field by field, to name the line and column at
    fault.
    """
    if label_column is not None and (isinstance(label_column, bool)
                                     or not isinstance(label_column, (int, np.integer, str))):
        raise DataError(f"{path}: label_column must be a column index or name, got {label_column!r}")
    with _reading(path, "cannot read as CSV"), open(path, newline="", encoding="utf-8-sig") as file:
        try:
            text = file.read(MAX_DATA_BYTES + 1)
            if len(text) > MAX_DATA_BYTES:
                raise DataError(f"{path}: more than files.MAX_DATA_BYTES ({MAX_DATA_BYTES} characters) of CSV")
            lines = [line for line in text.splitlines() if line.strip()]
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8") from None
    if not lines:
        raise DataError(f"{path}: empty file")
    first, second = ([_fields(path, line, delimiter, n) for n, line in enumerate(lines[:2], 1)] + [None])[:2]
    names = None
    if header is None:
        header = not any(_is_number(field) for field in first) and (second is None or any(map(_is_number, second)))
    if header:
        names, lines = [name.strip() for name in first], lines[1:]
    if not lines:
        raise DataError(f"{path}: a header but no data")
    width = len(first if not header or second is None else second)
    if label_column is not None and width < 2:
        raise DataError(f"{path}: needs at least 2 columns (features and a label), got {width} "
                        f"(delimiter {delimiter!r})")
    column = None if label_column is None else _column(path, label_column, names, width)
    dropped = {_column(path, c, names, width) for c in drop_columns}
    features = [j for j in range(width) if j != column and j not in dropped]
    if not features:
        raise DataError(f"{path}: no feature columns left")
    first_line = 2 if header else 1
    try:
        X = np.loadtxt(lines, delimiter=delimiter, usecols=features, ndmin=2, comments=None, quotechar='"')
        y = None if column is None else np.loadtxt(lines, delimiter=delimiter, usecols=[column], dtype=str,
                                                   comments=None, quotechar='"', ndmin=1)
    except ValueError:
        _find_bad_field(path, lines, delimiter, width, first_line, column)
        raise
    if y is not None:
        y = np.char.strip(y)
        empty = np.flatnonzero(y == "")
        if empty.size:
            trailing = column == width - 1 and empty.size == y.size
            raise DataError(f"{path}, line {first_line + empty[0]}: the label (column {column + 1}) is empty" +
                            (f"; every line ends with the delimiter {delimiter!r}: remove the trailing delimiter, "
                             f"or give the label column" if trailing else ""))
        try:
            y = y.astype(np.float64)
        except ValueError:
            pass  # class names
    return _checked(path, X, y)


def _fields(path, line, delimiter, number):
    try:
        return next(csv.reader([line], delimiter=delimiter))
    except (csv.Error, StopIteration) as err:
        raise DataError(f"{path}, line {number}: {err}") from None


def _find_bad_field(path, lines, delimiter, width, first_line, label_column):
    """Raise the DataError naming the first line or field that does not parse."""
    for n, line in enumerate(lines):
        row = _fields(path, line, delimiter, n + first_line)
        if len(row) != width:
            raise DataError(f"{path}, line {n + first_line}: {len(row)} fields, expected {width}")
        for j, field in enumerate(row):
            if j != label_column and not _is_number(field):
                raise DataError(f"{path}, line {n + first_line}, column {j + 1}: {field[:50]!r} is not a number")
    raise DataError(f"{path}: cannot parse as CSV with delimiter {delimiter!r}")


def _is_number(field):
    """Whether ``np.loadtxt`` reads ``field`` as a number (Python's ``float`` also takes
    ``1_000``, which it does not)."""
    if "_" in field:
        return False
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


#: The most dimensions an IDX file may declare (MNIST's have 1 and 3).
IDX_MAX_DIMENSIONS = 8


def read_idx(path):
    """One IDX array (plain or gzip): magic 0 0 type ndim, ndim big-endian int32 sizes, data.

    The header is read first and the size it declares checked against the file (exactly,
    for a plain file; at most :data:`MAX_EXPANSION` times its size, for gzip) before that
    many bytes are read, so a small file cannot make it read or allocate more.
    """
    with _reading(path, "damaged IDX or gzip file"), open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        head = stream.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0:
            raise DataError(f"{path}: not an IDX file (the first two bytes must be zero)")
        type_code, ndim = head[2], head[3]
        if type_code not in IDX_TYPES:
            raise DataError(f"{path}: unknown IDX data type 0x{type_code:02x}")
        if not 1 <= ndim <= IDX_MAX_DIMENSIONS:
            raise DataError(f"{path}: IDX header declares {ndim} dimensions; expected 1 to {IDX_MAX_DIMENSIONS}")
        dims = stream.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise DataError(f"{path}: IDX header truncated")
        shape = struct.unpack(f">{ndim}I", dims)
        dtype = np.dtype(IDX_TYPES[type_code])
        expected = dtype.itemsize
        for d in shape:  # Python integers: no wrap-around
            expected *= d
        room = min(MAX_EXPANSION * size, MAX_DATA_BYTES) if compressed else size - 4 - 4 * ndim
        if expected > room or (not compressed and expected != room):
            raise DataError(f"{path}: IDX header says shape {shape} ({expected} bytes of data) but the file "
                            f"{'cannot hold that many' if compressed else f'holds {room} bytes'}")
        body = stream.read(expected)
        if len(body) != expected or stream.read(1):
            raise DataError(f"{path}: IDX header says shape {shape} ({expected} bytes of data) "
                            f"but the file holds {'fewer' if len(body) != expected else 'more'}")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def load_idx(images_path, labels_path=None):
    """MNIST-style images ``(N, rows, cols)`` (flattened to ``(N, rows * cols)``) and labels ``(N,)``."""
    labels = None if labels_path is None else read_idx(labels_path)
    return _checked(images_path, read_idx(images_path), labels)
