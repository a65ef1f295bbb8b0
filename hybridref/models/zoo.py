"""The hybrid zoo: the published attention/state-space hybrids as presets of the character LM.

Each preset is a CharLM config (hybridref/models/char_lm.py) at d_model 128, ~1.2 M parameters (all
presets lie within a factor 1.02 of each other, tests/test_shakespeare.py), built only from the
registered mixers. Beside each, PAPER_SHAPES holds the config of the same pattern at the published
model's shape (pass it to CharLM with your vocabulary: `CharLM(vocab_size, **PAPER_SHAPES[name])`);
the docstring of each entry says where the tiny preset deviates from the paper and why.

    samba          MAMAMA        Ren et al. 2024
    stripedhyena   HHHAHH        Poli et al. 2023 (StripedHyena-7B)
    zamba          MMZMMMZM      Glorioso et al. 2024 (Zamba-7B; Z: the shared attention + MLP block)
    jamba          MMMMAMMM      Lieber et al. 2024 (Jamba-v0.1; MoE on every other layer)
    hymba          YYYYYY        Dong et al. 2025 (Hymba-1.5B; attention and SSM heads in every layer)

Griffin (De et al. 2024) is the preset "griffin" of char_lm.py: (RG-LRU, RG-LRU, local MQA) with
gated GeLU MLPs, i.e. LLALLA.
"""

# -- Samba ------------------------------------------------------------------------------------------
SAMBA = dict(pattern="MAMAMA", mlp_kind="swiglu", mlp_hidden=276,
             mixers={"A": dict(n_heads=4, window=128)})
"""Samba (Ren et al. 2024, "Simple hybrid state space models for efficient unlimited context language
modeling"): the layer unit (Mamba, MLP, sliding-window attention, MLP) repeated. A hybridref block is a
mixer followed by its MLP, so the unit is the two blocks "MA", and the preset is "MAMAMA" (3 units).

Deviations at the tiny scale, and why:
- window 128, half of the 256-token training context, as the paper's 2,048 is half of its 4,096;
- the MLP is the paper's SwiGLU, with biases (hybridref's default MLP biases; the paper's have none);
- MLP width 276 (2.16·D) so the preset has the others' size, where the paper uses ~4·D;
- the attention keeps RoPE on (the paper's SWA uses RoPE too); no short convolution on q, k.
"""

# -- StripedHyena -----------------------------------------------------------------------------------
STRIPEDHYENA = dict(pattern="HHHAHH", mlp_kind="gated_gelu", mlp_hidden=304,
                    mixers={"H": dict(emb_dim=33), "A": dict(n_heads=4, n_kv_heads=2)})
"""StripedHyena (Poli et al. 2023, togethercomputer/stripedhyena; StripedHyena-Hessian-7B): Hyena
blocks with grouped-query, rotary attention blocks striped between them. The 7B model has 32 blocks
with attention at 8, 16 and 24 (0-based), one in ~10; at 6 blocks one attention block remains, put at
index 3, the middle of the stack as the 7B's middle one (16 of 32): "HHHAHH".

Deviations at the tiny scale, and why:
- one attention block in six (1 : 5) instead of 3 in 32: a single block is the fewest possible;
- GQA with 2 query heads per key/value head (4 heads, 2 kv heads), the 7B's 32 heads in 8 groups
  being 4 per group: at 4 heads, 2 groups keep both GQA and more than one group;
- the Hyena mixer is safari's (implicit MLP filters, order 2, l_max 1024), where StripedHyena's own
  Hyena layers use a modal (pole-residue) parametrization of the long filter with an explicit short
  filter; both are long causal convolutions gated by projections of the input. The preset's filter
  covers 1,024 positions: longer contexts are refused (as the 'hyena' preset);
- MLP: GeGLU (StripedHyena's ParallelGatedMLP, gated), width 304 so the preset has the others' size.
"""

# -- Zamba ------------------------------------------------------------------------------------------
ZAMBA = dict(pattern="MMZMMMZM", mlp_hidden={"M": 0, "Z": 0},
             mixers={"Z": dict(n_heads=4, ffn_hidden=576)})
"""Zamba (Glorioso et al. 2024; transformers' ZambaForCausalLM): a Mamba backbone — Mamba blocks with
no MLP — and one shared attention + MLP block ("Z", hybridref/layers/zamba.py: one set of weights,
its own output linear per call) that reads concat(hidden state, token embedding) and is added to the
residual stream before the Mamba block it precedes (transformers adds it to that Mamba layer's input
only: not the same function, so transformers' checkpoints are not converted; the mixer's docstring
lists every deviation). Zamba, not Zamba2 (why: the mixer's docstring).
transformers' layout puts the first call before Mamba layer 2 and then one every attn_layer_period
(6) layers; at 6 Mamba blocks the preset calls it before blocks 2 and 5 (every 3): "MMZMMMZM".

Deviations at the tiny scale, and why:
- a call every 3 Mamba blocks instead of 6, so that the shared block is called more than once;
- the shared MLP is 576 wide (4.5·D, Zamba-7B's is 3.9·D) so the preset has the others' size;
- 4 heads of 64 over the 2D = 256 wide concatenation (Zamba-7B: 16 heads of 464);
- Mamba-1 mixers as every "M" (Zamba's are multi-head Mamba-1 with 2 heads).
"""

# -- Jamba ------------------------------------------------------------------------------------------
JAMBA = dict(pattern="MMMMAMMM", mlp_kind="swiglu", mlp_bias=False, mlp_hidden=42,
             mixers={"A": dict(n_heads=4, n_kv_heads=2, rope_base=None), "M": dict(bcdt_rms=1e-5)},
             moe=dict(n_experts=4, top_k=2, period=2, offset=1))
"""Jamba (Lieber et al. 2024; transformers' JambaForCausalLM): blocks of 8 layers with attention :
Mamba = 1 : 7, the attention layer at attn_layer_offset 4 of each attn_layer_period 8 (transformers'
JambaConfig defaults), so one Jamba block is "MMMMAMMM"; a mixture-of-experts MLP (top-2,
hybridref/layers/moe.py, Jamba's unnormalized top-k weights) replaces every other MLP
(expert_layer_period 2, expert_layer_offset 1: layers 1, 3, 5, 7); no positional encoding in
attention (rope_base None: the Mamba layers carry position); the Mamba mixers have the RMSNorms on
Δ, B, C of Jamba's reference code (bcdt_rms, hybridref/layers/mamba.py); SwiGLU MLPs without biases,
grouped-query attention (Jamba: 32 heads, 8 kv heads; here 4 and 2).

Deviations at the tiny scale, and why:
- one Jamba block of 8 layers (Jamba-v0.1: 4 blocks, 32 layers);
- 4 experts instead of 16: the count is in the parameters (all experts are weights), and at ~1.2 M
  parameters 16 experts would be 10 wide; each expert (and dense MLP) is 42 wide (0.33·D, Jamba's
  14,336 is 3.5·D) — the Mamba mixers hold most of the weights at this width;
- the norms' eps is hybridref's 1e-5 (Jamba's 1e-6), on the Δ, B, C norms too (the C decoder runs
  one eps throughout a model).
"""

# -- Hymba ------------------------------------------------------------------------------------------
HYMBA = dict(pattern="YYYYYY", mlp_kind="swiglu", mlp_bias=False, mlp_hidden=140, meta_tokens=16,
             mixers={"Y": dict(n_heads=4, n_kv_heads=1, window=64)})
"""Hymba (Dong et al. 2025, "Hymba: a hybrid-head architecture for small language models"; NVlabs/hymba and
nvidia/Hymba-1.5B-Base's modeling_hymba.py): every layer is the hybrid-head mixer "Y"
(hybridref/layers/hymba.py: attention heads and Mamba heads on the same input from one in_proj, each
branch RMS-normed with its learned scale, averaged, one out_proj) followed by a SwiGLU MLP without biases;
learned meta tokens prepended to every sequence (the CharLM option meta_tokens: the loss and logits are
the real tokens'; the decoders prefill them once when their states are made); full attention in the
first, middle and last layer (0, 2, 5) and sliding-window attention in the others (1, 3, 4), whose
queries also see the meta tokens whatever the window (Hymba's SWA mask: kv_idx < num_memory_tokens or-ed
with the window; attention sinks), of which the consecutive pair (3, 4) shares one key/value set (layer 4 has no k, v projections and reads layer
3's keys, values and KV cache). 4 heads and 1 key/value head (1.5B: 25 and 5), value heads Din/H wide.

Deviations at the tiny scale, and why:
- 6 layers (1.5B: 32), so one local pair shares keys and values and one local layer (1) is alone; at 32
  layers the mixer's rule gives 1.5B's groups exactly ([1, 2], ..., [13, 14], [16, 17, 18], ..., [29, 30]);
- window 64, a quarter of the 256-token training context (1.5B: 1,024), so the local layers are local
  within a training sequence;
- 16 meta tokens (1.5B: 128, an eighth of its window; here a quarter of the window and a sixteenth of
  the context): each is one more position that every sequence pays for in every layer;
- MLP width 140 (1.1·D; 1.5B: 5,504 = 3.4·D) so the preset has the others' size: the mixer holds most
  of the weights (W_in is 5.75·D × D at these head counts, W_out 2·D × D);
- plain RoPE (base 10,000) where 1.5B scales it (its rope_type "ntk"); the head is untied.
"""

ZOO_PRESETS = {"samba": SAMBA, "stripedhyena": STRIPEDHYENA, "zamba": ZAMBA, "jamba": JAMBA, "hymba": HYMBA}


def _zamba_pattern(layers, period=6, offset=4):
    """transformers' ZambaConfig layer types (mamba, mamba, hybrid, then hybrid when i % period ==
    offset) as a pattern: a hybrid layer is the shared block's call "Z" then its Mamba block "M"."""
    kinds = ["mamba", "mamba", "hybrid"] + ["hybrid" if i % period == offset else "mamba" for i in range(layers - 3)]
    return "".join("ZM" if k == "hybrid" else "M" for k in kinds)

PAPER_SHAPES = {
    # Samba at the paper's ~1.7 B class (approximate widths): 24 units of (Mamba, MLP, SWA, MLP), window 2,048
    "samba": dict(d_model=2048, pattern="MA" * 24, mlp_kind="swiglu", mlp_bias=False, mlp_hidden=8192,
                  mixers={"A": dict(n_heads=16, window=2048)}),
    # StripedHyena-7B: 32 blocks, attention at 8, 16, 24; 32 heads in 8 kv groups; gated MLP 14,336. Its
    # filters cover 4,096 positions (the most a config may hold, MAX_MIXER_OPTION), the 7B's context 32 K
    "stripedhyena": dict(d_model=4096, pattern="".join("A" if i in (8, 16, 24) else "H" for i in range(32)),
                         mlp_kind="gated_gelu", mlp_hidden=14336,
                         mixers={"A": dict(n_heads=32, n_kv_heads=8, rope_base=500000.0),
                                 "H": dict(l_max=4096)}),
    # Zamba-7B (transformers' ZambaConfig defaults): 76 Mamba layers (d_state 16, expand 2), hidden 3,712,
    # the shared block's 16 heads over 2 × 3,712 and its MLP 14,336 wide
    "zamba": dict(d_model=3712, pattern=_zamba_pattern(76), mlp_hidden={"M": 0, "Z": 0},
                  mixers={"Z": dict(n_heads=16, ffn_hidden=14336)}),
    # Jamba-v0.1 (transformers' JambaConfig defaults): 32 layers in 4 blocks of 8, hidden 4,096, 32 heads
    # and 8 kv heads, 16 experts top-2 on every other layer, MLP 14,336, Mamba d_state 16, conv 4, expand 2
    "jamba": dict(d_model=4096, pattern="MMMMAMMM" * 4, mlp_kind="swiglu", mlp_bias=False, mlp_hidden=14336,
                  norm_eps=1e-6, mixers={"A": dict(n_heads=32, n_kv_heads=8, rope_base=None),
                                         "M": dict(bcdt_rms=1e-6)},
                  moe=dict(n_experts=16, top_k=2, period=2, offset=1)),
    # Hymba-1.5B-Base: 32 layers, hidden 1,600, 25 heads and 5 kv heads (head 64; value heads 128 = Din/H),
    # Mamba expand 2, d_state 16, conv 4, dt_rank 100; global layers 0, 15, 31, window 1,024, KV shared in
    # the groups the mixer's rule gives; 128 meta tokens; SwiGLU MLP 5,504 without biases; RMSNorm eps 1e-6.
    # 1.574 B parameters with hybridref's untied head, 1.523 B with the 1.5B's tied embeddings (vocab 32,001)
    "hymba": dict(d_model=1600, pattern="Y" * 32, mlp_kind="swiglu", mlp_bias=False, mlp_hidden=5504, norm_eps=1e-6,
                  meta_tokens=128, mixers={"Y": dict(n_heads=25, n_kv_heads=5, window=1024, norm_eps=1e-6)}),
}
