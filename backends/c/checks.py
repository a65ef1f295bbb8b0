"""Argument checks run before every C call, so no bad input reaches a kernel.

Every failure is a ValueError that names the op, the argument, what it got and what it needs. The
checks every backend runs (scalar arguments, writable outputs) live in backends/validate.py and are
re-exported here; this module adds what the kernels need: dtype, layout, and sizes and values within
the range of the C types they are passed as.
"""
import numpy as np

from ..validate import (INT_MAX, LONG_MAX, check_bool, check_disjoint, check_float, check_int,  # noqa: F401
                        check_positive, check_scalars, check_writable)

_F32_MAX, _F32_TINY = float(np.finfo(np.float32).max), float(np.finfo(np.float32).smallest_subnormal)


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_array(op, name, arr, ndim=None, shape=None, dtype=np.float32, writable=False):
    """Check `arr` is a C-contiguous ndarray of `dtype`; `shape` entries may be None (any). writable: the
    kernel writes into it (an in-place op), so it must not be read-only."""
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{op}: {name} must be a numpy.ndarray of {np.dtype(dtype)}, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise ValueError(f"{op}: {name} must have dtype {np.dtype(dtype)}, got {arr.dtype} "
                         f"(convert with .astype(np.{np.dtype(dtype)}))")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {_shape_str(arr.shape)}")
    if shape is not None:
        if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
            want = _shape_str("*" if s is None else s for s in shape)
            raise ValueError(f"{op}: {name} must have shape {want}, got {_shape_str(arr.shape)}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous (use numpy.ascontiguousarray), "
                         f"got strides {arr.strides} for shape {_shape_str(arr.shape)}")
    if writable:
        check_writable(op, name, arr)
    return arr


def check_indices(op, name, idx, bound):
    """idx must be a 1-D C-contiguous int64 array with every entry in [0, bound)."""
    check_array(op, name, idx, ndim=1, dtype=np.int64)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= bound:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{op}: {name} must lie in [0, {bound}), got {bad}")
    return idx


def check_c_int_sizes(op, **sizes):
    """Refuse any size (or product or sum of sizes) past INT_MAX: the kernels take int sizes and would
    wrap. Names may be any text: check_c_int_sizes(op, **{"q_offset + Tq": q_offset + Tq})."""
    for name, value in sizes.items():
        if value > INT_MAX:
            raise ValueError(f"{op}: {name} = {value} exceeds the C kernel's int range (at most {INT_MAX})")


def check_c_floats(op, **values):
    """Refuse a value (already checked finite) that a C float (float32) cannot hold: past its largest
    finite value it would become inf, below its smallest subnormal 0."""
    for name, value in values.items():
        if abs(value) > _F32_MAX or 0 < abs(value) < _F32_TINY:
            raise ValueError(f"{op}: {name} = {value!r} is outside the range of the C kernel's float "
                             f"(float32: magnitudes {_F32_TINY:.1e} to {_F32_MAX:.1e}, or 0)")


def empty_f32(shape):
    """An uninitialised float32 output array (every kernel writes all of it)."""
    return np.empty(shape, dtype=np.float32)
