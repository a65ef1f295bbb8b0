"""The panel layout of the C decoder's weight matrices (csrc/decode_mixer.h), built once with the decoder.

A matrix w (N,K) becomes column panels of P output rows (P = 8 vectors of the loaded build: 128 for
AVX-512, 64 for AVX2, 8 portable), panel p = w[p·P : (p+1)·P]ᵀ as a (K, width) row-major block, the panels
one after another; the last panel's width is its rows rounded up to `unit`, zero past row N. A GEMV then
reads each panel front to back into P/vector-width accumulators, and the GEMM reads it in place. A stacked
matrix (G,N,K) is G such matrices one after another. In bfloat16, each group of 2·P/8 columns of a panel row
is interleaved (column j at 2j, column P/8 + j at 2j + 1), so the C kernel widens a loaded vector with two
bit operations (csrc/simd.h, hr_vload_bf16_pair).
"""
import numpy as np

from .bfloat16 import to_bfloat16


def to_panels(w, width, unit, bf16=False):
    """w (..., N, K) float32 -> its panel layout, flat: float32, or bfloat16 bit patterns (uint16) when bf16."""
    w = np.asarray(w, dtype=np.float32)
    *lead, n, k = w.shape
    padded = np.zeros((*lead, -(-n // unit) * unit, k), np.float32)
    padded[..., :n, :] = w
    parts = [padded[..., p:p + width, :].swapaxes(-1, -2) for p in range(0, padded.shape[-2], width)]  # (..., K, width)
    if bf16:
        vw = width // 8
        # (..., K, groups, 2, vw) -> (..., K, groups, vw, 2): column h·vw + j of a group at 2j + h
        parts = [p.reshape(*p.shape[:-1], -1, 2, vw).swapaxes(-1, -2) for p in parts]
        return to_bfloat16(np.concatenate([p.reshape(*lead, -1) for p in parts], axis=-1)).ravel()
    return np.ascontiguousarray(np.concatenate([p.reshape(*lead, -1) for p in parts], axis=-1)).ravel()
