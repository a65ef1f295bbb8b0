"""The argument checks every backend runs, so that the NumPy oracle and the C kernels refuse the same
calls with the same message (the C backend adds dtype, layout and C-size checks: backends/c/checks.py).

SCALARS gives, per op, the type and range of each scalar (non-array) argument of its contract line
(backends/base.py); an op calls check_scalars(op, name=value, ...) on entry. In-place ops check that
the arrays they write are writable and do not overlap (check_writable, check_disjoint). Every failure
is a ValueError that names the op, the argument, what it got and what it needs.
"""
import math
import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np

INT_MAX = 2**31 - 1  # the largest C int: the kernels take their sizes and most counts as int
LONG_MAX = 2**63 - 1  # the largest C long on the LP64 platforms the kernels build for
_C_LIMITS = {INT_MAX: "a C int", LONG_MAX: "a C long"}


def _int_range(lo, hi):
    if hi is None:
        return f">= {lo}"
    if hi in _C_LIMITS:
        return f">= {lo} (at most {hi}, {_C_LIMITS[hi]})"
    return f"in [{lo}, {hi}]"


def check_int(op, name, value, lo=0, hi=INT_MAX, *, allow_none=False, hint=None):
    """Check `value` is an integer (a bool is not) in [lo, hi]; return it as a Python int.

    hi defaults to INT_MAX, for a value passed to a C int; None is no upper bound (for a value the
    caller clamps). allow_none: None passes (and is returned). hint: a note added to the message."""
    if value is None and allow_none:
        return None
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
            or value < lo or (hi is not None and value > hi)):
        none = "None or " if allow_none else ""
        note = f" ({hint})" if hint else ""
        raise ValueError(f"{op}: {name} must be {none}an int {_int_range(lo, hi)}{note}, got {value!r}")
    return int(value)


def _float_range(lo, hi, lo_open, hi_open):
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi}"
    return ""


def check_float(op, name, value, lo=None, hi=None, *, lo_open=False, hi_open=False, hint=None):
    """Check `value` is a finite real number (a Python or NumPy int or float; a bool is not) within
    the bounds (None: unbounded; *_open: the bound itself excluded); return it as a Python float."""
    number = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    try:
        x = float(value) if number else math.nan
    except OverflowError:  # an int past the float range
        x = math.nan
    if (not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo))
            or (hi is not None and (x >= hi if hi_open else x > hi))):
        note = f" ({hint})" if hint else ""
        raise ValueError(f"{op}: {name} must be a finite number{_float_range(lo, hi, lo_open, hi_open)}{note}, "
                         f"got {value!r}")
    return x


def check_bool(op, name, value):
    """Check `value` is a bool (Python's or NumPy's; not an int standing for one); return it as bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{op}: {name} must be a bool, got {value!r}")
    return bool(value)


@dataclass(frozen=True)
class Int:
    """An integer argument in [lo, hi] (hi None: unbounded), or None when `none`."""
    lo: int = 0
    hi: Optional[int] = INT_MAX
    none: bool = False
    hint: Optional[str] = None

    def check(self, op, name, value):
        return check_int(op, name, value, self.lo, self.hi, allow_none=self.none, hint=self.hint)


@dataclass(frozen=True)
class Float:
    """A finite real argument within the bounds (see check_float)."""
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    hint: Optional[str] = None

    def check(self, op, name, value):
        return check_float(op, name, value, self.lo, self.hi, lo_open=self.lo_open, hi_open=self.hi_open,
                           hint=self.hint)


@dataclass(frozen=True)
class Bool:
    def check(self, op, name, value):
        return check_bool(op, name, value)


@dataclass(frozen=True)
class Choice:
    """One of a few values (a mode name)."""
    values: tuple

    def check(self, op, name, value):
        if not isinstance(value, str) or value not in self.values:
            raise ValueError(f"{op}: {name} must be one of {', '.join(map(repr, self.values))}, got {value!r}")
        return value


_EPS = Float(lo=0, lo_open=True)  # a norm's ε: 1/√(mean + ε) must stay finite for a zero row
# the window is clamped to the sequence, the sinks to the key block
_ATTENTION = dict(window=Int(hi=None, none=True), q_offset=Int(), sinks=Int(hi=None))
# a position or row offset: the kernels add an index (< 2**62) to it in C long arithmetic
_OFFSET = Int(lo=0, hi=2**62 - 1)
_ROPE = dict(offset=_OFFSET, base=Float(lo=0, lo_open=True))
_MOMENT = Float(lo=0, hi=1, hi_open=True)

SCALARS = {
    "matmul": dict(trans_a=Bool(), trans_b=Bool()),
    "linear_backward": dict(has_bias=Bool()),
    "embedding_backward": dict(vocab_size=Int(lo=1)),
    "layernorm_forward": dict(eps=_EPS),
    "rmsnorm_forward": dict(eps=_EPS),
    # the ranges torch.optim.AdamW accepts, and finite
    "adamw_step": dict(step=Int(lo=1, hint="the first step is 1"), lr=Float(lo=0), beta1=_MOMENT, beta2=_MOMENT,
                       eps=Float(lo=0), weight_decay=Float(lo=0), grad_scale=Float()),
    "mean_pool_backward": dict(seq_len=Int(lo=1)),
    "attention_forward": _ATTENTION,
    "attention_backward": _ATTENTION,
    "causal_conv1d_backward": dict(has_bias=Bool()),
    "dropout": dict(p=Float(lo=0, hi=1, hi_open=True, hint="the probability of zeroing an element"),
                    seed=Int(lo=0, hi=2**64 - 1), batch_offset=_OFFSET, time_offset=_OFFSET),
    "rope_forward": _ROPE,
    "rope_backward": _ROPE,
    # length <= the cache size is checked by the op, which knows it
    "attention_decode": dict(length=Int(lo=1), window=Int(hi=None, none=True), sinks=Int(hi=None)),
    "linear_attention_forward": dict(scale=Float(), chunk=Int(lo=1),
                                     mode=Choice(("chunk", "parallel", "recurrent"))),
    "linear_attention_backward": dict(scale=Float(), chunk=Int(lo=1)),
    "rglru_gate_forward": dict(time_offset=_OFFSET),
    "rglru_gate_backward": dict(time_offset=_OFFSET),
    # backends/numpy/sample.py: the seed a uint64 (as dropout's); top_k 0 keeps all, top_p 1 keeps all
    "sample": dict(seed=Int(lo=0, hi=2**64 - 1), temperature=Float(lo=0), top_k=Int(),
                   top_p=Float(lo=0, hi=1, lo_open=True)),
    "moe_route_forward": dict(top_k=Int(lo=1), normalize=Bool()),
    "moe_route_backward": dict(z_scale=Float(), normalize=Bool()),
    "moe_dispatch_forward": dict(n_experts=Int(lo=1)),
    "moe_expert_linear_backward": dict(has_bias=Bool()),
}


def check_scalars(op, **values):
    """Check each scalar argument of `op` against SCALARS[op]; return the values converted (Python
    int, float or bool; None stays None) as a tuple, in the order given."""
    specs = SCALARS[op]
    return tuple(specs[name].check(op, name, value) for name, value in values.items())


def check_positive(op, name, value):
    """Refuse an empty size (value <= 0). Every backend runs it where an empty size has no answer (a norm
    over D = 0 values, a mean over T = 0 positions, a loss averaged over M = 0 rows: each is 0/0); the
    C wrappers also run it for sizes their kernels do not take empty."""
    if value <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {value}")
    return value


def check_writable(op, name, arr):
    """An array an op writes into must be writable: a read-only array (setflags(write=False), a view of
    bytes, a read-only memory map) is refused before anything is written."""
    if not arr.flags.writeable:
        raise ValueError(f"{op}: {name} is written in place, so it must be writable; got a read-only array "
                         f"(a read-only memory map, a view of immutable bytes, or setflags(write=False)): "
                         f"pass a writable copy")
    return arr


def check_disjoint(op, **arrays):
    """Arrays an op writes in place must not overlap in memory (each would be updated from the other's
    new values). Judged by their memory ranges (numpy.may_share_memory), which for C-contiguous
    arrays is exact."""
    names = list(arrays)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if np.may_share_memory(arrays[a], arrays[b]):
                raise ValueError(f"{op}: {a} and {b} are updated in place and must not share memory")


# ---- the index arrays of the mixture-of-experts ops (backends/numpy/moe.py) -----------------------

def check_top_k(op, top_k, n_experts):
    """A router picks top_k of its n_experts: 1 <= top_k <= n_experts (top_k itself checked by SCALARS)."""
    if top_k > n_experts:
        raise ValueError(f"{op}: top_k = {top_k} exceeds the {n_experts} experts (the logits' last axis)")


def check_expert_ids(op, experts, n_experts):
    """experts (M,k): every entry an expert index in [0, n_experts)."""
    if experts.size and not (0 <= experts.min() and experts.max() < n_experts):
        bad = experts.min() if experts.min() < 0 else experts.max()
        raise ValueError(f"{op}: experts must lie in [0, {n_experts}), got {bad}")


def check_slot_pos(op, slot_pos, rows):
    """slot_pos (M,k): a permutation of 0..M·k−1 (what moe_dispatch_forward gives), M·k = rows, the rows of
    the grouped array it indexes: every grouped row belongs to exactly one (token, choice)."""
    if slot_pos.ndim != 2 or slot_pos.size != rows:
        raise ValueError(f"{op}: slot_pos must be (M, k) with M·k = {rows}, the grouped rows; got shape "
                         f"{slot_pos.shape}")
    if rows and not np.array_equal(np.bincount(slot_pos.ravel().clip(-1, rows) + 1, minlength=rows + 2)[1:-1],
                                   np.ones(rows, dtype=np.int64)):
        raise ValueError(f"{op}: slot_pos must be a permutation of 0..{rows - 1} (as moe_dispatch_forward gives)")


def check_expert_offsets(op, offsets, n_experts, rows):
    """offsets (E+1,): the first grouped row of each expert, from 0 up to `rows`, never decreasing."""
    if offsets.shape != (n_experts + 1,):
        raise ValueError(f"{op}: offsets must have shape ({n_experts + 1},) for {n_experts} experts, got {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != rows or np.any(np.diff(offsets) < 0):
        raise ValueError(f"{op}: offsets must rise from 0 to {rows} (the grouped rows), never decreasing; got "
                         f"{offsets.tolist()[:8]}{'...' if len(offsets) > 8 else ''}")
