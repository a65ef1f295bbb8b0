"""Token shift (RWKV): each of M mixes interpolates, per channel, between the current token and the one
before it, with its own learned coefficients.

    y[b,t,m,c] = x[b,t,c] + (x[b,t-1,c] − x[b,t,c]) · mu[m,c],    x[b,-1] = prefix[b,0] (zeros if None)

x (B,T,C), mu (M,C), prefix (B,1,C) -> y (B,T,M,C). RWKV-7's time mixing takes M = 6 mixes of one
shift (for r, w, k, v, a, g; RWKV-LM's x_r ... x_g), its channel mixing M = 1 (x_k). The prefix is the
token before x: the decode state of a prefill that continues an earlier one, or the last token of the
previous process's slice of the sequence.
"""
import numpy as np


def _previous(x, prefix):
    """x_{t-1} for every t: (B,T,C), prefix (or zeros) first."""
    first = np.zeros_like(x[:, :1]) if prefix is None else prefix
    return np.concatenate([first, x[:, :-1]], axis=1)


def _check(op, x, mu, prefix):
    if x.ndim != 3 or mu.ndim != 2 or mu.shape[1] != x.shape[2]:
        raise ValueError(f"{op}: need x (B,T,C) and mu (M,C), got x {x.shape}, mu {mu.shape}")
    if prefix is not None and prefix.shape != (x.shape[0], 1, x.shape[2]):
        raise ValueError(f"{op}: prefix must have shape (B,1,C) = {(x.shape[0], 1, x.shape[2])}, got {prefix.shape}")


def token_shift_forward(x, mu, prefix=None):
    """y[:, t, m] = x_t + (x_{t-1} − x_t) ⊙ mu_m -> (B,T,M,C)."""
    _check("token_shift_forward", x, mu, prefix)
    xx = _previous(x, prefix) - x
    return x[:, :, None, :] + xx[:, :, None, :] * mu


def token_shift_backward(dy, x, mu, prefix=None):
    """dx_t = Σ_m dy_{t,m} ⊙ (1 − mu_m) + Σ_m dy_{t+1,m} ⊙ mu_m;  dmu_m = Σ_{b,t} dy_{t,m} ⊙ (x_{t-1} − x_t);
    dprefix = Σ_m dy_{0,m} ⊙ mu_m (None when prefix is None). -> dx (B,T,C), dmu (M,C), dprefix (B,1,C)."""
    _check("token_shift_backward", x, mu, prefix)
    xx = _previous(x, prefix) - x
    dprev = (dy * mu).sum(axis=2)  # gradient of x_{t-1}, (B,T,C)
    dx = dy.sum(axis=2) - dprev
    dx[:, :-1] += dprev[:, 1:]
    dmu = (dy * xx[:, :, None, :]).sum(axis=(0, 1))
    if prefix is None:
        return dx, dmu, None
    # with no position (T = 0) nothing reads the prefix: its gradient is zero
    return dx, dmu, dprev[:, :1].copy() if x.shape[1] else np.zeros_like(prefix)
