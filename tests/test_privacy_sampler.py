"""DP-SGD's random numbers (scalarbp.privacy.sampler): ChaCha20 against RFC 8439, normals at
float64 precision with untruncated tails and no exact zeros, keys from the operating system."""
import math

import numpy as np
import pytest
from numba import njit

from scalarbp import privacy
from scalarbp.privacy import sampler


def test_the_block_function_is_rfc_8439_chacha20():
    """RFC 8439, 2.3.2: key 00..1f, nonce 000000090000004a00000000, block counter 1."""
    key = np.frombuffer(bytes(range(32)), "<u4").astype(np.uint32)
    nonce = np.frombuffer(bytes.fromhex("000000090000004a00000000"), "<u4").astype(np.uint32)
    x, state = np.empty(16 * sampler.LANES, np.uint32), np.empty(16 * sampler.LANES, np.uint32)
    sampler.chacha20_blocks(key, nonce, 1, x, state)
    block = x.reshape(16, sampler.LANES)
    assert block[:, 0].astype("<u4").tobytes().hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e")
    assert len({block[:, lane].tobytes() for lane in range(sampler.LANES)}) == sampler.LANES  # counters 1..16


def test_keys_come_from_the_operating_system_and_never_repeat(monkeypatch):
    drawn = []
    real = sampler.secrets.token_bytes
    monkeypatch.setattr(sampler.secrets, "token_bytes", lambda n: drawn.append(n) or real(n))
    keys = {privacy.Privacy(1.0, 1.0, None, "poisson").key.tobytes() for _ in range(50)}
    assert drawn == [32] * 50 and len(keys) == 50  # 256 bits each, whatever the seed


@njit
def _pairs(w1, w2, z):
    for i in range(w1.shape[0]):
        z[i, 0], z[i, 1] = sampler.normal_pair(w1[i], w2[i])


def _words(rng, n):
    return rng.integers(0, 2 ** 64, n, dtype=np.uint64, endpoint=False)


def _reference(w1, w2):
    """Box-Muller on the same uniforms with NumPy's libm: ``u = (2k + 1) 2^-53``."""
    u1 = (2 * (w1 >> np.uint64(12)).astype(np.float64) + 1) * 2.0 ** -53
    u2 = (2 * (w2 >> np.uint64(12)).astype(np.float64) + 1) * 2.0 ** -53
    r = np.sqrt(-2 * np.log(u1))
    return r, np.stack([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], 1)


def test_the_normals_are_box_muller_to_float64_precision():
    rng = np.random.default_rng(0)
    w1, w2 = _words(rng, 300_000), _words(rng, 300_000)
    z = np.empty((w1.size, 2))
    _pairs(w1, w2, z)
    r, ref = _reference(w1, w2)
    assert (np.abs(z - ref) / np.maximum(1, r)[:, None]).max() < 2e-15   # measured: 8e-16
    assert np.mean(z.astype(np.float32).astype(np.float64) == z) < 1e-4  # not on the float32 grid


def test_ln_and_sin_cos_are_accurate_to_the_claimed_ulps():
    rng = np.random.default_rng(1)
    n = np.concatenate([rng.integers(1, 2 ** 53, 200_000), [1, 2, 3, 2 ** 52, 2 ** 53 - 1, 6369051672525773,
                                                            6369051672525772]])  # (m around sqrt 2)

    @njit
    def logs(n, out):
        for i in range(n.shape[0]):
            out[i] = sampler._ln(n[i], 53)

    @njit
    def sines(g, out):
        for i in range(g.shape[0]):
            out[i, 0], out[i, 1] = sampler._sin_cos(g[i])

    ours = np.empty(n.size)
    logs(n, ours)
    exact = np.log(n.astype(np.float64) * 2.0 ** -53)  # (exact scaling: NumPy's log of the same number)
    ulp = np.spacing(np.abs(exact))
    assert np.nanmax(np.abs(ours - exact)[exact != 0] / ulp[exact != 0]) <= 2
    g = np.concatenate([rng.random(200_000) / 2, [2.0 ** -51, 0.5]])
    both = np.empty((g.size, 2))
    sines(g, both)
    phi = np.pi / 2 * g
    for k, exact in enumerate((np.sin(phi), np.cos(phi))):
        assert (np.abs(both[:, k] - exact) / np.spacing(np.abs(exact))).max() <= 1


def test_no_normal_is_exactly_zero_even_at_the_edges_of_the_uniforms():
    edges = np.array([0, 1, 2 ** 12 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 62, 3 * 2 ** 62, 2 ** 61], np.uint64)
    w1, w2 = np.repeat(edges, edges.size), np.tile(edges, edges.size)
    z = np.empty((w1.size, 2))
    _pairs(w1, w2, z)
    assert (z != 0).all() and np.isfinite(z).all()
    x = privacy.noise(sampler.new_key(), 1, 4_000_001, np.float64)
    assert (x != 0).all()


def test_the_tail_beyond_six_sigma_is_the_gaussians():
    """Conditional on r > 6 (u1 < e^-18: 1 draw in 6.6e7), the radius has the Gaussian's
    tail ``P(r > t | r > 6) = exp(-(t^2 - 36)/2)``: draws from that part of the words alone
    (importance sampling), a Kolmogorov-Smirnov test on 200,000 of them, and the largest
    radius, ``sqrt(106 ln 2) = 8.57``, where the 53-bit uniforms end."""
    rng = np.random.default_rng(2)
    k_max = int(math.exp(-18) * 2 ** 52)
    k1 = rng.integers(0, k_max, 200_000, dtype=np.uint64)
    w1 = k1 << np.uint64(12)
    z = np.empty((k1.size, 2))
    _pairs(w1, _words(rng, k1.size), z)
    r = np.sort(np.hypot(z[:, 0], z[:, 1]))
    assert r.min() > 6 - 1e-9
    survival = np.exp(-(r ** 2 - 36) / 2)
    empirical = 1 - np.arange(1, r.size + 1) / r.size
    assert np.abs(survival - empirical).max() < 1.63 / np.sqrt(r.size)  # KS at the 1% level
    top = np.empty((1, 2))
    _pairs(np.zeros(1, np.uint64), np.zeros(1, np.uint64), top)
    assert math.hypot(*top[0]) == pytest.approx(math.sqrt(106 * math.log(2)), rel=1e-12)


def test_the_noise_does_not_depend_on_the_block_split_or_the_length():
    key = sampler.new_key()
    long = privacy.noise(key, 9, 3 * 2 * sampler.NOISE_BLOCK + 7, np.float64)
    short = privacy.noise(key, 9, 5, np.float64)
    assert np.array_equal(long[:5], short)
    assert np.array_equal(privacy.noise(key, 9, 100, np.float32), long[:100].astype(np.float32))
