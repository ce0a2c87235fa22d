"""What a fit is about to do, as digests: what the MPI ranks agree on before training
(:mod:`scalarbp.distributed`) and what a DP-SGD key file is bound to
(:mod:`scalarbp.privacy.keyfile`).

A digest is 16 hex digits of SHA-256 over each array's dtype, shape and bytes: equal for
equal arrays, and different, for any practical purpose, when one bit differs.
"""
import hashlib

import numpy as np

from . import checks

#: Rows hashed at a time (so that a memmap larger than memory is read a block at a time).
BLOCK_ROWS = 4096

#: Rows of X each MPI rank reads for the digest of the data it trains on (:func:`rows_digest`).
SAMPLED_ROWS = 16


def digest(*arrays):
    """16 hex digits of the arrays' bytes (None skipped), every row of each read once."""
    hasher = hashlib.sha256()
    for array in arrays:
        if array is None:
            continue
        if checks.is_sparse(array):  # (its stored values and where they are)
            array = array.tocsr()
            hasher.update(digest(np.array(array.shape), array.data, array.indices, array.indptr).encode())
            continue
        array = array if isinstance(array, np.ndarray) else np.asarray(array)
        hasher.update(str((array.dtype.str, array.shape)).encode())
        if array.ndim == 0:
            hasher.update(np.ascontiguousarray(array).tobytes())
        for start in range(0, array.shape[0] if array.ndim else 0, BLOCK_ROWS):
            hasher.update(np.ascontiguousarray(array[start:start + BLOCK_ROWS]).tobytes())
    return hasher.hexdigest()[:16]


def rows_digest(X):
    """The digest of :data:`SAMPLED_ROWS` rows of X spread evenly from its first to its
    last: cheap (a memmap reads those rows only), and different when the ranks were given
    different data."""
    return digest(X[np.unique(np.linspace(0, X.shape[0] - 1, SAMPLED_ROWS).astype(np.int64))])


def fingerprint(values):
    """The digest of a plan, a state or any other value whose ``repr`` says it exactly."""
    return digest(np.frombuffer(repr(values).encode(), np.uint8))


def state(net, schedule=None):
    """The digest of where the net stands: its weights, its optimiser's state, step count
    and every option (the rate a schedule set included), its epoch counters, its privacy
    ledger, and the state of ``schedule`` (what a stateful one, such as
    ``reduce_on_plateau``, has counted so far)."""
    opt = net.optimizer
    counters = (net.epochs_trained, net.epoch_steps, None if opt is None else (repr(opt), opt.t),
                tuple(net.privacy_ledger.entries), None if schedule is None else schedule.settings())
    return digest(net.theta, *([] if opt is None else [opt.state[name] for name in sorted(opt.state)]),
                  np.frombuffer(repr(counters).encode(), np.uint8))  # (as fingerprint() does, with the arrays)


def plan(net, engine, batches, batch_size, seed, shuffle, opt, validation, early_stopping, patience, clip,
         warmup_steps, schedule, data):
    """What a fit does from here, apart from the weights it starts from and the number of
    epochs: a dict of comparable values.  ``data`` is the digest of X that the caller
    chose (sampled rows for MPI, every row for a key file)."""
    standardizer = net.standardizer
    return dict(network=str(net), dtype=net.dtype.name, samples=batches.N, batch_size=batch_size, seed=seed,
                shuffle=shuffle, optimizer=opt.name, data=data,
                targets=digest(batches.labels, batches.T, batches.subset),
                sample_weights=digest(batches.weights),
                standardizer=None if standardizer is None else digest(standardizer.mean, standardizer.scale),
                validation=None if validation is None else digest(*validation[:2]),
                early_stopping=(early_stopping, patience), clip_norm=clip, warmup_steps=warmup_steps,
                schedule=schedule.settings(), backend=engine.name)
