"""Attention of one new query per stream over a KV cache: the op behind the attention mixer's decode
step (hybridref/layers/attention.py `step`; in C, csrc/attention_step.c)."""
import numpy as np

from ..validate import check_scalars


def cache_rows(positions, L, sinks=0):
    """The cache rows of key positions: a sink (position j < sinks) in row j for good, a later position in
    the ring of the other L − sinks rows, row sinks + (j − sinks) % (L − sinks) (j % L without sinks)."""
    positions = np.asarray(positions)
    # max(·, 1): a cache of L <= sinks rows has no ring, and check_cache refuses a later position
    return np.where(positions < sinks, positions, sinks + (positions - sinks) % max(L - sinks, 1))


def decode_keys(length, window, sinks):
    """The key positions a query at position length−1 reads: j0..length−1, j0 = max(0, length−1−window) (0
    without a window), and with a window the sinks 0..sinks−1 before them."""
    if window is None:
        return np.arange(length)
    j0 = max(0, length - 1 - window)
    return np.r_[0:min(sinks, j0), j0:length]


def check_cache(op, length, window, sinks, L):
    """The keys a query at position length−1 reads (decode_keys) and the sinks the cache layout holds
    apart (those of a window; without one every key is read and rows are positions); ValueError when a key
    it reads is no longer in the L rows: the ring after the sinks' rows holds the last L − sinks."""
    keys, held = decode_keys(length, window, sinks), 0 if window is None else sinks
    if int((keys >= held).sum()) > L - held or min(length, held) > L:
        raise ValueError(f"{op}: the query at position {length - 1} reads {len(keys)} keys (window {window}"
                         f"{f', {held} sinks' if held else ''}) but the cache holds {L} rows"
                         f"{f', {held} of them for the sinks' if held else ''}; position j is row j % L"
                         f"{' after them' if held else ''}")
    return keys, held


def attention_decode(q, k_cache, v_cache, length, window=None, sinks=0):
    """o[b,h] = Σ_j softmax_j(q[b,h]·k[b,g,j]/√P) v[b,g,j], g = h // (H/Hk), over the keys j < length with
    j >= length−1−window or j < sinks (all j without a window). The key at position j is at its cache row
    (cache_rows: a ring of the last L − sinks positions after the sinks' rows; without a window, rows
    0..length−1), so every key the query reads must still be there.
    q (B,H,P), k_cache, v_cache (B,Hk,L,P), length >= 1 -> o (B,H,P)."""
    check_scalars("attention_decode", length=length, window=window, sinks=sinks)
    B, H, P = q.shape
    Hk, L = k_cache.shape[1], k_cache.shape[2]
    keys, held = check_cache("attention_decode", length, window, sinks, L)
    rows = cache_rows(keys, L, held)
    k = np.repeat(k_cache[:, :, rows], H // Hk, axis=1)  # (B,H,n,P)
    v = np.repeat(v_cache[:, :, rows], H // Hk, axis=1)
    s = np.einsum("bhp,bhjp->bhj", q, k) * P**-0.5
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return (np.einsum("bhj,bhjp->bhp", p / p.sum(axis=-1, keepdims=True), v)).astype(q.dtype)
