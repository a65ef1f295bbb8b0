"""Mean over the sequence axis (a sequence-mixing op: it reads every position)."""
import numpy as np

from ..validate import check_positive, check_scalars


def mean_pool_forward(x):
    """y[b] = (1/T) Σ_t x[b,t]:  x (B,T,D) -> y (B,D)."""
    check_positive("mean_pool_forward", "sequence length T", x.shape[1])
    return x.mean(axis=1)


def mean_pool_backward(dy, seq_len):
    """dx[b,t] = dy[b] / T:  dy (B,D) -> dx (B,T,D)."""
    check_scalars("mean_pool_backward", seq_len=seq_len)
    return np.repeat((dy / seq_len)[:, None, :], seq_len, axis=1)
