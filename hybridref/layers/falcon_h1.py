"""Falcon-H1's parallel hybrid mixer (TII 2025, "Falcon-H1: a family of hybrid-head language models";
transformers' FalconH1DecoderLayer): attention heads and Mamba-2 (SSD) heads read the same input side by
side, and their outputs add.

    a   = attention(u)      u (B,T,D) -> (B,T,D): q, k, v = split(u W_qkvᵀ), q (B,T,H,P), k, v (B,T,Hk,P),
                            P = head_dim (D/H by default); RoPE on q, k; o_i = Σ_{j≤i} softmax_j(q_i·k_j/√P) v_j; o (B,T,H·P) W_oᵀ
                            (attention.py)
    m   = mamba2(u)         u (B,T,D) -> (B,T,D): z, xBC, dt = split(u W_inᵀ), Din = d_inner
                            (expand·D by default); x, B, C =
                            SiLU(conv1d(xBC)), x (B,T,Hm,Pm) with Hm = Din/headdim, B, C (B,T,G,N);
                            Δ = softplus(dt + dt_bias) (B,T,Hm); h_t = exp(Δ_t A) h_{t−1} + B_tᵀ(Δ_t x_t),
                            y_t = C_t h_t + D x_t (B,T,Hm,Pm); g = y ⊙ SiLU(z) (B,T,Din), then with gate_norm
                            RMSNorm within each of G groups of g (mamba2.py's GatedGroupRMSNorm); g W_outᵀ
    out = a + m             (B,T,D)

u is the block's RMS-normed input (block.py): Falcon-H1's input_layernorm feeds both branches, then the
block adds a pre-norm SwiGLU MLP (pre_ff_layernorm, feed_forward) as hybridref's Block does.

gate_norm False is Falcon-H1's mamba_rms_norm false (transformers' default): y ⊙ SiLU(z) goes to out_proj
unnormed (mamba2.SiluGate in the Mamba-2 branch's norm slot); gate_norm True is its mamba_rms_norm true
with mamba_norm_before_gate false. Falcon-H1's μP multipliers (attention_in, key, attention_out, ssm_in,
ssm_out, the per-block ssm_multipliers of zxbcdt, mlp_multipliers, embedding, lm_head) are linear scales
of a projection's input or output, so hybridref/convert/hf_falcon_h1.py folds them into the weights and
the mixer has none.

The mixer composes an attention mixer and a Mamba-2 mixer (no window, no kernel of its own): the NumPy
and C backends, the MPI backend and the C decoder (csrc/falcon_h1_step.c: the attention step, then the
Mamba-2 step, each on its own part of one record) run their ops. Decoding: one state dict holding
attention's KV cache (k, v (B,Hk,L,P), `length`) and Mamba-2's conv (B, d_conv−1, Din+2GN) and ssm
(B,Hm,N,Pm); the keys are disjoint, so each branch reads its own entries from the same dict.
"""
import numpy as np

from .attention import CausalSelfAttention
from .mamba2 import Mamba2, SiluGate
from .mixer import Mixer
from .registry import register_mixer


@register_mixer("F", "falcon_h1")
class FalconH1(Mixer):
    # ~4·D² attention weights (fewer with GQA) and ~6·D² Mamba-2 weights: a block of twice a Mamba-2
    # block's mixer weights, with the same 2.5·D MLP
    mlp_ratio = 2.5
    # the suite's D = 12: 2 query heads of 6 sharing 1 key/value head; the Mamba-2 branch at Mamba-2's test
    # sizes (6 heads of 4 in 2 groups, chunk 8)
    test_options = dict(n_heads=2, n_kv_heads=1, d_state=4, headdim=4, ngroups=2, chunk=8)
    # Falcon-H1's checkpoints have heads and an SSM width of their own (head_dim · H ≠ D, mamba_d_ssm ≠ 2·D)
    test_variants = (dict(gate_norm=True), dict(head_dim=4, d_inner=20, headdim=5, ngroups=1))

    def __init__(self, d, rng, n_heads=4, n_kv_heads=None, head_dim=None, rope_base=10000.0, d_state=64, d_conv=4,
                 expand=2, d_inner=None, headdim=64, ngroups=1, chunk=64, gate_norm=False, norm_eps=1e-5,
                 out_std=None):
        """n_heads, n_kv_heads, head_dim, rope_base: the attention branch's (attention.py); d_state, d_conv,
        expand, d_inner, headdim, ngroups, chunk: the Mamba-2 branch's (mamba2.py); gate_norm: RMSNorm the
        gated SSM output (Falcon-H1's mamba_rms_norm), with epsilon norm_eps."""
        super().__init__(d)
        if not isinstance(gate_norm, bool):
            raise ValueError(f"falcon_h1: gate_norm must be true or false, got {gate_norm!r}")
        self.attn = CausalSelfAttention(d, rng, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
                                        rope_base=rope_base, out_std=out_std)
        self.mamba = Mamba2(d, rng, d_state=d_state, d_conv=d_conv, expand=expand, d_inner=d_inner, headdim=headdim,
                            ngroups=ngroups, chunk=chunk, norm_eps=norm_eps, out_std=out_std)
        if not gate_norm:
            self.mamba.norm = SiluGate()

    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> a + m (B,T,D). With a decode state, a prefill from it (each branch's part), left at
        the end of u."""
        self.check_input(u)
        return self.attn.forward(u, state) + self.mamba.forward(u, state)

    def backward(self, dout):
        """dout (B,T,D) -> du (B,T,D): the sum of the branches' input gradients (u feeds both)."""
        return self.attn.backward(dout) + self.mamba.backward(dout)

    def init_state(self, batch, max_len, dtype=np.float32):
        """attention's k, v (B,Hk,max_len,P) and length, and Mamba-2's conv and ssm, in one dict."""
        return {**self.attn.init_state(batch, max_len, dtype), **self.mamba.init_state(batch, max_len, dtype)}

    def step(self, u, state, side=None):
        """One token per stream: u (B,D) -> (B,D); advances both branches' state."""
        self.check_input(u, 2)
        return self.attn.step(u, state) + self.mamba.step(u, state)
