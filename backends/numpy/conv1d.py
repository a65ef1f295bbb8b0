"""Depthwise causal 1-D convolution over time (the Mamba block's short conv)."""
import numpy as np

from ..validate import check_scalars


def _extended(x, prefix, W):
    """x̃ = concat(prefix, x) along time: (B, W-1+T, C); zeros stand in for a missing prefix."""
    B, _, C = x.shape
    if prefix is None:
        prefix = np.zeros((B, W - 1, C), dtype=x.dtype)
    return np.concatenate([prefix, x], axis=1)


def _start(j, W, prefix):
    """The first output position whose tap j reads a given position of x̃: 0 with a prefix. Without
    one, the W-1 positions before x are not there (their terms are left out, not multiplied by zeros,
    as in the C kernel: a non-finite weight then meets no missing position)."""
    return 0 if prefix is not None else max(0, W - 1 - j)


def causal_conv1d_forward(x, w, bias, prefix=None):
    """y[b,t,c] = bias[c] + Σ_{j<W} w[c,j] x̃[b,t+j,c],  x̃ = concat(prefix, x) along time.
    x (B,T,C), w (C,W) (w[:, W-1] multiplies the current token), bias (C,) or None,
    prefix (B,W-1,C) or None (no tokens before x) -> y (B,T,C)."""
    T, W = x.shape[1], w.shape[1]
    xe = _extended(x, prefix, W)
    y = np.zeros_like(x)
    for j in range(W):
        t0 = _start(j, W, prefix)
        y[:, t0:] += w[:, j] * xe[:, j + t0:j + T]
    return y if bias is None else y + bias


def causal_conv1d_backward(dy, x, w, has_bias, prefix=None):
    """dx̃[b,s,c] = Σ_j w[c,j] dy[b,s-j,c];  dw[c,j] = Σ_{b,t} dy[b,t,c] x̃[b,t+j,c];  dbias = Σ_{b,t} dy.
    dx = dx̃[:, W-1:] (B,T,C); dprefix = dx̃[:, :W-1] (B,W-1,C), None when prefix is None;
    dw (C,W); dbias (C,) or None when has_bias is False."""
    check_scalars("causal_conv1d_backward", has_bias=has_bias)
    T, W = x.shape[1], w.shape[1]
    xe = _extended(x, prefix, W)
    dxe = np.zeros_like(xe)
    dw = np.empty_like(w)
    for j in range(W):
        t0 = _start(j, W, prefix)
        dxe[:, j:j + T] += w[:, j] * dy
        dw[:, j] = (dy[:, t0:] * xe[:, j + t0:j + T]).sum(axis=(0, 1))
    dbias = dy.sum(axis=(0, 1)) if has_bias else None
    dprefix = dxe[:, :W - 1] if prefix is not None else None
    return dxe[:, W - 1:], dw, dbias, dprefix
