"""Wrapper of csrc/decode.c: attention over a KV cache, and the whole-model streaming decoder."""
import numbers

import numpy as np

from . import checks
from .checks import empty_f32 as empty
from ...layers.attention import CausalSelfAttention
from ...layers.mamba import Mamba
from ...layers.norm import LayerNorm, RMSNorm

_INT_MAX = 2**31 - 1
# must match csrc/decode.c
_LAYER_INTS, _LAYER_W = 8, 17


def attention_decode(be, q, k_cache, v_cache, length, window=None):
    op = "attention_decode"
    checks.check_array(op, "q", q, ndim=3)
    checks.check_array(op, "k_cache", k_cache, ndim=4)
    B, H, P = q.shape
    checks.check_array(op, "k_cache", k_cache, shape=(B, None, None, P))
    checks.check_array(op, "v_cache", v_cache, shape=k_cache.shape)
    Hk, L = k_cache.shape[1], k_cache.shape[2]
    if min(B, H, P, Hk, L) <= 0 or B * H * L * P > _INT_MAX * 64:
        raise ValueError(f"{op}: empty or oversized shapes q {q.shape}, k_cache {k_cache.shape}")
    if H % Hk:
        raise ValueError(f"{op}: query heads H={H} (q {q.shape}) must be a multiple of kv heads Hk={Hk} "
                         f"(k_cache {k_cache.shape})")
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or not 1 <= length <= L:
        raise ValueError(f"{op}: length must be an int in [1, {L}] (the cache size), got {length!r}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 0):
        raise ValueError(f"{op}: window must be None or an int >= 0, got {window!r}")
    w = -1 if window is None else int(min(window, L))
    o = empty(q.shape)
    be.raise_status(op, be.lib.hr_attention_decode(be.f32(q), be.f32(k_cache), be.f32(v_cache), be.f32(o),
                                                   B, H, Hk, P, L, int(length), w))
    return o


class Decoder:
    """The streaming decoder of backends/numpy/decode.py, with each step one C call (hr_decode_step).

    The model (a CharLM: embed, blocks of attention or Mamba mixers, norm, head) is described to C
    once, as arrays of ints and weight pointers; weights are read in place, so updating them in
    place (training, load_state_dict) is seen by the decoder, except A = −exp(A_log), which is
    computed here once. The prefill is the model's parallel forward on the C kernels."""

    def __init__(self, be, model, batch, max_len):
        from ..numpy.decode import Decoder as Reference
        self.be, self.model = be, model
        self._ref = Reference(model, batch, max_len)  # prefill, argument checks, states
        self.batch, self.max_len = batch, max_len
        self._keep = []  # arrays whose pointers C holds
        cfg, ptrs = self._describe(model, max_len)
        self._cfg = np.ascontiguousarray(cfg, dtype=np.int32)
        self._fcfg = np.array([model.norm.eps, self._rope_base(model)], dtype=np.float32)
        self._w = be.ffi.new("float *[]", len(ptrs))
        for i, arr in enumerate(ptrs):
            self._w[i] = be.ffi.NULL if arr is None else be.f32(self._kept(arr))
        states = [a for st in self._ref.states for a in ((st["k"], st["v"]) if "k" in st else (st["conv"], st["ssm"]))]
        self._state = be.ffi.new("float *[]", len(states))
        for i, arr in enumerate(states):
            self._state[i] = be.f32(self._kept(arr))
        self._logits = np.empty((batch, model.vocab_size), np.float32)

    @property
    def pos(self):
        return self._ref.pos

    @property
    def states(self):
        return self._ref.states

    def _kept(self, arr):
        checks.check_array("decoder", "a model weight or state", arr)
        self._keep.append(arr)
        return arr

    @staticmethod
    def _rope_base(model):
        bases = {b.mixer.rope_base for b in model.blocks if isinstance(b.mixer, CausalSelfAttention)} - {None}
        if len(bases) > 1:
            raise ValueError(f"decoder: attention layers use different RoPE bases {sorted(bases)}; the C decoder "
                             f"takes one")
        return bases.pop() if bases else 0.0

    @staticmethod
    def _describe(model, max_len):
        """(cfg ints, weight arrays in csrc/decode.c's order)."""
        kinds = {type(m) for m in model.modules() if isinstance(m, (RMSNorm, LayerNorm))}
        if len(kinds) != 1:
            raise ValueError(f"decoder: the C decoder needs one norm kind throughout, got {sorted(k.__name__ for k in kinds)}")
        is_ln = kinds.pop() is LayerNorm
        bias = (lambda n: n.bias.data) if is_ln else (lambda n: None)
        cfg = [model.vocab_size, model.embed.d, len(model.blocks), int(is_ln)]
        ptrs = [model.embed.weight.data, model.norm.weight.data, bias(model.norm), model.head.weight.data,
                None if model.head.bias is None else model.head.bias.data]
        for i, blk in enumerate(model.blocks):
            mx, mlp = blk.mixer, blk.mlp
            hidden = mlp.fc.d_out if mlp else 0
            ptrs += [blk.norm1.weight.data, bias(blk.norm1)]
            ptrs += [blk.norm2.weight.data, bias(blk.norm2), mlp.fc.weight.data, mlp.fc.bias.data,
                     mlp.proj.weight.data, mlp.proj.bias.data] if mlp else [None] * 6
            if isinstance(mx, CausalSelfAttention):
                cfg += [0, hidden, mx.n_heads, mx.n_kv_heads, mx.head_dim,
                        -1 if mx.window is None else int(min(mx.window, max_len)), int(mx.rope_base is not None),
                        max_len]
                ptrs += [mx.qkv.weight.data, mx.out.weight.data] + [None] * 7
            elif isinstance(mx, Mamba):
                cfg += [1, hidden, mx.d_inner, mx.d_state, mx.dt_rank, mx.conv_weight.shape[1], 0, 0]
                A = np.ascontiguousarray(-np.exp(mx.A_log.data))
                ptrs += [mx.in_proj.weight.data, mx.conv_weight.data, mx.conv_bias.data, mx.x_proj.weight.data,
                         mx.dt_proj.weight.data, mx.dt_proj.bias.data, A, mx.D.data, mx.out_proj.weight.data]
            else:
                raise ValueError(f"decoder: block {i} has a {type(mx).__name__} mixer; the C decoder knows "
                                 f"attention and Mamba")
        assert len(cfg) == 4 + _LAYER_INTS * len(model.blocks) and len(ptrs) == 5 + _LAYER_W * len(model.blocks)
        return cfg, ptrs

    def prefill(self, ids):
        """The prompt (B,T) through the parallel forward; -> logits (B,V) at its last token."""
        return self._ref.prefill(ids)

    def step(self, ids):
        """One token per stream in one C call; -> logits (B,V) of the following token."""
        ref = self._ref
        ids = ref._check_ids(ids, 1)
        ref._check_room(1)
        status = self.be.lib.hr_decode_step(self.be.ffi.cast("int *", self.be.ffi.from_buffer(self._cfg)),
                                            self.be.f32(self._fcfg), self._w, self._state, self.be.i64(ids),
                                            self.be.f32(self._logits), self.batch, ref.pos)
        self.be.raise_status("decode_step", status)
        ref.pos += 1
        for st in ref.states:
            if "k" in st:
                st["length"] = ref.pos
        return self._logits.copy()
