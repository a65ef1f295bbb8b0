"""RWKV-7 channel mixing (RWKV-LM's RWKV_CMix_x070), a mixer because its token shift reads the previous
token:

    x_k = u + (u_{t-1} − u) ⊙ x_k_mix                 the token_shift op with one mix
    out = value(relu(key(x_k))²)                      key C -> hidden, value hidden -> C, no biases

hidden = round(hidden_ratio · C) (RWKV-LM: 4·C). relu² is element-wise NumPy next to the two GEMMs.

Init (train_temp/src/model.py): mix = 1 − (i/C)^(ratio_1_to_almost0⁴) for the index-th of count layers
(set_depth), key U(±0.5/√C), value zero; zero_init=False draws value U(±1/√hidden) (N(0, out_std²) when
the model sets out_std) instead, for the tests (a zero value projection makes every other gradient zero).
The mix takes no weight decay, as in RWKV-LM.

Decoding: the state is the previous token's input, shift (B,1,C).
"""
import numpy as np

from .linear import Linear
from .mixer import Mixer
from .module import Param
from .registry import register_mixer
from .rwkv7 import depth_ratios


@register_mixer("C", "rwkv7_cmix")
class RWKV7ChannelMix(Mixer):
    mlp_ratio = 0.0  # it is the MLP of RWKV's blocks: "WCWC…" with no other MLP
    test_options = dict(hidden_ratio=1.5, zero_init=False)

    def __init__(self, d, rng, hidden_ratio=4.0, zero_init=True, out_std=None):
        super().__init__(d)
        self.hidden = int(round(hidden_ratio * d))
        if self.hidden < 1:
            raise ValueError(f"rwkv7_cmix: hidden_ratio · d_model must be at least 1, got {hidden_ratio} · {d}")
        bound = d ** -0.5
        self.mix = Param(np.zeros((1, d)), decay=False)
        self.key = Linear(d, self.hidden, bias=False, rng=rng)
        self.key.weight.data[...] = rng.uniform(-0.5 * bound, 0.5 * bound, (self.hidden, d))
        self.value = Linear(self.hidden, d, bias=False, rng=rng, std=out_std)
        if zero_init:
            self.value.weight.data[...] = 0.0
        self.set_depth(0, 1)

    def set_depth(self, index, count):
        """RWKV-LM's depth-dependent init of the token-shift mix of the index-th of count layers."""
        r10 = depth_ratios(index, count)[1]
        self.mix.data[0] = 1.0 - (np.arange(self.d_model) / self.d_model) ** (r10 ** 4)

    def forward(self, u, state=None, side=None):
        """u (B,T,C) -> (B,T,C). With a decode `state` the token shift starts from its `shift` token and
        leaves it at the end of u."""
        self.check_input(u)
        u = np.ascontiguousarray(u)
        prefix = None if state is None else state["shift"].copy()  # the state advances below
        xk = self.be.token_shift_forward(u, self.mix.data, prefix)[:, :, 0]
        z = self.key.forward(xk)
        relu = np.maximum(z, 0.0)
        if state is not None:
            state["shift"][...] = u[:, -1:]
        self.save(u, prefix, relu)
        return self.value.forward(relu * relu)

    def backward(self, dout):
        u, prefix, relu = self.saved()
        dz = self.value.backward(dout) * (2.0 * relu)  # d relu(z)²/dz = 2 relu(z)
        dxk = self.key.backward(dz)
        du, dmix, _ = self.be.token_shift_backward(dxk[:, :, None], u, self.mix.data, prefix)
        self.mix.grad += dmix
        return du

    def init_state(self, batch, max_len=None, dtype=np.float32):
        """Zeros: shift (B,1,C), the previous token's input; max_len is not needed."""
        return {"shift": np.zeros((batch, 1, self.d_model), dtype)}

    def step(self, u, state, side=None):
        """One token per stream: u (B,C) -> (B,C); updates state in place."""
        self.check_input(u, 2)
        u = np.ascontiguousarray(u)
        xk = self.be.token_shift_forward(u[:, None], self.mix.data, state["shift"])[:, 0, 0]
        state["shift"][...] = u[:, None]
        relu = np.maximum(self.key.step(xk), 0.0)
        return self.value.step(relu * relu)
