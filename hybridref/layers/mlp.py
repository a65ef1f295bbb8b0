"""Position-wise MLPs of a block, one class per kind, chosen by the model option `mlp_kind`:

    "gelu"        MLP:       y = W₂ GELU(W₁ x + b₁) + b₂                      (GPT-2)
    "gated_gelu"  GatedMLP:  y = W_down (GELU(W_gate x + b_gate) ⊙ (W_up x + b_up)) + b_down
                                                                             (GeGLU; Griffin's MLP block)
    "swiglu"      SwiGLU:    y = W_down (SiLU(W_gate x + b_gate) ⊙ (W_up x + b_up)) + b_down
                                                                             (Llama's MLP, without biases)
    "gated_gelu_erf"         GatedMLP with the exact GELU x Φ(x) on the gate (Zamba's ZambaMLP, whose
                             hidden_act "gelu" is torch's erf GELU)
GELU is the tanh approximation, but in "gated_gelu_erf". The biases are optional (the model option
`mlp_bias`; bias=False: every b above is absent, as in Llama). A new kind is a class here with the
same constructor (d, hidden, rng, out_std, bias), forward/backward/step and a `kind` name, one entry
of MLP_KINDS, and its branch of the C decoder's MLP (csrc/decode.c, laid out by
backends/c/decode.py). A mixture of experts of any kind whose layers are fc and proj is
hybridref/layers/moe.py, chosen per block by the model option `moe`, not by mlp_kind (its experts
are of the model's mlp_kind).
"""
import numpy as np

from .linear import Linear
from .module import Module


class MLP(Module):
    kind = "gelu"

    def __init__(self, d, hidden, rng, out_std=None, bias=True):
        super().__init__()
        self.hidden = hidden
        self.fc = Linear(d, hidden, bias=bias, rng=rng)
        self.proj = Linear(hidden, d, bias=bias, rng=rng, std=out_std)

    def forward(self, x):
        h = self.fc.forward(x)
        self.save(h)
        return self.proj.forward(self.be.gelu_forward(h))

    def backward(self, dy):
        (h,) = self.saved()
        return self.fc.backward(self.be.gelu_backward(self.proj.backward(dy), h))

    def step(self, x):
        """Stateless: the forward on one token per stream, x (B, d) -> (B, d)."""
        return self.proj.step(self.be.gelu_forward(self.fc.step(x)))


class GatedMLP(Module):
    """GeGLU. fc is one Linear d -> 2·hidden whose rows are [W_gate; W_up] (recurrentgemma's ffw_up
    holds the two as one (2, d, hidden) weight), so both come from one GEMM; proj is W_down. `act`
    names the backend's activation ops applied to the gate (gelu_forward/gelu_backward)."""
    kind = "gated_gelu"
    act = "gelu"

    def __init__(self, d, hidden, rng, out_std=None, bias=True):
        super().__init__()
        self.hidden = hidden
        self.fc = Linear(d, 2 * hidden, bias=bias, rng=rng)
        self.proj = Linear(hidden, d, bias=bias, rng=rng, std=out_std)

    def _act(self, gate):
        return getattr(self.be, f"{self.act}_forward")(gate)

    def _split(self, gu):
        return np.ascontiguousarray(gu[..., :self.hidden]), gu[..., self.hidden:]

    def forward(self, x):
        gate, up = self._split(self.fc.forward(x))
        act = self._act(gate)
        self.save(gate, up, act)
        return self.proj.forward(act * up)

    def backward(self, dy):
        gate, up, act = self.saved()
        dh = self.proj.backward(dy)
        dgate = getattr(self.be, f"{self.act}_backward")(np.ascontiguousarray(dh * up), gate)
        return self.fc.backward(np.concatenate([dgate, dh * act], axis=-1))

    def step(self, x):
        gate, up = self._split(self.fc.step(x))
        return self.proj.step(self._act(gate) * up)


class SwiGLU(GatedMLP):
    """SwiGLU (Shazeer 2020; Llama's MLP: gate_proj, up_proj, down_proj): GatedMLP with SiLU on the
    gate. Llama's gate_proj and up_proj are fc's two halves of rows, its down_proj is proj."""
    kind = "swiglu"
    act = "silu"


class GatedGeluErf(GatedMLP):
    """GeGLU with the exact GELU x Φ(x) (Φ the standard normal CDF) on the gate, transformers' ACT2FN["gelu"]:
    what converted Zamba models need to match exactly (the tanh form differs by up to ~5e-4 per unit)."""
    kind = "gated_gelu_erf"
    act = "gelu_erf"


MLP_KINDS = {cls.kind: cls for cls in (MLP, GatedMLP, SwiGLU, GatedGeluErf)}


def check_mlp_kind(kind):
    if kind not in MLP_KINDS:
        raise ValueError(f"unknown mlp_kind {kind!r}; known: {', '.join(MLP_KINDS)}")
    return kind


def make_mlp(kind, d, hidden, rng, out_std=None, bias=True):
    """The MLP of kind `kind` (a key of MLP_KINDS), width `hidden`, with biases or (bias=False) without."""
    return MLP_KINDS[check_mlp_kind(kind)](d, hidden, rng, out_std=out_std, bias=bias)
