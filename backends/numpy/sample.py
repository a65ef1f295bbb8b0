"""Sampling a token from logits with a counter-based random number: the readable oracle of csrc/sample.c.

The uniform number of a draw is a pure function of (seed, stream, position), not of a generator's
history, so every backend, and a batch of streams in any order, draws the same number:
    u(seed, s, p) = (splitmix64(splitmix64(splitmix64(seed) + s) + p) >> 11) · 2⁻⁵³      ∈ [0, 1)
(SplitMix64 as in backends/numpy/dropout.py; s the stream: its row of logits, p the position of the token
drawn).

One draw from logits (V,), in float64 (the float32 logits are exact in it):
  temperature 0: the first index of the largest logit (greedy);
  otherwise z = logits / temperature;
  top-k (0 < k < V): drop every z below the k-th largest (ties at the k-th are kept);
  e_i = exp(z_i − max z) for the kept, 0 for the dropped;
  top-p (p < 1): order the kept by e descending, ties by index; keep while the sum of e before an entry
    (added in that order) is below p · S, S the sum of all of them in that order;
  draw: c = the running sum of e in index order, the token is the first i with c_i > u · c_{V−1} (the last
    kept one if rounding leaves none).
Every sum is sequential in the order named and exp is the C library's (math.exp), so csrc/sample.c,
doing the same operations in the same order, returns the same token for the same logits and u. Two
backends whose logits differ (float32 rounding) can still differ where u · c_{V−1} falls within that
difference of a boundary c_i (a near-tie).
"""
import math

import numpy as np

from ..validate import check_scalars
from .dropout import splitmix64

# the smallest temperature other than 0 (greedy): logits / temperature stays finite in float64 for any
# float32 logit (|logit| < 3.5e38) down to ~2e-270; far below any useful temperature
MIN_TEMPERATURE = 1e-200


def check_sampling(seed, temperature, top_k, top_p):
    """(seed, temperature, top_k, top_p) checked as every backend's sampler needs them."""
    seed, temperature, top_k, top_p = check_scalars("sample", seed=seed, temperature=temperature, top_k=top_k,
                                                    top_p=top_p)
    if 0 < temperature < MIN_TEMPERATURE:
        raise ValueError(f"sample: temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}, got {temperature}")
    return seed, temperature, top_k, top_p


def check_positions(positions, B):
    """positions (B,): each a draw's position, in [0, 2⁶²) as the offsets of the other ops."""
    if positions.shape != (B,):
        raise ValueError(f"sample: positions must have shape ({B},) (one per row of logits), got {positions.shape}")
    if positions.size and not (positions.min() >= 0 and positions.max() < 2**62):
        raise ValueError(f"sample: positions must lie in [0, 2**62), got {positions.min()}..{positions.max()}")


def uniform(seed, streams, positions):
    """u (float64, broadcast shape of streams and positions) of draws (seed, stream, position)."""
    with np.errstate(over="ignore"):  # the counters wrap modulo 2⁶⁴, as in C
        key = splitmix64(splitmix64(np.uint64(seed)) + np.asarray(streams, dtype=np.int64).astype(np.uint64))
        bits = splitmix64(key + np.asarray(positions, dtype=np.int64).astype(np.uint64))
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def sample_row(logits, u, temperature=1.0, top_k=0, top_p=1.0):
    """One token id from logits (V,) and u in [0, 1); top_k 0 or >= V: all, top_p 1: all."""
    z = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(z).all():
        return -1
    if temperature == 0:
        return int(np.argmax(z))
    z = z / temperature
    V = len(z)
    keep = np.ones(V, dtype=bool) if not 0 < top_k < V else z >= np.sort(z)[V - top_k]
    m = z[keep].max()
    e = np.zeros(V)
    e[keep] = [math.exp(v) for v in (z[keep] - m)]
    if top_p < 1.0:
        kept = np.flatnonzero(keep)
        order = kept[np.argsort(-e[kept], kind="stable")]
        before = np.concatenate([[0.0], np.cumsum(e[order])[:-1]])
        total = before[-1] + e[order[-1]]
        e[order[before >= top_p * total]] = 0.0
    c = np.cumsum(e)
    i = int(np.searchsorted(c, u * c[-1], side="right"))
    return i if i < V else int(np.flatnonzero(e)[-1])


def sample(logits, positions, seed, temperature=1.0, top_k=0, top_p=1.0):
    """ids (B,) int64: row b of logits (B,V) drawn with u(seed, b, positions[b]); -1 marks a row holding a
    non-finite logit."""
    seed, temperature, top_k, top_p = check_sampling(seed, temperature, top_k, top_p)
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"sample: logits must be (B, V) with V >= 1, got shape {logits.shape}")
    positions = np.asarray(positions, dtype=np.int64)
    check_positions(positions, logits.shape[0])
    u = uniform(seed, np.arange(logits.shape[0]), positions)
    return np.array([sample_row(row, ui, temperature, top_k, top_p) for row, ui in zip(logits, u)], dtype=np.int64)
