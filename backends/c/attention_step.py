"""Wrapper of csrc/attention_step.c: attention of one new query over a KV cache (the op
`attention_decode`), and the attention mixer's record for the C decoder."""
from ..numpy.attention_step import check_cache
from . import checks
from .checks import empty_f32 as empty
from .decode import DecodeRecord


def attention_decode(be, q, k_cache, v_cache, length, window=None, sinks=0):
    op = "attention_decode"
    checks.check_array(op, "q", q, ndim=3)
    checks.check_array(op, "k_cache", k_cache, ndim=4)
    B, H, P = q.shape
    checks.check_array(op, "k_cache", k_cache, shape=(B, None, None, P))
    checks.check_array(op, "v_cache", v_cache, shape=k_cache.shape)
    Hk, L = k_cache.shape[1], k_cache.shape[2]
    if min(B, H, P, Hk, L) <= 0:
        raise ValueError(f"{op}: empty shapes q {q.shape}, k_cache {k_cache.shape}")
    checks.check_c_int_sizes(op, **{"B·H": B * H, "Hk·L·P": Hk * L * P})
    if H % Hk:
        raise ValueError(f"{op}: query heads H={H} (q {q.shape}) must be a multiple of kv heads Hk={Hk} "
                         f"(k_cache {k_cache.shape})")
    length, window, sinks = checks.check_scalars(op, length=length, window=window, sinks=sinks)
    _, held = check_cache(op, length, window, sinks, L)
    w = -1 if window is None else min(window, length)  # a window past the first position is none
    o = empty(q.shape)
    be.raise_status(op, be.lib.hr_attention_decode(be.f32(q), be.f32(k_cache), be.f32(v_cache), be.f32(o),
                                                   B, H, Hk, P, L, length, w, min(held, L)))
    return o


def decode_record(mixer, state, max_len):
    """The record hr_attention_step reads (csrc/attention_step.c): ints [H, Hk, P, window or −1, rope dims
    (0: no RoPE), L = the cache's rows (max_len, or the ring's min(max_len, window + 1))], floats [rope base],
    weights [qkv w, out w, out b or None], state [k cache, v cache]. The decoder never passes max_len positions, so a
    larger window is clamped to max_len (the same keys)."""
    window = -1 if mixer.window is None else int(min(mixer.window, max_len))
    rope = mixer.rope_base is not None
    return DecodeRecord(
        ints=[mixer.n_heads, mixer.n_kv_heads, mixer.head_dim, window, mixer.rope_dims if rope else 0,
              state["k"].shape[2]],
        floats=[mixer.rope_base if rope else 0.0],
        weights=[mixer.qkv.weight.data, mixer.out.weight.data, None if mixer.out.bias is None else mixer.out.bias.data],
        states=[state["k"], state["v"]],
        on_step=lambda pos: state.update(length=pos))
