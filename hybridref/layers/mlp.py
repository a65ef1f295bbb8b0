"""Position-wise MLPs of a block, one class per kind, chosen by the model option `mlp_kind`:

    "gelu"        MLP:       y = W₂ GELU(W₁ x + b₁) + b₂                      (GPT-2)
    "gated_gelu"  GatedMLP:  y = W_down (GELU(W_gate x + b_gate) ⊙ (W_up x + b_up)) + b_down
                                                                             (GeGLU; Griffin's MLP block)
GELU is the tanh approximation. A new kind (a mixture of experts, say) is a class here with the same
constructor (d, hidden, rng, out_std), forward/backward/step and a `kind` name, one entry of
MLP_KINDS, and its branch of the C decoder's MLP (csrc/decode.c, laid out by backends/c/decode.py).
"""
import numpy as np

from .linear import Linear
from .module import Module


class MLP(Module):
    kind = "gelu"

    def __init__(self, d, hidden, rng, out_std=None):
        super().__init__()
        self.hidden = hidden
        self.fc = Linear(d, hidden, rng=rng)
        self.proj = Linear(hidden, d, rng=rng, std=out_std)

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
    holds the two as one (2, d, hidden) weight), so both come from one GEMM; proj is W_down."""
    kind = "gated_gelu"

    def __init__(self, d, hidden, rng, out_std=None):
        super().__init__()
        self.hidden = hidden
        self.fc = Linear(d, 2 * hidden, rng=rng)
        self.proj = Linear(hidden, d, rng=rng, std=out_std)

    def _split(self, gu):
        return np.ascontiguousarray(gu[..., :self.hidden]), gu[..., self.hidden:]

    def forward(self, x):
        gate, up = self._split(self.fc.forward(x))
        act = self.be.gelu_forward(gate)
        self.save(gate, up, act)
        return self.proj.forward(act * up)

    def backward(self, dy):
        gate, up, act = self.saved()
        dh = self.proj.backward(dy)
        dgate = self.be.gelu_backward(np.ascontiguousarray(dh * up), gate)
        return self.fc.backward(np.concatenate([dgate, dh * act], axis=-1))

    def step(self, x):
        gate, up = self._split(self.fc.step(x))
        return self.proj.step(self.be.gelu_forward(gate) * up)


MLP_KINDS = {cls.kind: cls for cls in (MLP, GatedMLP)}


def check_mlp_kind(kind):
    if kind not in MLP_KINDS:
        raise ValueError(f"unknown mlp_kind {kind!r}; known: {', '.join(MLP_KINDS)}")
    return kind


def make_mlp(kind, d, hidden, rng, out_std=None):
    """The MLP of kind `kind` (a key of MLP_KINDS), width `hidden`."""
    return MLP_KINDS[check_mlp_kind(kind)](d, hidden, rng, out_std=out_std)
