"""bfloat16 storage of the C decoder's weight matrices (its `weights="bf16"` option, backends/c/decode.py).

A bfloat16 is the top 16 bits of a float32 (sign, the 8 exponent bits, 7 mantissa bits): the same range,
a relative rounding error of at most 2⁻⁸. NumPy has no bfloat16 type, so the values are held as uint16
bit patterns; the C kernels widen them back to float32 with a 16-bit shift (csrc/simd.h, hr_vload_bf16).
"""
import numpy as np


def to_bfloat16(x):
    """float32 array -> its bfloat16 bit patterns (uint16, same shape), rounded to nearest, ties to even:
    add 0x7FFF plus the lowest kept bit, then drop the low 16 bits. The carry of a rounding up may move
    into the exponent, which is the correct result (up to ±inf past the largest bfloat16); a NaN stays a
    (quiet) NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded)


def from_bfloat16(b):
    """bfloat16 bit patterns (uint16) -> float32, exactly (the patterns as the top halves)."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
