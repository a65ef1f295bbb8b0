"""Gated linear attention (Yang et al. 2024), as fla's layers/gla.py builds it.

    q, k, v, g, z = split(u W_inᵀ)               u (B,T,D) -> q, k (B,T,H,Kh), v (B,T,H,Vh), g (B,T,V),
                                                  z (B,T,r): the low-rank gate's first factor
    gk           = logsigmoid(z W_gkᵀ + b_gk) / n  (B,T,H,Kh): one log decay per key dim, in (−∞, 0)
    S_t          = diag(exp(gk_t)) S_{t−1} + k_tᵀ v_t   per head, S (Kh,Vh)
    o_t          = q_t S_t / √Kh                  (the linear_attention op, Kg = Kh)
    y            = out_proj(RMSNorm_h(o) ⊙ SiLU(g))  RMSNorm over each head's Vh values, one weight shared by
                                                  the heads (fla's FusedRMSNormGated)

K = expand_k·D, V = expand_v·D (fla: 0.5·D and D), Kh = K/H, Vh = V/H, r = gate_low_rank_dim,
n = gate_logit_normalizer (16: decays near 1 at init, e^(logσ(0)/16) ≈ 0.96). logsigmoid(x) is
computed as −softplus(−x). No positional encoding: the data-dependent decay orders the tokens.

Init: the q, k, v, g projections, both factors of the gate and their bias as the GLA layer of fla
initialised them (xavier-uniform with gain 2^−2.5 per projection, bias 0; fla now draws every weight
from N(0, 0.02²)); out_proj N(0, out_std²), the model's residual-branch scale.

Decoding: the state is S (B,H,Kh,Vh); a step costs the same at every position. `forward(u, state)`
(prefill) starts from S and leaves it at the end of u.
"""
import numpy as np

from .linear import Linear, xavier_uniform
from .mixer import Mixer
from .module import Param
from .registry import register_mixer


@register_mixer("G", "gla")
class GLA(Mixer):
    mlp_ratio = 4.0  # the mixer holds ~4.2·D² weights (q, k of D/2, v, g, out of D), as attention's 4·D²
    test_options = dict(n_heads=2, gate_low_rank_dim=4, chunk=4)  # chunk 4 < T: the op's chunk boundaries
    EPS = 1e-5  # of the per-head RMSNorm (fla's norm_eps)

    def __init__(self, d, rng, n_heads=4, expand_k=0.5, expand_v=1.0, gate_low_rank_dim=16,
                 gate_logit_normalizer=16, chunk=64, out_std=None):
        super().__init__(d)
        self.n_heads, self.chunk = n_heads, chunk
        self.key_dim, self.value_dim = int(d * expand_k), int(d * expand_v)
        if n_heads < 1 or self.key_dim < 1 or self.key_dim % n_heads or self.value_dim % n_heads:
            raise ValueError(f"gla: key dim {self.key_dim} (expand_k·d_model) and value dim {self.value_dim} "
                             f"(expand_v·d_model) must be positive multiples of n_heads {n_heads}")
        if gate_low_rank_dim < 1 or not gate_logit_normalizer > 0:
            raise ValueError(f"gla: gate_low_rank_dim must be >= 1 and gate_logit_normalizer > 0, got "
                             f"{gate_low_rank_dim} and {gate_logit_normalizer}")
        self.head_k, self.head_v = self.key_dim // n_heads, self.value_dim // n_heads
        self.rank, self.normalizer = gate_low_rank_dim, float(gate_logit_normalizer)
        K, V, r = self.key_dim, self.value_dim, self.rank
        self.in_proj = Linear(d, 2 * K + 2 * V + r, bias=False, rng=rng)  # [q | k | v | g | z]: one GEMM of u
        self.in_proj.weight.data[...] = np.concatenate(
            [xavier_uniform(rng, n, d, 2 ** -2.5) for n in (K, K, V, V, r)]).astype(np.float32)
        self.gk_proj = Linear(r, K, bias=True, rng=rng)
        self.gk_proj.weight.data[...] = xavier_uniform(rng, K, r, 2 ** -2.5)
        self.g_norm = Param(np.ones(self.head_v), decay=False)
        self.out_proj = Linear(V, d, bias=False, rng=rng, std=out_std)
        self.scale = self.head_k ** -0.5

    def _split(self, proj):
        """(B,T,2K+2V+r) -> q, k (B,T,H,Kh), v (B,T,H,Vh), g (B,T,V), z (B,T,r)."""
        B, T, _ = proj.shape
        H, K, V = self.n_heads, self.key_dim, self.value_dim
        edges = np.cumsum([0, K, K, V, V, self.rank])
        q, k, v, g, z = (np.ascontiguousarray(proj[..., i:j]) for i, j in zip(edges[:-1], edges[1:]))
        return q.reshape(B, T, H, -1), k.reshape(B, T, H, -1), v.reshape(B, T, H, -1), g, z

    def _log_decay(self, gk_lin):
        """gk = logsigmoid(x)/n = −softplus(−x)/n: (B,T,K) -> (B,T,H,Kh)."""
        B, T, _ = gk_lin.shape
        return (self.be.softplus_forward(-gk_lin) * (-1.0 / self.normalizer)).reshape(B, T, self.n_heads, -1)

    def _gated_out(self, o, g, B, T):
        """RMSNorm over each head's values, ⊙ SiLU(g): o (B,T,H,Vh), g (B,T,V) -> (B,T,V), o_n, rstd."""
        o_n, rstd = self.be.rmsnorm_forward(o.reshape(-1, self.head_v), self.g_norm.data, self.EPS)
        o_n = o_n.reshape(B, T, self.value_dim)
        return self.be.silu_gate_forward(o_n, g), o_n, rstd

    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D). With a decode `state` the recurrence starts from S and leaves it at
        the end of u (a prefill, in one piece or in chunks); the backward then gives the gradient of u
        alone."""
        self.check_input(u)
        B, T, _ = u.shape
        q, k, v, g, z = self._split(self.in_proj.forward(u))
        gk_lin = self.gk_proj.forward(z)
        gk = self._log_decay(gk_lin)
        h0 = None if state is None else state["S"].copy()
        o, h_last = self.be.linear_attention_forward(q, k, v, gk, self.scale, h0, self.chunk)
        if state is not None:
            state["S"][...] = h_last
        gated, o_n, rstd = self._gated_out(o, g, B, T)
        self.save(q, k, v, gk, gk_lin, h0, o, rstd, o_n, g)
        return self.out_proj.forward(gated)

    def backward(self, dy):
        q, k, v, gk, gk_lin, h0, o, rstd, o_n, g = self.saved()
        B, T = dy.shape[:2]
        do_n, dg = self.be.silu_gate_backward(self.out_proj.backward(dy), o_n, g)
        do, dw = self.be.rmsnorm_backward(do_n.reshape(-1, self.head_v), o.reshape(-1, self.head_v),
                                          self.g_norm.data, rstd)
        self.g_norm.grad += dw
        dq, dk, dv, dgk, _ = self.be.linear_attention_backward(do.reshape(v.shape), q, k, v, gk, self.scale, h0,
                                                               None, self.chunk)
        # d/dx [−softplus(−x)/n] = σ(−x)/n = softplus'(−x)/n
        dgk_lin = self.be.softplus_backward(dgk.reshape(B, T, -1) / self.normalizer, -gk_lin)
        dz = self.gk_proj.backward(dgk_lin)
        return self.in_proj.backward(np.concatenate(
            [dq.reshape(B, T, -1), dk.reshape(B, T, -1), dv.reshape(B, T, -1), dg, dz], axis=-1))

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len=None, dtype=np.float32):
        """S (B,H,Kh,Vh) zeros; max_len is not needed (constant-size state)."""
        return {"S": np.zeros((batch, self.n_heads, self.head_k, self.head_v), dtype)}

    def step(self, u, state, side=None):
        """One token per stream: u (B,D) -> (B,D); advances S."""
        self.check_input(u, 2)
        B = u.shape[0]
        q, k, v, g, z = self._split(self.in_proj.step(u)[:, None])
        gk = self._log_decay(self.gk_proj.step(z[:, 0])[:, None])
        o, h = self.be.linear_attention_forward(q, k, v, gk, self.scale, state["S"], self.chunk)
        state["S"][...] = h
        return self.out_proj.step(self._gated_out(o, g, B, 1)[0][:, 0])
