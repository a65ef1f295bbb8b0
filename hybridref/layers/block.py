"""Pre-norm residual block and the mixer registry.

    h   = x + mixer(norm₁(x))
    out = h + MLP(norm₂(h))        (no MLP when mlp_hidden == 0)

A layer pattern is a string of mixer letters, one per block: "MMMA" is three
Mamba blocks then one attention block. Later mixers register a letter in MIXERS.
"""
import math

from .attention import CausalSelfAttention
from .mamba import Mamba
from .mlp import MLP
from .module import Module
from .norm import make_norm

MIXERS = {
    "A": ("attention", lambda d, cfg, rng, out_std: CausalSelfAttention(
        d, cfg["n_heads"], rng, n_kv_heads=cfg.get("n_kv_heads"), window=cfg.get("window"), out_std=out_std)),
    "M": ("mamba", lambda d, cfg, rng, out_std: Mamba(
        d, rng, d_state=cfg.get("d_state", 16), d_conv=cfg.get("d_conv", 4), expand=cfg.get("expand", 2),
        out_std=out_std)),
}


class Block(Module):
    def __init__(self, d, mixer, mlp_hidden, norm, rng, out_std=None):
        super().__init__()
        self.norm1 = make_norm(norm, d)
        self.mixer = mixer
        self.norm2 = make_norm(norm, d) if mlp_hidden else None
        self.mlp = MLP(d, mlp_hidden, rng, out_std=out_std) if mlp_hidden else None

    def forward(self, x):
        h = x + self.mixer.forward(self.norm1.forward(x))
        return h + self.mlp.forward(self.norm2.forward(h)) if self.mlp else h

    def backward(self, dout):
        dh = dout + self.norm2.backward(self.mlp.backward(dout)) if self.mlp else dout
        return dh + self.norm1.backward(self.mixer.backward(dh))


def build_blocks(pattern, d, cfg, rng):
    """One Block per letter of `pattern`; residual output projections get GPT-2's scaled init
    N(0, (0.02/√(2L))²) so the residual stream's variance does not grow with depth."""
    unknown = sorted(set(pattern) - set(MIXERS))
    if unknown or not pattern:
        raise ValueError(f"layer pattern {pattern!r}: unknown mixer letters {unknown}; "
                         f"known: " + ", ".join(f"{k}={v[0]}" for k, v in MIXERS.items()))
    out_std = 0.02 / math.sqrt(2 * len(pattern))
    return [Block(d, MIXERS[c][1](d, cfg, rng, out_std), cfg.get("mlp_hidden", 4 * d), cfg.get("norm", "rmsnorm"),
                  rng, out_std) for c in pattern]
