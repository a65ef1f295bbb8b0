"""The Mamba (S6) selective scan: a linear recurrence with input-dependent decay.

Per batch b, channel d and state n (Gu & Dao 2023; state-spaces/mamba's selective_scan_ref):
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t x_t B_t,    y_t = C_t · h_t + D x_t.
Shapes: x, delta (B,T,Din); A (Din,N); Bm, Cm (B,T,N) shared by every channel; D (Din,);
states h (B,Din,N). Written as an explicit loop over time on whole (B,Din,N) arrays.
"""
import numpy as np


def _states(x, delta, A, Bm, h0):
    """h_{-1} .. h_{T-1} as one (T+1,B,Din,N) array (hs[t+1] = h_t), and the decays exp(Δ_t A) (T,B,Din,N)."""
    B, T, Din = x.shape
    hs = np.zeros((T + 1, B, Din, A.shape[1]), dtype=x.dtype)
    if h0 is not None:
        hs[0] = h0
    decay = np.exp(delta.transpose(1, 0, 2)[..., None] * A)
    for t in range(T):
        hs[t + 1] = decay[t] * hs[t] + (delta[:, t] * x[:, t])[:, :, None] * Bm[:, t, None, :]
    return hs, decay


def selective_scan_forward(x, delta, A, Bm, Cm, D, h0=None):
    """y_t = C_t · h_t + D x_t with h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t x_t B_t, h_{-1} = h0 (zeros if None).

    -> y (B,T,Din), h_last = h_{T-1} (B,Din,N)."""
    hs, _ = _states(x, delta, A, Bm, h0)
    y = np.einsum("tbdn,btn->btd", hs[1:], Cm) + D * x
    return y, hs[-1].copy()


def selective_scan_backward(dy, x, delta, A, Bm, Cm, D, h0=None, dh_last=None):
    """Reverse-time sweep over g_t = ∂L/∂h_t = C_t dy_t + exp(Δ_{t+1} A) ⊙ g_{t+1},
    g_{T-1} = C_{T-1} dy_{T-1} + dh_last (zeros if None):

        dx_t = D dy_t + Δ_t Σ_n g_t B_t          ddelta_t = Σ_n g_t h_{t-1} exp(Δ_t A) A + x_t Σ_n g_t B_t
        dA = Σ_{b,t} g_t h_{t-1} exp(Δ_t A) Δ_t  dBm_t = Σ_d g_t Δ_t x_t    dCm_t = Σ_d h_t dy_t
        dD = Σ_{b,t} dy_t x_t                     dh0 = exp(Δ_0 A) ⊙ g_0 (None when h0 is None)

    Shapes as the forward's inputs: dx, ddelta (B,T,Din), dA (Din,N), dBm, dCm (B,T,N), dD (Din,)."""
    T = x.shape[1]
    hs, decay = _states(x, delta, A, Bm, h0)
    g = np.zeros_like(hs[0]) if dh_last is None else dh_last.copy()
    dA = np.zeros_like(A)
    ddelta, dx, dBm = np.empty_like(delta), np.empty_like(x), np.empty_like(Bm)
    for t in reversed(range(T)):
        g += dy[:, t, :, None] * Cm[:, t, None, :]
        gB = np.einsum("bdn,bn->bd", g, Bm[:, t])
        q = g * hs[t] * decay[t]                    # ∂L/∂(Δ_t A), elementwise
        ddelta[:, t] = (q * A).sum(-1) + x[:, t] * gB
        dA += (q * delta[:, t, :, None]).sum(0)
        dx[:, t] = D * dy[:, t] + delta[:, t] * gB
        dBm[:, t] = np.einsum("bdn,bd->bn", g, delta[:, t] * x[:, t])
        g *= decay[t]
    dCm = np.einsum("tbdn,btd->btn", hs[1:], dy)
    dD = (dy * x).sum(axis=(0, 1))
    return dx, ddelta, dA, dBm, dCm, dD, (g if h0 is not None else None)
