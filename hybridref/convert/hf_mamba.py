"""MambaForCausalLM (model_type "mamba") <-> a hybridref CharLM of pattern "M" × num_hidden_layers.

transformers' Mamba is embeddings, blocks x + mixer(RMSNorm(x)) with no MLP, a final RMSNorm, and an
lm_head tied to the embeddings by default; hybridref's Mamba mixer (hybridref/layers/mamba.py) is
the same S6 block, so the weights map one to one:

    backbone.embeddings.weight                      embed.weight
    backbone.layers.i.norm.weight                   blocks.i.norm1.weight
    backbone.layers.i.mixer.in_proj.weight          blocks.i.mixer.in_proj.weight   (2·Din, D)
    backbone.layers.i.mixer.conv1d.weight           blocks.i.mixer.conv_weight      (Din, 1, W) -> (Din, W)
    backbone.layers.i.mixer.conv1d.bias             blocks.i.mixer.conv_bias        (zeros when use_conv_bias is false)
    backbone.layers.i.mixer.{x_proj, dt_proj, out_proj}.weight, dt_proj.bias, A_log, D   the same names
    backbone.norm_f.weight                          norm.weight
    lm_head.weight (or the embeddings when tied)    head.weight

Config: hidden_size, num_hidden_layers, vocab_size, state_size, conv_kernel, expand,
time_step_rank ("auto" = ceil(hidden_size / 16)), layer_norm_epsilon, tie_word_embeddings (default
true). Refused: use_bias true (biases of in_proj/out_proj, which hybridref's mixer does not have),
hidden_act other than silu, an intermediate_size other than expand · hidden_size.
residual_in_fp32 changes nothing here: hybridref keeps the residual stream in float32 always. The
time_step_* entries, initializer_range and rescale_prenorm_residual only shape the initialization,
and use_mambapy / use_associative_scan / use_cache only choose transformers' implementation.
"""
import math

from .hf_rules import Rule, zero_biases

ARCH, MODEL_TYPE = "MambaForCausalLM", "mamba"
LETTER = "M"


def config_from_hf(hf):
    """(hybridref CharLM config, tied) from a Mamba config.json (hf_config.HFConfig)."""
    d = hf.count("hidden_size")
    expand = hf.count("expand", 2)
    inner = hf.get("intermediate_size", expand * d)
    if inner != expand * d:
        raise hf.refuse("intermediate_size", inner, f"Mamba's inner width is expand · hidden_size = {expand * d}")
    hf.require("use_bias", False, [False], "in_proj and out_proj without biases, as hybridref's Mamba mixer")
    hf.require("hidden_act", "silu", ["silu"], "the SiLU of the Mamba block")
    hf.flag("use_conv_bias", True)  # without one, the conv bias is zeros
    hf.flag("residual_in_fp32", True)  # float32 throughout in hybridref: no effect
    rank = hf.get("time_step_rank", "auto")
    rank = math.ceil(d / 16) if rank == "auto" else hf.count("time_step_rank")
    mixer = dict(d_state=hf.count("state_size", 16), d_conv=hf.count("conv_kernel", 4), expand=expand, dt_rank=rank)
    n = hf.count("num_hidden_layers")
    config = dict(vocab_size=hf.count("vocab_size"), d_model=d, pattern=LETTER * n, mixers={LETTER: mixer},
                  mlp_hidden={LETTER: 0}, norm="rmsnorm", norm_eps=hf.number("layer_norm_epsilon", 1e-5))
    return config, hf.flag("tie_word_embeddings", True)


def unfit(cfg):
    """Why the hybridref config cannot be a MambaForCausalLM, or None when it can."""
    if set(cfg["pattern"]) != {LETTER}:
        return f"its pattern {cfg['pattern']!r} is not Mamba blocks only"
    if cfg["mlp_hidden"][LETTER] or cfg["norm"] != "rmsnorm":
        return "its Mamba blocks have an MLP or a norm other than RMSNorm"
    if cfg["mixers"][LETTER]["mamba_heads"] != 1:
        return "its Mamba blocks are multi-head (mamba_heads, Zamba's)"
    return None


def config_to_hf(cfg, tied):
    """The config.json of the MambaForCausalLM a hybridref config (for which unfit() is None) describes."""
    m, d = cfg["mixers"][LETTER], cfg["d_model"]
    return dict(architectures=[ARCH], model_type=MODEL_TYPE, vocab_size=cfg["vocab_size"], hidden_size=d,
                num_hidden_layers=len(cfg["pattern"]), state_size=m["d_state"], conv_kernel=m["d_conv"],
                expand=m["expand"], intermediate_size=m["expand"] * d,
                time_step_rank=m["dt_rank"] or math.ceil(d / 16), layer_norm_epsilon=cfg["norm_eps"],
                use_bias=False, use_conv_bias=True, hidden_act="silu", residual_in_fp32=True,
                tie_word_embeddings=tied, dtype="float32")


def mixer_rules(mx, ours, m, d):
    """The Rules of one Mamba mixer: HF names under `mx` ("backbone.layers.i.mixer."), ours under `ours`
    ("blocks.i.mixer."); m the mixer's options, d the model width (also Jamba's Mamba layers, hf_jamba)."""
    din, N, W = m["expand"] * d, m["d_state"], m["d_conv"]
    R = m["dt_rank"] or math.ceil(d / 16)
    return [Rule(ours + "in_proj.weight", [(mx + "in_proj.weight", (2 * din, d))]),
            Rule(ours + "conv_weight", [(mx + "conv1d.weight", (din, 1, W))]),
            Rule(ours + "conv_bias", [(mx + "conv1d.bias", (din,))]),
            Rule(ours + "x_proj.weight", [(mx + "x_proj.weight", (R + 2 * N, din))]),
            Rule(ours + "dt_proj.weight", [(mx + "dt_proj.weight", (din, R))]),
            Rule(ours + "dt_proj.bias", [(mx + "dt_proj.bias", (din,))]),
            Rule(ours + "A_log", [(mx + "A_log", (din, N))]),
            Rule(ours + "D", [(mx + "D", (din,))]),
            Rule(ours + "out_proj.weight", [(mx + "out_proj.weight", (d, din))])]


def backbone_rules(cfg, tied, mixer_rules):
    """The Rules of a model laid out as transformers' Mamba and Mamba-2 (also hf_mamba2): backbone.embeddings,
    per layer a norm and the mixer whose Rules mixer_rules(HF prefix, our prefix, options, width) gives,
    backbone.norm_f, the head."""
    m, d, V = cfg["mixers"][cfg["pattern"][0]], cfg["d_model"], cfg["vocab_size"]
    embed = ("backbone.embeddings.weight", (V, d))
    out = [Rule("embed.weight", [embed])]
    for i in range(len(cfg["pattern"])):
        hf, ours = f"backbone.layers.{i}.", f"blocks.{i}."
        out += [Rule(ours + "norm1.weight", [(hf + "norm.weight", (d,))]),
                *mixer_rules(hf + "mixer.", ours + "mixer.", m, d)]
    out += [Rule("norm.weight", [("backbone.norm_f.weight", (d,))]),
            Rule("head.weight", [embed if tied else ("lm_head.weight", (V, d))])]
    return out


def rules(cfg, tied):
    """The Rules (hf_rules) of every weight of the model `cfg` describes."""
    return backbone_rules(cfg, tied, mixer_rules)


def backbone_tensors(hf, tensors):
    """The HF tensors of a Mamba or Mamba-2 backbone (also hf_mamba2) as the rules read them: the zero conv
    biases of a checkpoint without them, the embeddings under their current name (transformers renames
    an older 'backbone.embedding.weight')."""
    if "backbone.embedding.weight" in tensors:
        tensors["backbone.embeddings.weight"] = tensors.pop("backbone.embedding.weight")
    if not hf.flag("use_conv_bias", True):
        zero_biases(tensors, [f"backbone.layers.{i}.mixer.conv1d.weight" for i in range(hf.count("num_hidden_layers"))])


def prepare(hf, tensors):
    """backbone_tensors; -> the tensors transformers ignores (a tied lm_head)."""
    backbone_tensors(hf, tensors)
    return {"lm_head.weight"} if hf.flag("tie_word_embeddings", True) else set()
