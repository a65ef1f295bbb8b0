"""Causal (optionally sliding-window) multi-head softmax attention: the readable oracle.

It builds the full T×T score matrix of every (batch, head); the C kernel computes the
same quantities tile by tile without storing it.
"""
import numpy as np


def _visible(T, window):
    """visible[i, j]: query i sees key j (j <= i, and j >= i - window when windowed)."""
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    visible = j <= i
    if window is not None:
        visible &= j >= i - window
    return visible


def _per_query_head(x, H):
    """(B,T,Hx,P) -> (B,H,T,P); a kv head is repeated for the H/Hx query heads that read it."""
    return np.repeat(x.transpose(0, 2, 1, 3), H // x.shape[2], axis=1)


def _scores(q, k, window):
    """s_ij = q_i·k_j / √P on visible keys, -inf elsewhere: (B,H,T,T)."""
    B, T, H, P = q.shape
    s = q.transpose(0, 2, 1, 3) @ _per_query_head(k, H).swapaxes(-1, -2) * P**-0.5
    return np.where(_visible(T, window), s, -np.inf)


def attention_forward(q, k, v, window=None):
    """o_i = Σ_j p_ij v_j,  p_ij = exp(s_ij − lse_i),  lse_i = log Σ_j exp(s_ij),
    s_ij = q_i·k_j/√P over visible keys (j <= i; i − window <= j when windowed).
    q (B,T,H,P), k, v (B,T,Hk,P), H % Hk == 0 -> o (B,T,H,P), lse (B,H,T)."""
    s = _scores(q, k, window)
    m = s.max(axis=-1, keepdims=True)  # finite: key j = i is always visible
    lse = m + np.log(np.exp(s - m).sum(axis=-1, keepdims=True))
    o = np.exp(s - lse) @ _per_query_head(v, q.shape[2])
    return np.ascontiguousarray(o.transpose(0, 2, 1, 3)), lse[..., 0]


def attention_backward(do, q, k, v, o, lse, window=None):
    """With p = exp(s − lse):  dP = dO Vᵀ,  dS = p ⊙ (dP − rowsum(dO ⊙ O)),
    dQ = dS K / √P,  dK = dSᵀ Q / √P,  dV = pᵀ dO; dK, dV summed over the query heads
    sharing a kv head. Shapes as attention_forward; returns dq, dk, dv shaped like q, k, v."""
    B, T, H, P = q.shape
    Hk = k.shape[2]
    qh, doh, oh = (x.transpose(0, 2, 1, 3) for x in (q, do, o))
    kh, vh = _per_query_head(k, H), _per_query_head(v, H)
    p = np.exp(_scores(q, k, window) - lse[..., None])
    dp = doh @ vh.swapaxes(-1, -2)
    ds = p * (dp - (doh * oh).sum(axis=-1, keepdims=True))
    dq = ds @ kh * P**-0.5
    dk = ds.swapaxes(-1, -2) @ qh * P**-0.5
    dv = p.swapaxes(-1, -2) @ doh

    def to_kv_heads(x):  # (B,H,T,P) -> (B,T,Hk,P), summing each group of H/Hk query heads
        return np.ascontiguousarray(x.reshape(B, Hk, H // Hk, T, P).sum(axis=2).transpose(0, 2, 1, 3))

    return np.ascontiguousarray(dq.transpose(0, 2, 1, 3)), to_kv_heads(dk), to_kv_heads(dv)
