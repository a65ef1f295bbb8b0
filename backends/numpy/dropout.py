"""Dropout with a counter-based mask: the readable oracle of csrc/dropout.c.

The mask is a pure function of (seed, global batch row, global position, feature), not a draw
from a stateful generator, so
  - the backward regenerates it instead of storing it (the op is its own backward: dx = dropout(dy)),
  - every backend draws the same mask (C and NumPy agree bit for bit),
  - a process holding a slice of the batch or of the sequence draws its slice of the one mask
    (the MPI backend passes its slice's start as batch_offset / time_offset).
The hash is SplitMix64 (Steele, Lea & Flood 2014; the generator java.util.SplittableRandom uses):
    row(b)     = splitmix64(splitmix64(seed) + b)
    u(b, t, d) = splitmix64(row(b) + t·D + d) >> 40                  (24 uniform bits)
    keep       = u >= ⌊p · 2²⁴ + ½⌋
"""
import math

import numpy as np

from ..validate import check_scalars

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1, MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
MASK_BITS = 24


def splitmix64(x):
    """SplitMix64's output function on uint64 arrays (arithmetic wraps modulo 2⁶⁴)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def dropout_keep(shape, p, seed, batch_offset=0, time_offset=0):
    """The keep mask (bool, `shape` = (B, T, ...)) of elements b, t, d (d: the trailing axes flattened)."""
    B, T = shape[:2]
    D = int(np.prod(shape[2:], dtype=np.int64))
    rows = splitmix64(splitmix64(np.uint64(seed)) + np.arange(batch_offset, batch_offset + B, dtype=np.uint64))
    with np.errstate(over="ignore"):  # the counters wrap modulo 2⁶⁴, as in C
        counters = np.uint64(time_offset) * np.uint64(D) + np.arange(T * D, dtype=np.uint64)
        u = splitmix64(rows[:, None] + counters[None, :]) >> np.uint64(64 - MASK_BITS)
    return (u >= np.uint64(math.floor(p * (1 << MASK_BITS) + 0.5))).reshape(shape)


def check_dropout_args(op, x, p, seed, batch_offset, time_offset):
    """The checks every backend runs (the C backend adds dtype and layout)."""
    if not isinstance(x, np.ndarray) or x.ndim < 2:
        raise ValueError(f"{op}: x must be an array of shape (B, T, ...), got "
                         f"{x.shape if isinstance(x, np.ndarray) else type(x).__name__}")
    check_scalars(op, p=p, seed=seed, batch_offset=batch_offset, time_offset=time_offset)


def dropout(x, p, seed, batch_offset=0, time_offset=0):
    """y = x ⊙ keep / (1 − p): x (B,T,...) -> y (B,T,...). Linear in x with a fixed mask, so the
    backward is the same call on dy."""
    check_dropout_args("dropout", x, p, seed, batch_offset, time_offset)
    keep = dropout_keep(x.shape, p, seed, batch_offset, time_offset)
    return np.where(keep, x * x.dtype.type(1.0 / (1.0 - p)), x.dtype.type(0))
