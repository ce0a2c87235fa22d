"""Differentially private training (DP-SGD): per-example clipping, Gaussian noise, Poisson
sampling, and the privacy spent, from the scalar form.

A step of DP-SGD (Abadi et al. 2016; the same update as Opacus'):

1. a batch: with ``sampling="poisson"`` each training sample joins independently with
   probability ``q = batch_size / N`` (what the privacy analysis assumes); with
   ``"shuffle"``, the fixed-size shuffled batches of ordinary training (then the epsilon
   reported assumes Poisson sampling, which such batches do not give: no guarantee);
2. ``sum_n min(1, C / (||g_n|| + 1e-6)) g_n``: every sample's gradient clipped to norm C
   (:mod:`scalarbp.backends.private`: its delta rows scaled before the weight sums);
3. plus Gaussian noise ``N(0, sigma^2 C^2)`` on every parameter, from a counter-based
   generator (:func:`scalarbp.backends.private.add_noise`: each value a function of the
   seed, the step number and its index; the same noise for any number of threads, and on
   resume; vectorised, about 1 ns per value);
4. divided by the expected batch size ``q N`` (the batch size, for shuffled batches); the
   L2 penalty's gradient ``l2 W`` is added unclipped; then the optimiser's step.

Privacy accounting uses Google's ``dp-accounting`` (``pip install 'scalarbp[privacy]'``):
:func:`epsilon` for the steps taken, :func:`noise_for` the sigma that reaches a target.
"""
import numpy as np

from . import checks

SAMPLINGS = ("poisson", "shuffle")


class Privacy:
    """The DP-SGD settings of a fit: ``clip`` C, ``noise`` sigma (None: to be chosen for a
    target epsilon, once the fit knows its steps), ``delta``, ``sampling``."""

    def __init__(self, clip, noise, delta, sampling):
        if delta is not None and not 0 < delta < 1:
            raise ValueError(f"dp_delta must lie in (0, 1), got {delta!r}")
        self.clip, self.delta = checks.positive("dp_clip", clip), delta
        self.noise = None if noise is None else checks.non_negative("dp_noise", noise)
        self.sampling = checks.choice("dp_sampling", sampling, SAMPLINGS)


def key(seed):
    """The 64-bit word a fit's seed keys its random numbers with (batches and noise)."""
    return np.uint64(seed % 2 ** 64)


def noise(seed, step, size, dtype):
    """The standard normal noise of ``step`` (what :func:`add_noise` adds, times 1)."""
    from .backends.private import add_noise

    out = np.zeros(size, dtype)
    add_noise(out, key(seed), step, 1.0)
    return out


def batches(private, seed, rows, batch_size, first, subset, q):
    """The batches of the steps ``first, first + 1, ...`` that take the place of ordinary
    training's minibatches of ``rows`` (``batch_size`` at a time): ``(batches, offsets,
    divisors)``, step ``first + b`` taking the samples ``batches[offsets[b]:offsets[b + 1]]``
    and dividing its noisy sum by ``divisors[b]``.  Poisson sampling draws each step's batch
    from ``subset`` with rate q (:func:`scalarbp.backends.private.poisson_batches`: a
    function of the seed and the step number alone) and divides by the expected batch size
    ``q N``; shuffled batches are the rows' own, divided by their size."""
    count = -(-rows.shape[0] // batch_size)
    if private.sampling == "shuffle":
        offsets = np.minimum(np.arange(count + 1) * batch_size, rows.shape[0])
        return rows, offsets, np.diff(offsets).astype(np.float64)
    from .backends.private import poisson_batches

    subset, word = subset.astype(np.int64, copy=False), key(seed)
    offsets = np.empty(count + 1, np.int64)
    poisson_batches(subset, q, word, first, offsets, subset[:0])
    drawn = np.empty(offsets[-1], np.int64)
    poisson_batches(subset, q, word, first, offsets, drawn)
    return drawn, offsets, np.full(count, q * subset.shape[0])


def epsilon(q, noise_multiplier, steps, delta, accountant="rdp"):
    """The epsilon spent by ``steps`` Poisson-sampled Gaussian steps at ``delta``
    (``dp-accounting``'s RDP or PLD accountant)."""
    try:
        import dp_accounting
    except ImportError:
        raise ImportError("privacy accounting needs dp-accounting: pip install 'scalarbp[privacy]'") from None
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise_multiplier)), steps)
    if accountant == "rdp":
        spent = dp_accounting.rdp.RdpAccountant()
    else:
        spent = dp_accounting.pld.PLDAccountant()
    spent.compose(event)
    return float(spent.get_epsilon(delta))


def noise_for(target_epsilon, q, steps, delta):
    """The smallest noise multiplier whose ``steps`` steps spend at most ``target_epsilon``
    (bisection on :func:`epsilon`)."""
    low, high = 0.0, 1.0
    while epsilon(q, high, steps, delta) > target_epsilon:
        low, high = high, 2 * high
        if high > 1e4:
            raise ValueError(f"no noise multiplier below 1e4 reaches epsilon {target_epsilon}")
    for _ in range(40):
        middle = (low + high) / 2
        if epsilon(q, middle, steps, delta) > target_epsilon:
            low = middle
        else:
            high = middle
    return high
