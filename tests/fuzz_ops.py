"""Seeded random-shape fuzz of every op: the C backend, on every ISA build this CPU runs, against the
NumPy oracle in float64, plus random bad inputs that every backend must refuse with a ValueError.

    python tests/fuzz_ops.py [--cases N] [--seed S] [--ops op,op] [--trace]   report; exit 1 on any finding
    make fuzz [FUZZ_CASES=N FUZZ_SEED=S]    the same on the sanitizer builds (AddressSanitizer + UBSan),
                                            which stop at their first finding: rerun it with --trace and
                                            the op (--ops) to see the case

tests/test_op_hardening.py runs a short fuzz in the default suite. Each case draws one op (in turn
over OP_NAMES, so every op gets its share) and one kind:
  valid      random odd sizes (1 and 0 where the op allows them) and scalars: C = NumPy within TOL
  nonfinite  a valid case with one input element set to nan, +inf or -inf: C and NumPy give
             non-finite values at the same places (see `compare`) and agree elsewhere (attention-
             like ops: outside the (batch, group) of the non-finite value, see SCOPES), or both refuse
  bad        a valid case with one argument spoiled (bad_inputs): a ValueError naming op and argument
EXAMPLES holds a valid random call of every op; a new op of backends/base.py fails
test_every_op_has_an_example (tests/test_op_hardening.py) until it has one.
"""
import argparse
import os
import sys
import time
import traceback

import numpy as np

from hybridref.backends.base import OP_NAMES
from hybridref.backends.numpy import NumpyBackend
from hybridref.backends.validate import SCALARS, Bool, Choice, Int

# Sizes drawn for the axes: 0, 1, odd sizes across the vector widths (8, 16) and the attention tile (64).
SIZES = (0, 1, 1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 33, 64, 65)
SMALL = (0, 1, 1, 2, 3, 4, 5, 7)  # for axes that multiply others (batch, heads)
# The error of a C result (float32 arithmetic) against float64 on the same inputs: the RMS of the
# difference relative to the RMS of the result, or to FLOOR for a smaller result. The inputs are O(1),
# so a result much below 1 comes from a cancellation (attention's dq with one visible key is 0 up to
# rounding), whose float32 rounding is absolute, of the order of the terms, not relative to it. The
# longest sums here have 65 terms (a GEMM's K, attention's keys, a scan's steps): 65·6e-8 = 4e-6 at
# worst, and the exponentials (vmath.h) add 2 ulp; measured at most 4.2e-6 (attention_backward, 40
# cases per op). TOL leaves five times that.
TOL = 2e-5
FLOOR = 0.1


class Draw:
    """Random sizes, arrays and scalars of one case."""

    def __init__(self, rng):
        self.rng = rng

    def size(self, lo=0, sizes=SIZES):
        return int(self.rng.choice([s for s in sizes if s >= lo]))

    def small(self, lo=0):
        return self.size(lo, SMALL)

    def normal(self, *shape, scale=1.0):
        return np.asarray(self.rng.standard_normal(shape) * scale, dtype=np.float32)  # 0-d included

    def flag(self):
        return bool(self.rng.integers(2))

    def maybe(self, make):
        return make() if self.flag() else None

    def int(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def pick(self, values):
        return values[int(self.rng.integers(len(values)))]

    def shape(self, min_ndim=0, max_ndim=3):
        return tuple(self.size() for _ in range(self.int(min_ndim, max_ndim)))


def _oracle(*arrays):
    """Outputs of the float64 NumPy ops that a backward takes (mean, rstd, probs, o, lse), as float32."""
    return [a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in arrays]


_np = NumpyBackend()


def _f64(x):
    return x.astype(np.float64) if isinstance(x, np.ndarray) and x.dtype == np.float32 else x


def _matmul(d):
    M, N, K = d.size(), d.size(), d.size()
    ta, tb = d.flag(), d.flag()
    return dict(a=d.normal(*((K, M) if ta else (M, K))), b=d.normal(*((N, K) if tb else (K, N))), trans_a=ta,
                trans_b=tb)


def _linear_forward(d):
    M, K, N = d.size(), d.size(), d.size()
    return dict(x=d.normal(M, K), w=d.normal(N, K), b=d.maybe(lambda: d.normal(N)))


def _linear_backward(d):
    M, K, N = d.size(), d.size(), d.size()
    return dict(dy=d.normal(M, N), x=d.normal(M, K), w=d.normal(N, K), has_bias=d.flag())


def _embedding_forward(d):
    V, M = d.size(1), d.size()
    return dict(ids=d.rng.integers(0, V, M), table=d.normal(V, d.size()))


def _embedding_backward(d):
    V, M = d.size(1), d.size()
    return dict(dy=d.normal(M, d.size()), ids=d.rng.integers(0, V, M), vocab_size=V)


def _eps(d):
    return d.pick([1e-5, 1e-6, 0.1])


def _layernorm_forward(d, min_D=1):
    M, D = d.size(), d.size(min_D)
    return dict(x=d.normal(M, D, scale=3.0), w=d.normal(D), b=d.normal(D), eps=_eps(d))


# A norm's dx is rstd times the projection of g = dy ⊙ w off span(1, x̂) (layernorm) or x̂ (rmsnorm).
# For D = 2 (layernorm) or 1 (rmsnorm) that span is the whole space up to ε: dx cancels to O(ε),
# as ill-conditioned in float32 as a result can be. The backward is fuzzed from D = 3 and 2.
def _layernorm_backward(d):
    a = _layernorm_forward(d, min_D=3)
    _, mean, rstd = _oracle(*_np.layernorm_forward(*map(_f64, a.values())))
    return dict(dy=d.normal(*a["x"].shape), x=a["x"], w=a["w"], mean=mean, rstd=rstd)


def _rmsnorm_forward(d, min_D=1):
    M, D = d.size(), d.size(min_D)
    return dict(x=d.normal(M, D, scale=3.0), w=d.normal(D), eps=_eps(d))


def _rmsnorm_backward(d):
    a = _rmsnorm_forward(d, min_D=2)
    _, rstd = _oracle(*_np.rmsnorm_forward(*map(_f64, a.values())))
    return dict(dy=d.normal(*a["x"].shape), x=a["x"], w=a["w"], rstd=rstd)


def _unary(d):
    return dict(x=d.normal(*d.shape(), scale=4.0))


def _unary_backward(d):
    shape = d.shape()
    return dict(dy=d.normal(*shape), x=d.normal(*shape, scale=4.0))


def _silu_gate_forward(d):
    shape = d.shape()
    return dict(x=d.normal(*shape), z=d.normal(*shape, scale=4.0))


def _silu_gate_backward(d):
    shape = d.shape()
    return dict(dy=d.normal(*shape), x=d.normal(*shape), z=d.normal(*shape, scale=4.0))


def _softplus(d):
    return dict(x=d.normal(*d.shape(), scale=15.0))  # both sides of the threshold at 20


def _softplus_backward(d):
    shape = d.shape()
    return dict(dy=d.normal(*shape), x=d.normal(*shape, scale=15.0))


def _cross_entropy_forward(d):
    M, C = d.size(1), d.size(1)
    return dict(logits=d.normal(M, C, scale=d.pick([1.0, 5.0, 30.0])), targets=d.rng.integers(0, C, M))


def _cross_entropy_backward(d):
    a = _cross_entropy_forward(d)
    _, probs = _np.cross_entropy_forward(_f64(a["logits"]), a["targets"])
    return dict(probs=probs.astype(np.float32), targets=a["targets"])


def _sum_squares(d):
    return dict(x=d.normal(*d.shape()))


def _adamw_step(d):
    shape = d.shape()
    return dict(param=d.normal(*shape), grad=d.normal(*shape), m=d.normal(*shape, scale=0.1),
                v=np.asarray(np.abs(d.normal(*shape, scale=0.1)), np.float32), step=d.int(1, 1000),
                lr=d.pick([0.0, 1e-3, 0.1]),
                beta1=d.pick([0.0, 0.9]), beta2=d.pick([0.0, 0.95, 0.999]), eps=d.pick([0.0, 1e-8, 1e-3]),
                weight_decay=d.pick([0.0, 0.1]), grad_scale=d.pick([1.0, 0.3, -2.0]))


def _mean_pool_forward(d):
    return dict(x=d.normal(d.small(), d.size(1), d.size()))


def _mean_pool_backward(d):
    return dict(dy=d.normal(d.small(), d.size()), seq_len=d.size(1))


def _qkv(d):
    B, Tq, Tk, Hk, G, P = d.small(1), d.size(1), d.size(1), d.small(1), d.small(1), d.size(1)
    window = d.pick([None, None, 0, 1, d.int(0, Tk + 2), 2**64])
    q_offset = d.pick([0, 0, d.int(0, Tk + 3)])
    sinks = d.pick([0, 0, d.int(0, Tk + 2)])
    return dict(q=d.normal(B, Tq, Hk * G, P), k=d.normal(B, Tk, Hk, P), v=d.normal(B, Tk, Hk, P), window=window,
                q_offset=q_offset, sinks=sinks)


def _attention_backward(d):
    a = _qkv(d)
    o, lse = _oracle(*_np.attention_forward(*map(_f64, a.values())))
    return dict(do=d.normal(*a["q"].shape), q=a["q"], k=a["k"], v=a["v"], o=o, lse=lse, window=a["window"],
                q_offset=a["q_offset"], sinks=a["sinks"])


def _conv(d):
    B, T, C, W = d.small(), d.size(), d.size(), d.small(1)
    return B, T, C, W, d.maybe(lambda: d.normal(B, W - 1, C))


def _conv_forward(d):
    B, T, C, W, prefix = _conv(d)
    return dict(x=d.normal(B, T, C), w=d.normal(C, W), bias=d.maybe(lambda: d.normal(C)), prefix=prefix)


def _conv_backward(d):
    B, T, C, W, prefix = _conv(d)
    return dict(dy=d.normal(B, T, C), x=d.normal(B, T, C), w=d.normal(C, W), has_bias=d.flag(), prefix=prefix)


def _scan(d):
    B, T, Din, N = d.small(), d.size(), d.size(), d.size(1, SMALL + (16, 17))
    return dict(x=d.normal(B, T, Din), delta=(0.05 + np.abs(d.normal(B, T, Din, scale=0.5))).astype(np.float32),
                A=-np.exp(d.normal(Din, N, scale=0.5)), Bm=d.normal(B, T, N), Cm=d.normal(B, T, N), D=d.normal(Din),
                h0=d.maybe(lambda: d.normal(B, Din, N)))


def _scan_backward(d):
    a = _scan(d)
    B, T, Din = a["x"].shape
    dh_last = d.maybe(lambda: d.normal(B, Din, a["A"].shape[1]))
    return dict(dy=d.normal(B, T, Din), **a, dh_last=dh_last)


def _dropout(d):
    offset = lambda: d.pick([0, d.int(0, 2**40), 2**62 - 1])  # the largest offset: counters wrap alike
    return dict(x=d.normal(*d.shape(2, 4)), p=d.pick([0.0, 0.1, 0.5, 0.99]), seed=d.int(0, 2**63 - 1),
                batch_offset=offset(), time_offset=offset())


def _sample(d):
    B, V = d.size(), d.size(1)
    logits = d.normal(B, V, scale=d.pick([0.1, 3.0]))
    if d.flag():  # ties: rounded logits
        logits = np.round(logits)
    return dict(logits=logits, positions=d.rng.integers(0, 2**62, B).astype(np.int64), seed=d.int(0, 2**63 - 1),
                temperature=d.pick([0.0, 0.5, 1.0]), top_k=d.pick([0, 1, d.int(1, V + 2)]),
                top_p=d.pick([1.0, 0.9, 1e-9]))


def _rope(d, name):
    return {name: d.normal(d.small(), d.size(), d.small(), 2 * d.small()), "offset": d.pick([0, d.int(0, 2**33)]),
            "base": d.pick([10000.0, 10.0, 1.5])}


def _linear_attention(d):
    B, T, Hq, G, K, V = d.small(1), d.size(), d.small(1), d.small(1), d.size(1, SMALL), d.size(1, SMALL)
    H = Hq * G
    g = -np.abs(d.normal(B, T, H, d.pick([1, K]), scale=0.5))
    return dict(q=d.normal(B, T, Hq, K), k=d.normal(B, T, Hq, K), v=d.normal(B, T, H, V), g=g,
                scale=d.pick([1.0, 0.5]), h0=d.maybe(lambda: d.normal(B, H, K, V)), chunk=d.pick([1, 4, 5, 64]))


def _linear_attention_forward(d):
    return {**_linear_attention(d), "mode": d.pick(["chunk", "parallel", "recurrent"])}


def _linear_attention_backward(d):
    a = _linear_attention(d)
    B, T, H, V = a["v"].shape
    K = a["q"].shape[3]
    return dict(do=d.normal(B, T, H, V), q=a["q"], k=a["k"], v=a["v"], g=a["g"], scale=a["scale"], h0=a["h0"],
                dh_last=d.maybe(lambda: d.normal(B, H, K, V)), chunk=a["chunk"])


def _linear_recurrence(d):
    B, T, C = d.small(), d.size(), d.size()
    return dict(a=d.rng.uniform(0.0, 1.0, (B, T, C)).astype(np.float32), x=d.normal(B, T, C),
                h0=d.maybe(lambda: d.normal(B, C)))


def _linear_recurrence_backward(d):
    a = _linear_recurrence(d)
    B, T, C = a["x"].shape
    return dict(dh=d.normal(B, T, C), **a, dh_last=d.maybe(lambda: d.normal(B, C)))


def _rglru_gate(d):
    B, T, C = d.small(), d.size(), d.size()
    return dict(x=d.normal(B, T, C), gx=d.normal(B, T, C, scale=3.0), ga=d.normal(B, T, C, scale=3.0),
                a_param=d.normal(C), time_offset=d.pick([0, 0, d.int(1, 100), 2**62 - 1]))


def _rglru_gate_backward(d):
    a = _rglru_gate(d)
    return dict(da=d.normal(*a["x"].shape), dxn=d.normal(*a["x"].shape), **a)


def _wkv7(d):
    B, T, H, K, V = d.small(), d.size(), d.small(1), d.size(1, SMALL), d.size(1, SMALL)
    kk = d.normal(B, T, H, K)
    kk /= np.maximum(np.linalg.norm(kk, axis=-1, keepdims=True), 1e-6)  # unit κ̂ per head, as RWKV-7's
    iclr = d.rng.uniform(0.0, 1.0, (B, T, H, K)).astype(np.float32)
    return dict(r=d.normal(B, T, H, K), w=d.rng.uniform(0.5, 1.0, (B, T, H, K)).astype(np.float32),
                k=d.normal(B, T, H, K), v=d.normal(B, T, H, V), a=-kk, b=kk * iclr,
                h0=d.maybe(lambda: d.normal(B, H, K, V)))


def _wkv7_backward(d):
    a = _wkv7(d)
    B, T, H, V = a["v"].shape
    K = a["r"].shape[3]
    return dict(dy=d.normal(B, T, H, V), **a, dh_last=d.maybe(lambda: d.normal(B, H, K, V)))


def _token_shift(d):
    B, T, C, M = d.small(), d.size(), d.size(), d.small(1)
    return B, T, C, M, dict(x=d.normal(B, T, C), mu=d.rng.uniform(0.0, 1.0, (M, C)).astype(np.float32),
                            prefix=d.maybe(lambda: d.normal(B, 1, C)))


def _token_shift_backward(d):
    B, T, C, M, a = _token_shift(d)
    return dict(dy=d.normal(B, T, M, C), **a)


def _long_conv(d):
    B, T, C, L = d.small(), d.size(), d.size(), d.size(1)
    return B, T, C, L, dict(u=d.normal(B, T, C), h=d.normal(L, C, scale=0.3),
                            prefix=d.maybe(lambda: d.normal(B, L - 1, C)))


def _long_conv_backward(d):
    B, T, C, L, a = _long_conv(d)
    return dict(dy=d.normal(B, T, C), **a)


def _moe_route_forward(d):
    E = d.size(1)
    return dict(logits=d.normal(d.size(), E, scale=2.0), top_k=d.int(1, E), normalize=d.flag())


def _moe_routing(d):
    """(M, E, k, experts, weights, probs, lse) of a real routing (the oracle's), so that the probabilities
    are a softmax (rows summing to 1, the top-k sum S >= 1/E) as the backward is given them."""
    a = _moe_route_forward(d)
    experts, weights, probs, lse, _ = _np.moe_route_forward(_f64(a["logits"]), a["top_k"], a["normalize"])
    return (*a["logits"].shape, a["top_k"], experts, *_oracle(weights, probs, lse))


def _moe_route_backward(d):
    M, E, k, experts, _, probs, lse = _moe_routing(d)
    return dict(dweights=d.normal(M, k), experts=experts, probs=probs, lse=lse, aux_dprobs=d.normal(E),
                z_scale=d.pick([0.0, 0.5, -2.0]), normalize=d.flag())


def _moe_dispatch_forward(d):
    M, E, k, experts, *_ = _moe_routing(d)
    return dict(x=d.normal(M, d.size()), experts=experts, n_experts=E)


def _moe_slots(d):
    """(M, k, slot_pos): a random grouping of M·k rows (a permutation, as moe_dispatch_forward gives)."""
    M, k = d.size(), d.small(1)
    return M, k, d.rng.permutation(M * k).reshape(M, k).astype(np.int64)


def _moe_expert_rows(d):
    """(R, E, offsets): R grouped rows split among E experts, some of them empty."""
    E, R = d.small(1), d.size()
    cuts = np.sort(d.rng.integers(0, R + 1, E - 1))
    return R, E, np.concatenate([[0], cuts, [R]]).astype(np.int64)


def _moe_expert_linear_forward(d):
    R, E, offsets = _moe_expert_rows(d)
    N, K = d.size(), d.size()
    return dict(xs=d.normal(R, K), offsets=offsets, w=d.normal(E, N, K), b=d.maybe(lambda: d.normal(E, N)))


def _moe_expert_linear_backward(d):
    R, E, offsets = _moe_expert_rows(d)
    N, K = d.size(), d.size()
    return dict(dys=d.normal(R, N), xs=d.normal(R, K), offsets=offsets, w=d.normal(E, N, K), has_bias=d.flag())


def _moe_combine_forward(d):
    M, k, slot_pos = _moe_slots(d)
    return dict(ys=d.normal(M * k, d.size()), slot_pos=slot_pos, weights=d.normal(M, k))


def _moe_combine_backward(d):
    a = _moe_combine_forward(d)
    return dict(dy=d.normal(a["slot_pos"].shape[0], a["ys"].shape[1]), **a)


def _moe_dispatch_backward(d):
    M, k, slot_pos = _moe_slots(d)
    return dict(dxs=d.normal(M * k, d.size()), slot_pos=slot_pos)


def _attention_decode(d):
    B, H_k, G, P, L = d.small(1), d.small(1), d.small(1), d.size(1), d.size(1)
    return dict(q=d.normal(B, H_k * G, P), k_cache=d.normal(B, H_k, L, P), v_cache=d.normal(B, H_k, L, P),
                length=d.int(1, L), window=d.pick([None, 0, d.int(0, L + 1), 2**64]), sinks=d.pick([0, 0, d.int(0, L)]))


EXAMPLES = {
    "matmul": _matmul,
    "linear_forward": _linear_forward,
    "linear_backward": _linear_backward,
    "embedding_forward": _embedding_forward,
    "embedding_backward": _embedding_backward,
    "layernorm_forward": _layernorm_forward,
    "layernorm_backward": _layernorm_backward,
    "rmsnorm_forward": _rmsnorm_forward,
    "rmsnorm_backward": _rmsnorm_backward,
    "gelu_forward": _unary,
    "gelu_backward": _unary_backward,
    "gelu_erf_forward": _unary,
    "gelu_erf_backward": _unary_backward,
    "silu_forward": _unary,
    "silu_backward": _unary_backward,
    "silu_gate_forward": _silu_gate_forward,
    "silu_gate_backward": _silu_gate_backward,
    "softplus_forward": _softplus,
    "softplus_backward": _softplus_backward,
    "cross_entropy_forward": _cross_entropy_forward,
    "cross_entropy_backward": _cross_entropy_backward,
    "sum_squares": _sum_squares,
    "adamw_step": _adamw_step,
    "mean_pool_forward": _mean_pool_forward,
    "mean_pool_backward": _mean_pool_backward,
    "attention_forward": _qkv,
    "attention_backward": _attention_backward,
    "causal_conv1d_forward": _conv_forward,
    "causal_conv1d_backward": _conv_backward,
    "selective_scan_forward": _scan,
    "selective_scan_backward": _scan_backward,
    "dropout": _dropout,
    "sample": _sample,
    "rope_forward": lambda d: _rope(d, "x"),
    "rope_backward": lambda d: _rope(d, "dy"),
    "attention_decode": _attention_decode,
    "linear_attention_forward": _linear_attention_forward,
    "linear_attention_backward": _linear_attention_backward,
    "linear_recurrence_forward": _linear_recurrence,
    "linear_recurrence_backward": _linear_recurrence_backward,
    "rglru_gate_forward": _rglru_gate,
    "rglru_gate_backward": _rglru_gate_backward,
    "wkv7_forward": _wkv7,
    "wkv7_backward": _wkv7_backward,
    "token_shift_forward": lambda d: _token_shift(d)[-1],
    "token_shift_backward": _token_shift_backward,
    "long_conv_forward": lambda d: _long_conv(d)[-1],
    "long_conv_backward": _long_conv_backward,
    "moe_route_forward": _moe_route_forward,
    "moe_route_backward": _moe_route_backward,
    "moe_dispatch_forward": _moe_dispatch_forward,
    "moe_dispatch_backward": _moe_dispatch_backward,
    "moe_expert_linear_forward": _moe_expert_linear_forward,
    "moe_expert_linear_backward": _moe_expert_linear_backward,
    "moe_combine_forward": _moe_combine_forward,
    "moe_combine_backward": _moe_combine_backward,
}

IN_PLACE = {"adamw_step": ("param", "m", "v")}  # the arguments an op writes, which are its results
# Ops whose only array argument may have any shape: an added axis is a valid call, not a bad one.
ANY_SHAPE = {"gelu_forward", "gelu_erf_forward", "silu_forward", "softplus_forward", "sum_squares", "dropout"}


def call(be, op, args, copy=True):
    """The op's results as a tuple (an in-place op's: the arrays it updated, run on copies unless not
    `copy`, which keeps a spoiled argument as it is)."""
    if copy:
        args = {name: value.copy() if name in IN_PLACE.get(op, ()) else value for name, value in args.items()}
    out = getattr(be, op)(**args)
    if op in IN_PLACE:
        return tuple(args[name] for name in IN_PLACE[op])
    return out if isinstance(out, tuple) else (out,)


# ---- comparing results ----------------------------------------------------------------------------

def _compare_one(i, g, w, tol, scope):
    if (g is None) != (w is None):
        kind = lambda r: "None" if r is None else "an array"
        return f"result {i}: {kind(g)}, the oracle gives {kind(w)}"
    if g is None:
        return None
    if (type(w) is float) != (type(g) is float):  # a Python float where the contract says float
        return f"result {i}: {type(g).__name__}, the oracle gives {type(w).__name__}"
    g, w = np.asarray(g), np.asarray(w)
    if g.shape != w.shape:
        return f"result {i}: shape {g.shape}, the oracle gives {w.shape}"
    if scope is not None:
        g, w = g[~scope], w[~scope]
    bad = ~np.isfinite(g) != ~np.isfinite(w)
    if bad.any():
        where = np.argwhere(bad)[:3].tolist()
        return f"result {i}: non-finite at other places than the oracle (e.g. {where}: {g[bad][:3]} vs {w[bad][:3]})"
    flipped = np.isinf(g) & np.isinf(w) & (np.sign(g) != np.sign(w))
    if flipped.any():
        return f"result {i}: infinities of the other sign than the oracle's at {np.argwhere(flipped)[:3].tolist()}"
    ok = np.isfinite(w)
    err = rms_error(g[ok], w[ok])
    if err > tol:
        return f"result {i}: error {err:.2e} > {tol:.0e}"
    return None


def rms_error(got, want):
    """RMS(got − want) / max(RMS(want), FLOOR)."""
    if not got.size:
        return 0.0
    d, w = got.astype(np.float64) - want, want.astype(np.float64)
    return float(np.sqrt(np.mean(d * d)) / max(np.sqrt(np.mean(w * w)), FLOOR))


def compare(got, want, tol=TOL, scopes=None):
    """None when the C results `got` match the float64 oracle's `want`, else what differs: the same
    places are non-finite (a nan on one side may be an inf on the other: where infinities of both signs
    meet, the order of the arithmetic decides), infinities agree in sign, the rest within tol.
    scopes: per result, a mask (or None) of a slice left out of the comparison."""
    if len(got) != len(want):
        return f"{len(got)} results, the oracle gives {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        problem = _compare_one(i, g, w, tol, None if scopes is None else scopes[i])
        if problem:
            return problem
    return None


# Attention-like ops mix values only within one (batch, key/value head group), and there a non-finite
# value may reach outputs that do not depend on it: a hidden key's v times its probability 0 is nan
# (0·inf), in the C kernel for the queries of its tile, in the NumPy oracle for every query. So the
# results of a non-finite input's (batch, group) are left out of the comparison (tests/
# test_op_hardening.py checks there that the outputs depending on it are non-finite on both sides).
# Axes: b batch, h a head, g its group (h // (H / number of groups)); the other letters are free.
_ATT = dict(q="b t h p", k="b s g p", v="b s g p", do="b t h p", o="b t h p", lse="b h t")
_LIN = dict(q="b t g k", k="b t g k", v="b t h v", g="b t h c", h0="b h k v", do="b t h v", dh_last="b h k v")
SCOPES = {
    "attention_forward": (_ATT, ("b t h p", "b h t")),
    "attention_backward": (_ATT, ("b t h p", "b s g p", "b s g p")),
    "attention_decode": (dict(q="b h p", k_cache="b g l p", v_cache="b g l p"), ("b h p",)),
    "linear_attention_forward": (_LIN, ("b t h v", "b h k v")),
    "linear_attention_backward": (_LIN, ("b t g k", "b t g k", "b t h v", "b t h c", "b h k v")),
}


def scopes(op, args, name, idx, results):
    """Per result, the mask of the (batch, group) slice holding the injected element args[name][idx]
    (None for an op without SCOPES)."""
    if op not in SCOPES:
        return None
    inputs, outputs = SCOPES[op]
    sizes = {a: n for arg, axes in inputs.items() if isinstance(args.get(arg), np.ndarray)
             for a, n in zip(axes.split(), args[arg].shape)}
    G = sizes["h"] // sizes["g"]
    at = dict(zip(inputs[name].split(), idx))
    b, grp = at["b"], at["g"] if "g" in at else at["h"] // G
    masks = []
    for axes, r in zip(outputs, results):
        if r is None:
            masks.append(None)
            continue
        axes, m = axes.split(), np.zeros(np.shape(r), bool)
        where = [slice(None)] * len(axes)
        where[axes.index("b")] = b
        if "g" in axes:
            where[axes.index("g")] = grp
        else:
            where[axes.index("h")] = slice(grp * G, (grp + 1) * G)
        m[tuple(where)] = True
        masks.append(m)
    return masks


def float_inputs(args):
    return [name for name, value in args.items()
            if isinstance(value, np.ndarray) and value.dtype == np.float32 and value.size]


def inject(d, args):
    """A copy of args with one element of one float input set to nan, +inf or -inf: (args, name, index)."""
    names = float_inputs(args)
    if not names:
        return None, None, None
    name = d.pick(names)
    arr = args[name].copy()
    idx = tuple(int(d.rng.integers(n)) for n in arr.shape)
    arr[idx] = d.pick([np.nan, np.inf, -np.inf])
    return {**args, name: arr}, name, idx


# ---- bad inputs -----------------------------------------------------------------------------------

def _bad_scalars(spec):
    """Values a scalar argument of this spec must refuse."""
    if isinstance(spec, Bool):
        return [1, None, "yes"]
    if isinstance(spec, Choice):
        return [None, 1, "".join(spec.values)]
    if isinstance(spec, Int):
        bad = [spec.lo - 1, float(spec.lo), str(spec.lo), True]
        return bad + ([None] if not spec.none else []) + ([spec.hi + 1, 2**64] if spec.hi is not None else [])
    bad = [np.nan, np.inf, -np.inf, None, "1", 10**400]
    if spec.lo is not None:
        bad.append(spec.lo if spec.lo_open else spec.lo - 1)
    if spec.hi is not None:
        bad.append(spec.hi if spec.hi_open else spec.hi + 1)
    return bad


def bad_inputs(op, args):
    """[(argument, spoiled value, who, named)] for a valid call: `who` ("c" or "all") must refuse it with
    a ValueError starting with the op's name, which names the argument when `named` (a shape relation
    may be reported at the other array of the relation)."""
    out = []
    for name, value in args.items():
        if name in SCALARS.get(op, {}):
            out += [(name, bad, "all", True) for bad in _bad_scalars(SCALARS[op][name])]
        if not isinstance(value, np.ndarray):
            continue
        wrong = np.int32 if value.dtype == np.int64 else np.float64
        out += [(name, value.astype(wrong), "c", True), (name, value.tolist(), "c", True)]
        if value.size >= 2 and value.shape[-1] >= 2:  # the same values, not C-contiguous
            out.append((name, np.repeat(value, 2, axis=-1)[..., ::2], "c", True))
        if op not in ANY_SHAPE:
            out.append((name, value[None], "c", False))  # an extra axis
        if name in IN_PLACE.get(op, ()):
            frozen = value.copy()
            frozen.setflags(write=False)
            out.append((name, frozen, "all", True))
    return out


# ---- the run ----------------------------------------------------------------------------------------

def c_backends():
    from hybridref.backends.c import CBackend, library
    return [CBackend(isa=isa) for isa in library.supported_isas()]


def _describe(args):
    return ", ".join(f"{k}={v.dtype}{list(v.shape)}" if isinstance(v, np.ndarray) else f"{k}={v!r}"
                     for k, v in args.items())


def _refusals(op, be, name, bad, spoiled, named):
    """Findings when `be` does not refuse the spoiled call as it must."""
    try:
        call(be, op, spoiled, copy=False)
        return [f"{be.describe()}: accepted {name}={bad!r:.60}"]
    except ValueError as e:
        if not str(e).startswith(f"{op}: ") or (named and name not in str(e)):
            return [f"{be.describe()}: a ValueError not naming {op!r}{' and ' + repr(name) if named else ''}: {e}"]
    except Exception as e:  # noqa: BLE001 (anything but a ValueError is a finding)
        return [f"{be.describe()}: {type(e).__name__} for {name}={bad!r:.60}: {e}"]
    return []


def check_case(op, kind, d, cbs, npb=_np):
    """Run one case; a list of findings (empty when C and NumPy agree / refuse as they must)."""
    args = EXAMPLES[op](d)
    if kind == "bad":
        cases = bad_inputs(op, args)
        name, bad, who, named = cases[int(d.rng.integers(len(cases)))]
        spoiled = {**args, name: bad}
        return [f for be in (cbs if who == "c" else [*cbs, npb]) for f in _refusals(op, be, name, bad, spoiled, named)]
    name = idx = None
    if kind == "nonfinite":
        args, name, idx = inject(d, args)
        if args is None:
            return []
    findings = []
    with np.errstate(all="ignore"):
        try:
            want = call(npb, op, {k: _f64(v) for k, v in args.items()})
        except ValueError:  # an op may refuse non-finite input (both backends, then)
            if kind != "nonfinite":
                raise
            return [f for be in cbs for f in _refusals(op, be, name, args[name][idx], args, False)]
        masks = scopes(op, args, name, idx, want) if name else None
        for be in cbs:
            try:
                problem = compare(call(be, op, args), want, scopes=masks)
            except Exception as e:  # noqa: BLE001
                problem = f"{type(e).__name__}: {e}"
            if problem:
                what = f"{name}{list(idx)} = {args[name][idx]}; " if name else ""
                findings.append(f"{be.isa}: {problem} [{what}{_describe(args)}]")
    return findings


KINDS = ("valid", "valid", "nonfinite", "bad")


def run(cases, seed=0, ops=None, log=None, trace=False):
    """Fuzz `cases` cases from `seed`: {op: [findings]} (empty lists when all is well). trace: name each
    case on `log` before running it (a sanitizer stops the process at its finding, which then
    follows the case's line)."""
    ops = list(ops or OP_NAMES)
    cbs = c_backends()
    found = {op: [] if op in EXAMPLES else ["no example in EXAMPLES (tests/fuzz_ops.py): not fuzzed"] for op in ops}
    if log:
        for op in ops:
            for p in found[op]:
                print(f"[{op}] {p}", file=log, flush=True)
    ops = [op for op in ops if op in EXAMPLES]
    for i in range(cases):
        op, kind = ops[i % len(ops)], KINDS[(i // len(ops)) % len(KINDS)]
        d = Draw(np.random.default_rng([seed, i]))
        if trace:
            print(f"case {i}: {op} ({kind})", file=log, flush=True)
        try:
            problems = check_case(op, kind, d, cbs)
        except Exception as e:  # noqa: BLE001 (a crash in the harness is a finding too)
            where = traceback.extract_tb(e.__traceback__)[-1]
            problems = [f"{type(e).__name__}: {e} (at {os.path.basename(where.filename)}:{where.lineno})"]
        found[op] += [f"case {i} ({kind}): {p}" for p in problems]
        if log and problems:
            for p in problems:
                print(f"[{op}] case {i} ({kind}): {p}", file=log, flush=True)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=int(os.environ.get("HYBRIDREF_FUZZ_CASES", 2000)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", type=lambda s: s.split(","), default=None)
    parser.add_argument("--trace", action="store_true", help="name each case before running it")
    a = parser.parse_args(argv)
    t0 = time.time()
    found = run(a.cases, a.seed, a.ops, log=sys.stdout, trace=a.trace)
    n = sum(map(len, found.values()))
    isas = ", ".join(be.isa for be in c_backends())
    print(f"fuzz: {a.cases} cases over {len(found)} ops (ISA builds {isas}), seed {a.seed}, "
          f"{time.time() - t0:.0f} s: {n} finding{'s' * (n != 1)}")
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
