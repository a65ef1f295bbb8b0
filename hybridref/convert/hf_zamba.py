"""ZambaForCausalLM (model_type "zamba") <-> a hybridref CharLM of "M" and "X" blocks without MLPs.

transformers' Zamba is embeddings, then per layer of layers_block_type either a Mamba layer
x + Mamba(RMSNorm(x)) ("mamba", or "linear_attention" as transformers 5 names it) or a hybrid layer
x + Mamba(RMSNorm(x + W_call·Shared(concat(x, e)))) ("hybrid", e the token embeddings, Shared one
attention + MLP block whose weights every hybrid layer shares), a final RMSNorm and an lm_head tied to
the embeddings by default. In hybridref (hybridref/layers/zamba.py, mamba.py):

    "M": the Mamba mixer with mamba_heads = n_mamba_heads (ZambaMambaMixer's heads), no MLP
    "X": ZambaHybrid: the "Z" call (shared block, W_call) and the Mamba after it, no norm1 (the layer reads
         the residual stream itself), its MLP "gated_gelu_erf" for hidden_act "gelu" (torch's exact GELU) or
         "gated_gelu" for "gelu_pytorch_tanh", without biases, no RoPE

    model.embed_tokens.weight                                     embed.weight
    model.layers.i.input_layernorm.weight                         blocks.i.norm1.weight                ("M")
    model.layers.i.mamba.*                                        blocks.i.mixer.*                      ("M")
    model.layers.i.linear.weight                                  blocks.i.mixer.call.call_out.weight   ("X")
    model.layers.i.mamba_decoder.input_layernorm.weight           blocks.i.mixer.norm.weight            ("X")
    model.layers.i.mamba_decoder.mamba.*                          blocks.i.mixer.mamba.*                ("X")
    model.layers.j.shared_transf.input_layernorm.weight           blocks.j.mixer.call.shared.norm_in.weight
    model.layers.j.shared_transf.self_attn.{q,k,v}_proj.weight    …shared.attn.qkv.weight  rows [√2·q; k; v]
    model.layers.j.shared_transf.self_attn.o_proj.weight          …shared.attn.out.weight  (D, 2D)
    model.layers.j.shared_transf.pre_ff_layernorm.weight          …shared.norm_ff.weight
    model.layers.j.shared_transf.feed_forward.{gate,up,down}_proj …shared.mlp.{fc (rows [gate; up]), proj}.weight
    model.final_layernorm.weight                                  norm.weight
    lm_head.weight (or the embeddings when tied)                  head.weight
j is the first hybrid layer: transformers ties the other layers' shared_transf to it and saves it once, as
hybridref holds the shared weights once. It does so only when tie_word_embeddings is true: untied, each hybrid
layer has a shared_transf of its own, so the import requires the copies to be equal (else it refuses the
checkpoint) and the export writes the shared block under every hybrid layer. A Mamba's tensors, per head h
of Dh = Din/H channels:
    in_proj.weight (2Din, D), rows interleaved [x₀, z₀, x₁, z₁, …]   in_proj.weight rows [x; z] (to_ours/to_theirs)
    conv1d.weight (Din, 1, W), conv1d.bias                           conv_weight (Din, W), conv_bias
    x_proj_weight (H, R+2N, Dh), dt_proj_weight (H, Dh, R),          x_proj.weight, dt_proj.weight, dt_proj.bias
    dt_proj_bias (H, Dh)                                             (block-diagonal; one head: Mamba's matrices)
    A_log (H, Dh, N), D (H, Dh), out_proj.weight                     A_log (Din, N), D (Din,), out_proj.weight
The softmax scale: Zamba's 1/√(P/2) is hybridref's 1/√P with W_q scaled by √2 (to_ours; to_theirs divides).

Config: hidden_size, num_hidden_layers, layers_block_type (absent: transformers' default from
attn_layer_period/offset), num_attention_heads, num_key_value_heads, intermediate_size, n_mamba_heads,
mamba_d_state, mamba_d_conv, mamba_expand, mamba_dt_rank ("auto" = ceil(hidden_size / 16)), mamba_conv_bias
(false: zero conv biases), rms_norm_eps (default 1e-5), hidden_act, vocab_size, tie_word_embeddings (default
true). Refused: attention_hidden_size other than 2·hidden_size, attention_head_dim other than
2·hidden_size / num_attention_heads, hidden_act other than gelu / gelu_pytorch_tanh, hidden_mamba_act other
than silu, mamba_proj_bias true. attention_dropout, initializer_range, time_step_*, use_mamba_kernels,
use_associative_scan, num_logits_to_keep, max_position_embeddings and use_cache change nothing here.
"""
import math

import numpy as np

from ..errors import UserError
from .hf_llama import attention_rules, swiglu_rules
from .hf_rules import Rule, zero_biases

ARCH, MODEL_TYPE = "ZambaForCausalLM", "zamba"
MAMBA, HYBRID = "M", "X"
LAYER_TYPES = {"mamba": MAMBA, "linear_attention": MAMBA, "hybrid": HYBRID}
ACTS = {"gelu": "gated_gelu_erf", "gelu_pytorch_tanh": "gated_gelu"}  # hidden_act -> the shared MLP's kind
Q_SCALE = math.sqrt(2.0)  # Zamba's softmax scale 1/√(P/2) = hybridref's 1/√P on √2·q
MAMBA_OPTIONS = ("d_state", "d_conv", "expand", "dt_rank", "mamba_heads")


def _layer_types(hf, n):
    """The config's layers_block_type as "M"/"X" letters; absent, transformers' default (two Mamba layers, a
    hybrid one, then hybrid when i % attn_layer_period == attn_layer_offset)."""
    types = hf.get("layers_block_type")
    if types is None:
        period, offset = hf.count("attn_layer_period", 6), hf.count("attn_layer_offset", 4, minimum=0)
        types = ["mamba", "mamba", "hybrid"] + ["hybrid" if i % period == offset else "mamba" for i in range(n - 3)]
    if not isinstance(types, list) or len(types) != n or any(t not in LAYER_TYPES for t in types):
        raise hf.refuse("layers_block_type", types, f"{n} entries (num_hidden_layers) of {', '.join(LAYER_TYPES)}")
    return "".join(LAYER_TYPES[t] for t in types)


def config_from_hf(hf):
    """(hybridref CharLM config, tied) from a Zamba config.json (hf_config.HFConfig)."""
    d, n = hf.count("hidden_size"), hf.count("num_hidden_layers")
    H = hf.count("num_attention_heads")
    Hk = hf.count("num_key_value_heads", H)
    if (2 * d) % H or H % Hk:
        raise hf.refuse("num_attention_heads", H, f"heads dividing attention_hidden_size {2 * d}, and a multiple "
                                                  f"of num_key_value_heads {Hk}")
    hf.require("attention_hidden_size", 2 * d, [2 * d], f"2 · hidden_size = {2 * d}, Zamba's concatenation")
    hf.require("attention_head_dim", 2 * d // H, [2 * d // H], f"2 · hidden_size / num_attention_heads = {2 * d // H}")
    act = hf.require("hidden_act", "gelu", list(ACTS),
                     "the shared MLP's GELU, exact (gelu) or tanh (gelu_pytorch_tanh)")
    hf.require("hidden_mamba_act", "silu", ["silu"], "the SiLU of the Mamba layers")
    hf.require("mamba_proj_bias", False, [False], "Mamba's in_proj and out_proj without biases")
    hf.flag("mamba_conv_bias", True)  # without one, the conv bias is zeros (prepare)
    eps, pattern = hf.number("rms_norm_eps", 1e-5), _layer_types(hf, n)
    rank = hf.get("mamba_dt_rank", "auto")
    rank = math.ceil(d / 16) if rank == "auto" else hf.count("mamba_dt_rank")
    expand, heads = hf.count("mamba_expand", 2), hf.count("n_mamba_heads", 2)
    if (expand * d) % heads:
        raise hf.refuse("n_mamba_heads", heads, f"heads dividing the Mamba width mamba_expand · hidden_size = "
                                                f"{expand * d}")
    mamba = dict(d_state=hf.count("mamba_d_state", 16), d_conv=hf.count("mamba_d_conv", 4), expand=expand,
                 dt_rank=rank, mamba_heads=heads)
    mixers = {MAMBA: mamba,
              HYBRID: dict(n_heads=H, n_kv_heads=Hk, ffn_hidden=hf.count("intermediate_size"), rope_base=None,
                           mlp_kind=ACTS[act], mlp_bias=False, norm_eps=eps, **mamba)}
    mixers = {letter: options for letter, options in mixers.items() if letter in pattern}
    config = dict(vocab_size=hf.count("vocab_size"), d_model=d, pattern=pattern, mixers=mixers,
                  mlp_hidden={letter: 0 for letter in mixers}, norm="rmsnorm", norm_eps=eps)
    return config, hf.flag("tie_word_embeddings", True)


def unfit(cfg):
    """Why the hybridref config cannot be a ZambaForCausalLM, or None when it can."""
    pattern, mixers = cfg["pattern"], cfg["mixers"]
    if HYBRID not in pattern or not set(pattern) <= {MAMBA, HYBRID}:
        return f"its pattern {pattern!r} is not Mamba blocks and Zamba hybrid layers ('X') with at least one of them"
    if any(cfg["mlp_hidden"][letter] for letter in set(pattern)) or cfg["norm"] != "rmsnorm":
        return "its blocks have MLPs or a norm other than RMSNorm"
    x, m = mixers[HYBRID], mixers.get(MAMBA)
    if x["rope_base"] is not None or x["mlp_bias"] or x["norm_eps"] != cfg["norm_eps"]:
        return "its hybrid layers have RoPE, MLP biases or another norm eps than the model's"
    if m and (any(m[k] != x[k] for k in MAMBA_OPTIONS) or m["directions"] != 1 or m["bcdt_rms"] is not None):
        return "its Mamba blocks differ from the hybrid layers' Mamba, scan several directions or have bcdt_rms"
    return None


def config_to_hf(cfg, tied):
    """The config.json of the ZambaForCausalLM a hybridref config (for which unfit() is None) describes."""
    d, x = cfg["d_model"], cfg["mixers"][HYBRID]
    act = next(a for a, kind in ACTS.items() if kind == x["mlp_kind"])
    return dict(architectures=[ARCH], model_type=MODEL_TYPE, vocab_size=cfg["vocab_size"], hidden_size=d,
                num_hidden_layers=len(cfg["pattern"]),
                layers_block_type=["hybrid" if c == HYBRID else "mamba" for c in cfg["pattern"]],
                num_attention_heads=x["n_heads"], num_key_value_heads=x["n_kv_heads"] or x["n_heads"],
                attention_hidden_size=2 * d, attention_head_dim=2 * d // x["n_heads"],
                intermediate_size=x["ffn_hidden"] or 4 * d, hidden_act=act, hidden_mamba_act="silu",
                n_mamba_heads=x["mamba_heads"], mamba_d_state=x["d_state"], mamba_d_conv=x["d_conv"],
                mamba_expand=x["expand"], mamba_dt_rank=x["dt_rank"] or math.ceil(d / 16),
                mamba_conv_bias=True, mamba_proj_bias=False, rms_norm_eps=cfg["norm_eps"],
                tie_word_embeddings=tied, dtype="float32")


def _mamba_rules(mx, ours, m, d):
    """The Rules of one ZambaMambaMixer under `mx`, ours under `ours`; m the Mamba options."""
    din, N, W, H = m["expand"] * d, m["d_state"], m["d_conv"], m["mamba_heads"]
    R, dh = m["dt_rank"] or math.ceil(d / 16), din // H
    return [Rule(ours + "in_proj.weight", [(mx + "in_proj.weight", (2 * din, d))]),
            Rule(ours + "conv_weight", [(mx + "conv1d.weight", (din, 1, W))]),
            Rule(ours + "conv_bias", [(mx + "conv1d.bias", (din,))]),
            Rule(ours + "x_proj.weight", [(mx + "x_proj_weight", (H, R + 2 * N, dh))]),
            Rule(ours + "dt_proj.weight", [(mx + "dt_proj_weight", (H, dh, R))]),
            Rule(ours + "dt_proj.bias", [(mx + "dt_proj_bias", (H, dh))]),
            Rule(ours + "A_log", [(mx + "A_log", (H, dh, N))]),
            Rule(ours + "D", [(mx + "D", (H, dh))]),
            Rule(ours + "out_proj.weight", [(mx + "out_proj.weight", (d, din))])]


def _shared_rules(st, ours, d, x):
    """The Rules of the shared block (ZambaAttentionDecoderLayer) under `st`, ours under `ours`."""
    H, Hk = x["n_heads"], x["n_kv_heads"] or x["n_heads"]
    qkv = attention_rules(st + "self_attn.", ours + "attn.", 2 * d, H, Hk)[0]  # over 2D; o_proj is 2D -> D
    return [Rule(ours + "norm_in.weight", [(st + "input_layernorm.weight", (2 * d,))]), qkv,
            Rule(ours + "attn.out.weight", [(st + "self_attn.o_proj.weight", (d, 2 * d))]),
            Rule(ours + "norm_ff.weight", [(st + "pre_ff_layernorm.weight", (d,))]),
            # gate_proj, up_proj, down_proj: a SwiGLU's layout, here a GeGLU's
            *swiglu_rules(st + "feed_forward.", ours + "mlp.", d, x["ffn_hidden"] or 4 * d, bias=False)]


def rules(cfg, tied):
    """The Rules (hf_rules) of every weight of the model `cfg` describes."""
    d, V, pattern = cfg["d_model"], cfg["vocab_size"], cfg["pattern"]
    embed = ("model.embed_tokens.weight", (V, d))
    out = [Rule("embed.weight", [embed])]
    for i, letter in enumerate(pattern):
        hf, ours, m = f"model.layers.{i}.", f"blocks.{i}.mixer.", cfg["mixers"][letter]
        if letter == MAMBA:
            out += [Rule(f"blocks.{i}.norm1.weight", [(hf + "input_layernorm.weight", (d,))]),
                    *_mamba_rules(hf + "mamba.", ours, m, d)]
            continue
        out += [Rule(ours + "call.call_out.weight", [(hf + "linear.weight", (d, d))]),
                Rule(ours + "norm.weight", [(hf + "mamba_decoder.input_layernorm.weight", (d,))]),
                *_mamba_rules(hf + "mamba_decoder.mamba.", ours + "mamba.", m, d)]
        first = pattern.index(HYBRID)
        if i == first or not tied:  # untied, transformers holds (and reads) a copy in every hybrid layer
            out += _shared_rules(hf + "shared_transf.", f"blocks.{first}.mixer.call.shared.", d, m)
    out += [Rule("norm.weight", [("model.final_layernorm.weight", (d,))]),
            Rule("head.weight", [embed if tied else ("lm_head.weight", (V, d))])]
    return out


def _mamba_prefixes(cfg):
    """Where each layer's Mamba parameters are: an "M" block's mixer, an "X" layer's mixer.mamba."""
    return [f"blocks.{i}.mixer." + ("" if c == MAMBA else "mamba.") for i, c in enumerate(cfg["pattern"])]


def _scale_q(cfg, params, factor):
    """params with the shared block's query rows of qkv multiplied by `factor`."""
    qkv = f"blocks.{cfg['pattern'].index(HYBRID)}.mixer.call.shared.attn.qkv.weight"
    w = params[qkv].copy()
    w[:2 * cfg["d_model"]] *= np.asarray(factor, w.dtype)  # the H · P = 2D query rows
    return {**params, qkv: w}


def to_ours(cfg, params):
    """Zamba's interleaved in_proj rows [x₀, z₀, x₁, …] -> [x; z], and q × √2 (the softmax scale)."""
    out = dict(params)
    for prefix in _mamba_prefixes(cfg):
        w = out[prefix + "in_proj.weight"]
        out[prefix + "in_proj.weight"] = np.concatenate([w[0::2], w[1::2]])
    return _scale_q(cfg, out, Q_SCALE)


def to_theirs(cfg, params):
    """to_ours' inverse: in_proj rows [x; z] interleaved, q / √2."""
    out = dict(params)
    for prefix in _mamba_prefixes(cfg):
        w = out[prefix + "in_proj.weight"]
        both = np.empty_like(w)
        both[0::2], both[1::2] = np.split(w, 2)
        out[prefix + "in_proj.weight"] = both
    return _scale_q(cfg, out, 1 / Q_SCALE)


def _check_shared_copies(hf, tensors, pattern, drop):
    """The shared block's tensors under the later hybrid layers (a checkpoint of untied embeddings, or saved
    so) must equal the first's; dropped when `drop` (a tied model, whose rules read the first's only)."""
    hybrid = [i for i, c in enumerate(pattern) if c == HYBRID]
    for i in hybrid[1:]:
        prefix = f"model.layers.{i}.shared_transf."
        for name in [n for n in tensors if n.startswith(prefix)]:
            first = name.replace(prefix, f"model.layers.{hybrid[0]}.shared_transf.", 1)
            if first not in tensors or not np.array_equal(tensors[first], tensors[name]):
                raise UserError(f"{hf.where}: tensor {name!r} differs from the first hybrid layer's {first!r}: not a "
                                f"Zamba, whose hybrid layers share one block (transformers ties them only when "
                                f"tie_word_embeddings is true); hybridref holds one shared block")
            if drop:
                del tensors[name]


def prepare(hf, tensors):
    """The HF tensors as the rules read them: zero conv biases for a checkpoint saved without them, copies of
    the shared block dropped; -> the tensors transformers ignores (a tied lm_head)."""
    n = hf.count("num_hidden_layers")
    if not hf.flag("mamba_conv_bias", True):
        zero_biases(tensors, [f"model.layers.{i}.{part}.conv1d.weight" for i in range(n)
                              for part in ("mamba", "mamba_decoder.mamba")])
    tied = hf.flag("tie_word_embeddings", True)
    _check_shared_copies(hf, tensors, _layer_types(hf, n), drop=tied)
    return {"lm_head.weight"} if tied else set()
