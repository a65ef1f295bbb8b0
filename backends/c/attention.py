"""Wrapper of csrc/attention.c (causal multi-head softmax attention, FlashAttention-2 tiling)."""
from . import checks
from .checks import empty_f32 as empty


def _check_qkv(op, q, k, v, window, q_offset, sinks):
    """Validate q (B,Tq,H,P), k, v (B,Tk,Hk,P), window, q_offset and sinks;
    return (B, Tq, Tk, H, Hk, P, C window, q_offset, C sinks)."""
    checks.check_array(op, "q", q, ndim=4)
    checks.check_array(op, "k", k, ndim=4)
    B, Tq, H, P = q.shape
    checks.check_array(op, "k", k, shape=(B, None, None, P))
    checks.check_array(op, "v", v, shape=k.shape)
    Tk, Hk = k.shape[1], k.shape[2]
    for name, size in (("batch B", B), ("query length Tq", Tq), ("key length Tk", Tk), ("heads H", H),
                       ("kv heads Hk", Hk), ("head dim P", P)):
        checks.check_positive(op, name, size)
        checks.check_c_int_sizes(op, **{name: size})
    if H % Hk:
        raise ValueError(f"{op}: query heads H={H} (q {q.shape}) must be a multiple of kv heads Hk={Hk} "
                         f"(k {k.shape})")
    window, q_offset, sinks = checks.check_scalars(op, window=window, q_offset=q_offset, sinks=sinks)
    checks.check_c_int_sizes(op, **{"q_offset + Tq": q_offset + Tq})
    # a window reaching key 0 from the last query hides nothing; sinks past the block's keys are its keys
    w = -1 if window is None else min(window, Tq + q_offset)
    return B, Tq, Tk, H, Hk, P, w, q_offset, min(sinks, Tk)


def attention_forward(be, q, k, v, window=None, q_offset=0, sinks=0):
    B, Tq, Tk, H, Hk, P, w, off, s = _check_qkv("attention_forward", q, k, v, window, q_offset, sinks)
    o, lse = empty(q.shape), empty((B, H, Tq))
    status = be.lib.hr_attention_forward(be.f32(q), be.f32(k), be.f32(v), be.f32(o), be.f32(lse),
                                         B, Tq, Tk, H, Hk, P, w, off, s)
    be.raise_status("attention_forward", status)
    return o, lse


def attention_backward(be, do, q, k, v, o, lse, window=None, q_offset=0, sinks=0):
    op = "attention_backward"
    B, Tq, Tk, H, Hk, P, w, off, s = _check_qkv(op, q, k, v, window, q_offset, sinks)
    checks.check_array(op, "do", do, shape=q.shape)
    checks.check_array(op, "o", o, shape=q.shape)
    checks.check_array(op, "lse", lse, shape=(B, H, Tq))
    dq, dk, dv = empty(q.shape), empty(k.shape), empty(k.shape)
    status = be.lib.hr_attention_backward(be.f32(do), be.f32(q), be.f32(k), be.f32(v), be.f32(o), be.f32(lse),
                                          be.f32(dq), be.f32(dk), be.f32(dv), B, Tq, Tk, H, Hk, P, w, off, s)
    be.raise_status(op, status)
    return dq, dk, dv
