"""The long causal depthwise convolution of Hyena's implicit filters: per batch b and channel c,

    y[t] = Σ_{j<L} h[j] ũ[t + L−1 − j],    ũ = concat(prefix, u) along time,

causal_conv1d's sum with a filter h (L,C) as long as the history an output should see (Hyena: its
l_max), stored time-major. prefix (B,L−1,C) holds the L−1 positions before u (zeros when None), so a
piece of a sequence continues the pieces before it. Written as the direct sum over the lags j: one
shifted multiply-add of whole (B,T,C) arrays per lag, O(T·L); the C backend computes the same sum by
FFT (csrc/long_conv.c).
"""
import numpy as np


def _extended(u, L, prefix):
    """ũ (B, L−1+T, C): the L−1 positions before u (prefix, or zeros), then u."""
    before = np.zeros((u.shape[0], L - 1, u.shape[2]), u.dtype) if prefix is None else prefix
    return np.concatenate([before, u], axis=1)


def long_conv_forward(u, h, prefix=None):
    """y[b,t,c] = Σ_{j<L} h[j,c] ũ[b, t+L−1−j, c]. u (B,T,C), h (L,C), prefix (B,L−1,C) or None
    -> y (B,T,C)."""
    T, L = u.shape[1], h.shape[0]
    ut = _extended(u, L, prefix)
    y = np.zeros_like(u)
    for j in range(L):
        y += h[j] * ut[:, L - 1 - j:L - 1 - j + T]
    return y


def long_conv_backward(dy, u, h, prefix=None):
    """Each lag j of the forward is y += h[j] ⊙ ũ[:, L−1−j : L−1−j+T], so

        dũ[:, L−1−j : L−1−j+T] += h[j] ⊙ dy,    dh[j] = Σ_{b,t} dy ⊙ ũ[:, L−1−j : L−1−j+T];

    du is dũ's last T positions, dprefix its first L−1 (None when prefix is None).
    -> du (B,T,C), dh (L,C), dprefix (B,L−1,C) or None."""
    T, L = u.shape[1], h.shape[0]
    ut = _extended(u, L, prefix)
    dut = np.zeros_like(ut)
    dh = np.empty_like(h)
    for j in range(L):
        window = slice(L - 1 - j, L - 1 - j + T)
        dut[:, window] += h[j] * dy
        dh[j] = (dy * ut[:, window]).sum(axis=(0, 1))
    return dut[:, L - 1:], dh, (dut[:, :L - 1] if prefix is not None else None)
