"""Gated linear attention in PyTorch (Yang et al. 2024; fla's layers/gla.py, ops/gla/naive.py), from
the formulas, as an explicit recurrence over time:

    q, k, v, g, z = split(u W_inᵀ)             q, k (B,H,T,Kh), v (B,H,T,Vh), g (B,T,V), z (B,T,r);
                                               K = expand_k·D, V = expand_v·D
    α_t           = exp(logsigmoid(z_t W_gkᵀ + b_gk) / n)   (B,H,Kh), n = gate_logit_normalizer
    S_t           = diag(α_t) S_{t−1} + k_tᵀ v_t,  o_t = q_t S_t / √Kh
    y             = (RMSNorm(o) ⊙ SiLU(g)) W_outᵀ  RMSNorm over each head's Vh values (weight g_norm), eps 1e-5

opts: n_heads, expand_k, expand_v, gate_low_rank_dim, gate_logit_normalizer (chunk only picks
hybridref's blocking).
"""
import torch
import torch.nn.functional as F

EPS = 1e-5


def _sizes(p, opts):
    D = p["in_proj.weight"].shape[1]
    return opts["n_heads"], int(D * opts["expand_k"]), int(D * opts["expand_v"]), opts["gate_low_rank_dim"]


def _project(p, u, opts):
    """u (B,T,D) -> q, k (B,H,T,Kh), v (B,H,T,Vh), log α (B,H,T,Kh), g (B,T,V)."""
    B, T, _ = u.shape
    H, K, V, r = _sizes(p, opts)
    q, k, v, g, z = (u @ p["in_proj.weight"].T).split([K, K, V, V, r], dim=-1)
    log_alpha = F.logsigmoid(z @ p["gk_proj.weight"].T + p["gk_proj.bias"]) / opts["gate_logit_normalizer"]
    q, k, v, log_alpha = (t.reshape(B, T, H, -1).transpose(1, 2) for t in (q, k, v, log_alpha))
    return q, k, v, log_alpha, g


def _recur(S, q, k, v, log_alpha):
    """One step per head: S (B,H,Kh,Vh), q, k, log α (B,H,Kh), v (B,H,Vh) -> (S_t, o_t (B,H,Vh))."""
    S = log_alpha.exp()[..., None] * S + k[..., None] * v[..., None, :]
    return S, (q[..., None] * S).sum(-2) * q.shape[-1] ** -0.5


def _out(p, o, g):
    """o (B,H,T,Vh), g (B,T,V) -> (B,T,D)."""
    B, H, T, _ = o.shape
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + EPS) * p["g_norm"]
    return (o.transpose(1, 2).reshape(B, T, -1) * F.silu(g)) @ p["out_proj.weight"].T


def forward(p, u, opts):
    q, k, v, log_alpha, g = _project(p, u, opts)
    S = torch.zeros(*q.shape[:2], q.shape[-1], v.shape[-1], dtype=u.dtype)
    outs = []
    for t in range(u.shape[1]):
        S, o = _recur(S, q[:, :, t], k[:, :, t], v[:, :, t], log_alpha[:, :, t])
        outs.append(o)
    return _out(p, torch.stack(outs, 2), g)


def init_state(p, opts, batch, max_len=None, fill=None):
    """{"S": (B,H,Kh,Vh)}."""
    H, K, V, _ = _sizes(p, opts)
    shape, dtype = (batch, H, K // H, V // H), p["in_proj.weight"].dtype
    return {"S": torch.randn(shape, generator=fill, dtype=dtype) if fill is not None else torch.zeros(shape, dtype=dtype)}


def step(p, u_t, state, opts, pos):
    q, k, v, log_alpha, g = _project(p, u_t[:, None], opts)
    S, o = _recur(state["S"], q[:, :, 0], k[:, :, 0], v[:, :, 0], log_alpha[:, :, 0])
    state["S"].copy_(S)
    return _out(p, o[:, :, None], g)[:, 0]
