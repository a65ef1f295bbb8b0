"""Zamba's shared attention + MLP block in PyTorch, one call (Glorioso et al. 2024, as transformers'
ZambaAttentionDecoderLayer and ZambaHybridLayer compute it), from the formulas:

    c    = RMSNorm(concat(u, e))                 u (B,T,D), e the token embedding -> (B,T,2D)
    q, k, v = split(c W_qkvᵀ)                    H heads of P = 2D/H (GQA: Hk | H), no RoPE unless rope_base
    o_i  = Σ_{j≤i} softmax_j(q_i·k_j/√P) v_j     (transformers' Zamba scales by 1/√(P/2): its W_q is
                                                  √2 times this one's)
    a    = concat_heads(o) W_oᵀ                  (B,T,D)
    f    = W_down(GELU(W_gate n + b_gate) ⊙ (W_up n + b_up)) + b_down,  n = RMSNorm(a)
                                                 (GELU: tanh form, or exact with mlp_kind "gated_gelu_erf";
                                                  biases unless mlp_bias is false)
    out  = f W_callᵀ

The shared parameters ("shared.…") are one set for every call: in a whole model only the first call's
block holds them (hybridref counts a shared weight once), so the first call leaves them in the pass's
side dict and the later calls read them there. On its own (side None) u stands for e.

opts: n_heads, n_kv_heads (None: n_heads), rope_base (None: none), ffn_hidden, mlp_kind (default
"gated_gelu"), norm_eps (the RMSNorms' eps, default 1e-5).
"""
import torch
import torch.nn.functional as F

from .attention import _rope
from .models import mlp

SHARED = "zamba_shared"  # the side dict's entry holding the shared parameters


def rmsnorm(x, w, opts):
    """x / √(mean(x²) + eps) ⊙ w, eps the option norm_eps."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + opts.get("norm_eps", 1e-5)) * w


def _shared(p, side):
    own = {k[len("shared."):]: v for k, v in p.items() if k.startswith("shared.")}
    if own:
        if side is not None:
            side.setdefault(SHARED, own)
        return own
    return side[SHARED]


def _block(s, p, u, e, opts, pos0, cache=None):
    """u, e (B,T,D) at positions pos0.. -> (B,T,D); cache: {"k", "v"} to append to (decoding)."""
    B, T, D = u.shape
    c = rmsnorm(torch.cat([u, e], dim=-1), s["norm_in.weight"], opts)
    H = opts["n_heads"]
    Hk = opts.get("n_kv_heads") or H
    P = 2 * D // H
    q, k, v = (c @ s["attn.qkv.weight"].T).split([H * P, Hk * P, Hk * P], dim=-1)
    q, k, v = (t.reshape(B, T, -1, P).transpose(1, 2) for t in (q, k, v))
    if opts.get("rope_base") is not None:
        q, k = _rope(q, pos0, opts["rope_base"]), _rope(k, pos0, opts["rope_base"])
    if cache is not None:
        cache["k"][:, :, pos0:pos0 + T], cache["v"][:, :, pos0:pos0 + T] = k, v
        k, v = cache["k"][:, :, :pos0 + T], cache["v"][:, :, :pos0 + T]
    k, v = k.repeat_interleave(H // Hk, 1), v.repeat_interleave(H // Hk, 1)
    allowed = torch.arange(k.shape[2])[None, :] <= torch.arange(pos0, pos0 + T)[:, None]
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed).transpose(1, 2).reshape(B, T, -1)
    a = o @ s["attn.out.weight"].T
    f = mlp(s, rmsnorm(a, s["norm_ff.weight"], opts), opts.get("mlp_kind", "gated_gelu"))
    return f @ p["call_out.weight"].T


def forward(p, u, opts, side=None):
    e = u if side is None else side["embed"]
    return _block(_shared(p, side), p, u, e, opts, 0)


def init_state(p, opts, batch, max_len, fill=None):
    """This call's KV cache {"k", "v"}: (B,Hk,max_len,2D/H) each (zeros, or random with `fill`)."""
    H = opts["n_heads"]
    D = p["call_out.weight"].shape[0]
    shape = (batch, opts.get("n_kv_heads") or H, max_len, 2 * D // H)
    dtype = p["call_out.weight"].dtype
    make = (lambda: torch.randn(shape, generator=fill, dtype=dtype)) if fill is not None else \
        (lambda: torch.zeros(shape, dtype=dtype))
    return {"k": make(), "v": make()}


def step(p, u_t, state, opts, pos, side=None):
    e = u_t if side is None else side["embed"]
    return _block(_shared(p, side), p, u_t[:, None], e[:, None], opts, pos, state)[:, 0]
