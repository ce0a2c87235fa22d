"""Model files: one ``.npz`` holding a JSON configuration and plain numeric arrays.

Layout of a file (format version 1):

* ``config``: a 0-d unicode array, JSON: format name and version, the architecture,
  ``epochs_trained``, and the optimiser's name, learning rate, hyper-parameters and step
  count (or null);
* ``theta``: the flat parameter vector (scalarbp.layout);
* ``optimizer.<name>``: each optimiser state array (velocity, moments);
* ``standardizer.mean``, ``standardizer.scale``: the input transform, if any.

Loading uses ``allow_pickle=False`` and checks every array against the configuration, so
a file can never run code, and a damaged or foreign one fails with :class:`ModelFileError`.
Saving writes a temporary file in the target's folder and renames it into place, so a
failed save never damages the previous file.
"""
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT = "scalarbp-model"
VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a readable scalarbp model."""


def save(path, config, arrays):
    """Write ``config`` (a JSON-able dict, given the format's name and version here) and the
    named ``arrays`` to one ``.npz`` file at ``path``, atomically."""
    config = {"format": FORMAT, "version": VERSION, **config}
    arrays = {"config": np.array(json.dumps(config)), **arrays}
    write_atomically(os.fspath(path), lambda file: np.savez(file, **arrays))


def write_atomically(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read(path):
    """``(config, arrays)`` of a model file: the configuration checked for the format, the
    version and every key the model needs (:data:`KEYS`), the arrays read with
    ``allow_pickle=False``.  Anything else raises :class:`ModelFileError`."""
    name = os.fspath(path)
    with open(name, "rb") as file:
        magic = file.read(6)
    if magic[:4] != b"PK\x03\x04":
        kind = "an .npy array" if magic == b"\x93NUMPY" else "empty" if not magic else \
            "pickled data, which is never loaded" if magic[:1] == b"\x80" else "not an .npz archive"
        raise ModelFileError(f"{name}: not a scalarbp model file ({kind})")
    try:
        archive = np.load(name, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"{name}: not a scalarbp model file ({_reason(err)})") from None
    with archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise ModelFileError(f"{name}: damaged model file ({_reason(err)})") from None
    return _config(name, arrays), arrays


#: What a configuration holds besides the format's name and version.
KEYS = {"sizes", "hidden", "output", "loss", "l2", "dtype", "epochs_trained", "optimizer"}


def _config(name, arrays):
    if "config" not in arrays or "theta" not in arrays:
        raise ModelFileError(f"{name}: not a scalarbp model file (no 'config' and 'theta' arrays; "
                             f"it holds {', '.join(sorted(arrays)) or 'nothing'})")
    raw = arrays["config"]
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ModelFileError(f"{name}: 'config' must be a JSON string, got a {raw.dtype} array of shape {raw.shape}")
    try:
        config = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{name}: 'config' is not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{name}: not a scalarbp model file (format {config.get('format') if isinstance(config, dict) else None!r})")
    if config.get("version") != VERSION:
        raise ModelFileError(f"{name}: model format version {config.get('version')!r}; this scalarbp reads version {VERSION}")
    missing = KEYS - set(config)
    if missing:
        raise ModelFileError(f"{name}: 'config' lacks {', '.join(sorted(missing))}")
    return config


def array(name, arrays, key, shape, dtype):
    """``arrays[key]``, checked to have this shape and dtype and to be finite."""
    if key not in arrays:
        raise ModelFileError(f"{name}: array '{key}' is missing")
    array = arrays[key]
    if array.shape != tuple(shape) or array.dtype != dtype:
        raise ModelFileError(f"{name}: array '{key}' has shape {array.shape} and dtype {array.dtype}, "
                             f"the configuration needs {tuple(shape)} and {np.dtype(dtype)}")
    if not np.isfinite(array).all():
        raise ModelFileError(f"{name}: array '{key}' holds NaN or inf")
    return array


def count(value, what):
    """``value``, checked to be a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _reason(err):
    return str(err) or type(err).__name__
