"""The Mamba (S6) mixer in PyTorch: state-spaces/mamba's mamba_simple.py with selective_scan_ref
semantics, from the formulas (Gu & Dao 2023):

    x, z    = split(in_proj(u))                  u (B,T,D) -> (B,T,Din) each
    x       = SiLU(conv1d(x) + conv_bias)        depthwise, causal, width d_conv
    dt,B,C  = split(x_proj(x))                   (B,T,R), (B,T,N), (B,T,N)
    Δ       = softplus(dt dt_projᵀ + dt_proj.bias)
    A       = −exp(A_log)                        (Din,N)
    h_t     = exp(Δ_t A) h_{t−1} + Δ_t B_t x_t,  y_t = C_t·h_t + D x_t
    out     = out_proj(y ⊙ SiLU(z))

The parallel forward runs the scan as a Python loop over time (as selective_scan_ref does). Decoding
(mamba's `step`) keeps the last d_conv−1 conv inputs, conv (B,Din,d_conv−1), and the scan state
ssm (B,Din,N): a step costs the same at every position.

opts: d_state (N), dt_rank (R; None: ⌈D/16⌉), and the init-only d_conv, expand, dt_min, dt_max,
dt_floor (the weights' shapes carry d_conv and expand; a multi-head Mamba's, mamba_heads, its heads'
x_proj (H, R+2N, Dh), dt_proj (H, Dh, R)); bcdt_rms (Jamba, transformers' JambaMambaMixer):
dt, B, C = RMSNorm(dt), RMSNorm(B), RMSNorm(C) with eps bcdt_rms and weights dt_layernorm,
b_layernorm, c_layernorm, before dt_proj and the scan.

directions (non-causal, for images; no decoding), each direction its own conv, x_proj, dt_proj,
A_log and D (the first under the names above, the others under scan_<name>.), in_proj and out_proj
shared, written as the two reference codes compute them:
    2  Vision Mamba (hustvl/Vim, bimamba "v2", if_devide_out=True): each direction gated on its own,
       out = out_proj((ssm_f(x) ⊙ SiLU(z) + flip(ssm_b(flip x) ⊙ SiLU(flip z))) / 2)
    4  VMamba's CrossScan/CrossMerge over the H×W grid (opts grid, or √T square): the stacked
       sequences [rows, columns, rows flipped, columns flipped], the outputs flipped and transposed
       back and summed, then as this repository's simplification divides by 4 instead of VMamba's
       out_norm: out = out_proj(Σ/4 ⊙ SiLU(z)).
"""
import math

import torch
import torch.nn.functional as F


def _sizes(p, opts):
    D = p["in_proj.weight"].shape[1]
    return opts["d_state"], opts.get("dt_rank") or math.ceil(D / 16)


def _in(p, u):
    """u (...,D) -> x, z (...,Din)."""
    din = p["in_proj.weight"].shape[0] // 2
    xz = u @ p["in_proj.weight"].T
    return xz[..., :din], xz[..., din:]


def _heads(p):
    """x_proj (H, R+2N, Dh), dt_proj weight (H, Dh, R) and bias (H, Dh): a multi-head Mamba's (mamba_heads H,
    Zamba's ZambaMambaMixer) as they are, a single-head one's as one head."""
    W, Wdt, bdt = p["x_proj.weight"], p["dt_proj.weight"], p["dt_proj.bias"]
    return (W, Wdt, bdt) if W.ndim == 3 else (W[None], Wdt[None], bdt[None])


def _scan_step(p, opts, h, x):
    """One step of the selective scan for x (B,Din), the conv+SiLU output of one token:
    -> (h_t (B,Din,N), y_t (B,Din)); out of place, so autograd can differentiate through it. With H heads
    each head's channels (Din/H of them, in order) get their own dt, B and C from their own x_proj, dt_proj."""
    N, R = _sizes(p, opts)
    Wx, Wdt, bdt = _heads(p)
    H = Wx.shape[0]
    dbc = torch.einsum("bhd,hed->bhe", x.reshape(x.shape[0], H, -1), Wx)  # (B,H,R+2N)
    dt, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:R + 2 * N]
    if opts.get("bcdt_rms") is not None:  # Jamba's dt_layernorm, b_layernorm, c_layernorm
        dt, Bm, Cm = (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + opts["bcdt_rms"]) * p[f"{n}_layernorm.weight"]
                      for t, n in ((dt, "dt"), (Bm, "b"), (Cm, "c")))
    delta = F.softplus(torch.einsum("bhr,hdr->bhd", dt, Wdt) + bdt).reshape(x.shape)
    Bc, Cc = (t.repeat_interleave(x.shape[1] // H, dim=1) for t in (Bm, Cm))  # (B,Din,N): each channel its head's
    A = -torch.exp(p["A_log"])
    h = torch.exp(delta[..., None] * A) * h + delta[..., None] * Bc * x[..., None]
    return h, (h * Cc).sum(-1) + p["D"] * x


def _ssm(p, opts, xs):
    """The conv, SiLU and scan of xs (B,T,Din) with the parameters p -> y (B,T,Din)."""
    B, T, _ = xs.shape
    din, W = p["conv_weight"].shape
    x = F.silu(F.conv1d(xs.transpose(1, 2), p["conv_weight"][:, None, :], p["conv_bias"],
                        padding=W - 1, groups=din)[..., :T].transpose(1, 2))
    h = torch.zeros(B, din, opts["d_state"], dtype=xs.dtype)
    ys = []
    for t in range(T):
        h, y = _scan_step(p, opts, h, x[:, t])
        ys.append(y)
    return torch.stack(ys, 1)


def _direction(p, name):
    """The parameters of direction `name` (its scan_<name>. entries under the plain names; in_proj,
    whose width gives the default dt_rank, shared)."""
    prefix = f"scan_{name}."
    return {"in_proj.weight": p["in_proj.weight"], **{k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}}


def forward(p, u, opts):
    xs, z = _in(p, u)
    directions = opts.get("directions", 1)
    if directions == 1:
        return (_ssm(p, opts, xs) * F.silu(z)) @ p["out_proj.weight"].T
    if directions == 2:
        fwd = _ssm(p, opts, xs) * F.silu(z)
        bwd = _ssm(_direction(p, "reversed"), opts, xs.flip(1)) * F.silu(z.flip(1))
        return ((fwd + bwd.flip(1)) / 2) @ p["out_proj.weight"].T
    B, T, C = xs.shape
    H, W = opts.get("grid") or (math.isqrt(T),) * 2
    grid = xs.view(B, H, W, C)
    rows, cols = grid.reshape(B, T, C), grid.transpose(1, 2).reshape(B, T, C)
    names = ("columns", "reversed", "columns_reversed")
    ys = [_ssm(p, opts, rows)] + [_ssm(_direction(p, n), opts, s) for n, s in zip(names, (cols, rows.flip(1),
                                                                                        cols.flip(1)))]
    from_cols = lambda y: y.view(B, W, H, C).transpose(1, 2).reshape(B, T, C)
    y = ys[0] + from_cols(ys[1]) + ys[2].flip(1) + from_cols(ys[3].flip(1))
    return (y / 4 * F.silu(z)) @ p["out_proj.weight"].T


def init_state(p, opts, batch, max_len=None, fill=None):
    """{"conv": (B,Din,d_conv−1), "ssm": (B,Din,N)}; max_len is not needed (constant-size state)."""
    din, W = p["conv_weight"].shape
    dtype = p["conv_weight"].dtype
    shapes = {"conv": (batch, din, W - 1), "ssm": (batch, din, opts["d_state"])}
    if fill is not None:
        return {k: torch.randn(s, generator=fill, dtype=dtype) for k, s in shapes.items()}
    return {k: torch.zeros(s, dtype=dtype) for k, s in shapes.items()}


def step(p, u_t, state, opts, pos):
    xs, z = _in(p, u_t)
    window = torch.cat([state["conv"], xs[..., None]], dim=-1)  # (B,Din,W): the last W conv inputs
    x = F.silu((window * p["conv_weight"]).sum(-1) + p["conv_bias"])
    state["conv"].copy_(window[..., 1:])
    h, y = _scan_step(p, opts, state["ssm"], x)
    state["ssm"].copy_(h)
    return (y * F.silu(z)) @ p["out_proj.weight"].T
