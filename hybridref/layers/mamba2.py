"""Mamba-2 mixer (SSD), as in Dao & Gu 2024 and state-spaces/mamba's mamba2.py.

    z, xBC, dt = split(in_proj(u))             u (B,T,D) -> z (B,T,Din), xBC (B,T,Din+2GN), dt (B,T,H)
    x, B, C    = split(SiLU(conv1d(xBC)))      depthwise causal, width d_conv, with bias;
                                               x (B,T,H,P), B, C (B,T,G,N)
    Δ          = softplus(dt + dt_bias)        (B,T,H)
    A          = −exp(A_log)                   (H,): one scalar decay rate per head
    h_t        = exp(Δ_t A) h_{t−1} + B_tᵀ (Δ_t x_t)   per head h (N,P); head h reads the B, C of
    y_t        = C_t h_t + D x_t               group h // (H/G)
    out        = out_proj(RMSNorm_G(y ⊙ SiLU(z)))     the RMS taken within each of G groups of Din/G,
                                               epsilon norm_eps (1e-5, as mamba2.py's RMSNormGated)

with Din = expand·D (or the option d_inner: Falcon-H1's mamba_d_ssm), H = Din/headdim heads of width P = headdim, G = ngroups, N = d_state.

The recurrence is the shared op linear_attention (S_t = diag(exp(g_t)) S_{t−1} + k_tᵀ v_t,
o_t = scale q_t S_t) with q = C, k = B, v = Δ·x, g = Δ·A (one log decay per head and step), scale 1
and Hq = G query/key groups: SSD's "state space duality" is exactly that reading. The op runs it in
chunks of `chunk` steps (the dual quadratic form inside a chunk, the recurrence across chunks).

Decoding: the state is the conv input of the last d_conv−1 tokens, conv (B, d_conv−1, Din+2GN), and
the SSM state ssm (B, H, N, P): a step costs the same at every position. `forward(u, state)`
(prefill) advances it over the T tokens of u, `step(u_t, state)` by one token per stream.
"""
import math

import numpy as np

from .linear import Linear
from .mixer import Mixer
from .module import Module, Param
from .registry import register_mixer


class GatedGroupRMSNorm(Module):
    """mamba2.py's RMSNormGated with norm_before_gate=False:

        y = (x ⊙ SiLU(z)) · rstd_g ⊙ w,   rstd_g = 1/√(mean over group g of (x ⊙ SiLU(z))² + eps)

    over `groups` contiguous groups of d/groups channels (so the norm never mixes groups, which
    tensor parallelism places on different devices). x, z (M,d), w (d,) -> y (M,d). Each group is
    one call of the rmsnorm op with its part of w."""

    def __init__(self, d, groups, eps=1e-5):
        super().__init__()
        self.d, self.groups, self.eps = d, groups, eps
        self.weight = Param(np.ones(d), decay=False)

    def _slices(self):
        size = self.d // self.groups
        return [slice(g * size, (g + 1) * size) for g in range(self.groups)]

    def _norm(self, gated):
        """gated (M,d) -> y (M,d), and per group its input (M, d/G) and rstd (M,)."""
        y, parts = np.empty_like(gated), []
        for s in self._slices():
            xg = np.ascontiguousarray(gated[:, s])
            y[:, s], rstd = self.be.rmsnorm_forward(xg, self.weight.data[s], self.eps)
            parts.append((xg, rstd))
        return y, parts

    def forward(self, x, z):
        y, parts = self._norm(self.be.silu_gate_forward(x, z))
        self.save(x, z, parts)
        return y

    def backward(self, dy):
        """dy (M,d) -> dx, dz (M,d); adds dw."""
        x, z, parts = self.saved()
        dgated = np.empty_like(dy)
        for s, (xg, rstd) in zip(self._slices(), parts):
            dgated[:, s], dw = self.be.rmsnorm_backward(np.ascontiguousarray(dy[:, s]), xg, self.weight.data[s], rstd)
            self.weight.grad[s] += dw
        return self.be.silu_gate_backward(dgated, x, z)

    def step(self, x, z):
        """The forward without keeping anything for backward."""
        return self._norm(self.be.silu_gate_forward(x, z))[0]


class SiluGate(Module):
    """The gated norm's place without the norm (Falcon-H1's mamba_rms_norm false, layers/falcon_h1.py):

        y = x ⊙ SiLU(z)         x, z (M,d) -> y (M,d); no parameters"""

    def forward(self, x, z):
        self.save(x, z)
        return self.be.silu_gate_forward(x, z)

    def backward(self, dy):
        """dy (M,d) -> dx, dz (M,d)."""
        x, z = self.saved()
        return self.be.silu_gate_backward(dy, x, z)

    def step(self, x, z):
        return self.be.silu_gate_forward(x, z)


@register_mixer("S", "mamba2")
class Mamba2(Mixer):
    # The mixer holds ~6·D² + 2·G·N·D weights (in_proj D×(2Din+2GN+H), out_proj Din×D): 117.9 K at
    # D = 128, N = 64, G = 1, as Mamba's 116.5 K, so the same 2.5·D MLP makes a block of Mamba's size.
    mlp_ratio = 2.5
    # Din = 24 at the suite's D = 12: 6 heads of 4 in 2 groups (group sharing of B, C); chunk 8 so
    # that sequences of 11-19 tokens cross chunk boundaries, with a partial last chunk.
    test_options = dict(d_state=4, headdim=4, ngroups=2, chunk=8)

    def __init__(self, d, rng, d_state=64, d_conv=4, expand=2, headdim=64, ngroups=1, chunk=64, d_inner=None,
                 dt_min=1e-3, dt_max=0.1, dt_floor=1e-4, A_init_min=1.0, A_init_max=16.0, norm_eps=1e-5,
                 out_std=None):
        """d_inner: Din, when it is not expand·d_model (None: expand·d_model)."""
        super().__init__(d)
        if d_inner is not None and (isinstance(d_inner, bool) or not isinstance(d_inner, int) or d_inner < 1):
            raise ValueError(f"mamba2: d_inner must be a whole number >= 1 or None (expand·d_model), got {d_inner!r}")
        self.d_inner = din = expand * d if d_inner is None else d_inner
        if din % headdim:
            what = "expand·d_model" if d_inner is None else "the option d_inner"
            raise ValueError(f"mamba2: d_inner = {what} = {din} is not divisible by headdim {headdim}")
        self.n_heads, self.headdim = din // headdim, headdim
        if self.n_heads % ngroups:
            raise ValueError(f"mamba2: the {self.n_heads} heads (d_inner {din} / headdim {headdim}) do not "
                             f"split into ngroups {ngroups}")
        if chunk < 1:
            raise ValueError(f"mamba2: chunk must be >= 1, got {chunk}")
        if not 0 < A_init_min <= A_init_max:
            raise ValueError(f"mamba2: need 0 < A_init_min <= A_init_max, got {A_init_min}, {A_init_max}")
        self.d_state, self.ngroups, self.chunk = d_state, ngroups, chunk
        H, gn = self.n_heads, ngroups * d_state
        self.conv_dim = din + 2 * gn  # the conv runs over x, B and C
        self.in_proj = Linear(d, 2 * din + 2 * gn + H, bias=False, rng=rng)  # [z, x, B, C, dt]
        bound = 1.0 / math.sqrt(d_conv)  # torch's Conv1d init for a depthwise kernel (fan_in = d_conv)
        self.conv_weight = Param(rng.uniform(-bound, bound, (self.conv_dim, d_conv)))
        self.conv_bias = Param(rng.uniform(-bound, bound, self.conv_dim), decay=False)
        # dt_bias = softplus⁻¹(dt), dt log-uniform in [dt_min, dt_max] per head: Δ starts in that range
        dt = np.exp(rng.uniform(math.log(dt_min), math.log(dt_max), H)).clip(min=dt_floor)
        self.dt_bias = Param(dt + np.log(-np.expm1(-dt)), decay=False)
        # mamba2.py's A_init_range = (A_init_min, A_init_max), as two numbers so a JSON config keeps them as given
        self.A_log = Param(np.log(rng.uniform(A_init_min, A_init_max, H)), decay=False)
        self.D = Param(np.ones(H), decay=False)
        if not 0 < norm_eps < 1:
            raise ValueError(f"mamba2: norm_eps must be between 0 and 1, got {norm_eps}")
        self.norm = GatedGroupRMSNorm(din, ngroups, norm_eps)  # transformers' Mamba2 uses layer_norm_epsilon here
        self.out_proj = Linear(din, d, bias=False, rng=rng, std=out_std)

    def _split_proj(self, zxbcdt):
        """(..., 2Din+2GN+H) -> z (..., Din), xBC (..., Din+2GN), dt (..., H), contiguous."""
        din = self.d_inner
        return (np.ascontiguousarray(zxbcdt[..., :din]), np.ascontiguousarray(zxbcdt[..., din:din + self.conv_dim]),
                np.ascontiguousarray(zxbcdt[..., din + self.conv_dim:]))

    def _ssd(self, xbc, dt, prefix, h0):
        """The conv, Δ and the SSD recurrence: xbc (B,T,Din+2GN), dt (B,T,H) -> y (B,T,H,P) before the
        gate, h_last (B,H,N,P), and what the backward needs."""
        Bsz, T, _ = xbc.shape
        din, H, P, G, N = self.d_inner, self.n_heads, self.headdim, self.ngroups, self.d_state
        xbc_conv = self.be.causal_conv1d_forward(xbc, self.conv_weight.data, self.conv_bias.data, prefix)
        xbc_act = self.be.silu_forward(xbc_conv)
        x = np.ascontiguousarray(xbc_act[..., :din]).reshape(Bsz, T, H, P)
        Bm = np.ascontiguousarray(xbc_act[..., din:din + G * N]).reshape(Bsz, T, G, N)
        Cm = np.ascontiguousarray(xbc_act[..., din + G * N:]).reshape(Bsz, T, G, N)
        dt_lin = dt + self.dt_bias.data
        delta = self.be.softplus_forward(dt_lin)
        A = -np.exp(self.A_log.data)
        v, g = delta[..., None] * x, (delta * A)[..., None]  # v = Δ x (B,T,H,P), g = Δ A (B,T,H,1)
        o, h_last = self.be.linear_attention_forward(Cm, Bm, v, g, 1.0, h0, self.chunk)
        y = o + self.D.data[:, None] * x
        return y, h_last, (xbc, xbc_conv, x, Bm, Cm, dt_lin, delta, A, v, g)

    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D). With a decode `state` the conv starts from its `conv` inputs and the
        recurrence from its `ssm` state, and both are left at the end of u (a prefill, in one piece or
        in chunks); the backward then gives the gradient of u alone."""
        self.check_input(u)
        Bsz, T, _ = u.shape
        z, xbc, dt = self._split_proj(self.in_proj.forward(u))
        prefix = state["conv"].copy() if state is not None and state["conv"].shape[1] else None
        h0 = None if state is None else state["ssm"].copy()
        y, h_last, kept = self._ssd(xbc, dt, prefix, h0)
        if state is not None:
            self._fill_conv_state(state["conv"], xbc)
            state["ssm"][...] = h_last
        self.save(kept, prefix, h0)
        out = self.norm.forward(y.reshape(Bsz * T, self.d_inner), z.reshape(Bsz * T, self.d_inner))
        return self.out_proj.forward(out.reshape(Bsz, T, self.d_inner))

    def backward(self, dout):
        """dout (B,T,D) -> du (B,T,D). Δ reaches the output through v = Δx and through g = ΔA:
        ∂L/∂Δ = Σ_p dv ⊙ x + dg A."""
        (xbc, xbc_conv, x, Bm, Cm, dt_lin, delta, A, v, g), prefix, h0 = self.saved()
        Bsz, T, H, P = x.shape
        dnormed = self.out_proj.backward(dout).reshape(Bsz * T, self.d_inner)
        dy, dz = self.norm.backward(dnormed)
        dy = dy.reshape(Bsz, T, H, P)
        dCm, dBm, dv, dg, _ = self.be.linear_attention_backward(dy, Cm, Bm, v, g, 1.0, h0, None, self.chunk)
        self.D.grad += (dy * x).sum(axis=(0, 1, 3))
        dx = dv * delta[..., None] + self.D.data[:, None] * dy
        dg = dg[..., 0]
        ddelta = (dv * x).sum(axis=-1) + dg * A
        self.A_log.grad += (dg * delta).sum(axis=(0, 1)) * A  # ∂A/∂A_log = −exp(A_log) = A
        ddt = self.be.softplus_backward(ddelta, dt_lin)
        self.dt_bias.grad += ddt.sum(axis=(0, 1))
        dxbc_act = np.concatenate([dx.reshape(Bsz, T, -1), dBm.reshape(Bsz, T, -1), dCm.reshape(Bsz, T, -1)], axis=-1)
        dxbc_conv = self.be.silu_backward(dxbc_act, xbc_conv)
        dxbc, dw, db, _ = self.be.causal_conv1d_backward(dxbc_conv, xbc, self.conv_weight.data, True, prefix)
        self.conv_weight.grad += dw
        self.conv_bias.grad += db
        return self.in_proj.backward(np.concatenate([dz.reshape(Bsz, T, -1), dxbc, ddt], axis=-1))

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len=None, dtype=np.float32):
        """Zeros: conv (B, d_conv−1, Din+2GN) and ssm (B, H, N, P); max_len is not needed (constant-size state)."""
        W = self.conv_weight.shape[1]
        return {"conv": np.zeros((batch, W - 1, self.conv_dim), dtype),
                "ssm": np.zeros((batch, self.n_heads, self.d_state, self.headdim), dtype)}

    @staticmethod
    def _fill_conv_state(conv, xbc):
        """conv (B,W−1,C) <- the last W−1 conv inputs of xbc (B,T,C), after what conv held (zeros for a
        fresh state) when T < W−1."""
        keep = conv.shape[1]
        if keep:
            conv[...] = np.concatenate([conv, xbc], axis=1)[:, -keep:]

    def step(self, u, state, side=None):
        """One token per stream: u (B,D) -> (B,D); updates state in place."""
        self.check_input(u, 2)
        z, xbc, dt = self._split_proj(self.in_proj.step(u)[:, None])
        y, h_last, _ = self._ssd(xbc, dt, state["conv"] if state["conv"].shape[1] else None, state["ssm"])
        self._fill_conv_state(state["conv"], xbc)
        state["ssm"][...] = h_last
        return self.out_proj.step(self.norm.step(y.reshape(u.shape[0], self.d_inner), z[:, 0]))
