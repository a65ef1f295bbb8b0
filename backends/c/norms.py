"""Wrapper of csrc/norms.c (LayerNorm and RMSNorm over the last axis)."""
from . import checks
from .checks import empty_f32 as empty


def _check_x_w(op, x, w):
    checks.check_array(op, "x", x, ndim=2)
    M, D = x.shape
    checks.check_positive(op, "width D", D)
    checks.check_array(op, "w", w, shape=(D,))
    checks.check_c_int_sizes(op, **{"rows M": M, "width D": D})
    return M, D


def _check_eps(op, eps):
    """eps as the C float the kernel takes."""
    eps, = checks.check_scalars(op, eps=eps)
    checks.check_c_floats(op, eps=eps)
    return eps


def layernorm_forward(be, x, w, b, eps):
    M, D = _check_x_w("layernorm_forward", x, w)
    checks.check_array("layernorm_forward", "b", b, shape=(D,))
    eps = _check_eps("layernorm_forward", eps)
    y, mean, rstd = empty((M, D)), empty((M,)), empty((M,))
    be.lib.hr_layernorm_forward(be.f32(x), be.f32(w), be.f32(b), be.f32(y), be.f32(mean), be.f32(rstd), M, D, eps)
    return y, mean, rstd


def layernorm_backward(be, dy, x, w, mean, rstd):
    op = "layernorm_backward"
    M, D = _check_x_w(op, x, w)
    checks.check_array(op, "dy", dy, shape=(M, D))
    checks.check_array(op, "mean", mean, shape=(M,))
    checks.check_array(op, "rstd", rstd, shape=(M,))
    dx, dw, db = empty((M, D)), empty((D,)), empty((D,))
    be.lib.hr_layernorm_backward(be.f32(dy), be.f32(x), be.f32(w), be.f32(mean), be.f32(rstd),
                                 be.f32(dx), be.f32(dw), be.f32(db), M, D)
    return dx, dw, db


def rmsnorm_forward(be, x, w, eps):
    M, D = _check_x_w("rmsnorm_forward", x, w)
    eps = _check_eps("rmsnorm_forward", eps)
    y, rstd = empty((M, D)), empty((M,))
    be.lib.hr_rmsnorm_forward(be.f32(x), be.f32(w), be.f32(y), be.f32(rstd), M, D, eps)
    return y, rstd


def rmsnorm_backward(be, dy, x, w, rstd):
    op = "rmsnorm_backward"
    M, D = _check_x_w(op, x, w)
    checks.check_array(op, "dy", dy, shape=(M, D))
    checks.check_array(op, "rstd", rstd, shape=(M,))
    dx, dw = empty((M, D)), empty((D,))
    be.lib.hr_rmsnorm_backward(be.f32(dy), be.f32(x), be.f32(w), be.f32(rstd), be.f32(dx), be.f32(dw), M, D)
    return dx, dw
