"""Differentially private training (DP-SGD): per-example clipping, Gaussian noise, Poisson
sampling, and the privacy spent, from the scalar form.

A step of DP-SGD (Abadi et al. 2016; the same update as Opacus'):

1. a batch: with ``sampling="poisson"`` each training sample joins independently with
   probability ``q = batch_size / N`` (what the privacy analysis assumes); with
   ``"shuffle"``, the fixed-size shuffled batches of ordinary training, which the
   analysis does not cover (the ledger then says epsilon is inf);
2. ``sum_n c_n g_n`` with ``c_n`` = :func:`scalarbp.definitions.clipping.clip_factor`: every
   sample's gradient clipped to norm C (its delta rows scaled before the weight sums),
   a sample whose gradient norm is not finite left out;
3. plus Gaussian noise ``N(0, sigma^2 C^2)`` on every parameter (:mod:`.sampler`:
   ChaCha20 keyed by a secret, normals at float64 precision);
4. divided by the expected batch size ``q N`` (the batch size, for shuffled batches); the
   L2 penalty's gradient ``l2 W`` is added unclipped; then the optimiser's step.

The threat model (docs/privacy.md): the adversary knows the
code, the initial weights, the seed, every training record but one, and the final
weights (or every checkpoint); the noise and the batches come from a 256-bit key drawn
from the operating system for each ``fit``, never written to a model file, which the
adversary does not know (an unfinished run may keep it in its own secret key file, so
that a resumed run continues it: :mod:`.keyfile`).  :mod:`.ledger` keeps every step the
weights took and composes epsilon over all of them (``dp-accounting``, ``pip install
'scalarbp[privacy]'``).
"""
import os

import numpy as np

from .. import checks
from ..jit import require_parallel
from . import sampler
from .ledger import KINDS, Ledger, compose, epsilon, noise_for  # noqa: F401  (the public names)

SAMPLINGS = ("poisson", "shuffle")


class Privacy:
    """The DP-SGD settings of a fit: ``clip`` C, ``noise`` sigma (None: to be chosen for a
    target epsilon, once the fit knows its steps), ``delta``, ``sampling``, and
    ``insecure_seed`` (None: a secret key; an integer: noise and batches reproducible from
    it, which the ledger counts as not private), and ``key_file`` (None, or where the
    run keeps its key while unfinished: :mod:`.keyfile`)."""

    def __init__(self, clip, noise, delta, sampling, insecure_seed=None, dtype=np.float64, key_file=None):
        if delta is not None and (isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating))
                                  or not 0 < delta < 1):
            raise ValueError(f"dp_delta must lie in (0, 1), got {delta!r}")
        self.clip, self.delta = checks.positive("dp_clip", clip), delta
        self.noise = None if noise is None else checks.non_negative("dp_noise", noise)
        self.sampling = checks.choice("dp_sampling", sampling, SAMPLINGS)
        self.insecure_seed = None if insecure_seed is None else checks.integer("dp_insecure_seed", insecure_seed, 0)
        if key_file is not None and self.insecure_seed is not None:
            raise ValueError("dp_key_file keeps a secret key; dp_insecure_seed's noise needs none (its seed gives it)")
        self.key_file = None if key_file is None else os.fspath(key_file)
        self.dtype = np.dtype(dtype)
        tiny = np.finfo(self.dtype).tiny
        if self.dtype.type(self.clip) < tiny:
            raise ValueError(f"dp_clip={clip} is below the smallest normal {self.dtype.name} ({tiny:.3g})")
        require_parallel("DP-SGD's noise")  # (a fit's settings: refused at once where its noise cannot run)
        self.key = sampler.new_key() if self.insecure_seed is None else sampler.seeded_key(self.insecure_seed)
        self.check_noise()

    def check_noise(self):
        """Refuse a noise scale sigma C that the net's dtype rounds to 0 or a subnormal."""
        if self.noise:
            tiny = np.finfo(self.dtype).tiny
            if not self.dtype.type(self.noise * self.clip) >= tiny:
                raise ValueError(f"dp_noise * dp_clip = {self.noise * self.clip:.3g} is below the smallest "
                                 f"normal {self.dtype.name} ({tiny:.3g}): the noise would be rounded away")

    @property
    def kind(self):
        """The ledger's name for these steps."""
        return "reproducible" if self.insecure_seed is not None else self.sampling


def noise(key, step, size, dtype):
    """The standard normal noise of ``step`` under ``key`` (what :func:`.sampler.add_noise`
    adds, times 1)."""
    require_parallel("DP-SGD's noise")
    out = np.zeros(size, dtype)
    sampler.add_noise(out, key, step, 1.0)
    return out


def batches(private, rows, batch_size, first, subset, q):
    """The batches of the steps ``first, first + 1, ...`` that take the place of ordinary
    training's minibatches of ``rows`` (``batch_size`` at a time): ``(batches, offsets,
    divisors)``, step ``first + b`` taking the samples ``batches[offsets[b]:offsets[b + 1]]``
    and dividing its noisy sum by ``divisors[b]``.  Poisson sampling draws each step's batch
    from ``subset`` with rate q (:func:`.sampler.poisson_batches`: a function of the key and
    the step number alone) and divides by the expected batch size ``q N``; shuffled batches
    are the rows' own, divided by their size."""
    count = -(-rows.shape[0] // batch_size)
    if private.sampling == "shuffle":
        offsets = np.minimum(np.arange(count + 1) * batch_size, rows.shape[0])
        return rows, offsets, np.diff(offsets).astype(np.float64)
    subset = subset.astype(np.int64, copy=False)
    offsets = np.empty(count + 1, np.int64)
    sampler.poisson_batches(subset, q, private.key, first, offsets, subset[:0])
    drawn = np.empty(offsets[-1], np.int64)
    sampler.poisson_batches(subset, q, private.key, first, offsets, drawn)
    return drawn, offsets, np.full(count, q * subset.shape[0])
