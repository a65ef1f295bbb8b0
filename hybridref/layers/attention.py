"""Causal multi-head self-attention (Vaswani et al. 2017), with grouped/multi-query heads and an
optional sliding window (Griffin's local attention).

    q, k, v = split(x W_qkvᵀ)             x (B,T,D) -> q (B,T,H,P), k, v (B,T,Hk,P)
    o_i = Σ_{j≤i} softmax_j(q_i·k_j/√P) v_j  (keys i−W ≤ j ≤ i with a window W)
    y = concat_heads(o) W_oᵀ               -> (B,T,D)

With rope_base set, q and k are rotated by their position (RoPE) before the scores; rope_base None:
no positions (a model that adds learned positions to its input).

Decoding: the state is a KV cache k, v (B,Hk,L,P) of L = max_len rows and its fill `length`;
`forward(x, state)` (prefill) appends the T tokens of x, `step(x_t, state)` appends one
token per stream and attends over the cache. A windowed layer keeps the whole cache too (no ring
buffer), so every layer's context is limited to max_len.
"""
import numpy as np

from .linear import Linear
from .mixer import Mixer
from .registry import register_mixer


@register_mixer("A", "attention")
class CausalSelfAttention(Mixer):
    mlp_ratio = 4.0
    test_options = dict(n_heads=2)

    def __init__(self, d, rng, n_heads=4, n_kv_heads=None, window=None, rope_base=10000.0, out_std=None):
        super().__init__(d)
        if d % n_heads:
            raise ValueError(f"attention: d_model {d} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads or n_heads
        if n_heads % self.n_kv_heads:
            raise ValueError(f"attention: n_heads {n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        self.head_dim = d // n_heads
        self.window = window
        self.rope_base = rope_base
        self.qkv = Linear(d, (n_heads + 2 * self.n_kv_heads) * self.head_dim, bias=False, rng=rng)
        self.out = Linear(d, d, bias=False, rng=rng, std=out_std)

    def _split(self, qkv):
        B, T, _ = qkv.shape
        H, Hk, P = self.n_heads, self.n_kv_heads, self.head_dim
        q = np.ascontiguousarray(qkv[..., :H * P]).reshape(B, T, H, P)
        k = np.ascontiguousarray(qkv[..., H * P:(H + Hk) * P]).reshape(B, T, Hk, P)
        v = np.ascontiguousarray(qkv[..., (H + Hk) * P:]).reshape(B, T, Hk, P)
        return q, k, v

    def forward(self, x, state=None, side=None):
        """x (B,T,D) -> (B,T,D). With a decode `state` holding L0 tokens, x is positions L0..L0+T−1:
        its keys and values are appended to the cache and its queries attend over all L0+T (a prefill,
        in one piece or in chunks); the backward then gives the gradient of x alone."""
        self.check_input(x)
        B, T, D = x.shape
        q, k, v = self._split(self.qkv.forward(x))
        L0 = 0 if state is None else state["length"]
        if self.rope_base is not None:
            q, k = self.be.rope_forward(q, L0, self.rope_base), self.be.rope_forward(k, L0, self.rope_base)
        if state is not None:
            self._check_room(state, T)
            state["k"][:, :, L0:L0 + T] = k.transpose(0, 2, 1, 3)
            state["v"][:, :, L0:L0 + T] = v.transpose(0, 2, 1, 3)
            state["length"] = L0 + T
            if L0:
                k = np.ascontiguousarray(state["k"][:, :, :L0 + T].transpose(0, 2, 1, 3))
                v = np.ascontiguousarray(state["v"][:, :, :L0 + T].transpose(0, 2, 1, 3))
        o, lse = self.be.attention_forward(q, k, v, self.window, L0)
        self.save(q, k, v, o, lse, L0)
        return self.out.forward(o.reshape(B, T, D))

    def backward(self, dy):
        q, k, v, o, lse, L0 = self.saved()
        B, T, H, P = q.shape
        do = np.ascontiguousarray(self.out.backward(dy)).reshape(B, T, H, P)
        dq, dk, dv = self.be.attention_backward(do, q, k, v, o, lse, self.window, L0)
        dk, dv = np.ascontiguousarray(dk[:, L0:]), np.ascontiguousarray(dv[:, L0:])  # the cache is a constant
        if self.rope_base is not None:
            dq, dk = self.be.rope_backward(dq, L0, self.rope_base), self.be.rope_backward(dk, L0, self.rope_base)
        dqkv = np.concatenate([dq.reshape(B, T, -1), dk.reshape(B, T, -1), dv.reshape(B, T, -1)], axis=-1)
        return self.qkv.backward(dqkv)

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len, dtype=np.float32):
        shape = (batch, self.n_kv_heads, max_len, self.head_dim)
        return {"k": np.zeros(shape, dtype), "v": np.zeros(shape, dtype), "length": 0}

    @staticmethod
    def _check_room(state, n):
        max_len = state["k"].shape[2]
        if state["length"] + n > max_len:
            raise ValueError(f"attention: the KV cache holds {max_len} tokens (max_len) and has {state['length']}; "
                             f"{n} more do not fit — decode with a larger max_len")

    def step(self, x, state, side=None):
        """One token per stream: x (B,D) -> (B,D); appends its k, v to the cache at position `length`."""
        self.check_input(x, 2)
        B, D = x.shape
        self._check_room(state, 1)
        pos = state["length"]
        q, k, v = self._split(self.qkv.step(x)[:, None])
        if self.rope_base is not None:
            q, k = self.be.rope_forward(q, pos, self.rope_base), self.be.rope_forward(k, pos, self.rope_base)
        state["k"][:, :, pos] = k[:, 0]
        state["v"][:, :, pos] = v[:, 0]
        state["length"] = pos + 1
        o = self.be.attention_decode(np.ascontiguousarray(q[:, 0]), state["k"], state["v"], pos + 1, self.window)
        return self.out.step(o.reshape(B, D))
