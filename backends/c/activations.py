"""Wrapper of csrc/activations.c (element-wise activations, any shape)."""
from . import checks
from .checks import empty_f32 as empty


def _unary(be, op, x):
    checks.check_array(op, "x", x)
    y = empty(x.shape)
    getattr(be.lib, f"hr_{op}")(be.f32(x), be.f32(y), x.size)
    return y


def _unary_backward(be, op, dy, x):
    checks.check_array(op, "x", x)
    checks.check_array(op, "dy", dy, shape=x.shape)
    dx = empty(x.shape)
    getattr(be.lib, f"hr_{op}")(be.f32(dy), be.f32(x), be.f32(dx), x.size)
    return dx


def gelu_forward(be, x):
    return _unary(be, "gelu_forward", x)


def gelu_backward(be, dy, x):
    return _unary_backward(be, "gelu_backward", dy, x)


def gelu_erf_forward(be, x):
    return _unary(be, "gelu_erf_forward", x)


def gelu_erf_backward(be, dy, x):
    return _unary_backward(be, "gelu_erf_backward", dy, x)


def silu_forward(be, x):
    return _unary(be, "silu_forward", x)


def silu_backward(be, dy, x):
    return _unary_backward(be, "silu_backward", dy, x)


def softplus_forward(be, x):
    return _unary(be, "softplus_forward", x)


def softplus_backward(be, dy, x):
    return _unary_backward(be, "softplus_backward", dy, x)


def silu_gate_forward(be, x, z):
    checks.check_array("silu_gate_forward", "x", x)
    checks.check_array("silu_gate_forward", "z", z, shape=x.shape)
    y = empty(x.shape)
    be.lib.hr_silu_gate_forward(be.f32(x), be.f32(z), be.f32(y), x.size)
    return y


def silu_gate_backward(be, dy, x, z):
    checks.check_array("silu_gate_backward", "x", x)
    checks.check_array("silu_gate_backward", "z", z, shape=x.shape)
    checks.check_array("silu_gate_backward", "dy", dy, shape=x.shape)
    dx, dz = empty(x.shape), empty(x.shape)
    be.lib.hr_silu_gate_backward(be.f32(dy), be.f32(x), be.f32(z), be.f32(dx), be.f32(dz), x.size)
    return dx, dz
