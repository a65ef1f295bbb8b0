"""Attention of one new query per stream over a KV cache: the op behind the attention mixer's decode
step (hybridref/layers/attention.py `step`; in C, csrc/attention_step.c)."""
import numpy as np


def attention_decode(q, k_cache, v_cache, length, window=None):
    """o[b,h] = Σ_j softmax_j(q[b,h]·k[b,g,j]/√P) v[b,g,j], g = h // (H/Hk), over the keys
    j0 <= j < length, j0 = max(0, length−1−window) (0 without a window).
    q (B,H,P), k_cache, v_cache (B,Hk,L,P), 1 <= length <= L -> o (B,H,P)."""
    B, H, P = q.shape
    Hk, L = k_cache.shape[1], k_cache.shape[2]
    if not 1 <= length <= L:
        raise ValueError(f"attention_decode: length must lie in [1, {L}] (the cache size), got {length}")
    j0 = 0 if window is None else max(0, length - 1 - window)
    k = np.repeat(k_cache[:, :, j0:length], H // Hk, axis=1)  # (B,H,n,P)
    v = np.repeat(v_cache[:, :, j0:length], H // Hk, axis=1)
    s = np.einsum("bhp,bhjp->bhj", q, k) * P**-0.5
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return (np.einsum("bhj,bhjp->bhp", p / p.sum(axis=-1, keepdims=True), v)).astype(q.dtype)
