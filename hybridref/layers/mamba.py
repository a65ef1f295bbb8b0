"""Mamba (S6) mixer, as in Gu & Dao 2023 and state-spaces/mamba's mamba_simple.py.

    x, z   = split(in_proj(u))                         u (B,T,D) -> x, z (B,T,Din), Din = expand·D
    x      = SiLU(conv1d(x))                           depthwise causal, width d_conv, with bias
    dt,B,C = split(x_proj(x))                          (B,T,R), (B,T,N), (B,T,N), R = ceil(D/16)
    Δ      = softplus(dt_proj(dt))                     dt_proj has the bias dt_bias
    A      = −exp(A_log)                               (Din,N), S4D-real init A_log = log(1..N)
    y      = selective_scan(x, Δ, A, B, C, D)          h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t x_t, y_t = C_t·h_t + D x_t
    out    = out_proj(y ⊙ SiLU(z))

Decoding: the state is the conv input of the last d_conv−1 tokens, conv (B, d_conv−1, Din), and the
scan state ssm (B, Din, N): a step costs the same at every position. `forward(u, state)` (prefill)
advances it over the T tokens of u, `step(u_t, state)` by one token per stream.
"""
import math

import numpy as np

from .linear import Linear
from .mixer import Mixer
from .module import Param
from .registry import register_mixer


@register_mixer("M", "mamba")
class Mamba(Mixer):
    mlp_ratio = 2.5  # the mixer holds ~6·D² weights: with a 2.5·D MLP a block is as large as attention's
    test_options = dict(d_state=4)

    def __init__(self, d, rng, d_state=16, d_conv=4, expand=2, dt_rank=None,
                 dt_min=1e-3, dt_max=0.1, dt_floor=1e-4, out_std=None):
        super().__init__(d)
        self.d_inner = din = expand * d
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(d / 16)
        self.in_proj = Linear(d, 2 * din, bias=False, rng=rng)
        bound = 1.0 / math.sqrt(d_conv)  # torch's Conv1d init for a depthwise kernel (fan_in = d_conv)
        self.conv_weight = Param(rng.uniform(-bound, bound, (din, d_conv)))
        self.conv_bias = Param(rng.uniform(-bound, bound, din), decay=False)
        self.x_proj = Linear(din, self.dt_rank + 2 * d_state, bias=False, rng=rng)
        self.dt_proj = Linear(self.dt_rank, din, bias=True, rng=rng)
        # dt_proj: weight U(±R^-1/2); bias = softplus⁻¹(dt), dt log-uniform in [dt_min, dt_max]
        self.dt_proj.weight.data[...] = rng.uniform(-self.dt_rank ** -0.5, self.dt_rank ** -0.5, (din, self.dt_rank))
        dt = np.exp(rng.uniform(math.log(dt_min), math.log(dt_max), din)).clip(min=dt_floor)
        self.dt_proj.bias.data[...] = dt + np.log(-np.expm1(-dt))
        self.A_log = Param(np.log(np.tile(np.arange(1, d_state + 1, dtype=np.float64), (din, 1))), decay=False)
        self.D = Param(np.ones(din), decay=False)
        self.out_proj = Linear(din, d, bias=False, rng=rng, std=out_std)

    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D). With a decode `state` the conv starts from its `conv` inputs and the
        scan from its `ssm` state, and both are left at the end of u (a prefill, in one piece or in
        chunks); the backward then gives the gradient of u alone."""
        self.check_input(u)
        din, N, R = self.d_inner, self.d_state, self.dt_rank
        xz = self.in_proj.forward(u)
        x_in, z = np.ascontiguousarray(xz[..., :din]), np.ascontiguousarray(xz[..., din:])
        prefix = state["conv"].copy() if state is not None and state["conv"].shape[1] else None
        h0 = None if state is None else state["ssm"].copy()
        x_conv = self.be.causal_conv1d_forward(x_in, self.conv_weight.data, self.conv_bias.data, prefix)
        x = self.be.silu_forward(x_conv)
        dbc = self.x_proj.forward(x)
        dt = np.ascontiguousarray(dbc[..., :R])
        Bm, Cm = np.ascontiguousarray(dbc[..., R:R + N]), np.ascontiguousarray(dbc[..., R + N:])
        dt_lin = self.dt_proj.forward(dt)
        delta = self.be.softplus_forward(dt_lin)
        A = -np.exp(self.A_log.data)
        y, h_last = self.be.selective_scan_forward(x, delta, A, Bm, Cm, self.D.data, h0)
        if state is not None:
            self._fill_conv_state(state["conv"], x_in)
            state["ssm"][...] = h_last
        self.save(x_in, z, x_conv, x, dt_lin, delta, A, Bm, Cm, y, prefix, h0)
        return self.out_proj.forward(self.be.silu_gate_forward(y, z))

    def backward(self, dout):
        x_in, z, x_conv, x, dt_lin, delta, A, Bm, Cm, y, prefix, h0 = self.saved()
        dgated = self.out_proj.backward(dout)
        dy, dz = self.be.silu_gate_backward(dgated, y, z)
        dx, ddelta, dA, dBm, dCm, dD, _ = self.be.selective_scan_backward(dy, x, delta, A, Bm, Cm, self.D.data, h0)
        self.A_log.grad += dA * A  # ∂A/∂A_log = −exp(A_log) = A
        self.D.grad += dD
        ddt = self.dt_proj.backward(self.be.softplus_backward(ddelta, dt_lin))
        dx = dx + self.x_proj.backward(np.concatenate([ddt, dBm, dCm], axis=-1))
        dx_conv = self.be.silu_backward(dx, x_conv)
        dx_in, dw, db, _ = self.be.causal_conv1d_backward(dx_conv, x_in, self.conv_weight.data, True, prefix)
        self.conv_weight.grad += dw
        self.conv_bias.grad += db
        return self.in_proj.backward(np.concatenate([dx_in, dz], axis=-1))

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len=None, dtype=np.float32):
        """Zeros: conv (B, d_conv−1, Din) and ssm (B, Din, N); max_len is not needed (constant-size state)."""
        W = self.conv_weight.shape[1]
        return {"conv": np.zeros((batch, W - 1, self.d_inner), dtype),
                "ssm": np.zeros((batch, self.d_inner, self.d_state), dtype)}

    @staticmethod
    def _fill_conv_state(conv, x_in):
        """conv (B,W−1,Din) <- the last W−1 conv inputs of x_in (B,T,Din), after what conv held (zeros
        for a fresh state) when T < W−1."""
        keep = conv.shape[1]
        if keep:
            conv[...] = np.concatenate([conv, x_in], axis=1)[:, -keep:]

    def step(self, u, state, side=None):
        """One token per stream: u (B,D) -> (B,D); updates state in place."""
        self.check_input(u, 2)
        din, N, R = self.d_inner, self.d_state, self.dt_rank
        xz = self.in_proj.step(u)
        x_in, z = np.ascontiguousarray(xz[:, :din]), np.ascontiguousarray(xz[:, din:])
        x_conv = self.be.causal_conv1d_forward(x_in[:, None], self.conv_weight.data, self.conv_bias.data,
                                               prefix=state["conv"] if state["conv"].shape[1] else None)
        self._fill_conv_state(state["conv"], x_in[:, None])
        x = self.be.silu_forward(x_conv[:, 0])
        dbc = self.x_proj.step(x)
        dt, Bm, Cm = (np.ascontiguousarray(dbc[:, i:j]) for i, j in ((0, R), (R, R + N), (R + N, R + 2 * N)))
        delta = self.be.softplus_forward(self.dt_proj.step(dt))
        y, h = self.be.selective_scan_forward(x[:, None], delta[:, None], -np.exp(self.A_log.data),
                                              Bm[:, None], Cm[:, None], self.D.data, h0=state["ssm"])
        state["ssm"][...] = h
        return self.out_proj.step(self.be.silu_gate_forward(y[:, 0], z))
