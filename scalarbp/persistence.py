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

from . import checks
from .layout import Layout

FORMAT = "scalarbp-model"
VERSION = 1


class ModelFileError(ValueError):
    """A file that is not a readable scalarbp model."""


def save(net, path):
    optimizer = net.optimizer
    config = {
        "format": FORMAT, "version": VERSION,
        "sizes": list(net.sizes), "hidden": list(net.hidden), "output": net.output,
        "loss": net.loss, "l2": net.l2, "dtype": net.dtype.name,
        "epochs_trained": net.epochs_trained,
        "optimizer": None if optimizer is None else {
            "name": optimizer.name, "lr": optimizer.lr, "hyper": optimizer.hyper, "t": optimizer.t},
    }
    arrays = {"config": np.array(json.dumps(config)), "theta": net.theta}
    if optimizer is not None:
        arrays.update({f"optimizer.{k}": v for k, v in optimizer.state.items()})
    if net.standardizer is not None:
        arrays["standardizer.mean"] = net.standardizer.mean
        arrays["standardizer.scale"] = net.standardizer.scale
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


def load(path):
    from .datasets import Standardizer
    from .model import MLP
    from .optimizers import make

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
    config = _config(name, arrays)
    try:
        size = Layout(checks.sizes(config["sizes"])).size
        if arrays["theta"].shape != (size,):  # before allocating what the config asks for
            raise ModelFileError(f"{name}: array 'theta' has shape {arrays['theta'].shape}, "
                                 f"sizes {config['sizes']} need ({size},)")
        net = MLP(config["sizes"], config["hidden"], config["output"], config["loss"], config["l2"],
                  config["dtype"])
        net.epochs_trained = _count(config["epochs_trained"], "epochs_trained")
        net.theta[...] = _array(name, arrays, "theta", net.theta.shape, net.dtype)
        if config["optimizer"] is not None:
            opt = config["optimizer"]
            net.optimizer = make(opt["name"], opt["lr"], **opt["hyper"])
            net.optimizer.t = _count(opt["t"], "optimizer step count")
            for key in net.optimizer.state_names:
                net.optimizer.state[key] = _array(name, arrays, f"optimizer.{key}", net.theta.shape, net.dtype)
        if "standardizer.mean" in arrays:
            width = (net.sizes[0],)
            net.standardizer = Standardizer.from_arrays(
                _array(name, arrays, "standardizer.mean", width, np.float64),
                _array(name, arrays, "standardizer.scale", width, np.float64))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(f"{name}: inconsistent model file ({_reason(err)})") from None
    return net


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
    missing = {"sizes", "hidden", "output", "loss", "l2", "dtype", "epochs_trained", "optimizer"} - set(config)
    if missing:
        raise ModelFileError(f"{name}: 'config' lacks {', '.join(sorted(missing))}")
    return config


def _array(name, arrays, key, shape, dtype):
    if key not in arrays:
        raise ModelFileError(f"{name}: array '{key}' is missing")
    array = arrays[key]
    if array.shape != tuple(shape) or array.dtype != dtype:
        raise ModelFileError(f"{name}: array '{key}' has shape {array.shape} and dtype {array.dtype}, "
                             f"the configuration needs {tuple(shape)} and {np.dtype(dtype)}")
    if not np.isfinite(array).all():
        raise ModelFileError(f"{name}: array '{key}' holds NaN or inf")
    return array


def _count(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _reason(err):
    return str(err) or type(err).__name__
