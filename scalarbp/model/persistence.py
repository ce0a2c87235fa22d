"""Model files: one ``.npz`` holding a JSON configuration and plain numeric arrays.

Layout of a file (format version 1):

* ``config``: a 0-d unicode array, JSON: format name and version, the architecture,
  ``epochs_trained`` (and ``epoch_steps``, the steps done of an interrupted epoch), the
  class labels, and the optimiser's name, learning rate, hyper-parameters and step count
  (or null);
* ``theta``: the flat parameter vector (scalarbp.layout);
* ``optimizer.<name>``: each optimiser state array (velocity, moments);
* ``standardizer.mean``, ``standardizer.scale``: the input transform, if any;
* ``classes``: the original class labels, if they are not ``0..K-1``.

Reading is bounded and never runs code.  The configuration is read first (at most
:data:`MAX_CONFIG_BYTES`) and checked by the caller, which says which members it may
hold and their shapes and dtypes; every other member is refused.  Each member's ``.npy``
header is checked against that before its data are read, and exactly that many bytes
are then read, so memory stays within the model the configuration describes, itself
bounded by the file's size (a compressed member may expand at most
:data:`MAX_EXPANSION` times).  Anything wrong raises :class:`ModelFileError` naming the
file.  Saving writes a temporary file in the target's folder and renames it into place
(:func:`scalarbp.fileio.write_atomically`), so a failed save never damages the previous
file.
"""
import json
import os
import tokenize
import zipfile
import zlib

import numpy as np

from .. import fileio

FORMAT = "scalarbp-model"
VERSION = 1

#: The largest configuration member read, in bytes.
MAX_CONFIG_BYTES = 1 << 20

#: The largest ratio of a compressed member's declared size to its compressed size
#: (``np.savez`` stores members uncompressed; deflate itself stays under 1032).
MAX_EXPANSION = 1032

#: What a configuration holds besides the format's name and version.
KEYS = {"sizes", "hidden", "output", "loss", "l2", "dtype", "epochs_trained", "optimizer"}

#: Keys a configuration may hold besides :data:`KEYS`.
OPTIONAL_KEYS = {"epoch_steps", "privacy_ledger"}

#: Stands for the dtype of class labels in a member list: int64, or names (unicode) of at
#: most 256 characters.
LABELS = "labels"

#: What can go wrong inside a damaged archive or ``.npy`` header, as Python reports it.
DAMAGE = (ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
          RuntimeError, SyntaxError, tokenize.TokenError, UnicodeDecodeError, RecursionError, OverflowError,
          MemoryError)


class ModelFileError(ValueError):
    """A file that is not a readable scalarbp model; the message names the file."""


def save(path, config, arrays):
    """Write ``config`` (a JSON-able dict, given the format's name and version here) and the
    named ``arrays`` to one ``.npz`` file at ``path``, atomically."""
    config = {"format": FORMAT, "version": VERSION, **config}
    arrays = {"config": np.array(json.dumps(config)), **arrays}
    fileio.write_atomically(os.fspath(path), lambda file: np.savez(file, **arrays))


def read(path, members):
    """``(config, arrays)`` of a model file.

    ``members(config)`` checks the configuration (raising ``ValueError``/``TypeError``
    for a bad one) and returns ``{member name: (shape, dtype)}`` for every array the file
    may hold; the arrays come back for those it holds, each checked against its entry and
    to be finite.  Anything else raises :class:`ModelFileError`.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            magic = file.read(6)
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        raise ModelFileError(f"{name}: no such file") from None
    except OSError as err:
        raise ModelFileError(f"{name}: cannot read ({err.strerror or err})") from None
    if magic[:4] != b"PK\x03\x04":
        kind = "an .npy array" if magic == b"\x93NUMPY" else "empty" if not magic else \
            "pickled data, which is never loaded" if magic[:1] == b"\x80" else "not an .npz archive"
        raise ModelFileError(f"{name}: not a scalarbp model file ({kind})")
    try:
        with zipfile.ZipFile(name) as archive:
            infos = _members(name, archive, size)
            if "config" not in infos or "theta" not in infos:
                raise ModelFileError(f"{name}: not a scalarbp model file (no 'config' and 'theta' arrays; "
                                     f"it holds {', '.join(sorted(infos)) or 'nothing'})")
            config = _config(name, _read_config(name, archive, infos["config"]))
            try:
                expected = members(config)
            except (ValueError, TypeError, KeyError, OverflowError) as err:
                raise ModelFileError(f"{name}: inconsistent model file ({_reason(err)})") from None
            unknown = sorted(set(infos) - set(expected) - {"config"})
            if unknown:
                raise ModelFileError(f"{name}: unknown member(s) {', '.join(unknown)}; a scalarbp model holds "
                                     f"only {', '.join(['config', *expected])}")
            arrays = {key: _read_array(name, archive, infos[key], key, *expected[key])
                      for key in expected if key in infos}
    except ModelFileError:
        raise
    except DAMAGE as err:
        raise ModelFileError(f"{name}: damaged model file ({_reason(err)})") from None
    return config, arrays


def _members(name, archive, size):
    """``{array name: ZipInfo}``, each member checked to be a plain ``.npy`` of a sane size."""
    infos = {}
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy") or key in infos:
            raise ModelFileError(f"{name}: unexpected member {info.filename!r} (a model file holds each "
                                 f"array once, as .npy)")
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{name}: member {info.filename!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(f"{name}: member {info.filename!r} uses an unsupported compression method")
        limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else MAX_EXPANSION * info.compress_size
        if info.compress_size > size or info.file_size > limit:
            raise ModelFileError(f"{name}: member {info.filename!r} declares {info.file_size} bytes, "
                                 f"more than the file can hold")
        infos[key] = info
    return infos


def _read_config(name, archive, info):
    if info.file_size > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{name}: 'config' declares {info.file_size} bytes; a configuration is at most "
                             f"{MAX_CONFIG_BYTES}")
    with archive.open(info) as member:
        shape, dtype = _header(member)
        if dtype.kind != "U" or shape != ():
            raise ModelFileError(f"{name}: 'config' must be a JSON string, got a {dtype} array of shape {shape}")
        if dtype.itemsize > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{name}: 'config' is longer than {MAX_CONFIG_BYTES} bytes")
        data = member.read(dtype.itemsize)
    if len(data) != dtype.itemsize:
        raise ModelFileError(f"{name}: 'config' is truncated")
    return str(np.frombuffer(data, dtype)[0])


def _header(member):
    """Shape and dtype of a model file's member (C order: the format writes nothing else)."""
    shape, fortran, dtype = fileio.npy_header(member)
    if fortran and len(shape) > 1:
        raise ValueError("a Fortran-ordered array")
    return shape, dtype


def _read_array(name, archive, info, key, shape, dtype):
    """Member ``key``, its header checked against ``shape`` and ``dtype`` before any data is read."""
    with archive.open(info) as member:
        found_shape, found_dtype = _header(member)
        if dtype == LABELS:
            dtype = found_dtype if found_dtype.kind == "U" and found_dtype.itemsize <= 1024 else np.int64
        if found_shape != tuple(shape) or found_dtype != np.dtype(dtype):
            raise ModelFileError(f"{name}: array '{key}' has shape {found_shape} and dtype {found_dtype}, "
                                 f"the configuration needs {tuple(shape)} and {np.dtype(dtype)}")
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
        if nbytes > info.file_size:
            raise ModelFileError(f"{name}: array '{key}' is truncated ({info.file_size} bytes for {nbytes} of data)")
        array = np.empty(shape, dtype)
        if member.readinto(memoryview(array.reshape(-1)).cast("B")) != array.nbytes:
            raise ModelFileError(f"{name}: array '{key}' is truncated")
    if array.dtype.kind != "U" and not np.isfinite(array).all():
        raise ModelFileError(f"{name}: array '{key}' holds NaN or inf")
    return array


def _config(name, text):
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ModelFileError(f"{name}: 'config' is not valid JSON ({_reason(err)[:200]})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise ModelFileError(f"{name}: not a scalarbp model file (format {str(found)[:100]!r})")
    if config.get("version") != VERSION:
        raise ModelFileError(f"{name}: model format version {str(config.get('version'))[:100]}; "
                             f"this scalarbp reads version {VERSION}")
    missing = KEYS - set(config)
    if missing:
        raise ModelFileError(f"{name}: 'config' lacks {', '.join(sorted(missing))}")
    unknown = set(config) - KEYS - OPTIONAL_KEYS - {"format", "version"}
    if unknown:
        raise ModelFileError(f"{name}: 'config' holds unknown key(s) {', '.join(sorted(map(str, unknown)))[:200]}")
    return config


def _reason(err):
    return str(err) or type(err).__name__
