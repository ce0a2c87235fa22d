"""DP-SGD's random numbers: ChaCha20 keyed by a secret, Gaussian noise at float64
precision, and Poisson-sampled batches.

Why these (the analysis of DP-SGD assumes that the noise and the membership of each
batch are secret, and that the noise is Gaussian):

* **A keyed cryptographic generator.**  Every random word is a word of a ChaCha20 block
  (RFC 8439, 20 rounds), keyed by a 256-bit secret from the operating system
  (:func:`new_key`), with the step number and the stream (noise or sampling) as its
  nonce and the block number as its counter.  Without the key, the words are not
  predictable from the seed, the code, the weights or any number of other words; with it
  they are a function of (key, step, stream, index) alone, so the result does not depend
  on the number of threads.  ``tests/test_privacy_sampler.py`` checks the block function
  against RFC 8439's test vector.
* **Normals to float64 precision, untruncated for any practical purpose, never zero.**
  Box-Muller on two 52-bit words: ``u1 = (2 k1 + 1) 2^-53`` and ``u2 = (2 k2 + 1) 2^-53``,
  both strictly inside (0, 1), so ``r = sqrt(-2 ln u1) > 0``, and the angle ``2 pi u2`` is
  never a multiple of pi/2, so neither ``r cos`` nor ``r sin`` is 0.  The largest radius
  is ``sqrt(106 ln 2) = 8.57``: ``P(|z| > 8.57) = 1e-17``, about 2e-9 for every value of a
  768-step run of a 235,000-parameter net.  ``ln``, ``sin`` and ``cos`` are polynomials
  written here (libm's calls would not vectorise), accurate to the last bits of a float64
  (the measured errors are in :func:`_ln` and :func:`_sin_cos`, and asserted by the tests).
  A float32 net's noise is that float64 value rounded once.
* **Poisson batches by their gaps**: for independent Bernoulli(q) trials the gap to the
  next member is geometric, ``1 + floor(ln U / ln(1 - q))``, so a step costs about
  ``q N + 1`` words, not N.

What floating-point noise does not defend against: an adversary who sees the exact bits
of the released weights can, in principle, tell which values a float sum of a gradient
and a float normal can reach (Mironov 2012's attack on the floating-point Laplace
mechanism; Opacus issue 616, diffprivlib issue 94).  A secure mode would add noise on an
integer grid from an exact discrete Gaussian sampler (Canonne, Kamath and Steinke 2020,
as OpenDP does) to a gradient sum rounded to that grid; this library does not have one.
"""
import secrets

import numpy as np
from numba import prange

from ..jit import compiled, kernel

#: A helper compiled into its caller (so that the caller's loop vectorises through it).
inlined = compiled(inline="always")

#: ChaCha20 blocks computed side by side (the vector lanes of the block function).
LANES = 16

#: The streams of random numbers a step draws: its noise and its Poisson batch.
NOISE, SAMPLING = 0, 1

#: Pairs of normals per parallel block (a multiple of 4 LANES: a block of ChaCha20 gives 4 pairs).
NOISE_BLOCK = 2048

#: "expand 32-byte k", ChaCha20's constant words (RFC 8439, 2.3).
_CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)


def new_key():
    """A fresh 256-bit secret from the operating system (``secrets``), as ChaCha20's key."""
    return np.frombuffer(secrets.token_bytes(32), "<u4").astype(np.uint32)


def seeded_key(seed):
    """The key of the reproducible opt-in: SHA-256 of the seed, so known to anyone who
    knows the seed (the privacy ledger counts such steps as not private)."""
    import hashlib

    digest = hashlib.sha256(b"scalarbp insecure dp seed " + str(int(seed)).encode()).digest()
    return np.frombuffer(digest, "<u4").astype(np.uint32)


@kernel
def _quarter_round(x, a, b, c, d):
    """RFC 8439 2.1 on LANES blocks at once; ``x[w * LANES + l]`` is word w of block l."""
    for l in range(LANES):
        xa = np.uint32(x[a * LANES + l] + x[b * LANES + l])
        xd = np.uint32(x[d * LANES + l] ^ xa)
        xd = np.uint32((xd << np.uint32(16)) | (xd >> np.uint32(16)))
        xc = np.uint32(x[c * LANES + l] + xd)
        xb = np.uint32(x[b * LANES + l] ^ xc)
        xb = np.uint32((xb << np.uint32(12)) | (xb >> np.uint32(20)))
        xa = np.uint32(xa + xb)
        xd = np.uint32(xd ^ xa)
        xd = np.uint32((xd << np.uint32(8)) | (xd >> np.uint32(24)))
        xc = np.uint32(xc + xd)
        xb = np.uint32(xb ^ xc)
        xb = np.uint32((xb << np.uint32(7)) | (xb >> np.uint32(25)))
        x[a * LANES + l], x[b * LANES + l], x[c * LANES + l], x[d * LANES + l] = xa, xb, xc, xd


@kernel
def chacha20_blocks(key, nonce, first, x, state):
    """ChaCha20's blocks ``first .. first + LANES - 1`` (RFC 8439 2.3: the 20 rounds, then
    the input added), word w of block ``first + l`` into ``x[w * LANES + l]``; ``state``
    (as long as x) is scratch."""
    for l in range(LANES):
        for w in range(4):
            state[w * LANES + l] = _CONSTANTS[w]
        for w in range(8):
            state[(4 + w) * LANES + l] = key[w]
        state[12 * LANES + l] = np.uint32(first + l)
        for w in range(3):
            state[(13 + w) * LANES + l] = nonce[w]
    x[:] = state
    for _ in range(10):  # a double round: columns, then diagonals
        _quarter_round(x, 0, 4, 8, 12)
        _quarter_round(x, 1, 5, 9, 13)
        _quarter_round(x, 2, 6, 10, 14)
        _quarter_round(x, 3, 7, 11, 15)
        _quarter_round(x, 0, 5, 10, 15)
        _quarter_round(x, 1, 6, 11, 12)
        _quarter_round(x, 2, 7, 8, 13)
        _quarter_round(x, 3, 4, 9, 14)
    for i in range(x.shape[0]):
        x[i] = np.uint32(x[i] + state[i])


@inlined
def _word(x, lane, k):
    """64-bit word k (< 8) of block ``lane`` of :func:`chacha20_blocks`' output: its 32-bit
    words ``2k`` (high) and ``2k + 1`` (low)."""
    return (np.uint64(x[2 * k * LANES + lane]) << np.uint64(32)) | np.uint64(x[(2 * k + 1) * LANES + lane])


@inlined
def _set_nonce(nonce, stream, step):
    """Words 13-15 of a step's blocks: the stream, then the 64-bit step number."""
    nonce[0], nonce[1], nonce[2] = stream, step & 0xFFFFFFFF, step >> 32


# --- float64 ln, sin and cos as polynomials (vectorisable) ------------------------------

_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split of ln 2
_SQRT2 = 1.4142135623730951
_HALF_PI = 1.5707963267948966


@inlined
def _ln(n, exponent):
    """``ln(n 2^-exponent)`` for an integer ``0 < n < 2^53``: ``n = 2^e m`` with m in
    [sqrt(1/2), sqrt(2)), ``ln m = 2 atanh(s)``, ``s = (m - 1)/(m + 1)``, ``|s| < 0.172``,
    whose series to ``s^21`` leaves a truncation error below 3e-17 relative.  Measured
    against NumPy's ``log`` (tests): at most 2 ulp."""
    e = 32 * ((n >> 32) != 0)                      # e = the position of n's highest bit
    e += 16 * ((n >> (e + 16)) != 0)
    e += 8 * ((n >> (e + 8)) != 0)
    e += 4 * ((n >> (e + 4)) != 0)
    e += 2 * ((n >> (e + 2)) != 0)
    e += (n >> (e + 1)) != 0
    m = np.float64(n) / np.float64(np.int64(1) << e)
    high = m > _SQRT2
    m = m * (1.0 - 0.5 * high)
    e += high
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    series = A0 + s2 * (A1 + s2 * (A2 + s2 * (A3 + s2 * (A4 + s2 * (A5 + s2 * (A6 + s2 * (A7 + s2 * (A8 + s2 * (
        A9 + s2 * A10)))))))))              # 1 + s^2/3 + s^4/5 + ... + s^20/21
    k = np.float64(e - exponent)
    return k * _LN2_HI + (k * _LN2_LO + 2.0 * s * series)


A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10 = (1.0 / (2 * k + 1) for k in range(11))


def _coefficients(first, count):
    """``(-1)^k / (first + 2k)!`` for k < count: Taylor coefficients of sine (first 1) and cosine (0)."""
    import math

    return tuple((-1.0) ** k / math.factorial(first + 2 * k) for k in range(count))


S0, S1, S2, S3, S4, S5, S6, S7, S8 = _coefficients(1, 9)
C0, C1, C2, C3, C4, C5, C6, C7, C8, C9 = _coefficients(0, 10)


@inlined
def _sin_cos(g):
    """``(sin, cos)`` of ``phi = (pi/2) g`` for g in (0, 1/2]: Taylor series to degrees 17
    and 18 on (0, pi/4], whose truncation errors are below 1e-19.  Measured against
    NumPy's ``sin`` and ``cos`` (tests): at most 1 ulp."""
    phi = _HALF_PI * g
    p2 = phi * phi
    sin = phi * (S0 + p2 * (S1 + p2 * (S2 + p2 * (S3 + p2 * (S4 + p2 * (S5 + p2 * (S6 + p2 * (S7 + p2 * S8))))))))
    cos = C0 + p2 * (C1 + p2 * (C2 + p2 * (C3 + p2 * (C4 + p2 * (C5 + p2 * (C6 + p2 * (C7 + p2 * (C8 + p2 * C9))))))))
    return sin, cos


@inlined
def normal_pair(w1, w2):
    """Two independent standard normals from two 64-bit words, by Box-Muller: radius
    ``sqrt(-2 ln u1)``, angle ``2 pi u2``, with ``u = (2 k + 1) 2^-53`` for k the top 52
    bits of a word.  The angle is a quarter turn q (k2's top 2 bits) plus ``(pi/2) f``,
    ``f = (2 j + 1) 2^-51`` (its other 50 bits), taken as ``(pi/2) min(f, 1 - f)`` with sine
    and cosine swapped when f > 1/2: exact reductions, so every angle keeps full precision."""
    k1 = np.int64(w1 >> np.uint64(12))
    k2 = np.int64(w2 >> np.uint64(12))
    r = np.sqrt(-2.0 * _ln(2 * k1 + 1, 53))
    q = k2 >> 50
    f = np.float64(2 * (k2 & ((np.int64(1) << 50) - 1)) + 1) * 2.0 ** -51
    sin, cos = _sin_cos(min(f, 1.0 - f))
    swap = f > 0.5
    c = sin if swap else cos                      # cos and sin of (pi/2) f
    s = cos if swap else sin
    odd = (q & 1) != 0                            # a quarter turn q: (c, s) -> (-s, c)
    c, s = -s if odd else c, c if odd else s
    flip = 1.0 - 2.0 * (q >= 2)                   # a half turn: both change sign
    return flip * r * c, flip * r * s


@kernel
def _normals(x, z):
    """The 8 LANES normals of ``x``'s blocks into z: block l's 64-bit words ``2p, 2p + 1``
    make pair ``p LANES + l``."""
    for pair in range(4):
        for lane in range(LANES):
            z1, z2 = normal_pair(_word(x, lane, 2 * pair), _word(x, lane, 2 * pair + 1))
            z[2 * (pair * LANES + lane)] = z1
            z[2 * (pair * LANES + lane) + 1] = z2


@kernel
def _normal_block(out, key, nonce, block, scale, x, state, z):
    """``out += scale * (the normals of noise block ``block``)``, ``out`` at most
    ``2 NOISE_BLOCK`` long: its ChaCha20 blocks, 8 normals each, LANES at a time."""
    per_group = z.shape[0]
    for g in range(-(-out.shape[0] // per_group)):
        chacha20_blocks(key, nonce, block * (NOISE_BLOCK // 4) + g * LANES, x, state)
        _normals(x, z)
        at = g * per_group
        for i in range(min(per_group, out.shape[0] - at)):
            out[at + i] += out.dtype.type(scale * z[i])


@compiled(parallel=True, cache=True, error_model="numpy")
def add_noise(out, key, step, scale):
    """``out += scale * xi``, xi standard normal, value m a function of (key, step, m) only
    (up to ``2^35`` values a step: the 32-bit block counter's range, 8 normals a block)."""
    nonce = np.empty(3, np.uint32)
    _set_nonce(nonce, NOISE, step)
    blocks = -(-out.shape[0] // (2 * NOISE_BLOCK))
    for block in prange(blocks):
        x, state = np.empty(16 * LANES, np.uint32), np.empty(16 * LANES, np.uint32)
        z = np.empty(8 * LANES)
        start = 2 * NOISE_BLOCK * block
        _normal_block(out[start:min(start + 2 * NOISE_BLOCK, out.shape[0])], key, nonce, block, scale, x, state, z)


@kernel
def poisson_batches(subset, q, key, first, offsets, batches):
    """The Poisson-sampled batches of steps ``first, first + 1, ...`` (one per entry of
    ``offsets`` but the last): each sample of ``subset`` joins a step's batch independently
    with probability q.  Step ``first + b``'s samples go to ``batches[offsets[b]:offsets[b + 1]]``,
    in the order of ``subset``; with ``batches`` empty only ``offsets`` is filled (a first
    pass, to size it).

    The walk draws the gaps between members: for independent Bernoulli(q) trials the gap
    to the next success is geometric, ``P(gap = g + 1) = (1 - q)^g q``, which is
    ``1 + floor(ln U / ln(1 - q))`` for U uniform in (0, 1].  The uniforms are 53-bit, the
    words of the step's sampling stream in order.
    """
    N = subset.shape[0]
    ln_miss = np.log1p(-q)
    x, state = np.empty(16 * LANES, np.uint32), np.empty(16 * LANES, np.uint32)
    nonce = np.empty(3, np.uint32)
    offsets[0] = 0
    for b in range(offsets.shape[0] - 1):
        step = first + b
        _set_nonce(nonce, SAMPLING, step)
        count, i, draw = offsets[b], -1, 0
        while True:
            if draw % (8 * LANES) == 0:  # 8 words of 64 bits a block, LANES blocks at a time
                chacha20_blocks(key, nonce, draw // 8, x, state)
            lane, word = (draw % (8 * LANES)) // 8, draw % 8
            u = np.float64((_word(x, lane, word) >> np.uint64(11)) + np.uint64(1)) * 2.0 ** -53
            draw += 1
            gap = np.log(u) / ln_miss  # (q = 1: ln_miss = -inf, every gap 0)
            if gap >= N - 1 - i:
                break
            i += 1 + int(gap)
            if batches.shape[0] > 0:
                batches[count] = subset[i]
            count += 1
        offsets[b + 1] = count
