"""BambaForCausalLM (model_type "bamba") <-> a hybridref CharLM of Mamba-2 blocks "S" and attention
blocks "A" (those of attn_layer_indices), every block with a SwiGLU MLP.

A Bamba layer is x + mixer(RMSNorm(x)), then + SwiGLU(RMSNorm(x)), the mixer a Mamba-2 mixer
(transformers' BambaMixer is Mamba2Mixer: hybridref/layers/mamba2.py, as in hf_mamba2.py) or
attention with grouped-query heads and RoPE over the first half of each head (partial_rotary_factor
0.5: the attention option rope_dims), no window. The weights:

    model.embed_tokens.weight                                embed.weight
    model.layers.i.input_layernorm.weight                    blocks.i.norm1.weight
    model.layers.i.mamba.{in_proj, conv1d, dt_bias, A_log, D, norm, out_proj}   blocks.i.mixer.* (hf_mamba2.mixer_rules)
    model.layers.i.self_attn.{q,k,v}_proj.weight             blocks.i.mixer.qkv.weight   rows [q; k; v]
    model.layers.i.self_attn.o_proj.weight                   blocks.i.mixer.out.weight
    model.layers.i.pre_ff_layernorm.weight                   blocks.i.norm2.weight
    model.layers.i.feed_forward.{gate,up,down}_proj.*        blocks.i.mlp.{fc, proj}.*   fc rows [gate; up]
    model.final_layernorm.weight                             norm.weight
    lm_head.weight (or the embeddings when tied)             head.weight

Config: hidden_size, intermediate_size, num_hidden_layers, vocab_size, num_attention_heads,
num_key_value_heads, attn_layer_indices, rms_norm_eps (every norm's, the Mamba-2 gated norm's too:
the mixer's norm_eps), rope_parameters (rope_theta; partial_rotary_factor, 0.5 when absent, as
transformers sets it), mamba_n_heads, mamba_d_head ("auto" = mamba_expand · hidden_size /
mamba_n_heads), mamba_n_groups, mamba_d_state, mamba_d_conv, mamba_expand, mamba_conv_bias (false:
zero biases), mlp_bias, tie_word_embeddings (default false). Refused: attention_bias true,
mamba_proj_bias true, a hidden_act other than silu, a time_step_limit other than (0, ∞) (as for
Mamba-2, hf_mamba2.py), a head_dim other than hidden_size / num_attention_heads, attention layer
indices outside the layers. mamba_chunk_size becomes the mixer's chunk (as hf_mamba2's chunk_size);
z_loss_coefficient only changes the training loss, num_logits_to_keep only what generate computes;
max_position_embeddings bounds nothing in hybridref (its RoPE has no table).
"""
from .hf_llama import attention_rules, attention_sizes, narrow_heads, swiglu_rules
from .hf_mamba2 import check_dt_limit, mixer_rules
from .hf_recurrentgemma import partial_rope
from .hf_rules import Rule, zero_biases

ARCH, MODEL_TYPE = "BambaForCausalLM", "bamba"


def _attention_layers(hf, n):
    """The indices of the attention layers (attn_layer_indices; none when absent)."""
    indices = hf.get("attn_layer_indices", [])
    if not isinstance(indices, list) or any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n
                                            for i in indices):
        raise hf.refuse("attn_layer_indices", indices, f"a list of layer indices from 0 to {n - 1}")
    return set(indices)


def mamba2_options(hf, d, din=None):
    """The Mamba-2 mixer options of a Bamba config (also Falcon-H1's, hf_falcon_h1, whose mixer is
    BambaMixer's with the width din = mamba_d_ssm; None: mamba_expand · hidden_size)."""
    expand, heads = hf.count("mamba_expand", 2), hf.count("mamba_n_heads", 128)
    din = expand * d if din is None else din
    headdim = hf.get("mamba_d_head", "auto")
    headdim = din // heads if headdim == "auto" else hf.count("mamba_d_head")
    if heads * headdim != din:
        raise hf.refuse("mamba_n_heads", heads, f"mamba_n_heads · mamba_d_head = the Mamba-2 width {din} "
                                                f"(mamba_d_head {headdim})")
    groups = hf.count("mamba_n_groups", 1)
    if heads % groups:
        raise hf.refuse("mamba_n_groups", groups, f"a divisor of mamba_n_heads {heads}")
    hf.require("mamba_proj_bias", False, [False], "in_proj and out_proj without biases, as hybridref's Mamba-2 mixer")
    hf.flag("mamba_conv_bias", True)  # without one, the conv bias is zeros
    check_dt_limit(hf)
    return dict(d_state=hf.count("mamba_d_state", 256), d_conv=hf.count("mamba_d_conv", 4), expand=expand,
                headdim=headdim, ngroups=groups, chunk=hf.count("mamba_chunk_size", 256),
                norm_eps=hf.number("rms_norm_eps", 1e-5))


def config_from_hf(hf):
    """(hybridref CharLM config, tied) from a Bamba config.json (hf_config.HFConfig)."""
    d, H, Hk = attention_sizes(hf)
    hf.require("attention_bias", False, [False], "q/k/v/o projections without biases")
    hf.require("hidden_act", "silu", ["silu"], "the SiLU of the Mamba-2 block and of the SwiGLU MLP")
    n = hf.count("num_hidden_layers")
    attention = _attention_layers(hf, n)
    pattern = "".join("A" if i in attention else "S" for i in range(n))
    theta, rope_dims = partial_rope(hf, d // H)
    mixers = {"S": mamba2_options(hf, d), "A": dict(n_heads=H, n_kv_heads=Hk, window=None, rope_base=theta,
                                            rope_dims=rope_dims)}
    mixers = {c: options for c, options in mixers.items() if c in pattern}
    F = hf.count("intermediate_size")
    config = dict(vocab_size=hf.count("vocab_size"), d_model=d, pattern=pattern, mixers=mixers,
                  mlp_hidden={c: F for c in mixers}, mlp_kind="swiglu", mlp_bias=hf.flag("mlp_bias", False),
                  norm="rmsnorm", norm_eps=hf.number("rms_norm_eps", 1e-5))
    return config, hf.flag("tie_word_embeddings", False)


def unfit(cfg):
    """Why the hybridref config cannot be a BambaForCausalLM, or None when it can."""
    letters, mixers = set(cfg["pattern"]), cfg["mixers"]
    if not letters <= {"S", "A"}:
        return f"its pattern {cfg['pattern']!r} is not Mamba-2 (S) and attention (A) blocks only"
    widths = {cfg["mlp_hidden"][c] for c in letters}
    if cfg["mlp_kind"] != "swiglu" or cfg["norm"] != "rmsnorm" or len(widths) != 1 or not min(widths):
        return "its blocks are not RMSNorm blocks with SwiGLU MLPs of one width"
    if "S" in letters and mixers["S"]["norm_eps"] != cfg["norm_eps"]:
        return "its Mamba-2 gated norms' epsilon is not its RMSNorms' (transformers has one rms_norm_eps)"
    if "S" in letters and mixers["S"]["d_inner"] not in (None, mixers["S"]["expand"] * cfg["d_model"]):
        return "its Mamba-2 mixers' d_inner is not mamba_expand · hidden_size"
    a = mixers.get("A")
    if a is not None and (why := narrow_heads(a, cfg["d_model"])):
        return why
    if a is not None and (a["window"] is not None or a["rope_base"] is None or a["out_bias"]):
        return "its attention has a window, no RoPE or an output bias"
    return None


def config_to_hf(cfg, tied):
    """The config.json of the BambaForCausalLM a hybridref config (for which unfit() is None) describes."""
    d, pattern, mixers = cfg["d_model"], cfg["pattern"], cfg["mixers"]
    # without S (A) blocks, sizes that transformers' config accepts and nothing uses
    m = mixers.get("S", dict(d_state=16, d_conv=4, expand=2, headdim=2 * d, ngroups=1, chunk=256))
    a = mixers.get("A", dict(n_heads=1, n_kv_heads=1, rope_base=10000.0, rope_dims=None))
    head_dim = d // a["n_heads"]
    return dict(architectures=[ARCH], model_type=MODEL_TYPE, vocab_size=cfg["vocab_size"], hidden_size=d,
                intermediate_size=cfg["mlp_hidden"][pattern[0]], num_hidden_layers=len(pattern),
                attn_layer_indices=[i for i, c in enumerate(pattern) if c == "A"],
                num_attention_heads=a["n_heads"], num_key_value_heads=a["n_kv_heads"] or a["n_heads"],
                rope_parameters=dict(rope_type="default", rope_theta=a["rope_base"],
                                     partial_rotary_factor=(a["rope_dims"] or head_dim) / head_dim),
                mamba_n_heads=m["expand"] * d // m["headdim"], mamba_d_head=m["headdim"], mamba_n_groups=m["ngroups"],
                mamba_d_state=m["d_state"], mamba_d_conv=m["d_conv"], mamba_expand=m["expand"],
                mamba_chunk_size=m["chunk"],
                mamba_conv_bias=True, mamba_proj_bias=False, hidden_act="silu", rms_norm_eps=cfg["norm_eps"],
                attention_bias=False, mlp_bias=cfg["mlp_bias"], tie_word_embeddings=tied, dtype="float32")


def rules(cfg, tied):
    """The Rules (hf_rules) of every weight of the model `cfg` describes."""
    d, V = cfg["d_model"], cfg["vocab_size"]
    embed = ("model.embed_tokens.weight", (V, d))
    out = [Rule("embed.weight", [embed])]
    for i, letter in enumerate(cfg["pattern"]):
        hf, ours, m = f"model.layers.{i}.", f"blocks.{i}.", cfg["mixers"][letter]
        mixer = mixer_rules(hf + "mamba.", ours + "mixer.", m, d) if letter == "S" else \
            attention_rules(hf + "self_attn.", ours + "mixer.", d, m["n_heads"], m["n_kv_heads"] or m["n_heads"])
        out += [Rule(ours + "norm1.weight", [(hf + "input_layernorm.weight", (d,))]), *mixer,
                Rule(ours + "norm2.weight", [(hf + "pre_ff_layernorm.weight", (d,))]),
                *swiglu_rules(hf + "feed_forward.", ours + "mlp.", d, cfg["mlp_hidden"][letter], cfg["mlp_bias"])]
    out += [Rule("norm.weight", [("model.final_layernorm.weight", (d,))]),
            Rule("head.weight", [embed if tied else ("lm_head.weight", (V, d))])]
    return out


def prepare(hf, tensors):
    """The HF tensors as the rules read them (zero conv biases for a checkpoint without them); -> the tensors
    transformers ignores (a tied lm_head)."""
    if not hf.flag("mamba_conv_bias", True):
        zero_biases(tensors, [f"model.layers.{i}.mamba.conv1d.weight" for i in range(hf.count("num_hidden_layers"))])
    return {"lm_head.weight"} if hf.flag("tie_word_embeddings", False) else set()
