"""Falcon-H1's parallel hybrid layer in PyTorch (TII 2025, "Falcon-H1: a family of hybrid-head language
models"; transformers' FalconH1DecoderLayer without its μP multipliers, which a conversion folds into the
weights), from the formulas:

    out = attention(u) + mamba2(u)      u (B,T,D): both branches read the same input

    attention: q, k, v = u W_qkvᵀ, RoPE, causal softmax(q kᵀ/√P) v, W_o       (tests/torch_ref/attention.py)
    mamba2:    z, xBC, dt = u W_inᵀ, conv + SiLU, SSD, (y ⊙ SiLU(z)) normed per group with gate_norm
               (Falcon-H1's mamba_rms_norm), W_out                              (tests/torch_ref/mamba2.py)

The parameters are the attention's under "attn." and the Mamba-2 branch's under "mamba."; the state is
the attention's KV cache and the Mamba-2 conv and SSM states in one dict (disjoint keys).

opts: n_heads, n_kv_heads, rope_base (attention); d_state, headdim, ngroups, chunk, norm_eps (Mamba-2; its
norm.weight is absent without gate_norm); d_conv, expand are init-only.
"""
from . import attention, mamba2


def _part(p, prefix):
    return {n[len(prefix):]: t for n, t in p.items() if n.startswith(prefix)}


def forward(p, x, opts):
    return attention.forward(_part(p, "attn."), x, opts) + mamba2.forward(_part(p, "mamba."), x, opts)


def init_state(p, opts, batch, max_len, fill=None):
    return {**attention.init_state(_part(p, "attn."), opts, batch, max_len, fill),
            **mamba2.init_state(_part(p, "mamba."), opts, batch, max_len, fill)}


def step(p, x_t, state, opts, pos):
    return attention.step(_part(p, "attn."), x_t, state, opts, pos) + \
        mamba2.step(_part(p, "mamba."), x_t, state, opts, pos)
