"""Argument checks run before every C call, so no bad input reaches a kernel.

Every failure is a ValueError that names the op, the argument, what it got and
what it needs.
"""
import numbers

import numpy as np

INT_MAX = 2**31 - 1  # the largest C int: the kernels take their sizes and most counts as int
LONG_MAX = 2**63 - 1  # the largest C long on the LP64 platforms the kernels build for
_C_LIMITS = {INT_MAX: "a C int", LONG_MAX: "a C long"}


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


def _int_range(lo, hi):
    if hi is None:
        return f">= {lo}"
    if hi in _C_LIMITS:
        return f">= {lo} (at most {hi}, {_C_LIMITS[hi]})"
    return f"in [{lo}, {hi}]"


def check_int(op, name, value, lo=0, hi=INT_MAX, *, allow_none=False, hint=None):
    """Check `value` is an integer (a bool is not) in [lo, hi]; return it as a Python int.

    hi defaults to INT_MAX, for a value passed to a C int; None is no upper bound (for a value the
    wrapper clamps before the call). allow_none: None passes (and is returned). hint: a note added
    to the message, e.g. what the bound is."""
    if value is None and allow_none:
        return None
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
            or value < lo or (hi is not None and value > hi)):
        none = "None or " if allow_none else ""
        note = f" ({hint})" if hint else ""
        raise ValueError(f"{op}: {name} must be {none}an int {_int_range(lo, hi)}{note}, got {value!r}")
    return int(value)


def check_c_int_sizes(op, **sizes):
    """Refuse any size (or product or sum of sizes) past INT_MAX: the kernels take int sizes and would
    wrap. Names may be any text: check_c_int_sizes(op, **{"q_offset + Tq": q_offset + Tq})."""
    for name, value in sizes.items():
        if value > INT_MAX:
            raise ValueError(f"{op}: {name} = {value} exceeds the C kernel's int range (at most {INT_MAX})")


def check_positive(op, name, value):
    if value <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {value}")
    return value


def empty_f32(shape):
    """An uninitialised float32 output array (every kernel writes all of it)."""
    return np.empty(shape, dtype=np.float32)
