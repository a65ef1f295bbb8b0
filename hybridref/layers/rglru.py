"""Griffin's recurrent block (De et al. 2024, fig. 2; recurrentgemma's RecurrentBlock and RGLRU):
two branches of width C = lru_width, a GeLU gate and a temporal conv followed by the RG-LRU.

    y   = GeLU(W_y u + b_y)                                 u (B,T,D) -> (B,T,C)
    x   = conv1d_4(W_x u + b_x)                             depthwise causal, width 4, with bias
    r_t = σ(W_a x_t + b_a),  i_t = σ(W_i x_t + b_i)         block-diagonal W_a, W_i: n_heads blocks
    log a_t = −8 r_t softplus(Λ)                            a_t = σ(−Λ)^(8 r_t)
    h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ x_t)          the multiplier 1 at position 0
    out = W_out (y ⊙ h) + b_out                             -> (B,T,D)

The gates are the rglru_gate op, the recurrence the linear_recurrence op (h0/h_last: a prefill in
chunks, or the MPI backend's state passing). Position 0 is the sequence's true first position: the
gate op takes the position of the first token (time_offset: 0, or the decode state's `pos` when
continuing a state; a backend holding a slice of the sequence adds its slice's start), so a later
chunk or slice keeps the normalisation at its first token.

Init (recurrentgemma): W_x, W_y ~ N(0, 1/D), biases 0; conv w ~ N(0, 0.01/4), bias 0; gate blocks
~ N(0, 1/block width), biases 0; Λ by rnn_param_init (base decay σ(−Λ) ∈ [0.9, 0.999]); W_out
N(0, out_std²) (the model's scaled init; N(0, 1/C) as recurrentgemma when out_std is None).

Decoding: the state is the last 3 conv inputs conv (B, 3, C), the recurrence state h (B, C) and the
position `pos`; constant size, so a step costs the same at every position.
"""
import math

import numpy as np

from .linear import Linear
from .mixer import Mixer
from .module import Module, Param
from .registry import register_mixer


def rnn_param_init(rng, n, min_rad=0.9, max_rad=0.999, eps=1e-8):
    """Λ (n,) as recurrentgemma's rnn_param_init: the base decay a0 = exp(−softplus(Λ)) = σ(−Λ) with a0²
    uniform on [min_rad², max_rad²] (uniform over the area of a ring of radii min_rad..max_rad), so
    Λ = softplus⁻¹(−log a0) = log(1/a0 − 1). The decay at gate r is a0^(8r)."""
    log_a0 = 0.5 * np.log(rng.uniform(min_rad ** 2 + eps, max_rad ** 2 + eps, n))
    return np.log(np.expm1(-log_a0))


class BlockDiagonalLinear(Module):
    """y = x W + b per block: x (..., H·P) split into H heads of P, y_h = x_h W_hᵀ + b_h, W (H,Q,P)
    ~ N(0, 1/P), b (H,Q) 0 (recurrentgemma's BlockDiagonalLinear, Q = P); y (..., H·Q). One linear op
    per head. out_width: H·Q (None: the input's width, square blocks); bias False: no b (the per-head
    x_proj of Zamba's multi-head Mamba, hybridref/layers/mamba.py)."""

    def __init__(self, width, n_blocks, rng, out_width=None, bias=True):
        super().__init__()
        self.n_blocks, self.block = n_blocks, width // n_blocks
        self.out_block = (out_width or width) // n_blocks
        self.weight = Param(rng.normal(0.0, math.sqrt(1.0 / self.block), (n_blocks, self.out_block, self.block)))
        self.bias = Param(np.zeros((n_blocks, self.out_block)), decay=False) if bias else None

    def _heads(self, x, block):
        x2 = x.reshape(-1, self.n_blocks * block)
        return [np.ascontiguousarray(x2[:, h * block:(h + 1) * block]) for h in range(self.n_blocks)]

    def _apply(self, x):
        xs = self._heads(x, self.block)
        ys = [self.be.linear_forward(xh, self.weight.data[h], None if self.bias is None else self.bias.data[h])
              for h, xh in enumerate(xs)]
        return xs, np.concatenate(ys, axis=1).reshape(*x.shape[:-1], self.n_blocks * self.out_block)

    def forward(self, x):
        xs, y = self._apply(x)
        self.save(xs, x.shape)
        return y

    def backward(self, dy):
        xs, shape = self.saved()
        dys = self._heads(dy, self.out_block)
        dx = []
        for h, (xh, dyh) in enumerate(zip(xs, dys)):
            dxh, dw, db = self.be.linear_backward(dyh, xh, self.weight.data[h], self.bias is not None)
            self.weight.grad[h] += dw
            if self.bias is not None:
                self.bias.grad[h] += db
            dx.append(dxh)
        return np.concatenate(dx, axis=1).reshape(shape)

    def step(self, x):
        return self._apply(x)[1]


@register_mixer("L", "rglru")
class RGLRU(Mixer):
    # Griffin's MLP expansion factor is 3 (of its gated MLP, three matrices: 9·D² per block)
    mlp_ratio = 3.0
    test_options = dict(n_heads=2)

    def __init__(self, d, rng, lru_width=None, n_heads=4, conv_width=4, out_std=None):
        super().__init__(d)
        C = self.lru_width = lru_width or d
        if n_heads < 1 or C % n_heads:
            raise ValueError(f"rglru: lru_width {C} is not divisible by n_heads {n_heads} (the gates' blocks)")
        if conv_width < 1:
            raise ValueError(f"rglru: conv_width must be >= 1, got {conv_width}")
        self.n_heads = n_heads
        self.linear_y = Linear(d, C, rng=rng, std=math.sqrt(1.0 / d))
        self.linear_x = Linear(d, C, rng=rng, std=math.sqrt(1.0 / d))
        self.conv_weight = Param(rng.normal(0.0, math.sqrt(0.01 / conv_width), (C, conv_width)))
        self.conv_bias = Param(np.zeros(C), decay=False)
        self.input_gate = BlockDiagonalLinear(C, n_heads, rng)
        self.a_gate = BlockDiagonalLinear(C, n_heads, rng)
        self.a_param = Param(rnn_param_init(rng, C), decay=False)
        self.linear_out = Linear(C, d, rng=rng, std=out_std or math.sqrt(1.0 / C))

    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D). With a decode `state` at position pos, u is positions pos..pos+T−1: the
        conv starts from the state's inputs, the recurrence from its h, and both are left at the end of
        u (a prefill, in one piece or in chunks); the backward then gives the gradient of u alone."""
        self.check_input(u)
        be = self.be
        y_lin = self.linear_y.forward(u)
        x_in = self.linear_x.forward(u)
        prefix = state["conv"].copy() if state is not None and state["conv"].shape[1] else None
        h0 = None if state is None else state["h"].copy()
        pos = 0 if state is None else state["pos"]
        x = be.causal_conv1d_forward(x_in, self.conv_weight.data, self.conv_bias.data, prefix)
        gx, ga = self.input_gate.forward(x), self.a_gate.forward(x)
        a, xn = be.rglru_gate_forward(x, gx, ga, self.a_param.data, pos)
        h, h_last = be.linear_recurrence_forward(a, xn, h0)
        if state is not None:
            self._fill_conv_state(state["conv"], x_in)
            state["h"][...] = h_last
            state["pos"] = pos + u.shape[1]
        y = be.gelu_forward(y_lin)
        self.save(y_lin, y, x_in, x, gx, ga, a, xn, h, prefix, h0, pos)
        return self.linear_out.forward(y * h)

    def backward(self, dout):
        y_lin, y, x_in, x, gx, ga, a, xn, h, prefix, h0, pos = self.saved()
        be = self.be
        dyh = self.linear_out.backward(dout)
        du = self.linear_y.backward(be.gelu_backward(dyh * h, y_lin))
        da, dxn, _ = be.linear_recurrence_backward(np.ascontiguousarray(dyh * y), a, xn, h0)
        dx, dgx, dga, dlam = be.rglru_gate_backward(da, dxn, x, gx, ga, self.a_param.data, pos)
        self.a_param.grad += dlam
        dx = dx + self.input_gate.backward(dgx) + self.a_gate.backward(dga)
        dx_in, dw, db, _ = be.causal_conv1d_backward(np.ascontiguousarray(dx), x_in, self.conv_weight.data, True,
                                                     prefix)
        self.conv_weight.grad += dw
        self.conv_bias.grad += db
        return du + self.linear_x.backward(dx_in)

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len=None, dtype=np.float32):
        """Zeros at position 0: conv (B, conv_width−1, C), h (B, C); max_len is not needed (constant size)."""
        W = self.conv_weight.shape[1]
        return {"conv": np.zeros((batch, W - 1, self.lru_width), dtype), "h": np.zeros((batch, self.lru_width), dtype),
                "pos": 0}

    @staticmethod
    def _fill_conv_state(conv, x_in):
        """conv (B,W−1,C) <- the last W−1 conv inputs of x_in (B,T,C), after what conv held."""
        keep = conv.shape[1]
        if keep:
            conv[...] = np.concatenate([conv, x_in], axis=1)[:, -keep:]

    def step(self, u, state, side=None):
        """One token per stream: u (B,D) -> (B,D); updates state in place."""
        self.check_input(u, 2)
        be = self.be
        x_in = self.linear_x.step(u)[:, None]
        x = be.causal_conv1d_forward(x_in, self.conv_weight.data, self.conv_bias.data,
                                     prefix=state["conv"] if state["conv"].shape[1] else None)
        self._fill_conv_state(state["conv"], x_in)
        a, xn = be.rglru_gate_forward(x, self.input_gate.step(x), self.a_gate.step(x), self.a_param.data,
                                      state["pos"])
        h, state["h"][...] = be.linear_recurrence_forward(a, xn, state["h"])
        state["pos"] += 1
        return self.linear_out.step(be.gelu_forward(self.linear_y.step(u)) * h[:, 0])
