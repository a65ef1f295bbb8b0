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

Two forms. "Z" (ZambaShared, the zoo's "zamba" preset) is a mixer like any other: its own pre-norm
residual block, so the call's output is added to the residual stream. "X" (ZambaHybrid, below) is
transformers' ZambaHybridLayer exactly: the call on the raw residual stream x, its output added to the input
of the Mamba layer after it only, x + Mamba(RMSNorm(x + out)); `hybridref convert` maps ZambaForCausalLM's
hybrid layers to it (hybridref/convert/hf_zamba.py). Where "Z" differs from transformers' Zamba, and the
option or form that matches it:
- the output reaches the residual stream ("Z"), not only the next Mamba's input: the form "X";
- the block's own pre-norm normalises u before the concatenation; Zamba concatenates the raw residual
  stream: the form "X" (whose block has no pre-norm, Mixer.pre_norm False). The 2D RMSNorm after the
  concatenation is Zamba's input_layernorm;
- the softmax scale is hybridref's 1/√P; Zamba's is 1/√(P/2). The two are the same model up to W_q
  scaled by √2 (the conversion multiplies the query rows by √2);
- the MLP has biases by default: the option mlp_bias=False (Zamba's have none); W_call is initialised
  N(0, out_std²) as every residual output projection here;
- the MLP's GELU is the tanh approximation by default: mlp_kind "gated_gelu_erf" is ZambaConfig's hidden_act
  "gelu", the exact erf form;
- Zamba's Mamba layers are multi-head (n_mamba_heads): the Mamba option mamba_heads (hybridref/layers/mamba.py).
The embedding e is the side input "embed" (hybridref/layers/side.py); its gradient flows back
through side.add_grad. Without side inputs (the mixer on its own, as the conformance suite builds
it) u stands for e.
"""
import numpy as np

from .attention import CausalSelfAttention
from .linear import Linear
from .mamba import Mamba
from .mixer import Mixer
from .mlp import make_mlp
from .module import Module
from .norm import RMSNorm
from .registry import register_mixer

GATED_GELU_KINDS = ("gated_gelu", "gated_gelu_erf")


class SharedAttentionMLP(Module):
    """The shared part: RMSNorm(2D), attention over 2D with output D, RMSNorm(D), gated GeLU MLP."""

    def __init__(self, d, rng, n_heads, n_kv_heads, ffn_hidden, rope_base, mlp_kind, mlp_bias, norm_eps, out_std):
        super().__init__()
        if mlp_kind not in GATED_GELU_KINDS:
            raise ValueError(f"zamba: mlp_kind must be one of {', '.join(GATED_GELU_KINDS)} (the shared block's "
                             f"GeGLU, tanh or exact GELU), got {mlp_kind!r}")
        self.norm_in = RMSNorm(2 * d, norm_eps)
        self.attn = CausalSelfAttention(2 * d, rng, n_heads=n_heads, n_kv_heads=n_kv_heads, rope_base=rope_base)
        self.attn.out = Linear(2 * d, d, bias=False, rng=rng, std=out_std)  # Zamba's o_proj: 2D -> D
        self.norm_ff = RMSNorm(d, norm_eps)
        self.mlp = make_mlp(mlp_kind, d, ffn_hidden, rng, out_std=out_std, bias=mlp_bias)

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
    test_variants = (dict(mlp_kind="gated_gelu_erf", mlp_bias=False),)

    def __init__(self, d, rng, n_heads=4, n_kv_heads=None, ffn_hidden=None, rope_base=None, mlp_kind="gated_gelu",
                 mlp_bias=True, norm_eps=1e-5, out_std=None):
        """ffn_hidden: the shared MLP's width (None: 4·D); mlp_kind "gated_gelu" (tanh GELU) or "gated_gelu_erf"
        (Zamba's exact GELU); mlp_bias: the MLP's biases (Zamba has none); norm_eps: the two RMSNorms' eps."""
        super().__init__(d)
        if (2 * d) % n_heads:
            raise ValueError(f"zamba: its attention runs over 2·d_model = {2 * d}, which n_heads {n_heads} "
                             f"does not divide")
        self.shared = SharedAttentionMLP(d, rng, n_heads, n_kv_heads, ffn_hidden or 4 * d, rope_base, mlp_kind,
                                         mlp_bias, norm_eps, out_std)
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


@register_mixer("X", "zamba_hybrid")
class ZambaHybrid(Mixer):
    """transformers' ZambaHybridLayer without the residual addition (its block adds u):

        t   = "Z"(u, e)                          this call of the shared block, on the raw residual stream u
        out = Mamba(RMSNorm(u + t))              the Mamba layer after it (mamba_heads: Zamba's n_mamba_heads)

    so the block computes x + Mamba(RMSNorm(x + W_call·Shared(concat(x, e)))): the shared block's output reaches
    the next Mamba layer's input only. The mixer reads u = x itself (pre_norm False: its block has no norm₁;
    Zamba concatenates the unnormalised stream). The shared weights are one set for every "X" of a model
    (share_from, as "Z"); the decode state is this call's KV cache and its Mamba's conv and ssm states, one dict.
    Options: the "Z" block's, then the Mamba's (d_state, d_conv, expand, dt_rank, mamba_heads); norm_eps is
    also the eps of the norm before the Mamba (Zamba's rms_norm_eps)."""
    mlp_ratio = 0.0  # the MLP is inside the shared block
    pre_norm = False
    test_options = dict(n_heads=2, ffn_hidden=10, d_state=4, mamba_heads=2)

    def __init__(self, d, rng, n_heads=4, n_kv_heads=None, ffn_hidden=None, rope_base=None, mlp_kind="gated_gelu",
                 mlp_bias=True, norm_eps=1e-5, d_state=16, d_conv=4, expand=2, dt_rank=None, mamba_heads=1,
                 out_std=None):
        super().__init__(d)
        self.call = ZambaShared(d, rng, n_heads, n_kv_heads, ffn_hidden, rope_base, mlp_kind, mlp_bias, norm_eps,
                                out_std)
        self.norm = RMSNorm(d, norm_eps)
        self.mamba = Mamba(d, rng, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank,
                           mamba_heads=mamba_heads, out_std=out_std)

    def share_from(self, first):
        """Use `first`'s shared block (the model's first "X"), as ZambaShared.share_from."""
        self.call.share_from(first.call)

    def forward(self, u, state=None, side=None):
        """u (B,T,D) the residual stream -> (B,T,D); with a decode `state` a prefill of the KV cache and Mamba."""
        self.check_input(u)
        return self.mamba.forward(self.norm.forward(u + self.call.forward(u, state, side)), state)

    def backward(self, dy):
        dv = self.norm.backward(self.mamba.backward(dy))  # the gradient of v = u + t
        return dv + self.call.backward(dv)

    def init_state(self, batch, max_len, dtype=np.float32):
        """The call's KV cache (k, v, length) and the Mamba's conv and ssm, in one dict (distinct keys)."""
        return {**self.call.init_state(batch, max_len, dtype), **self.mamba.init_state(batch, max_len, dtype)}

    def step(self, u, state, side=None):
        self.check_input(u, 2)
        return self.mamba.step(self.norm.step(u + self.call.step(u, state, side)), state)
