"""A DP-SGD run's key file (``fit(..., dp_key_file=PATH)``; the CLI's ``MODEL.dpkey``):
the secret key of an unfinished run, so that a run resumed from its checkpoint draws
the same noise and batches as the run that was never stopped, bit for bit.

The file is as secret as the key: with it and the weights of two consecutive
checkpoints, the noise of every step between them can be computed and subtracted.  The
model files stay free of it and may be released; the key file may not.

What it holds (JSON, owner-only, written atomically): the key, the digest of the run's
plan (:func:`scalarbp.plans.plan`: the network, every row of the data, the targets, the
batches, the optimiser and its hyper-parameters, the schedule, the backend, the clipping
bound and the sampling), its noise multiplier, and the digest of every state the run has
stood in at a fit's start, an epoch's end or an interruption (:func:`scalarbp.plans.state`).

The rule it enforces: a key drives one trajectory only.  A fit takes the key from the file
only if the net is one of those states and the fit's plan and noise are the run's, so
whatever it computes is what the run itself computed from that state (the same steps,
numbered by the ledger, with the same noise): resuming the same checkpoint twice, or with
the file of another run, releases nothing new.  Any other fit (other data, even one record
changed; another learning rate, batch size, noise or backend; weights the run never had)
draws a fresh key, says why with a :class:`KeyFileWarning`, and the file then holds the
new run's key.  The file is removed when the fit ends other than by an interruption or an
error (the run is finished; nothing is left to resume).
"""
import json
import os
import warnings

import numpy as np

from .. import fileio, plans

FORMAT = "scalarbp DP-SGD key file"
VERSION = 1

#: The largest key file read (a run's states: 16 hex digits each, about 50,000 of them).
MAX_BYTES = 1 << 20


#: The CLI's key file of a model saved to ``PATH``: ``PATH.dpkey``.
SUFFIX = ".dpkey"


def beside(model_path):
    """The key file the CLI keeps beside ``model_path``."""
    return os.fspath(model_path) + SUFFIX


def move(source, target):
    """Move the key file ``source`` (if there is one: a checked key file) to ``target``,
    owner-only, atomically: a run resumed under another name keeps its key, and no copy
    of it is left behind.  A ``target`` that holds another run's key is refused."""
    record = _read(source)
    if record is None:
        return
    other = _read(target)  # (refuses to replace what is not a key file)
    if other is not None and other["key"] != record["key"]:
        raise KeyFileError(f"{target}: holds the key of another unfinished run; remove it, or save elsewhere")
    text = json.dumps(record).encode()  # (the checked record: the file is not read twice)
    fileio.write_atomically(target, lambda file: file.write(text), mode=0o600)
    os.unlink(source)


class KeyFileError(ValueError):
    """A path given as a DP key file that holds something else (refused, not replaced)."""


class KeyFileWarning(UserWarning):
    """A key file that a fit could not resume from: the fit draws a fresh key."""


class Keeper:
    """The key file of one DP-SGD fit: :meth:`resume` and :meth:`begin` before training,
    :meth:`mark` at each epoch's end and an interruption, :meth:`finish` at its end."""

    def __init__(self, path, plan, schedule):
        self.path, self.plan, self.states = os.fspath(path), plans.fingerprint(plan), []
        self.schedule = schedule  # (its counts are part of each state: a fresh one is not the run's)
        fileio.check_writable(self.path)
        self.record = _read(self.path)

    def resume(self, net):
        """``(key, noise)`` of the run the file holds if this net is one of its states and
        this fit's plan is its plan, else None (with a warning saying why, if there is a
        file)."""
        record = self.record
        if record is None:
            return None
        why = ("it belongs to a run with another plan (data, batches, optimiser, schedule, backend or DP settings)"
               if record["plan"] != self.plan else
               "the net is not a state of its run (other weights or counters)"
               if plans.state(net, self.schedule) not in record["states"] else None)
        if why is not None:
            self.refuse(why)
            return None
        return np.array(record["key"], np.uint32), record["noise"]

    def refuse(self, why):
        warnings.warn(f"{self.path}: not resumed, {why}; this fit draws a fresh secret key (private, but not "
                      f"the interrupted run's noise and batches) and the file now keeps it", KeyFileWarning,
                      stacklevel=2)
        self.record = None

    def begin(self, net, private, resumed):
        """Start keeping ``private``'s run: the file's (``resumed``, from :meth:`resume`) if
        the fit's noise multiplier is the run's, its key then replacing the fresh one."""
        if resumed is not None and resumed[1] != private.noise:
            self.refuse(f"its noise multiplier is {resumed[1]!r}, this fit's {private.noise!r}")
            resumed = None
        if resumed is not None:
            private.key, self.states = resumed[0], list(self.record["states"])
        self.private = private
        self.mark(net)

    def mark(self, net):
        """Add where the net stands now to the run's states, and write the file (a file that
        cannot be written is said once and the run goes on: it cannot be resumed bit for bit,
        which is safe)."""
        state = plans.state(net, self.schedule)
        if state not in self.states:
            self.states.append(state)
        record = {"format": FORMAT, "version": VERSION, "key": [int(word) for word in self.private.key],
                  "plan": self.plan, "noise": float(self.private.noise), "states": self.states}
        text = json.dumps(record).encode()
        if len(text) > MAX_BYTES:  # (about 50,000 epochs or interruptions: keep the newest states)
            self.states = self.states[len(self.states) // 2:]
            return self.mark(net)
        try:
            fileio.write_atomically(self.path, lambda file: file.write(text), mode=0o600)
        except OSError as err:
            if not getattr(self, "unwritable", False):
                warnings.warn(f"{self.path}: cannot keep the run's key ({err.strerror or err}); training goes on, "
                              f"but cannot be resumed with the same noise", KeyFileWarning, stacklevel=2)
            self.unwritable = True

    def finish(self):
        """The run is over: remove its key (a symlink's target too, where the key is)."""
        for path in {os.path.realpath(self.path), self.path}:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                warnings.warn(f"{path}: cannot remove the finished run's key ({err.strerror or err}); remove it "
                              f"by hand: it is secret", KeyFileWarning, stacklevel=2)


def _read(path):
    """The key file at ``path`` as a checked dict, or None if there is none."""
    try:
        with open(path, "rb") as file:
            text = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read the DP key file ({err.strerror or err})") from None
    if len(text) > MAX_BYTES:
        raise KeyFileError(f"{path}: larger than a DP key file ({MAX_BYTES} bytes); refusing to replace it")
    try:
        record = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        record = None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise KeyFileError(f"{path}: not a scalarbp DP key file; refusing to replace it (give another "
                           f"dp_key_file, or remove it)")
    key, states, noise = record.get("key"), record.get("states"), record.get("noise")
    if (record.get("version") != VERSION or not isinstance(record.get("plan"), str)
            or not (isinstance(key, list) and len(key) == 8 and all(type(w) is int and 0 <= w < 2 ** 32 for w in key))
            or not (isinstance(states, list) and all(isinstance(s, str) for s in states))
            or type(noise) not in (int, float) or not np.isfinite(noise) or noise < 0):
        raise KeyFileError(f"{path}: a damaged or unknown version of a DP key file; refusing to use or replace "
                           f"it (remove it to start a new run)")
    return record
