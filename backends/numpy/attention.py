"""Causal (optionally sliding-window) multi-head softmax attention: the readable oracle.

It builds the full Tq×Tk score matrix of every (batch, head); the C kernel computes the
same quantities tile by tile without storing it. Query i stands at key position i + q_offset,
so one call can be a block of a longer sequence (a query block against an earlier key block).
The first `sinks` keys of a block stay visible to every later query whatever the window (attention
sinks: Hymba's meta tokens, StreamingLLM's first tokens).
"""
import numpy as np

from ..validate import check_scalars


def _visible(Tq, Tk, window, q_offset, sinks):
    """visible[i, j]: query i sees key j (j <= i + q_offset, and when windowed j >= i + q_offset - window
    or j < sinks)."""
    i, j = np.arange(Tq)[:, None] + q_offset, np.arange(Tk)[None, :]
    visible = j <= i
    if window is not None and window < Tq + q_offset:  # a longer window reaches key 0 from every query
        visible &= (j >= i - window) | (j < sinks)
    return visible


def _per_query_head(x, H):
    """(B,T,Hx,P) -> (B,H,T,P); a kv head is repeated for the H/Hx query heads that read it."""
    return np.repeat(x.transpose(0, 2, 1, 3), H // x.shape[2], axis=1)


def _scores(q, k, window, q_offset, sinks):
    """s_ij = q_i·k_j / √P on visible keys, -inf elsewhere: (B,H,Tq,Tk)."""
    B, Tq, H, P = q.shape
    s = q.transpose(0, 2, 1, 3) @ _per_query_head(k, H).swapaxes(-1, -2) * P**-0.5
    return np.where(_visible(Tq, k.shape[1], window, q_offset, sinks), s, -np.inf)


def attention_forward(q, k, v, window=None, q_offset=0, sinks=0):
    """o_i = Σ_j p_ij v_j,  p_ij = exp(s_ij − lse_i),  lse_i = log Σ_j exp(s_ij),
    s_ij = q_i·k_j/√P over visible keys (j <= i + q_offset; when windowed, i + q_offset − window <= j
    or j < sinks). A query that sees no key gets o_i = 0, lse_i = −inf.
    q (B,Tq,H,P), k, v (B,Tk,Hk,P), H % Hk == 0, q_offset >= 0, sinks >= 0 -> o (B,Tq,H,P), lse (B,H,Tq)."""
    check_scalars("attention_forward", window=window, q_offset=q_offset, sinks=sinks)
    s = _scores(q, k, window, q_offset, sinks)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isneginf(m), 0, m))  # rows without keys: all zeros
    l = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = m + np.log(l)
    o = (e / np.where(l > 0, l, 1)) @ _per_query_head(v, q.shape[2])
    return np.ascontiguousarray(o.transpose(0, 2, 1, 3)), lse[..., 0]


def attention_backward(do, q, k, v, o, lse, window=None, q_offset=0, sinks=0):
    """With p = exp(s − lse):  dP = dO Vᵀ,  dS = p ⊙ (dP − rowsum(dO ⊙ O)),
    dQ = dS K / √P,  dK = dSᵀ Q / √P,  dV = pᵀ dO; dK, dV summed over the query heads
    sharing a kv head. o and lse are those of the whole key set, so the gradients of a
    sequence split into key blocks are the sums of the blocks' gradients. A query whose lse is
    −inf (it sees no key) has p = 0: no gradient flows through it.
    Shapes as attention_forward; returns dq, dk, dv shaped like q, k, v."""
    check_scalars("attention_backward", window=window, q_offset=q_offset, sinks=sinks)
    B, Tq, H, P = q.shape
    Tk, Hk = k.shape[1], k.shape[2]
    qh, doh, oh = (x.transpose(0, 2, 1, 3) for x in (q, do, o))
    kh, vh = _per_query_head(k, H), _per_query_head(v, H)
    shift = np.where(np.isneginf(lse), np.inf, lse)  # lse = -inf: p = exp(s - inf) = 0, not exp(-inf + inf)
    p = np.exp(_scores(q, k, window, q_offset, sinks) - shift[..., None])
    dp = doh @ vh.swapaxes(-1, -2)
    ds = p * (dp - (doh * oh).sum(axis=-1, keepdims=True))
    dq = ds @ kh * P**-0.5
    dk = ds.swapaxes(-1, -2) @ qh * P**-0.5
    dv = p.swapaxes(-1, -2) @ doh

    def to_kv_heads(x):  # (B,H,Tk,P) -> (B,Tk,Hk,P), summing each group of H/Hk query heads
        return np.ascontiguousarray(x.reshape(B, Hk, H // Hk, Tk, P).sum(axis=2).transpose(0, 2, 1, 3))

    return np.ascontiguousarray(dq.transpose(0, 2, 1, 3)), to_kv_heads(dk), to_kv_heads(dv)
