"""A character-level language model: embedding, a stack of mixer blocks, final norm, linear head.

    x      = drop(embed[ids])                 ids (B,T) -> (B,T,D); drop: dropout while training
    x      = blocks(x)                         pattern string: "AAAAAA", "MMMMMM", "MMMAMM", ...
    logits = head(norm(x))                     -> (B,T,V)

Attention layers get their positions from RoPE (no learned position table), so a model trained on
256-token windows can decode any context length up to the KV cache size. The head is untied from
the embedding: at V = 65 it is 8 K parameters, and the presets' counts are easier to read.

Presets (d_model 128, 6 blocks, RMSNorm, 4 heads of 32, Mamba expand 2, d_state 16): every block
holds ~198 K parameters, because an attention block's MLP is 4·D = 512 wide and a Mamba block's
(whose mixer is larger) is 320 wide, so the three presets have about the same size.
"""
import numpy as np

from ..layers.block import build_blocks
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..layers.module import Module
from ..layers.norm import make_norm

MLP_HIDDEN = {"A": 512, "M": 320}
PRESETS = {
    "transformer": dict(pattern="AAAAAA"),
    "mamba": dict(pattern="MMMMMM"),
    "hybrid": dict(pattern="MMMAMM"),
}


class CharLM(Module):
    def __init__(self, vocab_size, d_model=128, pattern="MMMAMM", n_heads=4, n_kv_heads=None, window=None,
                 mlp_hidden=None, norm="rmsnorm", d_state=16, d_conv=4, expand=2, rope_base=10000.0, dropout=0.0,
                 seed=0):
        super().__init__()
        mlp_hidden = dict(MLP_HIDDEN) if mlp_hidden is None else mlp_hidden
        self.config = dict(vocab_size=vocab_size, d_model=d_model, pattern=pattern, n_heads=n_heads,
                           n_kv_heads=n_kv_heads, window=window, mlp_hidden=mlp_hidden, norm=norm, d_state=d_state,
                           d_conv=d_conv, expand=expand, rope_base=rope_base, dropout=dropout, seed=seed)
        rng = np.random.default_rng(seed)
        self.vocab_size = vocab_size
        self.embed = Embedding(vocab_size, d_model, rng)
        self.drop = Dropout(dropout)
        self.blocks = build_blocks(pattern, d_model, dict(n_heads=n_heads, n_kv_heads=n_kv_heads, window=window,
                                                          mlp_hidden=mlp_hidden, norm=norm, d_state=d_state,
                                                          d_conv=d_conv, expand=expand, rope_base=rope_base,
                                                          dropout=dropout), rng)
        self.norm = make_norm(norm, d_model)
        self.head = Linear(d_model, vocab_size, bias=False, rng=rng, std=0.02)

    @classmethod
    def preset(cls, arch, vocab_size, **overrides):
        if arch not in PRESETS:
            raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(PRESETS)}")
        return cls(vocab_size, **{**PRESETS[arch], **overrides})

    def forward(self, ids, states=None):
        """int64 ids (B,T) -> logits (B,T,V). With `states` (init_state) it is the prefill: it also fills them."""
        x = self.drop.forward(self.embed.forward(ids))
        for i, block in enumerate(self.blocks):
            x = block.forward(x, None if states is None else states[i])
        return self.head.forward(self.norm.forward(x))

    def backward(self, dlogits):
        dx = self.norm.backward(self.head.backward(dlogits))
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        self.embed.backward(self.drop.backward(dx))

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len, dtype=np.float32):
        """One decode state per block (KV cache of max_len tokens, or Mamba's conv and scan states)."""
        return [block.init_state(batch, max_len, dtype) for block in self.blocks]

    def prefill(self, ids, states):
        """The parallel forward over a prompt (B,T) that fills fresh `states`; -> logits (B,T,V).
        Decoding is inference: dropout is turned off, as the one-token steps never apply it."""
        self.set_dropout_seed(None)
        logits = self.forward(ids, states)
        self.clear_saved()
        return logits

    def step(self, ids, states):
        """One token per stream, ids (B,) -> logits (B,V); advances `states` in place."""
        x = self.embed.step(ids)
        for block, state in zip(self.blocks, states):
            x = block.step(x, state)
        return self.head.step(self.norm.step(x))

    def decoder(self, batch, max_len):
        """A streaming decoder for `batch` independent streams of up to max_len tokens: the backend's
        own (one C call per token on the C backend), else the layer-by-layer Python one."""
        make = getattr(self.be, "decoder", None)
        if make is None:
            from ..backends.numpy.decode import Decoder
            return Decoder(self, batch, max_len)
        return make(self, batch, max_len)
