"""RecurrentGemmaForCausalLM (model_type "recurrent_gemma", Griffin) <-> a hybridref CharLM of the
letters L (the RG-LRU recurrent block, hybridref/layers/rglru.py) and A (local multi-query attention,
hybridref/layers/attention.py), every block with a GeGLU MLP.

transformers' RecurrentGemma, against hybridref's pieces:

    embeddings · bf16(√hidden_size)       the token embeddings times √D rounded to bfloat16 (a bfloat16
                                          buffer in transformers): folded into our embedding matrix
    RMSNorm x·rstd·(1 + w)                Gemma's norm: our RMSNorm weight is 1 + w
    block_types cycled over the layers    "recurrent" -> L, "attention" -> A
    recurrent block                       linear_y/x/out with biases, GeLU (tanh) on y, conv1d of
                                          conv1d_width with bias, the RG-LRU with c = 8 and the multiplier
                                          √(1 − a²) replaced by 1 at position 0: the same as ours; its
                                          gates are block-diagonal x_h W_h + b_h per head, ours
                                          x_h W_hᵀ + b_h, so each block is transposed
    attention                             q/k/v without biases, o_proj with a bias (our option out_bias),
                                          num_key_value_heads (1: multi-query), RoPE on the first
                                          partial_rotary_factor · head_dim dims (our option rope_dims),
                                          keys q − W < k ≤ q for attention_window_size W: our window W − 1
                                          (ours counts the keys before the query)
    MLP                                   gelu_pytorch_tanh(gate) ⊙ up, then down, biases: our
                                          "gated_gelu" of width intermediate_size // 2, fc rows [gate; up]
    logits                                logits_soft_cap c: c·tanh(z/c) (our model option logit_softcap)

so the weights map as

    model.embed_tokens.weight · bf16(√D)                     embed.weight
    model.layers.i.temporal_pre_norm.weight + 1              blocks.i.norm1.weight
    model.layers.i.channel_pre_norm.weight + 1               blocks.i.norm2.weight
    model.layers.i.temporal_block.linear_{x,y,out}.*         blocks.i.mixer.linear_{x,y,out}.*
    model.layers.i.temporal_block.conv_1d.{weight,bias}      blocks.i.mixer.conv_{weight,bias}  (C,1,W) -> (C,W)
    model.layers.i.temporal_block.rg_lru.recurrent_param     blocks.i.mixer.a_param
    ...rg_lru.{input,recurrent}_gate_weight (H,P,P)          blocks.i.mixer.{input,a}_gate.weight, each block transposed
    ...rg_lru.{input,recurrent}_gate_bias (H,P)              blocks.i.mixer.{input,a}_gate.bias
    model.layers.i.temporal_block.{q,k,v}_proj.weight        blocks.i.mixer.qkv.weight  rows [q; k; v]
    model.layers.i.temporal_block.o_proj.{weight,bias}       blocks.i.mixer.out.{weight,bias}
    model.layers.i.mlp_block.{gate,up}_proj.{weight,bias}    blocks.i.mlp.fc.{weight,bias}  rows [gate; up]
    model.layers.i.mlp_block.down_proj.{weight,bias}         blocks.i.mlp.proj.{weight,bias}
    model.final_norm.weight + 1                              norm.weight
    lm_head.weight (or model.embed_tokens.weight when tied)  head.weight

The sums, products and transposes are `to_ours` (import) and `to_theirs` (export); the export writes
tie_word_embeddings true exactly when the embedding is the head times bf16(√D), as the import of a
tied checkpoint leaves it.

Config: hidden_size, num_hidden_layers, vocab_size, intermediate_size, num_attention_heads (the
attention's heads and the RG-LRU gates' blocks), num_key_value_heads (default: the heads), lru_width
(default hidden_size), attention_window_size, conv1d_width, logits_soft_cap,
rms_norm_eps, rope_parameters (rope_theta, partial_rotary_factor 0.5), block_types,
tie_word_embeddings (default true). Refused: attention_bias true, hidden_activation other than
gelu_pytorch_tanh, a RoPE type other than "default", a rotary part that is not an even number of
dims, a head_dim other than hidden_size / num_attention_heads, block types other than "recurrent"
and "attention", an odd intermediate_size. w_init_variance_scale, final_w_init_variance_scale and
initializer_range only shape the initialization; attention_dropout is not applied in inference.
"""
import math

import numpy as np

from .hf_llama import attention_rules, attention_sizes, narrow_heads, swiglu_rules
from .hf_rules import Rule

ARCH, MODEL_TYPE = "RecurrentGemmaForCausalLM", "recurrent_gemma"
LETTERS = {"recurrent": "L", "attention": "A"}
ACT = "gelu_pytorch_tanh"


def embed_scale(d):
    """transformers' normalizer: √d as a bfloat16 (its buffer's type), as a float32 — √d rounded to
    float32, then its 16 low bits rounded off to nearest, ties to even."""
    bits = int(np.float32(math.sqrt(d)).view(np.uint32))
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return np.uint32(bits).view(np.float32)


def partial_rope(hf, head_dim):
    """(θ, the rotated dims R) of the config's RoPE: rope_parameters (transformers 5) or the entries
    rope_theta and partial_rotary_factor of earlier versions, the factor 0.5 by default (also Bamba's,
    hf_bamba)."""
    params = hf.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise hf.refuse("rope_parameters", params, "a RoPE given as an object, as transformers writes it")
    kind = params.get("rope_type", "default")
    if kind != "default":
        raise hf.refuse("rope_parameters", params, f"the default RoPE; rope type {kind!r} is not implemented")
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    factor = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 0.5))
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or not theta > 1:
        raise hf.refuse("rope_parameters", params, "a rope_theta above 1")
    dims = int(head_dim * factor) if isinstance(factor, (int, float)) and not isinstance(factor, bool) else 0
    if dims < 2 or dims % 2 or dims > head_dim:
        raise hf.refuse("rope_parameters", params, f"a partial_rotary_factor whose int(head_dim {head_dim} · factor) "
                                                   f"is an even count of dims from 2 to {head_dim}")
    return float(theta), dims


def _pattern(hf, n):
    """The letters of transformers' layers_block_type: block_types cycled over the n layers."""
    types = hf.get("block_types", ["recurrent", "recurrent", "attention"])
    if not isinstance(types, list) or not types or any(t not in LETTERS for t in types):
        raise hf.refuse("block_types", types, f"a list of the block types {', '.join(LETTERS)}")
    return "".join(LETTERS[types[i % len(types)]] for i in range(n))


def config_from_hf(hf):
    """(hybridref CharLM config, tied) from a RecurrentGemma config.json (hf_config.HFConfig)."""
    d, H, Hk = attention_sizes(hf)
    C = hf.count("lru_width", d)
    if C % H:
        raise hf.refuse("lru_width", C, f"a multiple of num_attention_heads {H} (the RG-LRU gates' blocks)")
    hf.require("attention_bias", False, [False], "q/k/v projections without biases")
    hf.require("hidden_activation", ACT, [ACT], "GeLU's tanh approximation, hybridref's GeLU")
    F = hf.count("intermediate_size")
    if F % 2:
        raise hf.refuse("intermediate_size", F, "an even width (transformers' MLP is intermediate_size // 2 wide)")
    n = hf.count("num_hidden_layers")
    pattern = _pattern(hf, n)
    theta, rope_dims = partial_rope(hf, d // H)
    mixers = {"L": dict(lru_width=C, n_heads=H, conv_width=hf.count("conv1d_width", 4)),
              "A": dict(n_heads=H, n_kv_heads=Hk, window=hf.count("attention_window_size", 2048) - 1,
                        rope_base=theta, rope_dims=rope_dims, out_bias=True)}
    mixers = {c: options for c, options in mixers.items() if c in pattern}
    config = dict(vocab_size=hf.count("vocab_size"), d_model=d, pattern=pattern, mixers=mixers,
                  mlp_hidden={c: F // 2 for c in mixers}, mlp_kind="gated_gelu", mlp_bias=True, norm="rmsnorm",
                  norm_eps=hf.number("rms_norm_eps", 1e-6), logit_softcap=hf.number("logits_soft_cap", 30.0))
    return config, hf.flag("tie_word_embeddings", True)


def unfit(cfg):
    """Why the hybridref config cannot be a RecurrentGemmaForCausalLM, or None when it can."""
    letters, mixers = set(cfg["pattern"]), cfg["mixers"]
    if not letters <= {"L", "A"}:
        return f"its pattern {cfg['pattern']!r} is not RG-LRU (L) and attention (A) blocks only"
    widths = {cfg["mlp_hidden"][c] for c in letters}
    if cfg["mlp_kind"] != "gated_gelu" or not cfg["mlp_bias"] or cfg["norm"] != "rmsnorm" or len(widths) != 1 \
            or not min(widths):
        return "its blocks are not RMSNorm blocks with GeGLU MLPs with biases of one width"
    if cfg["logit_softcap"] is None:
        return "its logits are not soft-capped (transformers' RecurrentGemma always caps them)"
    heads = {mixers[c]["n_heads"] for c in letters}
    if len(heads) != 1:
        return f"its RG-LRU gate blocks and attention heads differ ({sorted(heads)}): transformers has one count"
    a = mixers.get("A")
    if a is not None and (why := narrow_heads(a, cfg["d_model"])):
        return why
    if a is not None and (a["window"] is None or a["rope_base"] is None or not a["out_bias"]):
        return "its attention has no window, no RoPE or no output bias"
    return None


def config_to_hf(cfg, tied):
    """The config.json of the RecurrentGemmaForCausalLM a hybridref config (for which unfit() is None)
    describes. block_types is the whole pattern (transformers cycles it: once here)."""
    d, pattern, mixers = cfg["d_model"], cfg["pattern"], cfg["mixers"]
    H = mixers[pattern[0]]["n_heads"]
    lru = mixers.get("L", dict(lru_width=d, conv_width=4))
    a = mixers.get("A", dict(n_kv_heads=H, window=2047, rope_base=10000.0, rope_dims=d // H // 2))
    head_dim = d // H
    names = {c: name for name, c in LETTERS.items()}
    return dict(architectures=[ARCH], model_type=MODEL_TYPE, vocab_size=cfg["vocab_size"], hidden_size=d,
                intermediate_size=2 * cfg["mlp_hidden"][pattern[0]], num_hidden_layers=len(pattern),
                num_attention_heads=H, num_key_value_heads=a["n_kv_heads"] or H, head_dim=head_dim,
                lru_width=lru["lru_width"] or d, conv1d_width=lru["conv_width"],
                attention_window_size=a["window"] + 1, logits_soft_cap=cfg["logit_softcap"],
                rms_norm_eps=cfg["norm_eps"], hidden_activation=ACT, attention_bias=False,
                rope_parameters=dict(rope_type="default", rope_theta=a["rope_base"],
                                     partial_rotary_factor=(a["rope_dims"] or head_dim) / head_dim),
                block_types=[names[c] for c in pattern], tie_word_embeddings=tied, dtype="float32")


def _block_rules(hf, ours, letter, cfg):
    """The Rules of the temporal block (mixer) of layer `hf` ("model.layers.i.") of kind `letter`."""
    d, m = cfg["d_model"], cfg["mixers"][letter]
    tb, mx = hf + "temporal_block.", ours + "mixer."
    if letter == "A":
        return [*attention_rules(tb, mx, d, m["n_heads"], m["n_kv_heads"] or m["n_heads"]),
                Rule(mx + "out.bias", [(tb + "o_proj.bias", (d,))])]
    C, H, W = m["lru_width"] or d, m["n_heads"], m["conv_width"]
    P, lru = C // H, tb + "rg_lru."
    out = [Rule(mx + f"linear_{b}.{p}", [(tb + f"linear_{b}.{p}", shape)])
           for b, (w, bias) in dict(x=((C, d), (C,)), y=((C, d), (C,)), out=((d, C), (d,))).items()
           for p, shape in (("weight", w), ("bias", bias))]
    out += [Rule(mx + "conv_weight", [(tb + "conv_1d.weight", (C, 1, W))]),
            Rule(mx + "conv_bias", [(tb + "conv_1d.bias", (C,))]),
            Rule(mx + "a_param", [(lru + "recurrent_param", (C,))])]
    for gate, theirs in (("input_gate", "input_gate"), ("a_gate", "recurrent_gate")):
        out += [Rule(mx + f"{gate}.weight", [(lru + f"{theirs}_weight", (H, P, P))]),
                Rule(mx + f"{gate}.bias", [(lru + f"{theirs}_bias", (H, P))])]
    return out


def rules(cfg, tied):
    """The Rules (hf_rules) of every weight of the model `cfg` describes, before to_ours / after to_theirs."""
    d, V = cfg["d_model"], cfg["vocab_size"]
    embed = ("model.embed_tokens.weight", (V, d))
    out = [Rule("embed.weight", [embed])]
    for i, letter in enumerate(cfg["pattern"]):
        hf, ours = f"model.layers.{i}.", f"blocks.{i}."
        mlp, F = hf + "mlp_block.", cfg["mlp_hidden"][letter]
        out += [Rule(ours + "norm1.weight", [(hf + "temporal_pre_norm.weight", (d,))]),
                *_block_rules(hf, ours, letter, cfg),
                Rule(ours + "norm2.weight", [(hf + "channel_pre_norm.weight", (d,))]),
                *swiglu_rules(mlp, ours + "mlp.", d, F, True)]  # GeGLU's fc and proj: the same layout
    out += [Rule("norm.weight", [("model.final_norm.weight", (d,))]),
            Rule("head.weight", [embed if tied else ("lm_head.weight", (V, d))])]
    return out


def _norms(params):
    return [name for name in params if name == "norm.weight" or name.endswith((".norm1.weight", ".norm2.weight"))]


def _gates(params):
    return [name for name in params if name.endswith(("mixer.input_gate.weight", "mixer.a_gate.weight"))]


def to_ours(cfg, params):
    """Our parameters from the tensors as transformers stores them (the rules' direct copy): the embedding
    times bf16(√D), 1 + w of the norms, each gate block transposed. In place; -> params."""
    params["embed.weight"] = params["embed.weight"] * embed_scale(cfg["d_model"])
    for name in _norms(params):
        params[name] = 1 + params[name]
    for name in _gates(params):
        params[name] = np.ascontiguousarray(params[name].transpose(0, 2, 1))
    return params


def to_theirs(cfg, params):
    """The inverse of to_ours, on a copy. The embedding is the head itself when it equals the head times
    bf16(√D) (a tied model, as imported), else divided by it."""
    params, scale = dict(params), embed_scale(cfg["d_model"])
    embed, head = params["embed.weight"], params["head.weight"]
    params["embed.weight"] = head if np.array_equal(head * scale, embed) else embed / scale
    for name in _norms(params):
        params[name] = params[name] - 1
    for name in _gates(params):
        params[name] = np.ascontiguousarray(params[name].transpose(0, 2, 1))
    return params


def prepare(hf, tensors):
    """-> the tensors transformers ignores: a tied lm_head."""
    return {"lm_head.weight"} if hf.flag("tie_word_embeddings", True) else set()
