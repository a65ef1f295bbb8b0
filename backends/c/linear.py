"""Wrapper of csrc/gemm.c and csrc/linear.c (matrix multiply, linear layer)."""
from . import checks
from .checks import empty_f32 as empty


def matmul(be, a, b, trans_a=False, trans_b=False):
    op = "matmul"
    checks.check_array(op, "a", a, ndim=2)
    checks.check_array(op, "b", b, ndim=2)
    trans_a, trans_b = checks.check_scalars(op, trans_a=trans_a, trans_b=trans_b)
    K, M = a.shape if trans_a else a.shape[::-1]
    N, Kb = b.shape if trans_b else b.shape[::-1]
    if K != Kb:
        raise ValueError(f"{op}: op(a) is ({M}, {K}) but op(b) is ({Kb}, {N}); their inner sizes must match "
                         f"(a {a.shape}, trans_a={trans_a}; b {b.shape}, trans_b={trans_b})")
    checks.check_c_int_sizes(op, M=M, N=N, K=K)
    c = empty((M, N))
    status = be.lib.hr_gemm(trans_a, trans_b, M, N, K, be.f32(a), a.shape[1], be.f32(b), b.shape[1],
                            be.ffi.NULL, 0.0, be.f32(c), N)
    be.raise_status(op, status)
    return c


def linear_forward(be, x, w, b):
    op = "linear_forward"
    checks.check_array(op, "x", x, ndim=2)
    M, K = x.shape
    checks.check_array(op, "w", w, ndim=2)
    N = w.shape[0]
    checks.check_array(op, "w", w, shape=(N, K))
    if b is not None:
        checks.check_array(op, "b", b, shape=(N,))
    checks.check_c_int_sizes(op, M=M, N=N, K=K)
    y = empty((M, N))
    status = be.lib.hr_linear_forward(be.f32(x), be.f32(w), be.f32_or_null(b), be.f32(y), M, K, N)
    be.raise_status(op, status)
    return y


def linear_backward(be, dy, x, w, has_bias):
    op = "linear_backward"
    checks.check_array(op, "x", x, ndim=2)
    M, K = x.shape
    checks.check_array(op, "w", w, ndim=2)
    N = w.shape[0]
    checks.check_array(op, "w", w, shape=(N, K))
    checks.check_array(op, "dy", dy, shape=(M, N))
    has_bias, = checks.check_scalars(op, has_bias=has_bias)
    checks.check_c_int_sizes(op, M=M, N=N, K=K)
    dx, dw = empty((M, K)), empty((N, K))
    db = empty((N,)) if has_bias else None
    status = be.lib.hr_linear_backward(be.f32(dy), be.f32(x), be.f32(w), be.f32(dx), be.f32(dw),
                                       be.f32_or_null(db), M, K, N)
    be.raise_status(op, status)
    return dx, dw, db
