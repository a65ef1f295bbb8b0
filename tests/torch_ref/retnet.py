"""RetNet multi-scale retention in PyTorch (Sun et al. 2023; fla's multiscale_retention.py), from the
formulas, in the paper's parallel form:

    q, k, v, g = split(u W_inᵀ)                q, k (B,H,T,Kh), v (B,H,T,Vh), g (B,T,V); K = D, V = expand_v·D
    q, k       = RoPE(q), RoPE(k)               GPT-NeoX halves, base 10000 (fla; the paper has xPos)
    O          = ((q kᵀ / √Kh) ⊙ Dγ) v          Dγ[n,m] = γ_h^(n−m) for n ≥ m, else 0; γ_h = 1 − 2^(−5−h)
    y          = (RMSNorm(O) ⊙ SiLU(g)) W_outᵀ  RMSNorm over each head's Vh values (weight g_norm), eps 1e-5

and, for decoding, its recurrent form: S_n = γ_h S_{n−1} + k_nᵀ v_n, o_n = q_n S_n / √Kh.

opts: n_heads, expand_v (chunk only picks hybridref's blocking).
"""
import torch
import torch.nn.functional as F

from .attention import _rope

ROPE_BASE, EPS = 10000.0, 1e-5


def _sizes(p, opts):
    D = p["in_proj.weight"].shape[1]
    H = opts["n_heads"]
    return H, D, int(D * opts["expand_v"])


def _gamma(H, dtype):
    return 1 - 2.0 ** (-5.0 - torch.arange(H, dtype=dtype))


def _project(p, u, opts, pos0):
    """u (B,T,D) at positions pos0.. -> q, k (B,H,T,Kh) rotated, v (B,H,T,Vh), g (B,T,V)."""
    B, T, _ = u.shape
    H, K, V = _sizes(p, opts)
    q, k, v, g = (u @ p["in_proj.weight"].T).split([K, K, V, V], dim=-1)
    q, k, v = (t.reshape(B, T, H, -1).transpose(1, 2) for t in (q, k, v))
    return _rope(q, pos0, ROPE_BASE), _rope(k, pos0, ROPE_BASE), v, g


def _out(p, o, g):
    """o (B,H,T,Vh), g (B,T,V) -> (B,T,D)."""
    B, H, T, _ = o.shape
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + EPS) * p["g_norm"]
    return (o.transpose(1, 2).reshape(B, T, -1) * F.silu(g)) @ p["out_proj.weight"].T


def forward(p, u, opts):
    q, k, v, g = _project(p, u, opts, 0)
    H, T, Kh = q.shape[1], q.shape[2], q.shape[3]
    n = torch.arange(T, dtype=u.dtype)
    diff = n[:, None] - n[None, :]
    decay = torch.where(diff >= 0, _gamma(H, u.dtype)[:, None, None] ** diff.clamp(min=0), 0.0)  # (H,T,T)
    return _out(p, (q @ k.transpose(-1, -2) * Kh ** -0.5 * decay) @ v, g)


def init_state(p, opts, batch, max_len=None, fill=None):
    """{"S": (B,H,Kh,Vh)}; the position comes from step's `pos`."""
    H, K, V = _sizes(p, opts)
    shape, dtype = (batch, H, K // H, V // H), p["in_proj.weight"].dtype
    return {"S": torch.randn(shape, generator=fill, dtype=dtype) if fill is not None else torch.zeros(shape, dtype=dtype)}


def step(p, u_t, state, opts, pos):
    q, k, v, g = _project(p, u_t[:, None], opts, pos)  # (B,H,1,·)
    S = _gamma(q.shape[1], u_t.dtype)[:, None, None] * state["S"] + k.transpose(-1, -2) @ v
    state["S"].copy_(S)
    return _out(p, q @ S * q.shape[-1] ** -0.5, g)[:, 0]
