"""RetNet multi-scale retention (Sun et al. 2023), as fla's layers/multiscale_retention.py builds it.

    q, k, v, g = split(u W_inᵀ)                  u (B,T,D) -> q, k (B,T,H,Kh), v (B,T,H,Vh), g (B,T,V)
    q, k       = RoPE(q), RoPE(k)                 GPT-NeoX half split, base 10000, positions pos0..
    S_t        = γ_h S_{t−1} + k_tᵀ v_t           per head, S (Kh,Vh); γ_h = 1 − 2^(−5−h), fixed
    o_t        = q_t S_t / √Kh                    (the linear_attention op, one log decay per head)
    y          = out_proj(RMSNorm_h(o) ⊙ SiLU(g))  RMSNorm over each head's Vh values, one weight shared by
                                                  the heads (fla's FusedRMSNormGated)

K = D and V = expand_v·D (the paper's value dim 2D), Kh = K/H, Vh = V/H. The paper rotates q, k by
xPos (RoPE with a per-dimension exponential scale); fla, which this follows, uses plain RoPE, done
here by the existing rope op. The decays are constants: g = log γ_h, no gradient.

Init: q, k, v, g projections xavier-uniform with gain 2^−2.5 per projection (torchscale's
MultiScaleRetention.reset_parameters and fla's layer init before 2025; fla now draws every weight
from N(0, 0.02²)); out_proj N(0, out_std²), the model's residual-branch scale.

Decoding: the state is S (B,H,Kh,Vh) and the position `pos` (for RoPE); a step costs the same at
every position. `forward(u, state)` (prefill) starts from S at positions pos.. and leaves both at
the end of u.
"""

import numpy as np

from .linear import Linear, xavier_uniform
from .mixer import Mixer
from .module import Param
from .registry import register_mixer


@register_mixer("R", "retnet")
class RetNet(Mixer):
    mlp_ratio = 2.0  # the mixer holds 8·D² weights (K = D, V = 2D): the paper's FFN of 2D keeps blocks ~attention's
    test_options = dict(n_heads=2, chunk=4)  # chunk 4 < T: the op's chunked path and its chunk boundaries
    ROPE_BASE = 10000.0  # fla's RotaryEmbedding default
    EPS = 1e-5  # of the per-head RMSNorm (fla's norm_eps)

    def __init__(self, d, rng, n_heads=4, expand_v=2, chunk=64, out_std=None):
        super().__init__(d)
        self.n_heads, self.chunk = n_heads, chunk
        self.key_dim, self.value_dim = d, int(d * expand_v)
        if n_heads < 1 or self.key_dim % n_heads or self.value_dim % n_heads:
            raise ValueError(f"retnet: key dim {self.key_dim} (d_model) and value dim {self.value_dim} "
                             f"(expand_v·d_model) must be divisible by n_heads {n_heads}")
        self.head_k, self.head_v = self.key_dim // n_heads, self.value_dim // n_heads
        if self.head_k % 2:
            raise ValueError(f"retnet: RoPE needs an even key head dim, got d_model/n_heads = {self.head_k}")
        K, V = self.key_dim, self.value_dim
        self.in_proj = Linear(d, 2 * K + 2 * V, bias=False, rng=rng)  # [q | k | v | g]: one GEMM of u
        self.in_proj.weight.data[...] = np.concatenate(
            [xavier_uniform(rng, n, d, 2 ** -2.5) for n in (K, K, V, V)]).astype(np.float32)
        self.g_norm = Param(np.ones(self.head_v), decay=False)
        self.out_proj = Linear(V, d, bias=False, rng=rng, std=out_std)
        # log γ_h = log(1 − 2^(−5−h)) (H, 1): one decay per head (Kg = 1)
        self.log_decay = np.log1p(-2.0 ** (-5.0 - np.arange(n_heads)))[:, None]
        self.scale = self.head_k ** -0.5

    def _split(self, qkvg):
        """(B,T,2K+2V) -> q, k (B,T,H,Kh), v (B,T,H,Vh), g (B,T,V)."""
        B, T, _ = qkvg.shape
        H, K, V = self.n_heads, self.key_dim, self.value_dim
        q, k, v, g = (np.ascontiguousarray(qkvg[..., i:j]) for i, j in
                      ((0, K), (K, 2 * K), (2 * K, 2 * K + V), (2 * K + V, 2 * K + 2 * V)))
        return q.reshape(B, T, H, -1), k.reshape(B, T, H, -1), v.reshape(B, T, H, -1), g

    def _decays(self, B, T, dtype):
        """g = log γ_h for every (b, t): (B,T,H,1)."""
        return np.ascontiguousarray(np.broadcast_to(self.log_decay.astype(dtype), (B, T, self.n_heads, 1)))

    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D). With a decode `state` at position pos0, u is positions pos0..pos0+T−1:
        retention starts from S and leaves S and pos at the end of u (a prefill, in one piece or in
        chunks); the backward then gives the gradient of u alone."""
        self.check_input(u)
        B, T, _ = u.shape
        q, k, v, g = self._split(self.in_proj.forward(u))
        pos0 = 0 if state is None else state["pos"]
        q, k = self.be.rope_forward(q, pos0, self.ROPE_BASE), self.be.rope_forward(k, pos0, self.ROPE_BASE)
        h0 = None if state is None else state["S"].copy()
        decay = self._decays(B, T, u.dtype)
        o, h_last = self.be.linear_attention_forward(q, k, v, decay, self.scale, h0, self.chunk)
        if state is not None:
            state["S"][...] = h_last
            state["pos"] = pos0 + T
        o2 = o.reshape(-1, self.head_v)
        o_n, rstd = self.be.rmsnorm_forward(o2, self.g_norm.data, self.EPS)
        o_n = o_n.reshape(B, T, self.value_dim)
        self.save(q, k, v, decay, h0, pos0, o2, rstd, o_n, g)
        return self.out_proj.forward(self.be.silu_gate_forward(o_n, g))

    def backward(self, dy):
        q, k, v, decay, h0, pos0, o2, rstd, o_n, g = self.saved()
        B, T = dy.shape[:2]
        do_n, dg = self.be.silu_gate_backward(self.out_proj.backward(dy), o_n, g)
        do, dw = self.be.rmsnorm_backward(do_n.reshape(-1, self.head_v), o2, self.g_norm.data, rstd)
        self.g_norm.grad += dw
        dq, dk, dv, _, _ = self.be.linear_attention_backward(do.reshape(v.shape), q, k, v, decay, self.scale, h0,
                                                             None, self.chunk)  # the decays are constants
        dq, dk = self.be.rope_backward(dq, pos0, self.ROPE_BASE), self.be.rope_backward(dk, pos0, self.ROPE_BASE)
        return self.in_proj.backward(np.concatenate(
            [dq.reshape(B, T, -1), dk.reshape(B, T, -1), dv.reshape(B, T, -1), dg], axis=-1))

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len=None, dtype=np.float32):
        """S (B,H,Kh,Vh) zeros at position 0; max_len is not needed (constant-size state)."""
        return {"S": np.zeros((batch, self.n_heads, self.head_k, self.head_v), dtype), "pos": 0}

    def step(self, u, state, side=None):
        """One token per stream at position state["pos"]: u (B,D) -> (B,D); advances S and pos."""
        self.check_input(u, 2)
        B = u.shape[0]
        q, k, v, g = self._split(self.in_proj.step(u)[:, None])
        pos = state["pos"]
        q, k = self.be.rope_forward(q, pos, self.ROPE_BASE), self.be.rope_forward(k, pos, self.ROPE_BASE)
        o, h = self.be.linear_attention_forward(q, k, v, self._decays(B, 1, u.dtype), self.scale, state["S"],
                                                self.chunk)
        state["S"][...] = h
        state["pos"] = pos + 1
        o_n = self.be.rmsnorm_forward(o.reshape(-1, self.head_v), self.g_norm.data, self.EPS)[0]
        return self.out_proj.step(self.be.silu_gate_forward(o_n.reshape(B, self.value_dim), g[:, 0]))
