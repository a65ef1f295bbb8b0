"""Zamba's shared attention + MLP block (Glorioso et al. 2024, "Zamba: a compact 7B SSM hybrid model";
transformers' ZambaAttentionDecoderLayer and ZambaHybridLayer), one call of it per block "Z":

    c   = RMSNorm₂ᴰ(concat(u, e))               u (B,T,D) the block's input, e the token embedding:
                                                 c (B,T,2D)
    a   = attention(c)                           causal, H heads of P = 2D/H over 2D, output
                                                 projection 2D -> D (no RoPE by default, as Zamba)
    f   = MLP(RMSNormᴰ(a))                       gated GeLU (ZambaMLP)
    out = f W_callᵀ                              W_call (D,D): this call's own linear

Everything but W_call is one set of weights shared by every "Z" block of a model: the later
instances take the first one's `shared` module (`share_from`, called by build_blocks), so the
model's parameter list, the optimizer, weight decay and checkpoints hold each shared weight once,
and its gradient accumulates over all calls (the module's saved stack unwinds them in reverse).
Each call keeps its own KV cache (its block's decode state), as each call attends over its own
inputs.

Zamba, not Zamba2: Zamba2 alternates two shared blocks, adds a LoRA per call to the shared MLP (and
attention) and uses a Mamba-2 backbone. We follow Zamba (one shared block, a Mamba-1 backbone "M")
because it is the pure form of the idea — one global block whose weights every call shares — and
needs nothing beyond the registered mixers; Zamba2's per-call LoRA would be a second weight-sharing
pattern (shared base + per-call delta) on top of this one.

Deviations from transformers' Zamba, and why (`hybridref convert --from-hf` refuses model_type "zamba" for
them, hybridref/convert/__init__.py):
- the call's output is added to the residual stream, a block of its own; transformers' ZambaHybridLayer
  adds it to the input of the next Mamba layer only, x + Mamba(RMSNorm(x + out)), so it never reaches
  the residual stream. Here the "Z" block is a mixer like any other (its own residual block, KV cache
  and decode record); the transformers form would make the call and the Mamba layer after it one layer;
- the block's own pre-norm (hybridref's Block: RMSNorm of the residual stream, per call) normalises
  u before the concatenation; Zamba concatenates the raw residual stream. The 2D RMSNorm after it
  is Zamba's input_layernorm;
- the softmax scale is hybridref's 1/√P; Zamba's is 1/√(P/2). The two are the same model up to W_q
  scaled by √2 (a conversion multiplies the query rows by √2);
- the MLP has biases (hybridref's MLPs do by default) and W_call is initialised N(0, out_std²) as
  every residual output projection here; Zamba's Mamba layers are multi-head (n_mamba_heads);
- the MLP's GELU is hybridref's tanh approximation; ZambaConfig's hidden_act "gelu" is the exact erf form.
The embedding e is the side input "embed" (hybridref/layers/side.py); its gradient flows back
through side.add_grad. Without side inputs (the mixer on its own, as the conformance suite builds
it) u stands for e.
"""
import numpy as np

from .attention import CausalSelfAttention
from .linear import Linear
from .mixer import Mixer
from .mlp import make_mlp
from .module import Module
from .norm import RMSNorm
from .registry import register_mixer


class SharedAttentionMLP(Module):
    """The shared part: RMSNorm(2D), attention over 2D with output D, RMSNorm(D), gated GeLU MLP."""

    def __init__(self, d, rng, n_heads, n_kv_heads, ffn_hidden, rope_base, out_std):
        super().__init__()
        self.norm_in = RMSNorm(2 * d)
        self.attn = CausalSelfAttention(2 * d, rng, n_heads=n_heads, n_kv_heads=n_kv_heads, rope_base=rope_base)
        self.attn.out = Linear(2 * d, d, bias=False, rng=rng, std=out_std)  # Zamba's o_proj: 2D -> D
        self.norm_ff = RMSNorm(d)
        self.mlp = make_mlp("gated_gelu", d, ffn_hidden, rng, out_std=out_std)

    def forward(self, c, state=None):
        return self.mlp.forward(self.norm_ff.forward(self.attn.forward(self.norm_in.forward(c), state)))

    def backward(self, df):
        return self.norm_in.backward(self.attn.backward(self.norm_ff.backward(self.mlp.backward(df))))

    def step(self, c, state):
        return self.mlp.step(self.norm_ff.step(self.attn.step(self.norm_in.step(c), state)))


@register_mixer("Z", "zamba")
class ZambaShared(Mixer):
    mlp_ratio = 0.0  # the block's MLP is inside the shared part: "Z" blocks have none of their own
    test_options = dict(n_heads=2, ffn_hidden=10)

    def __init__(self, d, rng, n_heads=4, n_kv_heads=None, ffn_hidden=None, rope_base=None, out_std=None):
        """ffn_hidden: the shared MLP's width (None: 4·D)."""
        super().__init__(d)
        if (2 * d) % n_heads:
            raise ValueError(f"zamba: its attention runs over 2·d_model = {2 * d}, which n_heads {n_heads} "
                             f"does not divide")
        self.shared = SharedAttentionMLP(d, rng, n_heads, n_kv_heads, ffn_hidden or 4 * d, rope_base, out_std)
        self.call_out = Linear(d, d, bias=False, rng=rng, std=out_std)

    def share_from(self, first):
        """Use `first`'s shared block (the first "Z" of the model): one set of weights for every call."""
        self.shared = first.shared

    def _embed(self, u, side):
        return u if side is None else side.get("embed")

    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D); with a decode `state` (this call's KV cache) a prefill, as attention's."""
        self.check_input(u)
        e = self._embed(u, side)
        self.save(side)
        return self.call_out.forward(self.shared.forward(np.concatenate([u, e], axis=-1), state))

    def backward(self, dy):
        (side,) = self.saved()
        dc = self.shared.backward(self.call_out.backward(dy))
        D = self.d_model
        du, de = dc[..., :D], dc[..., D:]
        if side is None:
            return du + de
        side.add_grad("embed", np.ascontiguousarray(de))
        return np.ascontiguousarray(du)

    def init_state(self, batch, max_len, dtype=np.float32):
        """This call's KV cache over 2D-wide heads (the shared attention's state layout)."""
        return self.shared.attn.init_state(batch, max_len, dtype)

    def step(self, u, state, side=None):
        self.check_input(u, 2)
        return self.call_out.step(self.shared.step(np.concatenate([u, self._embed(u, side)], axis=-1), state))
