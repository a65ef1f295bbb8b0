"""Wrapper of csrc/optim.c (float64 sum of squares, AdamW step)."""
import math

from . import checks


def sum_squares(be, x):
    checks.check_array("sum_squares", "x", x)
    return float(be.lib.hr_sum_squares(be.f32(x), x.size))


def adamw_step(be, param, grad, m, v, *, step, lr, beta1, beta2, eps, weight_decay, grad_scale):
    op = "adamw_step"
    checks.check_array(op, "param", param)
    for name, arr in (("grad", grad), ("m", m), ("v", v)):
        checks.check_array(op, name, arr, shape=param.shape)
    step = checks.check_int(op, "step", step, 1, hint="the first step is 1")
    # the ranges torch.optim.AdamW accepts
    for name, value, ok, want in (("lr", lr, lr >= 0, ">= 0"), ("eps", eps, eps >= 0, ">= 0"),
                                  ("beta1", beta1, 0 <= beta1 < 1, "in [0, 1)"),
                                  ("beta2", beta2, 0 <= beta2 < 1, "in [0, 1)"),
                                  ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
                                  ("grad_scale", grad_scale, math.isfinite(grad_scale), "finite")):
        if not ok:
            raise ValueError(f"{op}: {name} must be {want}, got {value!r}")
    be.lib.hr_adamw_step(be.f32(param), be.f32(grad), be.f32(m), be.f32(v), param.size, step,
                         lr, beta1, beta2, eps, weight_decay, grad_scale)
