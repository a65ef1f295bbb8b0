"""Gradient-norm helper and the AdamW update (torch.optim.AdamW semantics)."""
import numpy as np

from ..validate import check_disjoint, check_scalars, check_writable


def sum_squares(x):
    """Σ x² over every element, accumulated in float64 -> Python float."""
    return float(np.sum(np.square(x, dtype=np.float64)))


def adamw_step(param, grad, m, v, *, step, lr, beta1, beta2, eps, weight_decay, grad_scale):
    """One AdamW step in place (param, m, v updated; all of one shape), with g = grad * grad_scale:
    m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  m̂ = m / (1-β1^step);  v̂ = v / (1-β2^step)
    param -= lr (m̂ / (√v̂ + eps) + weight_decay param)       (decoupled weight decay).
    The checks come first, so a refused call leaves every array as it was."""
    op = "adamw_step"
    check_scalars(op, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                  grad_scale=grad_scale)
    for name, arr in (("param", param), ("m", m), ("v", v)):
        check_writable(op, name, arr)
    check_disjoint(op, param=param, m=m, v=v)
    g = grad * grad_scale
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    param -= lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * param)
