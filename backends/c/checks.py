"""Argument checks run before every C call, so no bad input reaches a kernel.

Every failure is a ValueError that names the op, the argument, what it got and
what it needs.
"""
import numpy as np


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_array(op, name, arr, ndim=None, shape=None, dtype=np.float32):
    """Check `arr` is a C-contiguous ndarray of `dtype`; `shape` entries may be None (any)."""
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


def check_positive(op, name, value):
    if value <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {value}")
    return value


def empty_f32(shape):
    """An uninitialised float32 output array (every kernel writes all of it)."""
    return np.empty(shape, dtype=np.float32)
