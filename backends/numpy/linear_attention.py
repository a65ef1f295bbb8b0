"""Decayed linear attention: the recurrence shared by Mamba-2 (SSD), RetNet and GLA.

Per batch b and head h, a K×V state S (S_{-1} = h0, zeros when None):
    S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t,        o_t = scale · q_t S_t
Shapes: q, k (B,T,Hq,K), shared by the H/Hq heads of a group (head h reads group h // (H/Hq), Mamba-2's
ngroups); v (B,T,H,V); g (B,T,H,Kg), log decays <= 0, with Kg = 1 (one per head and step: Mamba-2's
Δ·A, RetNet's log γ_h) or Kg = K (one per key dim: GLA); h0, h_last (B,H,K,V).

Three forms of the same function (Dao & Gu 2024, "Transformers are SSMs", ssd_minimal.py; Yang et al.
2024, "Gated Linear Attention", fla's naive.py):
  recurrent  the loop above (the decode step);
  parallel   o_i = scale Σ_{j<=i} (Σ_k q_ik k_jk W_ijk) v_j + scale (q_i ⊙ exp(Σ_{s<=i} g_s)) S_{-1},
             W_ijk = exp(Σ_{j<s<=i} g_sk): attention with a decay mask instead of a softmax;
  chunk      the parallel form inside blocks of L positions, the recurrence from block to block.
Every exponent is a sum of consecutive g's taken directly (_segsum), never the difference of two
cumulative sums: with g <= 0 each exponential is <= 1 (nothing overflows, however strong the
decay) and no cancellation costs precision.
"""
import numpy as np

from ..validate import check_scalars


def _check(op, q, k, v, g):
    """The shape relations and g <= 0 (finite), or a ValueError naming the op (the scalars: check_scalars)."""
    if q.ndim != 4 or v.ndim != 4 or g.ndim != 4:
        raise ValueError(f"{op}: q, v, g must be 4-D (B,T,heads,dim), got {q.shape}, {v.shape}, {g.shape}")
    B, T, Hq, K = q.shape
    H, Kg = v.shape[2], g.shape[3]
    if k.shape != q.shape or v.shape[:2] != (B, T) or g.shape[:3] != (B, T, H) or Kg not in (1, K) or Hq < 1 or H % Hq:
        raise ValueError(f"{op}: need q, k (B,T,Hq,K), v (B,T,H,V), g (B,T,H,1 or K) with H % Hq == 0, "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}, g {g.shape}")
    if not ((g <= 0) & (g > -np.inf)).all():
        raise ValueError(f"{op}: g must hold finite log decays <= 0 (the chunked forms bound every "
                         f"exponential by 1), got values in [{g.min()}, {g.max()}]")


def _heads(q, k, v, g):
    """Head-major copies (B,H,T,·), q and k repeated over the heads of their group."""
    rep = v.shape[2] // q.shape[2]
    return [np.repeat(a, r, axis=2).transpose(0, 2, 1, 3) for a, r in ((q, rep), (k, rep), (v, 1), (g, 1))]


def _group_sum(dx, Hq):
    """(B,H,T,K) gradients of the per-head copies -> (B,T,Hq,K), summed over the heads of a group."""
    B, H, T, K = dx.shape
    return dx.transpose(0, 2, 1, 3).reshape(B, T, Hq, H // Hq, K).sum(3)


def _segsum(g):
    """g (…,L,Kg) -> (…,L,L,Kg): entry [i,j] = Σ_{j<s<=i} g_s for j <= i, -inf above the diagonal.
    Each entry is accumulated directly (a cumulative sum down column j), as in ssd_minimal.py."""
    L = g.shape[-2]
    below = np.tril(np.ones((L, L), bool), -1)[:, :, None]  # s > j
    sums = np.cumsum(np.where(below, g[..., :, None, :], 0.0), axis=-3)
    return np.where(np.tril(np.ones((L, L), bool))[:, :, None], sums, -np.inf)


def _block(q, k, v, g, S, scale):
    """The parallel form on L positions entering with state S (B,H,K,V); q, k (B,H,L,K), v (B,H,L,V),
    g (B,H,L,Kg). -> o (B,H,L,V), the state leaving, and the decays the backward reuses:
    W (B,H,L,L,Kg) from j to i, d_in = exp(Σ_{s<=i} g_s) from the block's start to i and
    d_out = exp(Σ_{j<s<=L-1} g_s) from j to the block's end (B,H,L,Kg)."""
    W = np.exp(_segsum(g))
    d_in, d_out = np.exp(np.cumsum(g, axis=-2)), W[..., -1, :, :]
    A = (q[..., :, None, :] * k[..., None, :, :] * W).sum(-1)  # (B,H,L,L) decayed scores, 0 above the diagonal
    o = scale * (A @ v + (q * d_in) @ S)
    S_out = d_in[..., -1, :, None] * S + (k * d_out).swapaxes(-1, -2) @ v
    return o, S_out, (W, d_in, d_out, A)


def recurrent_forward(q, k, v, g, scale=1.0, h0=None):
    """The recurrence, one step at a time. -> o (B,T,H,V), h_last (B,H,K,V)."""
    qh, kh, vh, gh = _heads(q, k, v, g)
    B, H, T, K = qh.shape
    S = np.zeros((B, H, K, vh.shape[-1]), q.dtype) if h0 is None else h0.copy()
    o = np.empty_like(vh)
    for t in range(T):
        S = np.exp(gh[:, :, t, :, None]) * S + kh[:, :, t, :, None] * vh[:, :, t, None, :]
        o[:, :, t] = scale * np.einsum("bhk,bhkv->bhv", qh[:, :, t], S)
    return o.transpose(0, 2, 1, 3).copy(), S


def chunk_forward(q, k, v, g, scale=1.0, h0=None, chunk=64):
    """The parallel form on blocks of `chunk` positions (the last one shorter), the state passed from
    block to block. chunk >= T is the parallel form. -> o (B,T,H,V), h_last (B,H,K,V)."""
    qh, kh, vh, gh = _heads(q, k, v, g)
    B, H, T, K = qh.shape
    S = np.zeros((B, H, K, vh.shape[-1]), q.dtype) if h0 is None else h0
    o = np.empty_like(vh)
    for t0 in range(0, T, chunk):
        c = slice(t0, t0 + chunk)
        o[:, :, c], S, _ = _block(qh[:, :, c], kh[:, :, c], vh[:, :, c], gh[:, :, c], S, scale)
    return o.transpose(0, 2, 1, 3).copy(), S.copy()


def linear_attention_forward(q, k, v, g, scale=1.0, h0=None, chunk=64, mode="chunk"):
    """o_t = scale · q_t S_t with S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t, S_{-1} = h0 (zeros if None).

    mode "chunk" (blocks of `chunk` positions), "parallel" (one block) or "recurrent" (one step at a
    time): the same function. -> o (B,T,H,V), h_last (B,H,K,V)."""
    scale, chunk, mode = check_scalars("linear_attention_forward", scale=scale, chunk=chunk, mode=mode)
    _check("linear_attention_forward", q, k, v, g)
    if mode == "recurrent":
        return recurrent_forward(q, k, v, g, scale, h0)
    return chunk_forward(q, k, v, g, scale, h0, max(q.shape[1], 1) if mode == "parallel" else chunk)


def _block_backward(q, k, v, g, S, do, dS, scale):
    """Gradients of one block of _block, given do (B,H,L,V) and dS, the gradient of the state leaving
    it. -> dq, dk (B,H,L,K) of the per-head copies, dv (B,H,L,V), dg (B,H,L,Kg), the gradient of the
    state entering.

    dg: g_s enters only through the exponents, each a sum Σ_{j<s<=i} g_s; with G_i the cumulative sum
    from the block's start, the block is a function of G in which G_i appears as +G_i beside q_i (in
    W_ij and d_in) and as -G_j beside k_j (in W_ij and d_out), and G_{L-1} in the state leaving. So
    ∂L/∂G_t = q_t ⊙ dq_t - k_t ⊙ dk_t (+ Σ_v S_out ⊙ dS at t = L-1), and dg_s = Σ_{t>=s} ∂L/∂G_t."""
    o, S_out, (W, d_in, d_out, A) = _block(q, k, v, g, S, scale)
    dA = scale * do @ v.swapaxes(-1, -2)  # (B,H,L,L); W is 0 above the diagonal, so no mask is needed
    dq = (dA[..., None] * W * k[..., None, :, :]).sum(-2) + scale * d_in * (do @ S.swapaxes(-1, -2))
    dk = (dA[..., None] * W * q[..., :, None, :]).sum(-3) + d_out * (v @ dS.swapaxes(-1, -2))
    dv = scale * A.swapaxes(-1, -2) @ do + (k * d_out) @ dS
    dG = q * dq - k * dk
    dG[..., -1, :] += (S_out * dS).sum(-1)
    dg = np.cumsum(dG[..., ::-1, :], axis=-2)[..., ::-1, :]
    if g.shape[-1] == 1:
        dg = dg.sum(-1, keepdims=True)
    dS_in = d_in[..., -1, :, None] * dS + scale * (q * d_in).swapaxes(-1, -2) @ do
    return dq, dk, dv, dg, dS_in


def _outputs(dq, dk, dv, dg, dh0, Hq):
    t = lambda a: a.transpose(0, 2, 1, 3).copy()
    return _group_sum(dq, Hq), _group_sum(dk, Hq), t(dv), t(dg), dh0


def chunk_backward(do, q, k, v, g, scale=1.0, h0=None, dh_last=None, chunk=64):
    """The chunked form's backward: a forward pass keeps the state entering each block, then the
    blocks run in reverse, each passing the gradient of its entering state to the one before.
    chunk >= T is the parallel form's backward."""
    qh, kh, vh, gh = _heads(q, k, v, g)
    B, H, T, K = qh.shape
    doh = do.transpose(0, 2, 1, 3)
    S = np.zeros((B, H, K, vh.shape[-1]), q.dtype) if h0 is None else h0
    starts = range(0, T, chunk)
    states = []
    for t0 in starts:
        c = slice(t0, t0 + chunk)
        states.append(S)
        _, S, _ = _block(qh[:, :, c], kh[:, :, c], vh[:, :, c], gh[:, :, c], S, scale)
    dS = np.zeros_like(S) if dh_last is None else dh_last
    dq, dk, dv, dg = np.empty_like(qh), np.empty_like(kh), np.empty_like(vh), np.empty_like(gh)
    for t0, S in zip(reversed(starts), reversed(states)):
        c = slice(t0, t0 + chunk)
        dq[:, :, c], dk[:, :, c], dv[:, :, c], dg[:, :, c], dS = _block_backward(
            qh[:, :, c], kh[:, :, c], vh[:, :, c], gh[:, :, c], S, doh[:, :, c], dS, scale)
    return _outputs(dq, dk, dv, dg, dS.copy() if h0 is not None else None, q.shape[2])


def recurrent_backward(do, q, k, v, g, scale=1.0, h0=None, dh_last=None):
    """The recurrence's adjoint, one step at a time backwards, from the states S_t of a forward pass:
        dS_t = scale q_tᵀ do_t + diag(exp(g_{t+1})) dS_{t+1},   dS_{T-1} = scale q_{T-1}ᵀ do_{T-1} + dh_last
        dq_t = scale do_t S_tᵀ   dk_t = v_t dS_tᵀ   dv_t = k_t dS_t
        dg_t = exp(g_t) ⊙ Σ_v (S_{t-1} ⊙ dS_t)       dh0 = diag(exp(g_0)) dS_0."""
    qh, kh, vh, gh = _heads(q, k, v, g)
    B, H, T, K = qh.shape
    doh = do.transpose(0, 2, 1, 3)
    Ss = np.zeros((T + 1, B, H, K, vh.shape[-1]), q.dtype)  # Ss[t + 1] = S_t
    if h0 is not None:
        Ss[0] = h0
    for t in range(T):
        Ss[t + 1] = np.exp(gh[:, :, t, :, None]) * Ss[t] + kh[:, :, t, :, None] * vh[:, :, t, None, :]
    dS = np.zeros_like(Ss[0]) if dh_last is None else dh_last.copy()
    dq, dk, dv, dgk = np.empty_like(qh), np.empty_like(kh), np.empty_like(vh), np.empty_like(qh)
    for t in reversed(range(T)):
        dS = dS + scale * qh[:, :, t, :, None] * doh[:, :, t, None, :]
        dq[:, :, t] = scale * np.einsum("bhv,bhkv->bhk", doh[:, :, t], Ss[t + 1])
        dk[:, :, t] = np.einsum("bhv,bhkv->bhk", vh[:, :, t], dS)
        dv[:, :, t] = np.einsum("bhk,bhkv->bhv", kh[:, :, t], dS)
        decay = np.exp(gh[:, :, t, :, None])
        dgk[:, :, t] = (decay * Ss[t] * dS).sum(-1)
        dS = decay * dS
    dg = dgk.sum(-1, keepdims=True) if g.shape[-1] == 1 else dgk
    return _outputs(dq, dk, dv, dg, dS if h0 is not None else None, q.shape[2])


def linear_attention_backward(do, q, k, v, g, scale=1.0, h0=None, dh_last=None, chunk=64):
    """Gradients of linear_attention_forward (the chunked form; chunk >= T is the parallel form's):
    dq, dk (B,T,Hq,K) summed over the heads of a group, dv (B,T,H,V), dg (B,T,H,Kg) (Kg = 1: summed
    over K), dh0 (B,H,K,V) or None when h0 is None. dh_last (B,H,K,V) or None is the gradient
    flowing into h_last from later positions."""
    scale, chunk = check_scalars("linear_attention_backward", scale=scale, chunk=chunk)
    _check("linear_attention_backward", q, k, v, g)
    return chunk_backward(do, q, k, v, g, scale, h0, dh_last, chunk)
