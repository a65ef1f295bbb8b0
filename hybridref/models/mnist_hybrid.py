"""The tiny MNIST hybrid: an image read as a sequence of patches by a Mamba/attention stack.

    tokens = patches(image)                  (B,28,28) -> (B,T,p²), T = (28/p)², row-major
    x      = drop(tokens Wₑᵀ + b + pos)      -> (B,T,D); drop: dropout while training
    x      = blocks(x)                        pattern "MMMAMMMA": 6 Mamba + 2 attention
    logits = head(mean_t(norm(x)))           -> (B,10)

Patches are read left to right, top to bottom; with p = 7 an image is 16
tokens of 49 pixels. Each sample is its own sequence: nothing mixes across the
batch (the lecture notes' version attended across the batch, a bug).

Positions come from the learned table, so attention layers here default to no RoPE
(MIXER_DEFAULTS); the config stores every mixer option per letter of the pattern.

MnistHybrid(directions=2 or 4) (a mixer option given once, `train mnist --directions`) makes the
Mamba layers non-causal, as in Vision Mamba (forward and backward scans) or VMamba (the cross scan
over the (28/p)×(28/p) patch grid; hybridref/layers/scan_directions.py). The attention layers stay
causal over the patches: the attention kernel could attend to every key (q_offset = T − 1) without
a new kernel, but the MPI backend's sequence mode passes keys and values only to later processes.
"""
import numpy as np

from ..layers.block import backward_blocks, build_blocks, run_blocks
from ..layers.dropout import Dropout
from ..layers.linear import Linear
from ..layers.mlp import check_mlp_kind
from ..layers.module import Module, Param
from ..layers.moe import aux_loss, normalize_moe
from ..layers.norm import make_norm
from ..layers.registry import resolve_mlp_hidden, resolve_options
from ..layers.side import SideInputs

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MIXER_DEFAULTS = {"A": {"rope_base": None}}


def patchify(images, patch):
    """uint8 (B,28,28) -> normalised float32 (B, (28/p)², p²)."""
    B = images.shape[0]
    g = 28 // patch
    x = (images.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    x = x.reshape(B, g, patch, g, patch).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(x.reshape(B, g * g, patch * patch))


class MnistHybrid(Module):
    def __init__(self, patch=7, d_model=64, pattern="MMMAMMMA", mixers=None, mlp_ratio=4, norm="rmsnorm",
                 dropout=0.0, seed=0, mlp_kind="gelu", moe=None, **mixer_options):
        """mixers: {letter: {option: value}}; mixer_options: an option for every mixer of the pattern
        that has it (n_heads=2, ...); every block's MLP is mlp_ratio · d_model wide, of kind mlp_kind;
        moe: None or MoE options (hybridref/layers/moe.py), the MLPs of blocks i % period == offset."""
        super().__init__()
        if 28 % patch:
            raise ValueError(f"patch size {patch} must divide 28 (choose 1, 2, 4, 7, 14)")
        rng = np.random.default_rng(seed)
        mixers = resolve_options(pattern, mixers, MIXER_DEFAULTS, mixer_options)
        self.config = dict(patch=patch, d_model=d_model, pattern=pattern, mixers=mixers,
                           mlp_ratio=mlp_ratio, mlp_kind=check_mlp_kind(mlp_kind), norm=norm, dropout=dropout,
                           seed=seed, moe=normalize_moe(moe))
        self.patch = patch
        self.seq_len = (28 // patch) ** 2
        self.embed = Linear(patch * patch, d_model, rng=rng)
        self.pos = Param(rng.normal(0.0, 0.02, (self.seq_len, d_model)), decay=False)
        self.drop = Dropout(dropout)
        self.blocks = build_blocks(pattern, d_model, mixers, resolve_mlp_hidden(pattern, d_model, mlp_ratio * d_model),
                                   norm, rng, dropout, mlp_kind, moe=self.config["moe"])
        self.norm = make_norm(norm, d_model)
        self.head = Linear(d_model, 10, rng=rng)

    def aux_loss(self):
        """The MoE auxiliary losses of the last forward, weighted (0.0 without MoE): added to the training loss."""
        return aux_loss(self)

    def forward(self, images):
        """uint8 images (B,28,28) -> logits (B,10); on a backend spread over processes, this
        process's share: the tokens it holds, the logits of be.local_batch(images)."""
        be = self.be
        tokens = be.shard_tokens(patchify(images, self.patch).astype(self.pos.data.dtype))
        x = self.drop.forward(self.embed.forward(tokens) + be.local_positions(self.pos.data))
        side = SideInputs(embed=x)
        self.save(side)
        return self.head.forward(self.be.mean_pool_forward(self.norm.forward(run_blocks(self.blocks, x, side=side))))

    def backward(self, dlogits):
        (side,) = self.saved()
        dx = self.norm.backward(self.be.mean_pool_backward(self.head.backward(dlogits), self.seq_len))
        dx = backward_blocks(self.blocks, dx)
        dembed = side.pop_grad("embed")
        dx = self.drop.backward(dx if dembed is None else dx + dembed)
        self.be.local_positions(self.pos.grad)[...] += dx.sum(axis=0)
        self.embed.backward(dx)
