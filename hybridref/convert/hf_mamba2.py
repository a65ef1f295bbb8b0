"""Mamba2ForCausalLM (model_type "mamba2") <-> a hybridref CharLM of pattern "S" × num_hidden_layers.

transformers' Mamba-2 is embeddings, blocks x + mixer(RMSNorm(x)) with no MLP, a final RMSNorm and
an lm_head (untied by default); its mixer is hybridref's Mamba-2 mixer (hybridref/layers/mamba2.py):
in_proj rows [z, x, B, C, dt], a depthwise conv over x, B and C, Δ = softplus(dt + dt_bias), one
decay A = −exp(A_log) per head, the SSD recurrence with D, and RMSNormGated(y, z) = RMSNorm over
n_groups groups of y ⊙ SiLU(z) (norm_before_gate false) before out_proj. The weights map one to one:

    backbone.embeddings.weight                      embed.weight
    backbone.layers.i.norm.weight                   blocks.i.norm1.weight
    backbone.layers.i.mixer.in_proj.weight          blocks.i.mixer.in_proj.weight   (2·Din + 2·G·N + H, D)
    backbone.layers.i.mixer.conv1d.weight           blocks.i.mixer.conv_weight      (Din+2GN, 1, W) -> (Din+2GN, W)
    backbone.layers.i.mixer.conv1d.bias             blocks.i.mixer.conv_bias        (zeros when use_conv_bias is false)
    backbone.layers.i.mixer.{dt_bias, A_log, D}     the same names                  (H,)
    backbone.layers.i.mixer.norm.weight             blocks.i.mixer.norm.weight      (Din,)
    backbone.layers.i.mixer.out_proj.weight         blocks.i.mixer.out_proj.weight
    backbone.norm_f.weight                          norm.weight
    lm_head.weight (or the embeddings when tied)    head.weight

Config: hidden_size, num_hidden_layers, vocab_size, state_size, conv_kernel, expand, num_heads and
head_dim (num_heads · head_dim = expand · hidden_size), n_groups, layer_norm_epsilon (the block
norms' and the gated norm's epsilon: the mixer option norm_eps), tie_word_embeddings (default
false). Refused: use_bias true (biases of in_proj/out_proj, which hybridref's mixer does not have),
hidden_act other than silu, a time_step_limit other than (0, ∞) (transformers clamps Δ to it in its
chunked forward but not in its one-token step, so its own forward and generate disagree: no single
model to match). chunk_size, which only chooses how the scan is computed (rounding), becomes the
mixer's chunk, so that a round trip writes it back; time_step_rank is unused by Mamba-2 (no
dt_proj); residual_in_fp32 changes nothing (hybridref's residual stream is float32);
time_step_{min,max,floor}, initializer_range and rescale_prenorm_residual only shape the initialization.
"""
import math

from .hf_mamba import backbone_rules, backbone_tensors
from .hf_rules import Rule

ARCH, MODEL_TYPE = "Mamba2ForCausalLM", "mamba2"
LETTER = "S"


def _json_float(value):
    """A number of config.json: transformers 5 writes the floats JSON has no literal for as
    {"__float__": "Infinity"} (earlier versions as the non-standard literal Infinity, which json reads)."""
    if isinstance(value, dict) and set(value) == {"__float__"} and isinstance(value["__float__"], str):
        return float(value["__float__"])
    return value


def check_dt_limit(hf):
    """time_step_limit must be transformers' default (0, ∞): Δ unclamped, as hybridref's mixer (also
    Bamba's, hf_bamba)."""
    limit = hf.get("time_step_limit", [0.0, math.inf])
    if not isinstance(limit, (list, tuple)) or [_json_float(v) for v in limit] != [0.0, math.inf]:
        raise hf.refuse("time_step_limit", limit, "the default [0.0, Infinity]: Δ is not clamped")


def config_from_hf(hf):
    """(hybridref CharLM config, tied) from a Mamba-2 config.json (hf_config.HFConfig)."""
    d, expand = hf.count("hidden_size"), hf.count("expand", 2)
    heads, headdim, groups = hf.count("num_heads", 128), hf.count("head_dim", 64), hf.count("n_groups", 8)
    if heads * headdim != expand * d:
        raise hf.refuse("num_heads", heads, f"num_heads · head_dim = expand · hidden_size = {expand * d} "
                                            f"(head_dim {headdim})")
    if heads % groups:
        raise hf.refuse("n_groups", groups, f"a divisor of num_heads {heads}")
    hf.require("use_bias", False, [False], "in_proj and out_proj without biases, as hybridref's Mamba-2 mixer")
    hf.require("hidden_act", "silu", ["silu"], "the SiLU of the Mamba-2 block")
    hf.flag("use_conv_bias", True)  # without one, the conv bias is zeros
    hf.flag("residual_in_fp32", True)  # float32 throughout in hybridref: no effect
    check_dt_limit(hf)
    eps = hf.number("layer_norm_epsilon", 1e-5)
    mixer = dict(d_state=hf.count("state_size", 128), d_conv=hf.count("conv_kernel", 4), expand=expand,
                 headdim=headdim, ngroups=groups, chunk=hf.count("chunk_size", 256), norm_eps=eps)
    n = hf.count("num_hidden_layers")
    config = dict(vocab_size=hf.count("vocab_size"), d_model=d, pattern=LETTER * n, mixers={LETTER: mixer},
                  mlp_hidden={LETTER: 0}, norm="rmsnorm", norm_eps=eps)
    return config, hf.flag("tie_word_embeddings", False)


def unfit(cfg):
    """Why the hybridref config cannot be a Mamba2ForCausalLM, or None when it can."""
    if set(cfg["pattern"]) != {LETTER}:
        return f"its pattern {cfg['pattern']!r} is not Mamba-2 blocks only"
    if cfg["mlp_hidden"][LETTER] or cfg["norm"] != "rmsnorm":
        return "its Mamba-2 blocks have an MLP or a norm other than RMSNorm"
    if cfg["mixers"][LETTER]["d_inner"] not in (None, cfg["mixers"][LETTER]["expand"] * cfg["d_model"]):
        return "its Mamba-2 mixers' d_inner is not expand · d_model (transformers' intermediate size)"
    if cfg["mixers"][LETTER]["norm_eps"] != cfg["norm_eps"]:
        return (f"its gated norms' epsilon {cfg['mixers'][LETTER]['norm_eps']} is not its RMSNorms' "
                f"{cfg['norm_eps']} (transformers has one layer_norm_epsilon)")
    return None


def config_to_hf(cfg, tied):
    """The config.json of the Mamba2ForCausalLM a hybridref config (for which unfit() is None) describes."""
    m, d = cfg["mixers"][LETTER], cfg["d_model"]
    return dict(architectures=[ARCH], model_type=MODEL_TYPE, vocab_size=cfg["vocab_size"], hidden_size=d,
                num_hidden_layers=len(cfg["pattern"]), state_size=m["d_state"], conv_kernel=m["d_conv"],
                expand=m["expand"], num_heads=m["expand"] * d // m["headdim"], head_dim=m["headdim"],
                n_groups=m["ngroups"], chunk_size=m["chunk"], layer_norm_epsilon=cfg["norm_eps"], use_bias=False,
                use_conv_bias=True, hidden_act="silu", residual_in_fp32=True, tie_word_embeddings=tied,
                dtype="float32")


def mixer_rules(mx, ours, m, d):
    """The Rules of one Mamba-2 mixer: HF names under `mx` ("backbone.layers.i.mixer."), ours under `ours`
    ("blocks.i.mixer."); m the mixer's options, d the model width (also Bamba's Mamba-2 layers, hf_bamba)."""
    din, N, G, W = m["d_inner"] or m["expand"] * d, m["d_state"], m["ngroups"], m["d_conv"]
    H, conv = din // m["headdim"], din + 2 * G * N
    return [Rule(ours + "in_proj.weight", [(mx + "in_proj.weight", (din + conv + H, d))]),
            Rule(ours + "conv_weight", [(mx + "conv1d.weight", (conv, 1, W))]),
            Rule(ours + "conv_bias", [(mx + "conv1d.bias", (conv,))]),
            Rule(ours + "dt_bias", [(mx + "dt_bias", (H,))]),
            Rule(ours + "A_log", [(mx + "A_log", (H,))]),
            Rule(ours + "D", [(mx + "D", (H,))]),
            Rule(ours + "norm.weight", [(mx + "norm.weight", (din,))]),
            Rule(ours + "out_proj.weight", [(mx + "out_proj.weight", (d, din))])]


def rules(cfg, tied):
    """The Rules (hf_rules) of every weight of the model `cfg` describes."""
    return backbone_rules(cfg, tied, mixer_rules)


def prepare(hf, tensors):
    """hf_mamba.backbone_tensors; -> the tensors transformers ignores (a tied lm_head)."""
    backbone_tensors(hf, tensors)
    return {"lm_head.weight"} if hf.flag("tie_word_embeddings", False) else set()
