"""Hymba's hybrid-head mixer (Dong et al. 2025, "Hymba: a hybrid-head architecture for small language
models"; NVlabs/hymba, nvidia/Hymba-1.5B-Base modeling_hymba.py, HymbaBlock): attention heads and SSM
(Mamba) heads read the same input in parallel, from one input projection.

    q, k, v, x, z = split(u W_inᵀ)          u (B,T,D) -> q (B,T,H,P), k (B,T,Hk,P), v (B,T,Hk,e·P),
                                             x, z (B,T,Din); P = D/H, Din = e·D (e = expand)
    a   = attention(RoPE(q), RoPE(k), v)     (B,T,H·e·P) = (B,T,Din): causal; in a local layer keys i−W..i
                                             and the S meta tokens 0..S−1 (Hymba's SWA mask: attention sinks)
    m   = ssm(x) ⊙ SiLU(z)                   Mamba's branch from the conv on (mamba.py), RMSNorms on Δ, B, C
    out = ½ (norm_a(a) + norm_m(m)) W_outᵀ   norm_a, norm_m: RMSNorm(Din) with learned weights (the β scales)

A value head is e·P wide (Hymba's v_head_dim = Din/H), so the heads' output is as wide as the SSM's. The
attention op takes one head width for q, k and v, so the attention runs once per P-wide slice of the
value heads ("chunk" c: columns c·P..(c+1)·P of every value head), with the same q and k: the
probabilities are the same in each call and the chunks' outputs are the heads' output, exactly. Values
are kept chunk-major, v (B,T,e·Hk,P) with chunk c at heads c·Hk..(c+1)·Hk, so a chunk is a contiguous
(B,T,Hk,P) key/value set for the op, here and in the decoder's cache.

The layer's role is set by its depth among the model's hymba layers (`set_depth(index, count)`, called
by build_blocks), as Hymba-1.5B's global_attn_idx [0, 15, 31] and kv_reuse_group:
- global layers, full attention: the first, the middle ((count−1)//2) and the last; the others are
  local, with the window `window` (None: every layer full attention);
- key/value sharing (kv_share): each run of consecutive local layers is cut into groups of two (an odd
  run's first group of three, as 1.5B's [16, 17, 18]); the group's first layer (the producer) computes
  k and v, the others (consumers) have no k, v rows in W_in and attend with their own q over the
  producer's keys and values: the side input "hymba_kv<producer index>" (side.py) in a forward and
  the producer's KV cache in decoding (the consumers' decode state holds no cache).

The model's meta tokens (CharLM's meta_tokens, S of them, positions 0..S−1) stay visible to every query
of a local layer, as Hymba's mask keeps them (kv_idx < num_memory_tokens beside the window, its flex
attention mask; its decode cache keeps them before the window's keys): the model sets them with
`set_sinks(S)` and they are attention_forward's `sinks`.

Decoding: the state is attention's KV cache (k (B,Hk,L,P), v (B,e·Hk,L,P), `length`; in a local layer the
S meta tokens' rows, then a ring of W+1 rows) for a layer that computes k and v, Mamba's conv and ssm
states, and `length`.
"""
import numpy as np

from .attention import CausalSelfAttention
from .linear import Linear
from .mamba import Mamba
from .module import Param
from .norm import RMSNorm
from .registry import register_mixer


def hymba_roles(count, window, kv_share):
    """(global?, producer index or None) of each of `count` hymba layers: Hymba's global layers (first,
    middle, last) and its key/value groups over each run of local layers (pairs; an odd run starts
    with a triple). A layer whose producer is itself, or that shares nothing, gets None."""
    is_global = [window is None or i in (0, (count - 1) // 2, count - 1) for i in range(count)]
    producer = [None] * count
    i = 0
    while i < count:
        if is_global[i]:
            i += 1
            continue
        run = i
        while run < count and not is_global[run]:
            run += 1
        n = run - i
        if kv_share and n >= 2:
            sizes = ([3] if n % 2 else []) + [2] * ((n - (3 if n % 2 else 0)) // 2)
            at = i
            for size in sizes:
                for j in range(at + 1, at + size):
                    producer[j] = at
                at += size
        i = run
    return is_global, producer


@register_mixer("Y", "hymba")
class Hymba(Mamba):
    mlp_ratio = 0.0  # the mixer holds ~7·D² weights; Hymba's own blocks have an MLP, the preset sets its width
    test_options = dict(n_heads=2, n_kv_heads=1, d_state=4, dt_rank=2)
    test_variants = ()
    sinks = 0  # the model's meta tokens, visible to every query of a local layer (set_sinks)

    def __init__(self, d, rng, n_heads=4, n_kv_heads=None, d_state=16, d_conv=4, expand=2, dt_rank=None,
                 window=None, kv_share=True, rope_base=10000.0, norm_eps=1e-5, out_std=None):
        """window: the local layers' attention window (None: every layer global); kv_share: Hymba's
        key/value sharing between consecutive local layers; norm_eps: the eps of every RMSNorm inside
        (the branch norms and those on Δ, B, C; the C decoder needs the model's norm_eps)."""
        if d % n_heads:
            raise ValueError(f"hymba: d_model {d} is not divisible by n_heads {n_heads}")
        if n_heads % (n_kv_heads or n_heads):
            raise ValueError(f"hymba: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
        if not isinstance(expand, int) or expand < 1:
            raise ValueError(f"hymba: expand must be a whole number >= 1 (a value head is expand·P wide), got {expand!r}")
        super().__init__(d, rng, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank, bcdt_rms=norm_eps,
                         out_std=out_std)
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads or n_heads
        self.head_dim, self.expand = d // n_heads, expand
        self.local_window, self.kv_share, self.rope_base = window, kv_share, rope_base
        H, Hk, P, din = n_heads, self.n_kv_heads, self.head_dim, self.d_inner
        # q, k, v, then Mamba's x and z; Mamba's own in_proj (x, z) is replaced
        self.in_proj = Linear(d, (H + Hk) * P + Hk * expand * P + 2 * din, bias=False, rng=rng)
        self.norm_a, self.norm_m = RMSNorm(din, norm_eps), RMSNorm(din, norm_eps)
        self.set_depth(0, 1)

    # -- the layer's role -------------------------------------------------------
    def set_depth(self, index, count):
        """Hymba's role of the index-th of count hymba layers: global or local (window), and whether it
        reads another layer's keys and values. A consumer's W_in loses its k, v rows (no random draw)."""
        is_global, producer = hymba_roles(count, self.local_window, self.kv_share)
        self.index = index
        self.window = None if is_global[index] else self.local_window
        self.kv_from = producer[index]
        self.kv_consumers = producer.count(index)
        if self.kv_from is not None and self.in_proj.d_out == self._width(True):
            H, P, rows = self.n_heads, self.head_dim, self.in_proj.weight.data
            keep = np.r_[0:H * P, self._width(True) - 2 * self.d_inner:self._width(True)]
            self.in_proj = Linear(self.d_model, len(keep), bias=False)
            self.in_proj.weight = Param(rows[keep])

    def set_sinks(self, n):
        """The model prepends n meta tokens (positions 0..n−1): a local layer's queries all see them."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"hymba: the meta tokens' count must be an int >= 0, got {n!r}")
        self.sinks = n

    @property
    def role(self):
        """This layer's role, for `hybridref describe`: "global", "window W" (with " + S meta" when its
        queries also see S meta tokens), and "kv of I" for a consumer."""
        role = "global" if self.window is None else f"window {self.window}"
        if self.window is not None and self.sinks:
            role += f" + {self.sinks} meta"
        return role if self.kv_from is None else f"{role}, kv of {self.kv_from}"

    def _width(self, with_kv):
        H, Hk, P, e = self.n_heads, self.n_kv_heads, self.head_dim, self.expand
        return H * P + (Hk * P + Hk * e * P if with_kv else 0) + 2 * self.d_inner

    @property
    def kv_key(self):
        """The side input of this layer's keys and values (its producer's, or its own)."""
        return f"hymba_kv{self.index if self.kv_from is None else self.kv_from}"

    def _split(self, proj):
        """W_in's output (B,T,·) -> q (B,T,H,P), k (B,T,Hk,P) and v (B,T,e·Hk,P) chunk-major (None for a
        consumer), x, z (B,T,Din)."""
        B, T, _ = proj.shape
        H, Hk, P, e, din = self.n_heads, self.n_kv_heads, self.head_dim, self.expand, self.d_inner
        q = np.ascontiguousarray(proj[..., :H * P]).reshape(B, T, H, P)
        k = v = None
        if self.kv_from is None:
            k = np.ascontiguousarray(proj[..., H * P:(H + Hk) * P]).reshape(B, T, Hk, P)
            v = proj[..., (H + Hk) * P:(H + Hk + Hk * e) * P].reshape(B, T, Hk, e, P)
            v = np.ascontiguousarray(v.transpose(0, 1, 3, 2, 4)).reshape(B, T, e * Hk, P)
        x, z = np.ascontiguousarray(proj[..., -2 * din:-din]), np.ascontiguousarray(proj[..., -din:])
        return q, k, v, x, z

    def _join(self, dq, dk, dv, dx, dz):
        """The inverse layout of _split, for the gradients."""
        B, T = dq.shape[:2]
        H, Hk, P, e = self.n_heads, self.n_kv_heads, self.head_dim, self.expand
        parts = [dq.reshape(B, T, H * P)]
        if dk is not None:
            dv = dv.reshape(B, T, e, Hk, P).transpose(0, 1, 3, 2, 4).reshape(B, T, Hk * e * P)
            parts += [dk.reshape(B, T, Hk * P), dv]
        return np.concatenate(parts + [dx, dz], axis=-1)

    def _chunk(self, v, c):
        """Chunk c of chunk-major values (B,·,e·Hk,P): the contiguous (B,·,Hk,P) set of key/value heads."""
        Hk = self.n_kv_heads
        return np.ascontiguousarray(v[:, :, c * Hk:(c + 1) * Hk])

    def _rope(self, a, offset):
        return a if self.rope_base is None else self.be.rope_forward(a, offset, self.rope_base)

    # -- the parallel form --------------------------------------------------------
    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D). With a decode state, a prefill from it (attention's cache, Mamba's conv
        and scan states), left at the end of u."""
        self.check_input(u)
        B, T, _ = u.shape
        q, k, v, x_in, z = self._split(self.in_proj.forward(u))
        L0 = 0 if state is None else state["length"]
        q = self._rope(q, L0)
        n_prev = 0
        if self.kv_from is None:
            k = self._rope(k, L0)
            if state is not None:
                CausalSelfAttention._check_room(self, state, T, self.sinks)
                k, v, n_prev = CausalSelfAttention.extend_cache(state, k, v, self.window, self.sinks)
            if self.kv_consumers:
                self._side(side).put(self.kv_key, (k, v, n_prev))
        else:
            k, v, n_prev = self._side(side).get(self.kv_key)
        if state is not None:
            state["length"] = L0 + T
        o, lse = self._attend(q, k, v, n_prev)
        prefix, h0 = self.scan_start(state)
        y, h_last = self.scan_forward(self.directions[0], x_in, prefix, h0)
        self.scan_leave(state, x_in, h_last)
        m = self.be.silu_gate_forward(y, z)
        self.save(q, k, v, o, lse, n_prev, L0, y, z, side)
        mix = self.norm_a.forward(o.reshape(B, T, -1)) + self.norm_m.forward(m)
        return self.out_proj.forward(mix * np.asarray(0.5, mix.dtype))

    def _side(self, side):
        if side is None:
            raise ValueError(f"hymba: layer {self.index} shares keys and values with other layers, which needs the "
                             f"model's side inputs (run it inside a CharLM)")
        return side

    def _attend(self, q, k, v, n_prev):
        """o (B,T,H,e·P), lse (B,H,T): the attention of q over each value chunk (one lse: the scores are the
        chunks')."""
        B, T, H, P = q.shape
        o = np.empty((B, T, H, self.expand * P), q.dtype)
        for c in range(self.expand):
            o[..., c * P:(c + 1) * P], lse = self.be.attention_forward(q, k, self._chunk(v, c), self.window, n_prev,
                                                                       self.sinks)
        return o, lse

    def backward(self, dout):
        q, k, v, o, lse, n_prev, L0, y, z, side = self.saved()
        B, T, H, P = q.shape
        dmix = self.out_proj.backward(dout) * np.asarray(0.5, dout.dtype)
        dm = self.norm_m.backward(dmix)
        do = self.norm_a.backward(dmix).reshape(o.shape)
        dy, dz = self.be.silu_gate_backward(dm, y, z)
        dx = self.scan_backward(self.directions[0], dy)
        dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.empty_like(v)
        Hk = self.n_kv_heads
        for c in range(self.expand):
            dqc, dkc, dv[:, :, c * Hk:(c + 1) * Hk] = self.be.attention_backward(
                np.ascontiguousarray(do[..., c * P:(c + 1) * P]), q, k, self._chunk(v, c),
                np.ascontiguousarray(o[..., c * P:(c + 1) * P]), lse, self.window, n_prev, self.sinks)
            dq += dqc
            dk += dkc
        if self.kv_from is not None:  # the keys and values are the producer's: their gradient goes there
            side.add_grad(self.kv_key + ".k", dk)
            side.add_grad(self.kv_key + ".v", dv)
            dk = dv = None
        else:
            for name, grad in ((".k", dk), (".v", dv)):
                shared = side.pop_grad(self.kv_key + name) if self.kv_consumers else None
                if shared is not None:
                    grad += shared
            dk, dv = dk[:, n_prev:], dv[:, n_prev:]  # the cached keys are constants
            dk = self._rope_back(np.ascontiguousarray(dk), L0)
        dq = self._rope_back(dq, L0)
        return self.in_proj.backward(self._join(dq, dk, None if dv is None else np.ascontiguousarray(dv), dx, dz))

    def _rope_back(self, da, offset):
        return da if self.rope_base is None else self.be.rope_backward(da, offset, self.rope_base)

    # -- decoding -------------------------------------------------------------------
    def init_state(self, batch, max_len, dtype=np.float32):
        """Mamba's conv and ssm states, `length`, and for a layer that computes keys and values its KV
        cache: k (B,Hk,L,P), v (B,e·Hk,L,P), L = max_len, or in a local layer min(max_len, S + W + 1): the S
        meta tokens' rows and the window's ring."""
        state = {**super().init_state(batch, max_len, dtype), "length": 0}
        if self.kv_from is None:
            rows = max_len if self.window is None else min(max_len, self.sinks + self.window + 1)
            Hk, P = self.n_kv_heads, self.head_dim
            state["k"] = np.zeros((batch, Hk, rows, P), dtype)
            state["v"] = np.zeros((batch, self.expand * Hk, rows, P), dtype)
        return state

    def step(self, u, state, side=None):
        """One token per stream: u (B,D) -> (B,D); a consumer reads its producer's cache, which the
        producer's step (earlier in the same pass) has advanced."""
        self.check_input(u, 2)
        B = u.shape[0]
        q, k, v, x_in, z = self._split(self.in_proj.step(u)[:, None])
        pos = state["length"]
        q = self._rope(q, pos)
        if self.kv_from is None:
            CausalSelfAttention._check_room(self, state, 1, self.sinks)
            CausalSelfAttention._append(state, self._rope(k, pos), v, pos, self.sinks)
            cache = state
            if self.kv_consumers:
                self._side(side).put(self.kv_key, state)
        else:
            cache = self._side(side).get(self.kv_key)
            state["length"] = pos + 1
        Hk, q0 = self.n_kv_heads, np.ascontiguousarray(q[:, 0])
        o = np.concatenate([self.be.attention_decode(q0, cache["k"], np.ascontiguousarray(
            cache["v"][:, c * Hk:(c + 1) * Hk]), pos + 1, self.window, self.sinks)
            for c in range(self.expand)], axis=-1)
        m = self.be.silu_gate_forward(self.scan_step(x_in[:, 0], state), z[:, 0])
        mix = self.norm_a.step(o.reshape(B, -1)) + self.norm_m.step(m)
        return self.out_proj.step(mix * np.asarray(0.5, mix.dtype))
