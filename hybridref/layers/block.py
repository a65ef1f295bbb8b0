"""Pre-norm residual block, and the stack of blocks a layer pattern describes.

    h   = x + drop(mixer(norm₁(x)))
    out = h + drop(MLP(norm₂(h)))  (no MLP when its width is 0; drop: dropout while training)

A mixer whose `pre_norm` is False (Zamba's hybrid layer, hybridref/layers/zamba.py) reads the residual
stream x itself: its block has no norm₁ (the mixer normalises what it needs).

The MLP's kind (`mlp_kind`: "gelu", "gated_gelu", "swiglu"; hybridref/layers/mlp.py), whether it has
biases (`mlp_bias`) and the norms' epsilon (`norm_eps`) are model options, the same for every block.

A layer pattern is a string of mixer letters, one per block: "MMMA" is three Mamba blocks then one
attention block. The letters and each mixer's options come from the mixer registry
(hybridref/layers/registry.py).

Decoding: a block's state is its mixer's state (norms and the MLP are stateless); `forward(x, state)`
is the prefill, `step(x_t, state)` advances one token. `side` carries the pass's side inputs
(hybridref/layers/side.py) to the mixer.
"""
import math

import numpy as np

from .dropout import Dropout
from .mlp import make_mlp
from .module import Module
from .moe import is_moe_block, make_moe
from .norm import make_norm
from .registry import mixer_spec


class Block(Module):
    def __init__(self, d, mixer, mlp_hidden, norm, rng, out_std=None, dropout=0.0, mlp_kind="gelu", norm_eps=1e-5,
                 mlp_bias=True, moe=None):
        """moe: the model's MoE options (hybridref/layers/moe.py) when this block's MLP is a mixture of
        experts of kind mlp_kind, else None."""
        super().__init__()
        self.norm1 = make_norm(norm, d, norm_eps) if mixer.pre_norm else None
        self.mixer = mixer
        self.drop1 = Dropout(dropout)
        self.norm2 = make_norm(norm, d, norm_eps) if mlp_hidden else None
        make = make_mlp if moe is None else lambda *a, **k: make_moe(moe, *a, **k)
        self.mlp = make(mlp_kind, d, mlp_hidden, rng, out_std=out_std, bias=mlp_bias) if mlp_hidden else None
        self.drop2 = Dropout(dropout) if mlp_hidden else None

    def forward(self, x, state=None, side=None):
        h = x + self.drop1.forward(self.mixer.forward(self.norm1.forward(x) if self.norm1 else x, state, side))
        return h + self.drop2.forward(self.mlp.forward(self.norm2.forward(h))) if self.mlp else h

    def backward(self, dout):
        dh = dout + self.norm2.backward(self.mlp.backward(self.drop2.backward(dout))) if self.mlp else dout
        du = self.mixer.backward(self.drop1.backward(dh))
        return dh + (self.norm1.backward(du) if self.norm1 else du)

    def init_state(self, batch, max_len, dtype=np.float32):
        return self.mixer.init_state(batch, max_len, dtype)

    def step(self, x, state, side=None):
        """x (B,D) -> (B,D), one token per stream."""
        h = x + self.mixer.step(self.norm1.step(x) if self.norm1 else x, state, side)
        return h + self.mlp.step(self.norm2.step(h)) if self.mlp else h


def build_blocks(pattern, d, mixers, mlp_hidden, norm, rng, dropout=0.0, mlp_kind="gelu", norm_eps=1e-5,
                 mlp_bias=True, moe=None):
    """One Block per letter of `pattern`; `mixers` {letter: options} and `mlp_hidden` {letter: width}
    as registry.resolve_options / resolve_mlp_hidden give them, every MLP of kind `mlp_kind` (with
    biases unless mlp_bias is False), every norm of epsilon `norm_eps`. Residual
    output projections get GPT-2's scaled init N(0, (0.02/√(2L))²) so the residual stream's variance
    does not grow with depth. With MoE options `moe` (None: none), block i's MLP is a mixture of experts
    of that kind when i % period == offset (hybridref/layers/moe.py).

    A mixer whose init depends on its depth (RWKV-7's) defines set_depth(index, count): it is called
    with its place among the blocks of its letter, after every block is built (no random draw). A mixer
    that shares weights between its instances (Zamba's shared block) defines share_from(first): every
    later instance of its letter is handed the first."""
    out_std = 0.02 / math.sqrt(2 * len(pattern))
    blocks = [Block(d, mixer_spec(c).build(d, rng, mixers[c], out_std), mlp_hidden[c], norm, rng, out_std, dropout,
                    mlp_kind, norm_eps, mlp_bias, moe if is_moe_block(i, moe) else None)
              for i, c in enumerate(pattern)]
    for c in set(pattern):
        same = [b.mixer for b, letter in zip(blocks, pattern) if letter == c]
        for i, mixer in enumerate(same):
            if hasattr(mixer, "set_depth"):
                mixer.set_depth(i, len(same))
            if i and hasattr(mixer, "share_from"):
                mixer.share_from(same[0])
    return blocks


def run_blocks(blocks, x, states=None, side=None):
    """x through every block (the prefill when `states` is given)."""
    for i, block in enumerate(blocks):
        x = block.forward(x, None if states is None else states[i], side)
    return x


def backward_blocks(blocks, dx):
    for block in reversed(blocks):
        dx = block.backward(dx)
    return dx
