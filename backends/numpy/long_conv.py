"""The long causal depthwise convolution of Hyena's implicit filters: per batch b and channel c,

    y[t] = Σ_{j<L, W+t−j >= 0} h[j] ũ[W + t − j],    ũ = concat(prefix, u) along time,

causal_conv1d's sum with a filter h (L,C) as long as the history an output should see (Hyena: its
l_max), stored time-major. prefix (B,L−1,C) holds the W = L−1 positions before u, so a piece of a
sequence continues the pieces before it; without one (W = 0) there are no positions before u, and
the lags that would reach before it are left out of the sum (not multiplied by zeros, as in
causal_conv1d and the C kernel: a non-finite lag then reaches only the outputs at which it meets a
position of u). Written as the direct sum over the lags j: one shifted multiply-add of (B,·,C) arrays per
lag, O(T·L); the C backend computes the same sum by FFT for long sequences (csrc/long_conv.c).
"""
import numpy as np


def _extended(op, u, h, prefix):
    """(ũ, W): ũ (B, W+T, C) = concat(prefix, u) with W = L−1, or u itself with W = 0 when prefix is
    None. An empty filter (L = 0) is refused, as by the C backend: its prefix would have −1 rows."""
    if h.shape[0] < 1:
        raise ValueError(f"{op}: h must have shape (L, {u.shape[2]}) with L >= 1 (the channels of u), got {h.shape}")
    if prefix is None:
        return u, 0
    return np.concatenate([prefix, u], axis=1), h.shape[0] - 1


def _lags(L, W, T):
    """(j, t0) for each lag j that meets ũ: the outputs t >= t0 = max(0, j − W) read ũ[W+t−j]."""
    return [(j, max(0, j - W)) for j in range(min(L, W + T))]


def long_conv_forward(u, h, prefix=None):
    """y[b,t,c] = Σ_{j<L, W+t−j >= 0} h[j,c] ũ[b, W+t−j, c]. u (B,T,C), h (L,C) with L >= 1,
    prefix (B,L−1,C) or None -> y (B,T,C)."""
    T, L = u.shape[1], h.shape[0]
    ut, W = _extended("long_conv_forward", u, h, prefix)
    y = np.zeros_like(u)
    for j, t0 in _lags(L, W, T):
        y[:, t0:] += h[j] * ut[:, W + t0 - j:W + T - j]
    return y


def long_conv_backward(dy, u, h, prefix=None):
    """Each lag j of the forward is y[:, t0:] += h[j] ⊙ ũ[:, W+t0−j : W+T−j], so

        dũ[:, W+t0−j : W+T−j] += h[j] ⊙ dy[:, t0:],    dh[j] = Σ_{b, t >= t0} dy[:, t] ⊙ ũ[:, W+t−j]

    (dh[j] = 0 for a lag that meets no position); du is dũ's last T positions, dprefix its first W
    (None when prefix is None). -> du (B,T,C), dh (L,C), dprefix (B,L−1,C) or None."""
    T, L = u.shape[1], h.shape[0]
    ut, W = _extended("long_conv_backward", u, h, prefix)
    dut = np.zeros_like(ut)
    dh = np.zeros_like(h)
    for j, t0 in _lags(L, W, T):
        window = slice(W + t0 - j, W + T - j)
        dut[:, window] += h[j] * dy[:, t0:]
        dh[j] = (dy[:, t0:] * ut[:, window]).sum(axis=(0, 1))
    return dut[:, W:], dh, (dut[:, :W] if prefix is not None else None)
