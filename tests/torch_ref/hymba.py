"""Hymba's hybrid-head layer in PyTorch (Dong et al. 2025; nvidia/Hymba-1.5B-Base modeling_hymba.py,
HymbaBlock with attn_only_wo_proj), from the formulas:

    [q | k | v | x | z] = u W_inᵀ                q (H heads of P = D/H), k (Hk heads of P), v (Hk heads of
                                                 Din/H), x, z (Din); a consumer of shared keys: [q | x | z]
    q, k = RoPE(q), RoPE(k)
    a    = softmax(q kᵀ/√P, causal; i − j <= window or j < S in a local layer) v      (B,T,Din)
    m    = Mamba's selective scan of x (conv, SiLU, RMSNorms on dt, B, C: mamba_inner_layernorms) ⊙ SiLU(z)
    out  = ((RMSNorm(a) ⊙ norm_a.weight + RMSNorm(m) ⊙ norm_m.weight) / 2) W_outᵀ

The layer's place among the model's hymba layers, side["depth"] = (index, count) (tests/torch_ref/models.py;
(0, 1) on its own), decides as Hymba's config does: global attention (no window) in the first, middle and
last layer (global_attn_idx), the window elsewhere, beside which the model's S meta tokens, side["meta_tokens"]
(positions 0..S−1), stay visible to every query (Hymba's register mask kv_idx < num_memory_tokens, or-ed with
the window's). A layer whose W_in has no k, v rows reuses the keys and values of the last layer that computed
them (Hymba's kv_last_layer), side["hymba_kv"].

opts: n_heads, n_kv_heads, d_state, dt_rank, window, rope_base, norm_eps (the others are init-only).
"""
import torch
import torch.nn.functional as F

from . import mamba
from .attention import _rope


def _sizes(p, opts, D):
    H = opts["n_heads"]
    Hk = opts.get("n_kv_heads") or H
    din = p["out_proj.weight"].shape[1]
    return H, Hk, D // H, din


def _window(opts, side):
    i, n = (side or {}).get("depth", (0, 1))
    return None if i in (0, (n - 1) // 2, n - 1) else opts.get("window")


def _rms(t, w, eps):
    return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * w


def _project(p, u, opts, pos0):
    """u (B,T,D) -> q (B,H,T,P), k (B,Hk,T,P), v (B,Hk,T,Din/H) for new keys (None for a consumer), x, z."""
    B, T, D = u.shape
    H, Hk, P, din = _sizes(p, opts, D)
    proj = u @ p["in_proj.weight"].T
    own = proj.shape[-1] > H * P + 2 * din
    widths = [H * P] + ([Hk * P, din // H * Hk] if own else []) + [din, din]
    parts = proj.split(widths, dim=-1)
    q = parts[0].reshape(B, T, H, P).transpose(1, 2)
    if opts.get("rope_base") is not None:
        q = _rope(q, pos0, opts["rope_base"])
    k = v = None
    if own:
        k = parts[1].reshape(B, T, Hk, P).transpose(1, 2)
        v = parts[2].reshape(B, T, Hk, din // H).transpose(1, 2)
        if opts.get("rope_base") is not None:
            k = _rope(k, pos0, opts["rope_base"])
    return q, k, v, parts[-2], parts[-1]


def _attend(q, k, v, window, pos0, meta_tokens):
    """q (B,H,Tq,P) at positions pos0.., k, v of positions 0.. -> (B,Tq,H·Pv)."""
    H, Hk = q.shape[1], k.shape[1]
    k, v = k.repeat_interleave(H // Hk, 1), v.repeat_interleave(H // Hk, 1)
    i = torch.arange(pos0, pos0 + q.shape[2])[:, None]
    j = torch.arange(k.shape[2])[None, :]
    allowed = (j <= i) & (((i - j <= window) | (j < meta_tokens)) if window is not None else True)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return o.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _mix(p, opts, a, m):
    eps = opts.get("norm_eps", 1e-5)
    return ((_rms(a, p["norm_a.weight"], eps) + _rms(m, p["norm_m.weight"], eps)) / 2) @ p["out_proj.weight"].T


def _ssm_opts(opts):
    return {**opts, "bcdt_rms": opts.get("norm_eps", 1e-5)}


def forward(p, u, opts, side=None):
    side = {} if side is None else side
    q, k, v, x, z = _project(p, u, opts, 0)
    if k is None:
        k, v = side["hymba_kv"]
    else:
        side["hymba_kv"] = (k, v)
    a = _attend(q, k, v, _window(opts, side), 0, side.get("meta_tokens", 0))
    m = mamba._ssm(p, _ssm_opts(opts), x) * F.silu(z)
    return _mix(p, opts, a, m)


def init_state(p, opts, batch, max_len, fill=None):
    """Mamba's conv and ssm, and the KV cache k (B,Hk,max_len,P), v (B,Hk,max_len,Din/H) (unused by a
    consumer, which reads its producer's)."""
    D = p["in_proj.weight"].shape[1]
    H, Hk, P, din = _sizes(p, opts, D)
    state = mamba.init_state(p, opts, batch, max_len, fill)
    dtype = p["out_proj.weight"].dtype
    for name, width in (("k", P), ("v", din // H)):
        shape = (batch, Hk, max_len, width)
        state[name] = torch.randn(shape, generator=fill, dtype=dtype) if fill is not None else torch.zeros(shape,
                                                                                                           dtype=dtype)
    return state


def step(p, u_t, state, opts, pos, side=None):
    side = {} if side is None else side
    q, k, v, x, z = _project(p, u_t[:, None], opts, pos)
    if k is None:
        k_all, v_all = side["hymba_kv"]
    else:
        state["k"][:, :, pos:pos + 1], state["v"][:, :, pos:pos + 1] = k, v
        k_all, v_all = state["k"][:, :, :pos + 1], state["v"][:, :, :pos + 1]
        side["hymba_kv"] = (k_all, v_all)
    a = _attend(q, k_all, v_all, _window(opts, side), pos, side.get("meta_tokens", 0))[:, 0]
    window = torch.cat([state["conv"], x[:, 0, :, None]], dim=-1)  # Mamba's step from the conv on
    xc = F.silu((window * p["conv_weight"]).sum(-1) + p["conv_bias"])
    state["conv"].copy_(window[..., 1:])
    h, y = mamba._scan_step(p, _ssm_opts(opts), state["ssm"], xc)
    state["ssm"].copy_(h)
    return _mix(p, opts, a, y * F.silu(z[:, 0]))
