"""Attention of one new query per stream over a KV cache: the op behind the attention mixer's decode
step (hybridref/layers/attention.py `step`; in C, csrc/attention_step.c)."""
import numpy as np

from ..validate import check_scalars


def attention_decode(q, k_cache, v_cache, length, window=None):
    """o[b,h] = Σ_j softmax_j(q[b,h]·k[b,g,j]/√P) v[b,g,j], g = h // (H/Hk), over the keys
    j0 <= j < length, j0 = max(0, length−1−window) (0 without a window). The key at position j is row
    j % L of the cache (a ring of the last L positions; without a window, rows 0..length−1), so every
    key the query reads must still be there: length − j0 <= L.
    q (B,H,P), k_cache, v_cache (B,Hk,L,P), length >= 1 -> o (B,H,P)."""
    check_scalars("attention_decode", length=length, window=window)
    B, H, P = q.shape
    Hk, L = k_cache.shape[1], k_cache.shape[2]
    j0 = 0 if window is None else max(0, length - 1 - window)
    if length - j0 > L:
        raise ValueError(f"attention_decode: the query at position {length - 1} reads {length - j0} keys "
                         f"(window {window}) but the cache holds {L} rows")
    rows = np.arange(j0, length) % L
    k = np.repeat(k_cache[:, :, rows], H // Hk, axis=1)  # (B,H,n,P)
    v = np.repeat(v_cache[:, :, rows], H // Hk, axis=1)
    s = np.einsum("bhp,bhjp->bhj", q, k) * P**-0.5
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return (np.einsum("bhj,bhjp->bhp", p / p.sum(axis=-1, keepdims=True), v)).astype(q.dtype)
