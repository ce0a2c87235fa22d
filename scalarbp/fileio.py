"""Files written whole or not at all, and ``.npy`` headers read without trusting them: what
model files (:mod:`scalarbp.model.persistence`), privacy key files, history files and data
files (:mod:`scalarbp.datasets.files`) share.
"""
import os
import re
import stat
import tempfile
import threading

import numpy as np


def write_atomically(path, write, mode=None):
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A symlink is written through (its target is replaced); a path that exists and is not
    a regular file (a device, a folder) or cannot be written is refused; the new file gets
    ``mode``, else the mode a plain ``open`` would give it (the old file's, or 0666 less the
    umask); the temporary file is readable by its owner alone until then.  The
    temporary file's name carries this process's identity, so the next save to the same
    path removes those left by a process that was killed mid-save.
    """
    target, usual = _target(path)
    mode = usual if mode is None else mode
    folder, base = os.path.split(target)
    _remove_abandoned(folder, base)
    fd, temporary = _temporary(folder, base)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def check_writable(path):
    """Raise the ``OSError`` that :func:`write_atomically` would meet at ``path``, before any
    work is done: the target checked as it does, and its temporary sibling created and removed
    (a missing or read-only folder, a name too long once the temporary file's part is added)."""
    target, _ = _target(path)
    fd, temporary = _temporary(*os.path.split(target))
    os.close(fd)
    os.unlink(temporary)


def _target(path):
    """``(the file a save to path replaces, the mode the new file gets)``; refuses a target
    that is not a regular file or is read-only."""
    target = os.path.realpath(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return target, 0o666 & ~_umask()
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path}: not a regular file; refusing to replace it")
    if not info.st_mode & 0o222 or not os.access(target, os.W_OK):  # (root may write a 0444 file)
        raise PermissionError(f"{path}: the file is read-only; refusing to replace it")
    return target, stat.S_IMODE(info.st_mode)


def _temporary(folder, base):
    """A new temporary file beside ``folder/base``, named after this process: ``(fd, path)``."""
    return tempfile.mkstemp(prefix=f".{base}.{_process_id()}.", suffix=".tmp", dir=folder)


_UMASK_LOCK = threading.Lock()


def _umask():
    with _UMASK_LOCK:  # reading the umask means setting it; no other thread of ours sees the change
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _start_time(pid):
    """When process ``pid`` started (clock ticks since boot), or None if it does not run."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _process_id():
    """This process, named so that a reused pid is not mistaken for it: ``pid-starttime``."""
    pid = os.getpid()
    return f"{pid}-{_start_time(pid) or 0}"


def _remove_abandoned(folder, base):
    """Remove temporary files of earlier saves to ``base`` whose process no longer runs."""
    if not os.path.exists("/proc/self/stat"):  # (no way to tell a live process from a dead one)
        return
    pattern = re.compile(rf"\.{re.escape(base)}\.(\d+)-(\d+)\.[^.]*\.tmp")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for entry in names:
        match = pattern.fullmatch(entry)
        if match and _start_time(match[1]) != match[2]:
            try:
                os.unlink(os.path.join(folder, entry))
            except OSError:
                pass


def npy_header(file):
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header at the file's position,
    read without touching the data; object arrays (which would need pickle) are refused."""
    version = np.lib.format.read_magic(file)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(file, max_header_size=10000)
    if dtype.hasobject:
        raise ValueError("an object array, which is never loaded (it would need pickle)")
    return shape, fortran, dtype
