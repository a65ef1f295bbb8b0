"""Causal multi-head self-attention (Vaswani et al. 2017), with grouped/multi-query heads and an
optional sliding window (Griffin's local attention).

    q, k, v = split(x W_qkvᵀ)             x (B,T,D) -> q (B,T,H,P), k, v (B,T,Hk,P)
    o_i = Σ_{j≤i} softmax_j(q_i·k_j/√P) v_j  (keys i−W ≤ j ≤ i with a window W)
    y = concat_heads(o) W_oᵀ               -> (B,T,D)
"""
import numpy as np

from .linear import Linear
from .module import Module


class CausalSelfAttention(Module):
    def __init__(self, d, n_heads, rng, n_kv_heads=None, window=None, out_std=None):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"attention: d_model {d} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads or n_heads
        if n_heads % self.n_kv_heads:
            raise ValueError(f"attention: n_heads {n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        self.head_dim = d // n_heads
        self.window = window
        self.qkv = Linear(d, (n_heads + 2 * self.n_kv_heads) * self.head_dim, bias=False, rng=rng)
        self.out = Linear(d, d, bias=False, rng=rng, std=out_std)

    def _split(self, qkv):
        B, T, _ = qkv.shape
        H, Hk, P = self.n_heads, self.n_kv_heads, self.head_dim
        q = np.ascontiguousarray(qkv[..., :H * P]).reshape(B, T, H, P)
        k = np.ascontiguousarray(qkv[..., H * P:(H + Hk) * P]).reshape(B, T, Hk, P)
        v = np.ascontiguousarray(qkv[..., (H + Hk) * P:]).reshape(B, T, Hk, P)
        return q, k, v

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self._split(self.qkv.forward(x))
        o, lse = self.be.attention_forward(q, k, v, self.window)
        self.save(q, k, v, o, lse)
        return self.out.forward(o.reshape(B, T, D))

    def backward(self, dy):
        q, k, v, o, lse = self.saved()
        B, T, H, P = q.shape
        do = np.ascontiguousarray(self.out.backward(dy)).reshape(B, T, H, P)
        dq, dk, dv = self.be.attention_backward(do, q, k, v, o, lse, self.window)
        dqkv = np.concatenate([dq.reshape(B, T, -1), dk.reshape(B, T, -1), dv.reshape(B, T, -1)], axis=-1)
        return self.qkv.backward(dqkv)
