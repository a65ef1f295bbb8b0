"""Wrapper of csrc/pooling.c (mean over the sequence axis)."""
from . import checks
from .checks import empty_f32 as empty


def mean_pool_forward(be, x):
    checks.check_array("mean_pool_forward", "x", x, ndim=3)
    B, T, D = x.shape
    checks.check_positive("mean_pool_forward", "sequence length T", T)
    y = empty((B, D))
    be.lib.hr_mean_pool_forward(be.f32(x), be.f32(y), B, T, D)
    return y


def mean_pool_backward(be, dy, seq_len):
    checks.check_array("mean_pool_backward", "dy", dy, ndim=2)
    checks.check_positive("mean_pool_backward", "seq_len", seq_len)
    B, D = dy.shape
    dx = empty((B, seq_len, D))
    be.lib.hr_mean_pool_backward(be.f32(dy), be.f32(dx), B, seq_len, D)
    return dx
