"""RWKV-7 time mixing in PyTorch (Peng et al. 2025; RWKV-LM's rwkv_v7_demo.py and train_temp's
RWKV_Tmix_x070), from the formulas, with the WKV state in RWKV-LM's own layout S (V×K) and its own step:

    xx          = x_{t−1} − x_t (zeros before the first token);  x_r .. x_g = x + xx ⊙ mix[0..5]
    r, k, v     = x_r W_rᵀ, x_k W_kᵀ, x_v W_vᵀ
    w           = exp(−e^{−0.5} σ(w0 + tanh(x_w W1) W2))
    v           = v + (v_first − v) σ(v0 + x_v V1 V2),   v_first = the first layer's v (its own, for the first)
    a           = σ(a0 + x_a A1 A2);  g = σ(x_g G1) G2
    κ̂           = normalize_head(k ⊙ k_k);  k = k ⊙ (1 + (a − 1) ⊙ k_a)
    S_t         = S_{t−1} ⊙ w_t + S_{t−1} (−κ̂_t)ᵀ(κ̂_t ⊙ a_t) + v_tᵀ k_t,   y_t = S_t r_t   (per head, S V×K)
    out         = ((GroupNorm_H(y) + Σ_p(r ⊙ k ⊙ r_k) v) ⊙ g) W_oᵀ        GroupNorm eps 64e-5

hybridref's names: W1, W2, w0 = w1.weight, w2.weight, w2.bias (likewise a, v); mix (6,C) holds x_r .. x_g.
The first layer's mix with its own v is the identity, so its gate's parameters get zero gradient, as
hybridref leaves them unused. `side` (a dict, one per pass) carries v_first from the first rwkv7 layer to
the later ones (tests/torch_ref/models.py passes it to the mixers that take it).
opts: head_size (the other options only size the weights or choose their init).
"""
import math

import torch
import torch.nn.functional as F

GN_EPS = 64e-5


def _lin(x, p, name, bias=False):
    y = x @ p[name + ".weight"].T
    return y + p[name + ".bias"] if bias else y


def _project(p, x, prev, opts, side):
    """x, prev (B,T,C), the tokens and the ones before them -> r, w, k, v, a = −κ̂, b = κ̂ ⊙ iclr (B,T,H,N),
    g (B,T,C), and the bonus's per-head weights r ⊙ k ⊙ r_k summed (B,T,H,1)."""
    B, T, C = x.shape
    N = opts["head_size"]
    xx = prev - x
    xr, xw, xk, xv, xa, xg = (x + xx * p["mix"][i] for i in range(6))
    r, k, v = _lin(xr, p, "receptance"), _lin(xk, p, "key"), _lin(xv, p, "value")
    w = torch.exp(-math.exp(-0.5) * torch.sigmoid(_lin(torch.tanh(_lin(xw, p, "w1")), p, "w2", True)))
    if side is not None and "v_first" in side:
        v_first = side["v_first"]
    else:
        v_first = v
        if side is not None:
            side["v_first"] = v
    v = v + (v_first - v) * torch.sigmoid(_lin(_lin(xv, p, "v1"), p, "v2", True))
    iclr = torch.sigmoid(_lin(_lin(xa, p, "a1"), p, "a2", True))
    g = _lin(torch.sigmoid(_lin(xg, p, "g1")), p, "g2")
    kk = F.normalize((k * p["k_k"]).view(B, T, -1, N), dim=-1, p=2.0)
    k = k * (1 + (iclr - 1) * p["k_a"])
    heads = lambda t: t.reshape(B, T, -1, N)
    bonus = (heads(r) * heads(k) * p["r_k"]).sum(-1, keepdim=True)
    return heads(r), heads(w), heads(k), heads(v), -kk, kk * heads(iclr), g, bonus


def _wkv_step(S, r, w, k, v, a, b):
    """RWKV-LM's step per head: S (B,H,V,K), r, w, k, v, a, b (B,H,N) -> S_t, y_t (B,H,V)."""
    S = S * w[..., None, :] + S @ (a[..., :, None] @ b[..., None, :]) + v[..., :, None] @ k[..., None, :]
    return S, (S @ r[..., :, None])[..., 0]


def _out(p, y, v, g, bonus):
    """y, v (B,T,H,N), g (B,T,C), bonus (B,T,H,1) -> (B,T,C)."""
    B, T, H, N = y.shape
    y = F.group_norm(y.reshape(B * T, H * N), H, p["ln_w"], p["ln_b"], eps=GN_EPS).view(B, T, H, N)
    return _lin(((y + bonus * v).reshape(B, T, -1)) * g, p, "output")


def forward(p, x, opts, side=None):
    prev = F.pad(x, (0, 0, 1, -1))  # x_{t−1}, zeros before the first token (RWKV's time_shift)
    r, w, k, v, a, b, g, bonus = _project(p, x, prev, opts, side)
    B, T, H, N = r.shape
    S = torch.zeros(B, H, N, N, dtype=x.dtype)
    ys = []
    for t in range(T):
        S, y = _wkv_step(S, r[:, t], w[:, t], k[:, t], v[:, t], a[:, t], b[:, t])
        ys.append(y)
    return _out(p, torch.stack(ys, 1), v, g, bonus)


def init_state(p, opts, batch, max_len=None, fill=None):
    """{"shift": the previous token (B,C), "S": (B,H,V,K)}."""
    C, N = p["mix"].shape[1], opts["head_size"]
    shapes, dtype = {"shift": (batch, C), "S": (batch, C // N, N, N)}, p["mix"].dtype
    make = (lambda s: torch.randn(s, generator=fill, dtype=dtype)) if fill is not None else \
        (lambda s: torch.zeros(s, dtype=dtype))
    return {k: make(s) for k, s in shapes.items()}


def step(p, x_t, state, opts, pos, side=None):
    r, w, k, v, a, b, g, bonus = _project(p, x_t[:, None], state["shift"][:, None], opts, side)
    S, y = _wkv_step(state["S"], r[:, 0], w[:, 0], k[:, 0], v[:, 0], a[:, 0], b[:, 0])
    state["S"].copy_(S)
    state["shift"].copy_(x_t)
    return _out(p, y[:, None], v, g, bonus)[:, 0]
