"""JambaForCausalLM (model_type "jamba") <-> a hybridref CharLM of Mamba and attention blocks with SwiGLU MLPs,
a mixture of experts in every expert_layer_period-th one.

A Jamba layer i is x + mixer(RMSNorm(x)), then + MLP(RMSNorm(x)), the mixer attention when
i % attn_layer_period == attn_layer_offset and Mamba otherwise, the MLP a mixture of experts when
i % expert_layer_period == expert_layer_offset (and num_experts > 1), a SwiGLU MLP otherwise. In
hybridref that is the pattern of "A" and "M" blocks with the model option `moe` (period, offset:
hybridref/layers/moe.py, which takes Jamba's routing: softmax over the experts, the top-k probabilities
as they are, not renormalized), every MLP of kind "swiglu" without biases:

    "M": hybridref's Mamba mixer with bcdt_rms = rms_norm_eps: Jamba's RMSNorms on dt, B and C after
         x_proj (JambaMambaMixer's dt_layernorm, b_layernorm, c_layernorm)
    "A": grouped-query attention without positional encoding (rope_base None; Jamba has no RoPE), the
         softmax scale 1/√head_dim as hybridref's

    model.embed_tokens.weight                              embed.weight
    model.layers.i.input_layernorm.weight                  blocks.i.norm1.weight
    model.layers.i.mamba.{in_proj, conv1d, x_proj, ...}    blocks.i.mixer.*   (as MambaForCausalLM, hf_mamba)
    model.layers.i.mamba.{dt,b,c}_layernorm.weight         blocks.i.mixer.{dt,b,c}_layernorm.weight
    model.layers.i.self_attn.{q,k,v}_proj.weight           blocks.i.mixer.qkv.weight   rows [q; k; v]
    model.layers.i.self_attn.o_proj.weight                 blocks.i.mixer.out.weight
    model.layers.i.pre_ff_layernorm.weight                 blocks.i.norm2.weight
    model.layers.i.feed_forward.{gate,up,down}_proj.weight blocks.i.mlp.{fc (rows [gate; up]), proj}.weight
    model.layers.i.feed_forward.router.weight              blocks.i.mlp.router.weight         (E, D)
    model.layers.i.feed_forward.experts.gate_up_proj       blocks.i.mlp.experts.fc.weight     (E, 2F, D) [gate; up]
    model.layers.i.feed_forward.experts.down_proj          blocks.i.mlp.experts.proj.weight   (E, D, F)
    model.final_layernorm.weight                           norm.weight
    lm_head.weight (or the embeddings when tied)           head.weight

Checkpoints saved before transformers 5 (ai21labs/Jamba-v0.1 on the Hub) hold one tensor per expert,
feed_forward.experts.j.{gate,up,down}_proj.weight: they are stacked into the layout above, as
transformers' own conversion (conversion_mapping.py, "jamba") does when it loads them.

Config: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads
(null: the heads), vocab_size, rms_norm_eps (default 1e-6; also the eps of the dt/B/C norms, as in
transformers), attn_layer_period/offset, expert_layer_period/offset, num_experts (1: dense MLPs
everywhere), num_experts_per_tok, mamba_d_state, mamba_d_conv, mamba_expand, mamba_dt_rank ("auto" =
ceil(hidden_size / 16)), mamba_conv_bias (false: zero conv biases), tie_word_embeddings (default false).
router_aux_loss_coef becomes the MoE option aux_loss_coef when output_router_logits is true (transformers
adds the load-balancing loss only then), else 0; it shapes training only. Refused: hidden_act other
than silu (it is both the SwiGLU's and the Mamba block's activation), mamba_proj_bias true (biases of
in_proj/out_proj), a head_dim other than hidden_size / num_attention_heads, offsets not below their
periods. attention_dropout, initializer_range, use_mamba_kernels, use_mambapy, use_associative_scan,
max_position_embeddings (hybridref's attention has no position table) and use_cache change nothing here.

Where hybridref and transformers differ: the training-time load-balancing loss is summed over the MoE
layers, each over its own tokens (Switch Transformer), where transformers forms one loss over all
layers' tokens together; the forward pass and decoding are the same.
"""
import math

import numpy as np

from ..errors import UserError
from .hf_llama import attention_rules, attention_sizes, narrow_heads, swiglu_rules
from .hf_mamba import mixer_rules
from .hf_rules import Rule, zero_biases

ARCH, MODEL_TYPE = "JambaForCausalLM", "jamba"
MAMBA, ATTENTION = "M", "A"
NORMS = ("dt_layernorm", "b_layernorm", "c_layernorm")


def _period(hf, period, offset, default_period, default_offset):
    """(period, offset) of a layer kind, refused by name unless 0 <= offset < period."""
    p, o = hf.count(period, default_period), hf.count(offset, default_offset, minimum=0)
    if o >= p:
        raise hf.refuse(offset, o, f"an offset below {period} = {p}")
    return p, o


def config_from_hf(hf):
    """(hybridref CharLM config, tied) from a Jamba config.json (hf_config.HFConfig)."""
    d, H, Hk = attention_sizes(hf)
    hf.require("hidden_act", "silu", ["silu"], "the SiLU of the SwiGLU MLPs and of the Mamba blocks")
    hf.require("mamba_proj_bias", False, [False], "Mamba's in_proj and out_proj without biases")
    hf.flag("mamba_conv_bias", True)  # without one, the conv bias is zeros (prepare)
    n, eps = hf.count("num_hidden_layers"), hf.number("rms_norm_eps", 1e-6)
    attn_period, attn_offset = _period(hf, "attn_layer_period", "attn_layer_offset", 8, 4)
    pattern = "".join(ATTENTION if i % attn_period == attn_offset else MAMBA for i in range(n))
    rank = hf.get("mamba_dt_rank", "auto")
    rank = math.ceil(d / 16) if rank == "auto" else hf.count("mamba_dt_rank")
    mixers = {MAMBA: dict(d_state=hf.count("mamba_d_state", 16), d_conv=hf.count("mamba_d_conv", 4),
                          expand=hf.count("mamba_expand", 2), dt_rank=rank, bcdt_rms=eps),
              ATTENTION: dict(n_heads=H, n_kv_heads=Hk, window=None, rope_base=None)}
    mixers = {letter: options for letter, options in mixers.items() if letter in pattern}
    experts, top_k = hf.count("num_experts", 16), hf.count("num_experts_per_tok", 2)
    moe = None
    if experts > 1:
        if top_k > experts:
            raise hf.refuse("num_experts_per_tok", top_k, f"at most num_experts = {experts}")
        period, offset = _period(hf, "expert_layer_period", "expert_layer_offset", 2, 1)
        coef = hf.number("router_aux_loss_coef", 0.001) if hf.flag("output_router_logits", False) else 0.0
        moe = dict(n_experts=experts, top_k=top_k, period=period, offset=offset, normalize_top_k=False,
                   aux_loss_coef=coef, z_loss_coef=0.0)
    F = hf.count("intermediate_size")
    config = dict(vocab_size=hf.count("vocab_size"), d_model=d, pattern=pattern, mixers=mixers,
                  mlp_hidden={letter: F for letter in mixers}, mlp_kind="swiglu", mlp_bias=False, norm="rmsnorm",
                  norm_eps=eps, moe=moe)
    return config, hf.flag("tie_word_embeddings", False)


def _layer_period(pattern):
    """(attn_layer_period, attn_layer_offset) whose layer types are `pattern` (which holds an "A"), or None."""
    n = len(pattern)
    offset = pattern.index(ATTENTION)
    for period in range(offset + 1, n + 2):
        if pattern == "".join(ATTENTION if i % period == offset else MAMBA for i in range(n)):
            return period, offset
    return None


def unfit(cfg):
    """Why the hybridref config cannot be a JambaForCausalLM, or None when it can."""
    pattern, letters = cfg["pattern"], set(cfg["pattern"])
    if ATTENTION not in letters:  # transformers' JambaModel cannot run a cache without an attention layer
        return f"its pattern {pattern!r} has no attention block, which transformers' Jamba needs"
    if not letters <= {MAMBA, ATTENTION} or _layer_period(pattern) is None:
        return f"its pattern {pattern!r} is not Mamba blocks with attention every attn_layer_period-th one"
    widths = {cfg["mlp_hidden"][letter] for letter in letters}
    if cfg["mlp_kind"] != "swiglu" or cfg["mlp_bias"] or len(widths) != 1 or 0 in widths or cfg["norm"] != "rmsnorm":
        return "its blocks are not all SwiGLU MLPs of one width without biases, with RMSNorm"
    m, a, moe = cfg["mixers"].get(MAMBA), cfg["mixers"].get(ATTENTION), cfg["moe"]
    if m and (m["bcdt_rms"] != cfg["norm_eps"] or m["directions"] != 1):
        return "its Mamba mixers lack the dt/B/C RMSNorms of the model's eps (bcdt_rms) or scan several directions"
    if a and (why := narrow_heads(a, cfg["d_model"])):
        return why
    if a and (a["window"] is not None or a["rope_base"] is not None):
        return "its attention has a window or RoPE"
    if moe and (moe["normalize_top_k"] or moe["n_experts"] < 2):
        return "its MoE renormalizes the top-k weights (Mixtral's) or has a single expert"
    return None


def config_to_hf(cfg, tied):
    """The config.json of the JambaForCausalLM a hybridref config (for which unfit() is None) describes."""
    d, pattern, moe = cfg["d_model"], cfg["pattern"], cfg["moe"]
    m, a = cfg["mixers"].get(MAMBA, {}), cfg["mixers"].get(ATTENTION, {})
    attn_period, attn_offset = _layer_period(pattern)
    mamba = {}
    if m:
        mamba = dict(mamba_d_state=m["d_state"], mamba_d_conv=m["d_conv"], mamba_expand=m["expand"],
                     mamba_dt_rank=m["dt_rank"] or math.ceil(d / 16))
    heads = dict(num_attention_heads=a["n_heads"], num_key_value_heads=a["n_kv_heads"] or a["n_heads"]) if a else {}
    experts = dict(num_experts=1)
    if moe:
        experts = dict(num_experts=moe["n_experts"], num_experts_per_tok=moe["top_k"],
                       expert_layer_period=moe["period"], expert_layer_offset=moe["offset"],
                       output_router_logits=moe["aux_loss_coef"] > 0, router_aux_loss_coef=moe["aux_loss_coef"])
    return dict(architectures=[ARCH], model_type=MODEL_TYPE, vocab_size=cfg["vocab_size"], hidden_size=d,
                intermediate_size=cfg["mlp_hidden"][pattern[0]], num_hidden_layers=len(pattern),
                attn_layer_period=attn_period, attn_layer_offset=attn_offset, **mamba, **heads, **experts,
                hidden_act="silu", rms_norm_eps=cfg["norm_eps"], mamba_conv_bias=True, mamba_proj_bias=False,
                tie_word_embeddings=tied, dtype="float32")


def _ffn_rules(ff, ours, d, F, moe):
    """The Rules of one feed-forward layer: a SwiGLU MLP, or (moe: its options) the router and stacked experts."""
    if moe is None:
        return swiglu_rules(ff, ours, d, F, bias=False)
    E = moe["n_experts"]
    return [Rule(ours + "router.weight", [(ff + "router.weight", (E, d))]),
            Rule(ours + "experts.fc.weight", [(ff + "experts.gate_up_proj", (E, 2 * F, d))]),
            Rule(ours + "experts.proj.weight", [(ff + "experts.down_proj", (E, d, F))])]


def rules(cfg, tied):
    """The Rules (hf_rules) of every weight of the model `cfg` describes."""
    d, V, moe = cfg["d_model"], cfg["vocab_size"], cfg["moe"]
    embed = ("model.embed_tokens.weight", (V, d))
    out = [Rule("embed.weight", [embed])]
    for i, letter in enumerate(cfg["pattern"]):
        hf, ours, options = f"model.layers.{i}.", f"blocks.{i}.", cfg["mixers"][letter]
        if letter == MAMBA:
            mx = hf + "mamba."
            R = options["dt_rank"] or math.ceil(d / 16)
            sizes = dict(dt_layernorm=R, b_layernorm=options["d_state"], c_layernorm=options["d_state"])
            mixer = mixer_rules(mx, ours + "mixer.", options, d) + [
                Rule(f"{ours}mixer.{norm}.weight", [(f"{mx}{norm}.weight", (sizes[norm],))]) for norm in NORMS]
        else:
            mixer = attention_rules(hf + "self_attn.", ours + "mixer.", d, options["n_heads"],
                                    options["n_kv_heads"] or options["n_heads"])
        expert = moe if moe is not None and i % moe["period"] == moe["offset"] else None
        out += [Rule(ours + "norm1.weight", [(hf + "input_layernorm.weight", (d,))]), *mixer,
                Rule(ours + "norm2.weight", [(hf + "pre_ff_layernorm.weight", (d,))]),
                *_ffn_rules(hf + "feed_forward.", ours + "mlp.", d, cfg["mlp_hidden"][letter], expert)]
    out += [Rule("norm.weight", [("model.final_layernorm.weight", (d,))]),
            Rule("head.weight", [embed if tied else ("lm_head.weight", (V, d))])]
    return out


def _stack_experts(tensors, ff, where):
    """The per-expert tensors of an older checkpoint (ff + "experts.j.{gate,up,down}_proj.weight") stacked as
    transformers 5 holds them: experts.gate_up_proj (E, 2F, D), rows [gate; up] per expert, experts.down_proj
    (E, D, F)."""
    count = 0
    while f"{ff}experts.{count}.down_proj.weight" in tensors:
        count += 1
    if not count:
        return
    pop = [{kind: tensors.pop(f"{ff}experts.{j}.{kind}_proj.weight", None) for kind in ("gate", "up", "down")}
           for j in range(count)]
    missing = [f"{ff}experts.{j}.{kind}_proj.weight" for j, e in enumerate(pop) for kind, t in e.items() if t is None]
    if missing:
        raise UserError(f"{where}: the weights have the per-expert tensors of {ff}experts but not {missing[:3]}")
    tensors[ff + "experts.gate_up_proj"] = np.stack([np.concatenate([e["gate"], e["up"]]) for e in pop])
    tensors[ff + "experts.down_proj"] = np.stack([e["down"] for e in pop])


def prepare(hf, tensors):
    """The HF tensors as the rules read them: zero conv biases for a checkpoint saved without them, and the
    experts of an older checkpoint stacked; -> the tensors transformers ignores (a tied lm_head)."""
    layers = range(hf.count("num_hidden_layers"))
    if not hf.flag("mamba_conv_bias", True):
        zero_biases(tensors, [f"model.layers.{i}.mamba.conv1d.weight" for i in layers])
    for i in layers:
        _stack_experts(tensors, f"model.layers.{i}.feed_forward.", hf.where)
    return {"lm_head.weight"} if hf.flag("tie_word_embeddings", False) else set()
