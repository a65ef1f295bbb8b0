"""Causal softmax self-attention in PyTorch (Vaswani et al. 2017), from the formulas:

    q, k, v = split(x W_qkvᵀ)                  q (B,H,T,P), k, v (B,Hk,T,P); P = D/H or head_dim, GQA: Hk | H
    q, k    = RoPE(q), RoPE(k)                  when rope_base is not None (GPT-NeoX halves,
                                                θ_m = base^(−2m/P), angles in float64)
    o_i     = Σ_j softmax_j(q_i·k_j/√P) v_j     key j allowed iff j ≤ i (and i − window ≤ j)
    y       = concat_heads(o) W_oᵀ (+ b_o with out_bias)

Query head h reads key/value head h // (H/Hk). Decoding keeps a KV cache (B,Hk,L,P) of L = max_len
positions: a step writes its k, v at row `pos` and attends over rows 0..pos.

opts: n_heads, n_kv_heads (None: n_heads), window (None: unbounded), rope_base (None: no RoPE),
rope_dims (None: the whole head; R: RoPE over the first R dims of each head only, θ_m = base^(−2m/R)),
out_bias (b_o: the parameter out.bias), head_dim (None: D/H; else W_o is (D, H·head_dim)).
"""
import torch
import torch.nn.functional as F


def _heads(p, opts):
    H = opts["n_heads"]
    Hk = opts.get("n_kv_heads") or H
    D = p["out.weight"].shape[0]
    return H, Hk, opts.get("head_dim") or D // H


def _rope(x, pos0, base):
    """x (B,H,T,P) rotated by the positions pos0, pos0+1, ... (GPT-NeoX: first half / second half)."""
    P, T = x.shape[-1], x.shape[-2]
    theta = base ** (-torch.arange(0, P, 2, dtype=torch.float64) / P)
    ang = torch.arange(pos0, pos0 + T, dtype=torch.float64)[:, None] * theta
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., :P // 2], x[..., P // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def _qkv(p, x, opts, pos0):
    """x (B,T,D) at positions pos0.. -> q (B,H,T,P), k, v (B,Hk,T,P), rotated when RoPE is on."""
    B, T, _ = x.shape
    H, Hk, P = _heads(p, opts)
    q, k, v = (x @ p["qkv.weight"].T).split([H * P, Hk * P, Hk * P], dim=-1)
    q, k, v = (t.reshape(B, T, -1, P).transpose(1, 2) for t in (q, k, v))
    if opts.get("rope_base") is not None:
        R = opts.get("rope_dims") or P
        q, k = (torch.cat([_rope(t[..., :R], pos0, opts["rope_base"]), t[..., R:]], dim=-1) for t in (q, k))
    return q, k, v


def _attend(p, q, k, v, opts, pos0):
    """q (B,H,Tq,P) at positions pos0.., k, v (B,Hk,Tk,P) at positions 0.. -> (B,Tq,D)."""
    H, Hk, _ = _heads(p, opts)
    B, _, Tq, _ = q.shape
    k, v = k.repeat_interleave(H // Hk, 1), v.repeat_interleave(H // Hk, 1)
    i = torch.arange(pos0, pos0 + Tq)[:, None]
    j = torch.arange(k.shape[2])[None, :]
    allowed = j <= i
    if opts.get("window") is not None:
        allowed = allowed & (i - j <= opts["window"])
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # softmax(q kᵀ/√P, masked) v
    y = o.transpose(1, 2).reshape(B, Tq, -1) @ p["out.weight"].T
    return y + p["out.bias"] if "out.bias" in p else y


def forward(p, x, opts):
    q, k, v = _qkv(p, x, opts, 0)
    return _attend(p, q, k, v, opts, 0)


def init_state(p, opts, batch, max_len, fill=None):
    """KV cache {"k", "v"}: (B,Hk,max_len,P) each."""
    _, Hk, P = _heads(p, opts)
    dtype = p["qkv.weight"].dtype
    shape = (batch, Hk, max_len, P)
    make = (lambda: torch.randn(shape, generator=fill, dtype=dtype)) if fill is not None else \
        (lambda: torch.zeros(shape, dtype=dtype))
    return {"k": make(), "v": make()}


def step(p, x_t, state, opts, pos):
    if pos >= state["k"].shape[2]:
        raise ValueError(f"attention: KV cache full ({state['k'].shape[2]} tokens)")
    q, k, v = _qkv(p, x_t[:, None], opts, pos)
    state["k"][:, :, pos:pos + 1] = k
    state["v"][:, :, pos:pos + 1] = v
    return _attend(p, q, state["k"][:, :, :pos + 1], state["v"][:, :, :pos + 1], opts, pos)[:, 0]
