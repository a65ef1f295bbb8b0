"""Causal multi-head self-attention (Vaswani et al. 2017), with grouped/multi-query heads and an
optional sliding window (Griffin's local attention).

    q, k, v = split(x W_qkvᵀ)             x (B,T,D) -> q (B,T,H,P), k, v (B,T,Hk,P)
    o_i = Σ_{j≤i} softmax_j(q_i·k_j/√P) v_j  (keys i−W ≤ j ≤ i with a window W)
    y = concat_heads(o) W_oᵀ               (B,T,H·P) -> (B,T,D)

P = D/H, or the option head_dim when the heads are not D/H wide (Falcon-H1's head_dim): W_qkv is then
((H+2Hk)·P, D) and W_o (D, H·P).

With rope_base set, q and k are rotated by their position (RoPE) before the scores; rope_base None:
no positions (a model that adds learned positions to its input). rope_dims R < P rotates only the
first R dimensions of each head (RoPE over R, θ_i = base^(−2i/R)) and passes the rest unchanged, as
Griffin/RecurrentGemma's local attention does with R = P/2. out_bias adds a bias to W_o (RecurrentGemma's).

Decoding: the state is a KV cache k, v (B,Hk,L,P) and the number of tokens seen, `length`; the
token at position p lives in row p % L. Without a window L = max_len (rows 0..length−1, the whole
context, which max_len bounds); with a window W a query reads only the W+1 last keys, so the cache is
a ring buffer of L = min(max_len, W+1) rows: a windowed layer's memory and per-token cost are constant
in the context length, and the layer itself puts no bound on it (a model's decoder still counts its
tokens against its max_len). `forward(x, state)` (prefill) appends the T tokens of x,
`step(x_t, state)` appends one token per stream and attends over the cache.
"""
import numpy as np

from ..backends.numpy.attention_step import cache_rows, decode_keys
from .linear import Linear
from .mixer import Mixer
from .registry import register_mixer


@register_mixer("A", "attention")
class CausalSelfAttention(Mixer):
    mlp_ratio = 4.0
    test_options = dict(n_heads=2)

    def __init__(self, d, rng, n_heads=4, n_kv_heads=None, window=None, rope_base=10000.0, rope_dims=None,
                 out_bias=False, head_dim=None, out_std=None):
        super().__init__(d)
        if head_dim is not None and (isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1):
            raise ValueError(f"attention: head_dim must be a whole number >= 1 or None (d_model / n_heads), "
                             f"got {head_dim!r}")
        if head_dim is None and d % n_heads:
            raise ValueError(f"attention: d_model {d} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads or n_heads
        if n_heads % self.n_kv_heads:
            raise ValueError(f"attention: n_heads {n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        self.head_dim = d // n_heads if head_dim is None else head_dim
        self.window = window
        self.rope_base = rope_base
        self.rope_dims = self.head_dim if rope_dims is None else rope_dims
        if self.rope_dims % 2 or not 2 <= self.rope_dims <= self.head_dim:
            raise ValueError(f"attention: rope_dims {rope_dims} is not an even count from 2 to the head size "
                             f"{self.head_dim}")
        self.qkv = Linear(d, (n_heads + 2 * self.n_kv_heads) * self.head_dim, bias=False, rng=rng)
        self.out = Linear(n_heads * self.head_dim, d, bias=out_bias, rng=rng, std=out_std)

    def _rope(self, x, pos0, op="rope_forward"):
        """x (B,T,H,P) at positions pos0.. with RoPE (op "rope_backward": its transpose) on the first rope_dims
        of every head, the others unchanged; x itself without RoPE (rope_base None)."""
        if self.rope_base is None:
            return x
        rotate, R = getattr(self.be, op), self.rope_dims
        if R == self.head_dim:
            return rotate(x, pos0, self.rope_base)
        y = x.copy()
        y[..., :R] = rotate(np.ascontiguousarray(x[..., :R]), pos0, self.rope_base)
        return y

    def _split(self, qkv):
        B, T, _ = qkv.shape
        H, Hk, P = self.n_heads, self.n_kv_heads, self.head_dim
        q = np.ascontiguousarray(qkv[..., :H * P]).reshape(B, T, H, P)
        k = np.ascontiguousarray(qkv[..., H * P:(H + Hk) * P]).reshape(B, T, Hk, P)
        v = np.ascontiguousarray(qkv[..., (H + Hk) * P:]).reshape(B, T, Hk, P)
        return q, k, v

    def forward(self, x, state=None, side=None):
        """x (B,T,D) -> (B,T,D). With a decode `state` holding L0 tokens, x is positions L0..L0+T−1:
        its keys and values are appended to the cache and its queries attend over the cached keys
        they see (all L0, or the last `window`) and x's own (a prefill, in one piece or in chunks);
        the backward then gives the gradient of x alone."""
        self.check_input(x)
        B, T, D = x.shape
        q, k, v = self._split(self.qkv.forward(x))
        L0 = 0 if state is None else state["length"]
        q, k = self._rope(q, L0), self._rope(k, L0)
        n_prev = 0  # cached keys the queries see: positions L0−n_prev .. L0−1, before x's own
        if state is not None:
            self._check_room(state, T)
            k, v, n_prev = self.extend_cache(state, k, v, self.window)
        o, lse = self.be.attention_forward(q, k, v, self.window, n_prev)
        self.save(q, k, v, o, lse, L0, n_prev)
        return self.out.forward(o.reshape(B, T, -1))

    def backward(self, dy):
        q, k, v, o, lse, L0, n_prev = self.saved()
        B, T, H, P = q.shape
        do = np.ascontiguousarray(self.out.backward(dy)).reshape(B, T, H, P)
        dq, dk, dv = self.be.attention_backward(do, q, k, v, o, lse, self.window, n_prev)
        dk, dv = np.ascontiguousarray(dk[:, n_prev:]), np.ascontiguousarray(dv[:, n_prev:])  # the cache is a constant
        dq, dk = self._rope(dq, L0, "rope_backward"), self._rope(dk, L0, "rope_backward")
        dqkv = np.concatenate([dq.reshape(B, T, -1), dk.reshape(B, T, -1), dv.reshape(B, T, -1)], axis=-1)
        return self.qkv.backward(dqkv)

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len, dtype=np.float32):
        """Zeros: k, v (B, Hk, L, P), L = max_len, or min(max_len, window + 1) with a window (a ring)."""
        rows = max_len if self.window is None else min(max_len, self.window + 1)
        shape = (batch, self.n_kv_heads, rows, self.head_dim)
        return {"k": np.zeros(shape, dtype), "v": np.zeros(shape, dtype), "length": 0}

    @classmethod
    def extend_cache(cls, state, k, v, window, sinks=0):
        """A prefill's keys and values k, v (B,T,Hk,·) appended to the cache `state`; -> (the cached keys
        its queries see, then k; the same for v; n_prev, how many cached ones: all `length`, or the last
        `window` and, before them, the sinks 0..sinks−1 a window would hide). The queries then stand at
        q_offset n_prev: with sinks cut out of a longer gap, the window's keys keep their distances, and
        attention_forward's `sinks` are the first keys."""
        L0 = state["length"]
        prev = decode_keys(L0 + 1, window, sinks)[:-1]  # those of a query at position L0, less its own
        n_prev = len(prev)
        rows = cache_rows(prev, state["k"].shape[2], sinks)
        k_prev, v_prev = state["k"][:, :, rows].transpose(0, 2, 1, 3), state["v"][:, :, rows].transpose(0, 2, 1, 3)
        cls._append(state, k, v, L0, sinks)
        if n_prev:
            k = np.ascontiguousarray(np.concatenate([k_prev, k], axis=1))
            v = np.ascontiguousarray(np.concatenate([v_prev, v], axis=1))
        return k, v, n_prev

    @staticmethod
    def _append(state, k, v, L0, sinks=0):
        """Write k, v (B,T,Hk,P) of positions L0.. into their rows (cache_rows: p % L without sinks): the
        sinks and the last L − sinks of the others, those a ring keeps."""
        L, T = state["k"].shape[2], k.shape[1]
        pos = np.arange(L0, L0 + T)
        keep = (pos < sinks) | (pos >= L0 + T - (L - sinks))
        rows = cache_rows(pos[keep], L, sinks)
        state["k"][:, :, rows] = k[:, keep].transpose(0, 2, 1, 3)
        state["v"][:, :, rows] = v[:, keep].transpose(0, 2, 1, 3)
        state["length"] = L0 + T

    def _check_room(self, state, n, sinks=0):
        """Without a window the cache holds the whole context: max_len tokens. A ring has no limit (one of
        L <= sinks rows has no ring: its L tokens are sinks)."""
        max_len = state["k"].shape[2]
        if (self.window is None or max_len <= sinks) and state["length"] + n > max_len:
            raise ValueError(f"attention: the KV cache holds {max_len} tokens (max_len) and has {state['length']}; "
                             f"{n} more do not fit — decode with a larger max_len")

    def step(self, x, state, side=None):
        """One token per stream: x (B,D) -> (B,D); appends its k, v to the cache at position `length`
        (row length % L)."""
        self.check_input(x, 2)
        B, D = x.shape
        self._check_room(state, 1)
        pos = state["length"]
        q, k, v = self._split(self.qkv.step(x)[:, None])
        q, k = self._rope(q, pos), self._rope(k, pos)
        self._append(state, k, v, pos)
        o = self.be.attention_decode(np.ascontiguousarray(q[:, 0]), state["k"], state["v"], pos + 1, self.window)
        return self.out.step(o.reshape(B, -1))
