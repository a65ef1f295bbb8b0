"""Wrapper of csrc/optim.c (float64 sum of squares, AdamW step)."""
from . import checks


def sum_squares(be, x):
    checks.check_array("sum_squares", "x", x)
    return float(be.lib.hr_sum_squares(be.f32(x), x.size))


def adamw_step(be, param, grad, m, v, *, step, lr, beta1, beta2, eps, weight_decay, grad_scale):
    op = "adamw_step"
    checks.check_array(op, "param", param, writable=True)
    checks.check_array(op, "grad", grad, shape=param.shape)
    for name, arr in (("m", m), ("v", v)):
        checks.check_array(op, name, arr, shape=param.shape, writable=True)
    checks.check_disjoint(op, param=param, m=m, v=v)
    step, = checks.check_scalars(op, step=step)
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, grad_scale=grad_scale)
    hyper = dict(zip(hyper, checks.check_scalars(op, **hyper)))  # in the kernel's argument order
    checks.check_c_floats(op, **hyper)
    be.lib.hr_adamw_step(be.f32(param), be.f32(grad), be.f32(m), be.f32(v), param.size, step, *hyper.values())
