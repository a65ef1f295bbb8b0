"""Wrapper of csrc/losses.c (softmax cross-entropy)."""
import numpy as np

from . import checks
from .checks import empty_f32 as empty


def _check(op, name, arr, targets):
    checks.check_array(op, name, arr, ndim=2)
    M, C = arr.shape
    checks.check_positive(op, "number of rows M", M)
    checks.check_indices(op, "targets", targets, C)
    if targets.shape[0] != M:
        raise ValueError(f"{op}: targets must have shape ({M},) to match {name} {arr.shape}, got {targets.shape}")
    checks.check_c_int_sizes(op, **{"rows M": M, "classes C": C})
    return M, C


def cross_entropy_forward(be, logits, targets):
    M, C = _check("cross_entropy_forward", "logits", logits, targets)
    probs, row_loss = empty((M, C)), np.empty(M, np.float64)
    loss = be.lib.hr_cross_entropy_forward(be.f32(logits), be.i64(targets), be.f32(probs),
                                           be.ffi.cast("double *", be.ffi.from_buffer(row_loss)), M, C)
    return float(loss), probs


def cross_entropy_backward(be, probs, targets):
    M, C = _check("cross_entropy_backward", "probs", probs, targets)
    dlogits = empty((M, C))
    be.lib.hr_cross_entropy_backward(be.f32(probs), be.i64(targets), be.f32(dlogits), M, C)
    return dlogits
