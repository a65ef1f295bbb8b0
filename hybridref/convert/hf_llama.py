"""LlamaForCausalLM (model_type "llama") <-> a hybridref CharLM of pattern "A" × num_hidden_layers with
SwiGLU MLPs.

A Llama block is x + attention(RMSNorm(x)), then + SwiGLU(RMSNorm(x)): hybridref's attention block
(hybridref/layers/attention.py: grouped-query heads, RoPE) with the MLP kind "swiglu"
(hybridref/layers/mlp.py). The projections are stacked where hybridref keeps one matrix:

    model.embed_tokens.weight                          embed.weight
    model.layers.i.input_layernorm.weight              blocks.i.norm1.weight
    model.layers.i.self_attn.{q,k,v}_proj.weight       blocks.i.mixer.qkv.weight   rows [q; k; v]
    model.layers.i.self_attn.o_proj.weight             blocks.i.mixer.out.weight
    model.layers.i.post_attention_layernorm.weight     blocks.i.norm2.weight
    model.layers.i.mlp.{gate,up}_proj.{weight,bias}    blocks.i.mlp.fc.{weight,bias}  rows [gate; up]
    model.layers.i.mlp.down_proj.{weight,bias}         blocks.i.mlp.proj.{weight,bias}
    model.norm.weight                                  norm.weight
    lm_head.weight (or the embeddings when tied)       head.weight

RoPE: transformers' rotate_half pairs dimension i with i + P/2 of a head, at the angle
p · θ^(−2i/P): hybridref's rope op is the same (the GPT-NeoX layout, csrc/rope.c), so q_proj and
k_proj are copied as they are, without the row permutation that Meta's interleaved layout needs
(tests/test_convert_hf.py checks the logits). hybridref forms the angles in float64, transformers in
float32: at long positions hybridref's are the more exact.

Config: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
num_key_value_heads (default: the heads), vocab_size, rms_norm_eps (default 1e-6), the RoPE base
(rope_parameters.rope_theta of transformers 5, rope_theta before; default 10000), mlp_bias,
tie_word_embeddings (default false). Refused: a RoPE type other than "default" (rope_scaling /
rope_parameters: linear, dynamic, yarn, llama3, ...) or a partial rotary factor, attention_bias true,
a head_dim other than hidden_size / num_attention_heads, hidden_act other than silu.
max_position_embeddings bounds nothing in hybridref (its RoPE has no table); attention_dropout,
initializer_range and pretraining_tp (a way of splitting the same products) do not change the
forward pass.
"""
from .hf_rules import Rule

ARCH, MODEL_TYPE = "LlamaForCausalLM", "llama"
LETTER = "A"
ROPE_TYPES = ("default",)


def _rope_base(hf):
    """θ of the default RoPE; any scaled RoPE refused by name."""
    params = hf.get("rope_parameters") or hf.get("rope_scaling")
    entry = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
    if params is None:
        return hf.number("rope_theta", 10000.0)
    if not isinstance(params, dict):
        raise hf.refuse(entry, params, "a RoPE given as an object, as transformers writes it")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise hf.refuse(entry, params, f"RoPE types {', '.join(ROPE_TYPES)}; rope type {kind!r} is not implemented")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise hf.refuse(entry, params, "RoPE over the whole head (partial_rotary_factor 1)")
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or not theta > 1:
        raise hf.refuse(entry, params, "a rope_theta above 1")
    return float(theta)


def attention_sizes(hf):
    """(hidden_size, heads, key/value heads) of a config whose attention heads are hidden_size / heads wide
    (also Jamba's, hf_jamba); a head_dim of another width refused."""
    d, H = hf.count("hidden_size"), hf.count("num_attention_heads")
    Hk = hf.count("num_key_value_heads", H)
    if d % H or H % Hk:
        raise hf.refuse("num_attention_heads", H, f"heads dividing hidden_size {d}, and a multiple of "
                                                  f"num_key_value_heads {Hk}")
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim != d // H:
        raise hf.refuse("head_dim", head_dim, f"head_dim = hidden_size / num_attention_heads = {d // H}")
    return d, H, Hk


def config_from_hf(hf):
    """(hybridref CharLM config, tied) from a Llama config.json (hf_config.HFConfig)."""
    d, H, Hk = attention_sizes(hf)
    hf.require("attention_bias", False, [False], "q/k/v/o projections without biases")
    hf.require("hidden_act", "silu", ["silu"], "the SiLU of a SwiGLU MLP")
    n = hf.count("num_hidden_layers")
    mixer = dict(n_heads=H, n_kv_heads=Hk, window=None, rope_base=_rope_base(hf))
    config = dict(vocab_size=hf.count("vocab_size"), d_model=d, pattern=LETTER * n, mixers={LETTER: mixer},
                  mlp_hidden={LETTER: hf.count("intermediate_size")}, mlp_kind="swiglu",
                  mlp_bias=hf.flag("mlp_bias", False), norm="rmsnorm", norm_eps=hf.number("rms_norm_eps", 1e-6))
    return config, hf.flag("tie_word_embeddings", False)


def narrow_heads(a, d):
    """Why the attention options `a` of a model of width d do not have heads of d / n_heads, or None (the
    converters of attention layers write no head_dim of another width)."""
    if a["head_dim"] not in (None, d // a["n_heads"]):
        return f"its attention heads are {a['head_dim']} wide, not d_model / n_heads = {d // a['n_heads']}"
    return None


def unfit(cfg):
    """Why the hybridref config cannot be a LlamaForCausalLM, or None when it can."""
    if set(cfg["pattern"]) != {LETTER}:
        return f"its pattern {cfg['pattern']!r} is not attention blocks only"
    a = cfg["mixers"][LETTER]
    if why := narrow_heads(a, cfg["d_model"]):
        return why
    if cfg["mlp_kind"] != "swiglu" or not cfg["mlp_hidden"][LETTER] or cfg["norm"] != "rmsnorm":
        return f"its attention blocks' MLP is {cfg['mlp_kind']!r} (width {cfg['mlp_hidden'][LETTER]}) with " \
               f"{cfg['norm']}, not a SwiGLU MLP with RMSNorm"
    if a["window"] is not None or a["rope_base"] is None:
        return "its attention has a window or no RoPE"
    return None


def config_to_hf(cfg, tied):
    """The config.json of the LlamaForCausalLM a hybridref config (for which unfit() is None) describes.
    The RoPE base is written both ways transformers has read it (rope_parameters, rope_theta)."""
    a, d = cfg["mixers"][LETTER], cfg["d_model"]
    return dict(architectures=[ARCH], model_type=MODEL_TYPE, vocab_size=cfg["vocab_size"], hidden_size=d,
                intermediate_size=cfg["mlp_hidden"][LETTER], num_hidden_layers=len(cfg["pattern"]),
                num_attention_heads=a["n_heads"], num_key_value_heads=a["n_kv_heads"] or a["n_heads"],
                head_dim=d // a["n_heads"], hidden_act="silu", rms_norm_eps=cfg["norm_eps"],
                rope_parameters=dict(rope_type="default", rope_theta=a["rope_base"]), rope_theta=a["rope_base"],
                attention_bias=False, mlp_bias=cfg["mlp_bias"], tie_word_embeddings=tied, dtype="float32")


def attention_rules(at, ours, d, H, Hk):
    """The Rules of one attention mixer without biases: HF q/k/v/o_proj under `at` ("model.layers.i.self_attn."),
    ours under `ours` ("blocks.i.mixer."), H heads and Hk key/value heads of d / H (also Jamba's, hf_jamba)."""
    P = d // H
    return [Rule(ours + "qkv.weight", [(at + "q_proj.weight", (H * P, d)), (at + "k_proj.weight", (Hk * P, d)),
                                       (at + "v_proj.weight", (Hk * P, d))]),
            Rule(ours + "out.weight", [(at + "o_proj.weight", (d, H * P))])]


def swiglu_rules(mlp, ours, d, F, bias):
    """The Rules of one SwiGLU MLP: HF gate/up/down_proj under `mlp` ("model.layers.i.mlp."), ours under
    `ours` ("blocks.i.mlp."), width F, with biases when `bias`."""
    out = [Rule(ours + "fc.weight", [(mlp + "gate_proj.weight", (F, d)), (mlp + "up_proj.weight", (F, d))]),
           Rule(ours + "proj.weight", [(mlp + "down_proj.weight", (d, F))])]
    if bias:
        out += [Rule(ours + "fc.bias", [(mlp + "gate_proj.bias", (F,)), (mlp + "up_proj.bias", (F,))]),
                Rule(ours + "proj.bias", [(mlp + "down_proj.bias", (d,))])]
    return out


def rules(cfg, tied):
    """The Rules (hf_rules) of every weight of the model `cfg` describes."""
    a, d, V, F = cfg["mixers"][LETTER], cfg["d_model"], cfg["vocab_size"], cfg["mlp_hidden"][LETTER]
    embed = ("model.embed_tokens.weight", (V, d))
    out = [Rule("embed.weight", [embed])]
    for i in range(len(cfg["pattern"])):
        hf, ours = f"model.layers.{i}.", f"blocks.{i}."
        out += [Rule(ours + "norm1.weight", [(hf + "input_layernorm.weight", (d,))]),
                *attention_rules(hf + "self_attn.", ours + "mixer.", d, a["n_heads"], a["n_kv_heads"] or a["n_heads"]),
                Rule(ours + "norm2.weight", [(hf + "post_attention_layernorm.weight", (d,))]),
                *swiglu_rules(hf + "mlp.", ours + "mlp.", d, F, cfg["mlp_bias"])]
    out += [Rule("norm.weight", [("model.norm.weight", (d,))]),
            Rule("head.weight", [embed if tied else ("lm_head.weight", (V, d))])]
    return out


def prepare(hf, tensors):
    """-> the tensors transformers ignores: a tied lm_head, and the RoPE frequencies older checkpoints
    saved (rotary_emb.inv_freq: recomputed from the base, here as in transformers)."""
    ignored = {name for name in tensors if name.endswith("rotary_emb.inv_freq")}
    return ignored | ({"lm_head.weight"} if hf.flag("tie_word_embeddings", False) else set())
