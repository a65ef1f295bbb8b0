"""LayerNorm and RMSNorm over the last axis, with their backward passes."""
import numpy as np

from ..validate import check_positive, check_scalars


def _rstd(xc, eps):
    """1/√(mean_D(xc²) + eps) per row: xc (M,D) -> (M,). A float32 square overflows past |xc| ≈ 1.8e19,
    which would give rstd 0 and y 0: those rows are summed again in float64, where every float32's square
    fits (as in C; a row holding ±inf keeps rstd 0)."""
    with np.errstate(over="ignore"):
        mean_square = (xc * xc).mean(axis=1)
    rstd = 1 / np.sqrt(mean_square + eps)
    redo = np.isinf(mean_square)
    if redo.any():
        rstd[redo] = 1 / np.sqrt(np.square(xc[redo], dtype=np.float64).mean(axis=1) + eps)
    return rstd


def layernorm_forward(x, w, b, eps):
    """y = (x - mean) * rstd * w + b, rstd = 1/√(var + eps) (biased variance over D).

    x (M,D), w (D,), b (D,) -> y (M,D), mean (M,), rstd (M,)."""
    check_positive("layernorm_forward", "width D", x.shape[-1])
    check_scalars("layernorm_forward", eps=eps)
    mean = x.mean(axis=1)
    xc = x - mean[:, None]
    rstd = _rstd(xc, eps)
    return xc * rstd[:, None] * w + b, mean, rstd


def layernorm_backward(dy, x, w, mean, rstd):
    """With x̂ = (x - mean) rstd and g = dy ⊙ w:
    dx = rstd (g - mean_D(g) - x̂ mean_D(g ⊙ x̂)),  dw = Σ_M dy ⊙ x̂,  db = Σ_M dy.

    dy, x (M,D), w (D,), mean, rstd (M,) -> dx (M,D), dw (D,), db (D,)."""
    check_positive("layernorm_backward", "width D", x.shape[-1])
    xhat = (x - mean[:, None]) * rstd[:, None]
    g = dy * w
    dx = rstd[:, None] * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def rmsnorm_forward(x, w, eps):
    """y = x * rstd * w, rstd = 1/√(mean_D(x²) + eps):  x (M,D), w (D,) -> y (M,D), rstd (M,)."""
    check_positive("rmsnorm_forward", "width D", x.shape[-1])
    check_scalars("rmsnorm_forward", eps=eps)
    rstd = _rstd(x, eps)
    return x * rstd[:, None] * w, rstd


def rmsnorm_backward(dy, x, w, rstd):
    """With x̂ = x rstd and g = dy ⊙ w:  dx = rstd (g - x̂ mean_D(g ⊙ x̂)),  dw = Σ_M dy ⊙ x̂.

    dy, x (M,D), w (D,), rstd (M,) -> dx (M,D), dw (D,)."""
    check_positive("rmsnorm_backward", "width D", x.shape[-1])
    xhat = x * rstd[:, None]
    g = dy * w
    dx = rstd[:, None] * (g - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return dx, (dy * xhat).sum(axis=0)
