"""The Mamba-2 mixer in PyTorch, from the formulas of Dao & Gu 2024 (state-spaces/mamba's mamba2.py
and the SSD listing ssd_minimal.py):

    z, xBC, dt = split(u in_projᵀ)                 [z (Din), x (Din), B (G·N), C (G·N), dt (H)]
    x, B, C    = split(SiLU(conv1d(xBC) + bias))   depthwise, causal, width d_conv
    Δ          = softplus(dt + dt_bias),  A = −exp(A_log)        (H,)
    h_t        = exp(Δ_t A) h_{t−1} + Δ_t x_t ⊗ B_t   per head, h (P,N); head h reads group h // (H/G)
    y_t        = h_t C_t + D x_t
    out        = (RMSNorm per group(y ⊙ SiLU(z)) ⊙ norm.weight) out_projᵀ

The parallel forward is SSD's chunked form (ssd_minimal_discrete: the quadratic "attention" form
C Bᵀ ⊙ exp(segsum(ΔA)) inside each chunk of `chunk` steps, chunk states, a recurrence over chunk
boundaries, their contribution C · state · exp(cumsum ΔA)); the decode `step` is the recurrence
above (mamba2.py's step), on a conv state of the last d_conv inputs (B, conv_dim, d_conv) and the SSM
state (B,H,P,N), so `step` against `forward` checks the two forms against each other.

opts: d_state (N), headdim (P), ngroups (G), chunk; the init-only d_conv, expand, dt_min, dt_max,
dt_floor, A_init_min, A_init_max (the weights' shapes carry d_conv and expand).
"""
import torch
import torch.nn.functional as F


def _sizes(p, opts):
    """(Din, H, P, G, N)."""
    P, G, N = opts["headdim"], opts["ngroups"], opts["d_state"]
    din = p["out_proj.weight"].shape[1]
    return din, din // P, P, G, N


def _in(p, u, opts):
    """u (...,D) -> z (...,Din), xBC (...,Din+2GN), dt + dt_bias (...,H)."""
    din, H, _, G, N = _sizes(p, opts)
    zxbcdt = u @ p["in_proj.weight"].T
    return (zxbcdt[..., :din], zxbcdt[..., din:2 * din + 2 * G * N],
            zxbcdt[..., 2 * din + 2 * G * N:] + p["dt_bias"])


def _split_xbc(xbc, opts, din):
    """(...,Din+2GN) -> x (...,H,P), B, C (...,G,N)."""
    P, G, N = opts["headdim"], opts["ngroups"], opts["d_state"]
    x, B, C = torch.split(xbc, [din, G * N, G * N], dim=-1)
    return x.unflatten(-1, (-1, P)), B.unflatten(-1, (G, N)), C.unflatten(-1, (G, N))


def _out(p, y, z, opts):
    """RMSNormGated (norm_before_gate=False, group size Din/G, eps norm_eps), then out_proj: y, z (...,Din).
    Without a norm.weight (Falcon-H1's mamba_rms_norm false, tests/torch_ref/falcon_h1.py) the gate alone."""
    if "norm.weight" not in p:
        return (y * F.silu(z)) @ p["out_proj.weight"].T
    g = (y * F.silu(z)).unflatten(-1, (opts["ngroups"], -1))
    g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + opts["norm_eps"])
    return (g.flatten(-2) * p["norm.weight"]) @ p["out_proj.weight"].T


def _segsum(a):
    """a (..., L) -> (..., L, L): Σ_{s<j≤i} a_j at [i, s] for s ≤ i, −inf above the diagonal
    (ssd_minimal's stable segsum: a masked cumulative sum, no differences of cumsums)."""
    L = a.shape[-1]
    a = a[..., None].expand(*a.shape, L)
    a = a.masked_fill(~torch.tril(torch.ones(L, L, dtype=torch.bool), -1), 0)
    s = torch.cumsum(a, dim=-2)
    return s.masked_fill(~torch.tril(torch.ones(L, L, dtype=torch.bool), 0), -torch.inf)


def _ssd_chunked(X, A, B, C, L):
    """ssd_minimal_discrete from a zero state: X (b,T,H,P), A (b,T,H), B, C (b,T,H,N), T a multiple
    of L -> Y (b,T,H,P)."""
    X, A, B, C = (t.unflatten(1, (-1, L)) for t in (X, A, B, C))  # (b, c, l, ...)
    A = A.permute(0, 3, 1, 2)  # (b, h, c, l)
    A_cs = torch.cumsum(A, dim=-1)
    # 1. inside each chunk: the quadratic (attention-like) form
    Y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, torch.exp(_segsum(A)), X)
    # 2. each chunk's final state from its own inputs
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, torch.exp(A_cs[..., -1:] - A_cs), X)
    # 3. the states entering each chunk: a recurrence over chunk boundaries
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    decay_chunk = torch.exp(_segsum(F.pad(A_cs[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)[:, :-1]
    # 4. what the entering state contributes inside each chunk
    Y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(A_cs))
    return (Y_diag + Y_off).flatten(1, 2)


def forward(p, u, opts):
    Bsz, T, _ = u.shape
    din, H, P, G, N = _sizes(p, opts)
    z, xbc, dt = _in(p, u, opts)
    C_dim, W = p["conv_weight"].shape
    xbc = F.silu(F.conv1d(xbc.transpose(1, 2), p["conv_weight"][:, None, :], p["conv_bias"],
                          padding=W - 1, groups=C_dim)[..., :T].transpose(1, 2))
    x, Bm, Cm = _split_xbc(xbc, opts, din)
    delta = F.softplus(dt)
    A = -torch.exp(p["A_log"])
    Bh, Ch = (m.repeat_interleave(H // G, dim=2) for m in (Bm, Cm))  # (B,T,H,N): head h <- group h // (H/G)
    L = opts["chunk"]
    pad = (-T) % L  # zero steps at the end (x = 0, ΔA = 0) change nothing before them
    X, dA, Bh, Ch = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x * delta[..., None], delta * A, Bh, Ch))
    y = _ssd_chunked(X, dA, Bh, Ch, L)[:, :T] + p["D"][:, None] * x
    return _out(p, y.flatten(-2), z, opts)


def init_state(p, opts, batch, max_len=None, fill=None):
    """{"conv": (B, conv_dim, d_conv), the last d_conv conv inputs (mamba2.py's layout), "ssm":
    (B,H,P,N)}; max_len is not needed (constant-size state)."""
    din, H, P, G, N = _sizes(p, opts)
    dtype = p["conv_weight"].dtype
    shapes = {"conv": (batch, *p["conv_weight"].shape), "ssm": (batch, H, P, N)}
    if fill is not None:
        return {k: torch.randn(s, generator=fill, dtype=dtype) for k, s in shapes.items()}
    return {k: torch.zeros(s, dtype=dtype) for k, s in shapes.items()}


def step(p, u_t, state, opts, pos):
    din, H, P, G, N = _sizes(p, opts)
    z, xbc, dt = _in(p, u_t, opts)
    conv = torch.cat([state["conv"][..., 1:], xbc[..., None]], dim=-1)  # shift in the new input
    state["conv"].copy_(conv)
    x, Bm, Cm = _split_xbc(F.silu((conv * p["conv_weight"]).sum(-1) + p["conv_bias"]), opts, din)
    delta = F.softplus(dt)  # (B,H)
    A = -torch.exp(p["A_log"])
    Bh, Ch = (m.repeat_interleave(H // G, dim=1) for m in (Bm, Cm))  # (B,H,N)
    h = torch.exp(delta * A)[..., None, None] * state["ssm"] + \
        (delta[..., None] * x)[..., None] * Bh[:, :, None, :]
    state["ssm"].copy_(h)
    y = (h * Ch[:, :, None, :]).sum(-1) + p["D"][:, None] * x
    return _out(p, y.flatten(-2), z, opts)
