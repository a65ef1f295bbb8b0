"""Pre-norm residual block and the mixer registry.

    h   = x + drop(mixer(norm₁(x)))
    out = h + drop(MLP(norm₂(h)))  (no MLP when mlp_hidden == 0; drop: dropout while training)

A layer pattern is a string of mixer letters, one per block: "MMMA" is three
Mamba blocks then one attention block. Later mixers register a letter in MIXERS.

Decoding: a block's state is its mixer's state (norms and the MLP are stateless); `forward(x, state)`
is the prefill, `step(x_t, state)` advances one token.
"""
import math

import numpy as np

from .attention import CausalSelfAttention
from .dropout import Dropout
from .mamba import Mamba
from .mlp import MLP
from .module import Module
from .norm import make_norm

MIXERS = {
    "A": ("attention", lambda d, cfg, rng, out_std: CausalSelfAttention(
        d, cfg["n_heads"], rng, n_kv_heads=cfg.get("n_kv_heads"), window=cfg.get("window"), out_std=out_std,
        rope_base=cfg.get("rope_base"))),
    "M": ("mamba", lambda d, cfg, rng, out_std: Mamba(
        d, rng, d_state=cfg.get("d_state", 16), d_conv=cfg.get("d_conv", 4), expand=cfg.get("expand", 2),
        out_std=out_std)),
}


class Block(Module):
    def __init__(self, d, mixer, mlp_hidden, norm, rng, out_std=None, dropout=0.0):
        super().__init__()
        self.norm1 = make_norm(norm, d)
        self.mixer = mixer
        self.drop1 = Dropout(dropout)
        self.norm2 = make_norm(norm, d) if mlp_hidden else None
        self.mlp = MLP(d, mlp_hidden, rng, out_std=out_std) if mlp_hidden else None
        self.drop2 = Dropout(dropout) if mlp_hidden else None

    def forward(self, x, state=None):
        h = x + self.drop1.forward(self.mixer.forward(self.norm1.forward(x), state))
        return h + self.drop2.forward(self.mlp.forward(self.norm2.forward(h))) if self.mlp else h

    def backward(self, dout):
        dh = dout + self.norm2.backward(self.mlp.backward(self.drop2.backward(dout))) if self.mlp else dout
        return dh + self.norm1.backward(self.mixer.backward(self.drop1.backward(dh)))

    def init_state(self, batch, max_len, dtype=np.float32):
        return self.mixer.init_state(batch, max_len, dtype)

    def step(self, x, state):
        """x (B,D) -> (B,D), one token per stream."""
        h = x + self.mixer.step(self.norm1.step(x), state)
        return h + self.mlp.step(self.norm2.step(h)) if self.mlp else h


def build_blocks(pattern, d, cfg, rng):
    """One Block per letter of `pattern`; residual output projections get GPT-2's scaled init
    N(0, (0.02/√(2L))²) so the residual stream's variance does not grow with depth.
    cfg["mlp_hidden"] is an int, or a dict {letter: width} to size the MLP per mixer kind;
    cfg["dropout"] the residual-branch dropout probability (0: none)."""
    unknown = sorted(set(pattern) - set(MIXERS))
    if unknown or not pattern:
        raise ValueError(f"layer pattern {pattern!r}: unknown mixer letters {unknown}; "
                         f"known: " + ", ".join(f"{k}={v[0]}" for k, v in MIXERS.items()))
    out_std = 0.02 / math.sqrt(2 * len(pattern))
    hidden = cfg.get("mlp_hidden", 4 * d)
    return [Block(d, MIXERS[c][1](d, cfg, rng, out_std), hidden[c] if isinstance(hidden, dict) else hidden,
                  cfg.get("norm", "rmsnorm"), rng, out_std, cfg.get("dropout", 0.0)) for c in pattern]
