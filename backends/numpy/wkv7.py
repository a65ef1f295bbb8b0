"""WKV-7: RWKV-7's generalized delta rule (Peng et al. 2025, "RWKV-7 Goose"), the readable oracle.

Per batch b and head h a K×V state h (h_{-1} = h0, zeros when None), in fla's layout (naive.py of
fla/ops/rwkv7): h[k, v] is RWKV-LM's S[v, k] (rwkv_v7_demo.py keeps S (V×K) and computes S @ r).
With row vectors r_t, w_t, k_t, a_t, b_t (K) and v_t (V):

    h_t = (diag(w_t) + b_tᵀ a_t) h_{t-1} + k_tᵀ v_t,      y_t = r_t h_t
    i.e. in RWKV-LM's layout  S_t = S_{t-1} (diag(w_t) + a_tᵀ b_t) + v_tᵀ k_t,  y_t = S_t r_t

w_t is the decay itself (in (0, 1] in RWKV-7: exp(−e^{−0.5} σ(·))), not its logarithm. The layer passes
a = −κ̂ and b = κ̂ ⊙ iclr (κ̂ the L2-normalised key, iclr the in-context learning rate), the arguments
RWKV-LM's kernel and fla take: h_t = diag(w_t) h_{t-1} − κ̂ᵀ (iclr ⊙ κ̂) h_{t-1} + kᵀv, the delta rule
with decay. The op itself takes any a, b.

Shapes: r, w, k, a, b (B,T,H,K); v (B,T,H,V); h0, h_last (B,H,K,V) -> y (B,T,H,V).
"""
import numpy as np


def _check(op, r, w, k, v, a, b, h0):
    if r.ndim != 4 or v.ndim != 4:
        raise ValueError(f"{op}: r and v must be 4-D (B,T,H,dim), got {r.shape}, {v.shape}")
    B, T, H, K = r.shape
    for name, x in (("w", w), ("k", k), ("a", a), ("b", b)):
        if x.shape != r.shape:
            raise ValueError(f"{op}: {name} must have r's shape (B,T,H,K) = {r.shape}, got {x.shape}")
    if v.shape[:3] != (B, T, H):
        raise ValueError(f"{op}: v must have shape (B,T,H,V) = ({B}, {T}, {H}, V), got {v.shape}")
    if h0 is not None and h0.shape != (B, H, K, v.shape[3]):
        raise ValueError(f"{op}: h0 must have shape (B,H,K,V) = {(B, H, K, v.shape[3])}, got {h0.shape}")


def _step(h, w, k, v, a, b):
    """One step of every (batch, head): h (B,H,K,V), w, k, a, b (B,H,K), v (B,H,V) -> h_t and sa = a h_{t-1}."""
    sa = np.einsum("bhk,bhkv->bhv", a, h)
    return w[..., None] * h + b[..., None] * sa[:, :, None, :] + k[..., None] * v[:, :, None, :], sa


def wkv7_forward(r, w, k, v, a, b, h0=None):
    """y_t = r_t h_t, h_t = (diag(w_t) + b_tᵀ a_t) h_{t-1} + k_tᵀ v_t, h_{-1} = h0 (zeros if None).
    -> y (B,T,H,V), h_last (B,H,K,V)."""
    _check("wkv7_forward", r, w, k, v, a, b, h0)
    B, T, H, K = r.shape
    h = np.zeros((B, H, K, v.shape[3]), r.dtype) if h0 is None else h0.copy()
    y = np.empty_like(v)
    for t in range(T):
        h, _ = _step(h, w[:, t], k[:, t], v[:, t], a[:, t], b[:, t])
        y[:, t] = np.einsum("bhk,bhkv->bhv", r[:, t], h)
    return y, h


def wkv7_backward(dy, r, w, k, v, a, b, h0=None, dh_last=None):
    """Gradients of wkv7_forward, one step at a time backwards from the states h_t of a forward pass.
    With g_t = ∂L/∂h_t (all of it: g_{T-1} = dh_last + r_{T-1}ᵀ dy_{T-1}) and M_t = diag(w_t) + b_tᵀ a_t:

        g_t  = r_tᵀ dy_t + M_{t+1}ᵀ g_{t+1}
        dr_t = h_t dy_tᵀ          dk_t = g_t v_tᵀ          dv_t = k_t g_t
        dw_t = Σ_v h_{t-1} ⊙ g_t   db_t = g_t sa_tᵀ, sa_t = a_t h_{t-1}      da_t = h_{t-1} (g_tᵀ b_t)ᵀ
        dh0  = M_0ᵀ g_0

    dh_last (B,H,K,V) or None flows into h_last; dh0 is None when h0 is None.
    -> dr, dw, dk, da, db (B,T,H,K), dv (B,T,H,V), dh0."""
    _check("wkv7_backward", r, w, k, v, a, b, h0)
    B, T, H, K = r.shape
    hs = np.zeros((T + 1, B, H, K, v.shape[3]), r.dtype)  # hs[t + 1] = h_t
    if h0 is not None:
        hs[0] = h0
    sas = np.empty_like(v.transpose(1, 0, 2, 3))  # sa_t (T,B,H,V)
    for t in range(T):
        hs[t + 1], sas[t] = _step(hs[t], w[:, t], k[:, t], v[:, t], a[:, t], b[:, t])
    g = np.zeros_like(hs[0]) if dh_last is None else dh_last.copy()
    dr, dw, dk, da, db = (np.empty_like(r) for _ in range(5))
    dv = np.empty_like(v)
    for t in reversed(range(T)):
        g = g + r[:, t, :, :, None] * dy[:, t, :, None, :]
        dr[:, t] = np.einsum("bhkv,bhv->bhk", hs[t + 1], dy[:, t])
        dk[:, t] = np.einsum("bhkv,bhv->bhk", g, v[:, t])
        dv[:, t] = np.einsum("bhk,bhkv->bhv", k[:, t], g)
        dw[:, t] = (hs[t] * g).sum(-1)
        db[:, t] = np.einsum("bhkv,bhv->bhk", g, sas[t])
        gb = np.einsum("bhk,bhkv->bhv", b[:, t], g)  # g_tᵀ b_t: what reaches sa_t
        da[:, t] = np.einsum("bhkv,bhv->bhk", hs[t], gb)
        g = w[:, t, :, :, None] * g + a[:, t, :, :, None] * gb[:, :, None, :]
    return dr, dw, dk, dv, da, db, (g if h0 is not None else None)
