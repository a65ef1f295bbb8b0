"""FalconH1ForCausalLM (model_type "falcon_h1") <-> a hybridref CharLM of pattern "F" × num_hidden_layers,
every block with a SwiGLU MLP.

A Falcon-H1 layer is x + ssm_out·Mamba2(ssm_in·RMSNorm(x)) + attention_out·Attention(attention_in·RMSNorm(x)),
then + SwiGLU(RMSNorm(x)): hybridref's falcon_h1 mixer (hybridref/layers/falcon_h1.py: an attention mixer
and a Mamba-2 mixer on the same normed input, their outputs added) in a Block with the MLP kind "swiglu".
The weights (Din = mamba_d_ssm):

    model.embed_tokens.weight                           embed.weight                   × embedding_multiplier
    model.layers.i.input_layernorm.weight               blocks.i.norm1.weight
    model.layers.i.self_attn.{q,k,v}_proj.weight        blocks.i.mixer.attn.qkv.weight rows [q; k; v]
                                                        × attention_in_multiplier (k also × key_multiplier)
    model.layers.i.self_attn.o_proj.weight              blocks.i.mixer.attn.out.weight × attention_out_multiplier
    model.layers.i.mamba.in_proj.weight                 blocks.i.mixer.mamba.in_proj.weight
                                                        × ssm_in_multiplier × the μP vector per row block
                                                        [z, x, B, C, dt] (ssm_multipliers)
    model.layers.i.mamba.{conv1d, dt_bias, A_log, D, norm}   blocks.i.mixer.mamba.* (hf_mamba2.mixer_rules;
                                                        norm.weight only with mamba_rms_norm)
    model.layers.i.mamba.out_proj.weight                blocks.i.mixer.mamba.out_proj.weight × ssm_out_multiplier
    model.layers.i.pre_ff_layernorm.weight              blocks.i.norm2.weight
    model.layers.i.feed_forward.{gate,up,down}_proj.*   blocks.i.mlp.{fc, proj}.*     fc rows [gate; up];
                                                        gate × mlp_multipliers[0], down × mlp_multipliers[1]
    model.final_layernorm.weight                        norm.weight
    lm_head.weight (or the embeddings when tied)        head.weight                    × lm_head_multiplier

μP multipliers: transformers multiplies each one into a projection's input (attention_in, ssm_in: before
q/k/v_proj and in_proj, after the input RMSNorm, so the norm is not affected) or output (key after k_proj
and before RoPE, which is linear; the μP vector on in_proj's output before the split; attention_out and
ssm_out on the branch outputs; gate before the SiLU; down after down_proj; embedding after the lookup;
lm_head on the logits), so each is folded exactly into the weights (and into the biases of the outputs it
scales: the MLP's with mlp_bias). hybridref's head is always its own matrix, so tied embeddings with
embedding_multiplier ≠ lm_head_multiplier become an embedding E·embedding_multiplier and a head
E·lm_head_multiplier; the converted model is then untied (the summary says so) and --to-hf writes it
untied. The export writes every multiplier 1 (the weights carry them).

Config: hidden_size, intermediate_size, num_hidden_layers, vocab_size, num_attention_heads,
num_key_value_heads, head_dim (default hidden_size / num_attention_heads: the mixer's head_dim),
rms_norm_eps (every RMSNorm's, the Mamba-2 gated norm's too), the RoPE base (hf_llama:
rope_parameters.rope_theta), mamba_d_ssm (null: mamba_expand · hidden_size; the mixer's d_inner),
mamba_n_heads, mamba_d_head ("auto" = mamba_d_ssm / mamba_n_heads), mamba_n_groups, mamba_d_state,
mamba_d_conv, mamba_chunk_size (the mixer's chunk, as hf_mamba2), mamba_conv_bias (false: zero biases),
mamba_rms_norm (the mixer's gate_norm), mlp_bias, tie_word_embeddings and the multipliers. Refused, by
name: attention_bias, mamba_proj_bias or projectors_bias true (biases hybridref's attention and Mamba-2
projections do not have); mamba_rms_norm true with mamba_norm_before_gate true (RMSNorm(y)·SiLU(z):
hybridref's gated norm normalizes y·SiLU(z)); a scaled or partial RoPE; hidden_act other than silu; a
time_step_limit other than (0, ∞) (hf_mamba2); multipliers that are not positive numbers.
num_logits_to_keep only changes what generate computes; max_position_embeddings bounds nothing in
hybridref (its RoPE has no table).
"""
import numpy as np

from .hf_bamba import mamba2_options
from .hf_llama import _rope_base, swiglu_rules
from .hf_mamba2 import mixer_rules
from .hf_rules import Rule, zero_biases

ARCH, MODEL_TYPE = "FalconH1ForCausalLM", "falcon_h1"
LETTER = "F"
MULTIPLIERS = ("embedding_multiplier", "lm_head_multiplier", "attention_in_multiplier", "key_multiplier",
               "attention_out_multiplier", "ssm_in_multiplier", "ssm_out_multiplier")


def _mamba(hf, d):
    """The Mamba-2 branch's options of a Falcon-H1 config: Bamba's (hf_bamba.mamba2_options) at the width
    mamba_d_ssm, and the gated norm's presence."""
    din = hf.config.get("mamba_d_ssm", 1024) if "mamba_d_ssm" in hf.config else 1024  # null: expand · hidden_size
    options = mamba2_options(hf, d, None if din is None else hf.count("mamba_d_ssm"))
    hf.require("projectors_bias", False, [False], "the Mamba-2 out_proj without a bias, as hybridref's mixer")
    gate_norm = hf.flag("mamba_rms_norm", False)
    if gate_norm:
        hf.require("mamba_norm_before_gate", True, [False], "with mamba_rms_norm, the norm of y ⊙ SiLU(z) "
                                                            "(norm_before_gate false), hybridref's gated norm")
    expand = options["expand"]
    return dict(options, d_inner=None if din in (None, expand * d) else din, gate_norm=gate_norm)


def _multipliers(hf):
    """{name: float} of the scalar multipliers, and ssm_multipliers (5) and mlp_multipliers (2) as lists."""
    out = {name: hf.number(name, 1.0) for name in MULTIPLIERS}
    for name, n in (("ssm_multipliers", 5), ("mlp_multipliers", 2)):
        values = hf.get(name, [1.0] * n)
        if not isinstance(values, list) or len(values) != n or \
                any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in values):
            raise hf.refuse(name, values, f"a list of {n} positive numbers")
        out[name] = [float(v) for v in values]
    return out


def _tied(hf):
    """Whether the converted head reads the embedding tensor: tied embeddings whose two multipliers agree (then
    one scaled matrix serves both)."""
    m = _multipliers(hf)
    return hf.flag("tie_word_embeddings", False) and m["embedding_multiplier"] == m["lm_head_multiplier"]


def _heads(hf):
    """(hidden_size, heads, key/value heads, head_dim): transformers' head_dim is hidden_size / heads unless
    config.json gives one."""
    d, H = hf.count("hidden_size"), hf.count("num_attention_heads")
    Hk = hf.count("num_key_value_heads", H)
    if H % Hk:
        raise hf.refuse("num_attention_heads", H, f"a multiple of num_key_value_heads {Hk}")
    return d, H, Hk, hf.count("head_dim", None if d % H else d // H)


def config_from_hf(hf):
    """(hybridref CharLM config, tied) from a Falcon-H1 config.json (hf_config.HFConfig)."""
    d, H, Hk, P = _heads(hf)
    hf.require("attention_bias", False, [False], "q/k/v/o projections without biases")
    hf.require("hidden_act", "silu", ["silu"], "the SiLU of the Mamba-2 branch and of the SwiGLU MLP")
    mixer = dict(n_heads=H, n_kv_heads=Hk, head_dim=None if H * P == d else P, rope_base=_rope_base(hf),
                 **_mamba(hf, d))
    config = dict(vocab_size=hf.count("vocab_size"), d_model=d, pattern=LETTER * hf.count("num_hidden_layers"),
                  mixers={LETTER: mixer}, mlp_hidden={LETTER: hf.count("intermediate_size")}, mlp_kind="swiglu",
                  mlp_bias=hf.flag("mlp_bias", False), norm="rmsnorm", norm_eps=hf.number("rms_norm_eps", 1e-5))
    return config, _tied(hf)


def unfit(cfg):
    """Why the hybridref config cannot be a FalconH1ForCausalLM, or None when it can."""
    if set(cfg["pattern"]) != {LETTER}:
        return f"its pattern {cfg['pattern']!r} is not Falcon-H1 blocks (F) only"
    f = cfg["mixers"][LETTER]
    if cfg["mlp_kind"] != "swiglu" or not cfg["mlp_hidden"][LETTER] or cfg["norm"] != "rmsnorm":
        return "its blocks are not RMSNorm blocks with SwiGLU MLPs"
    if f["gate_norm"] and f["norm_eps"] != cfg["norm_eps"]:
        return "its Mamba-2 gated norms' epsilon is not its RMSNorms' (transformers has one rms_norm_eps)"
    if f["rope_base"] is None:
        return "its attention has no RoPE"
    return None


def config_to_hf(cfg, tied):
    """The config.json of the FalconH1ForCausalLM a hybridref config (for which unfit() is None) describes;
    every multiplier 1 (the weights carry them)."""
    f, d = cfg["mixers"][LETTER], cfg["d_model"]
    din = f["d_inner"] or f["expand"] * d
    return dict(architectures=[ARCH], model_type=MODEL_TYPE, vocab_size=cfg["vocab_size"], hidden_size=d,
                intermediate_size=cfg["mlp_hidden"][LETTER], num_hidden_layers=len(cfg["pattern"]),
                num_attention_heads=f["n_heads"], num_key_value_heads=f["n_kv_heads"] or f["n_heads"],
                head_dim=f["head_dim"] or d // f["n_heads"], rope_parameters=dict(rope_type="default", rope_theta=f["rope_base"]),
                mamba_d_ssm=din, mamba_n_heads=din // f["headdim"], mamba_d_head=f["headdim"],
                mamba_n_groups=f["ngroups"], mamba_d_state=f["d_state"], mamba_d_conv=f["d_conv"],
                mamba_expand=f["expand"], mamba_chunk_size=f["chunk"], mamba_conv_bias=True, mamba_proj_bias=False,
                projectors_bias=False, mamba_rms_norm=f["gate_norm"], mamba_norm_before_gate=False,
                hidden_act="silu", rms_norm_eps=cfg["norm_eps"], attention_bias=False, mlp_bias=cfg["mlp_bias"],
                tie_word_embeddings=tied, dtype="float32", **{name: 1.0 for name in MULTIPLIERS},
                ssm_multipliers=[1.0] * 5, mlp_multipliers=[1.0, 1.0])


def rules(cfg, tied):
    """The Rules (hf_rules) of every weight of the model `cfg` describes."""
    f, d, V, F = cfg["mixers"][LETTER], cfg["d_model"], cfg["vocab_size"], cfg["mlp_hidden"][LETTER]
    H, Hk = f["n_heads"], f["n_kv_heads"] or f["n_heads"]
    P = f["head_dim"] or d // H
    embed = ("model.embed_tokens.weight", (V, d))
    out = [Rule("embed.weight", [embed])]
    for i in range(len(cfg["pattern"])):
        hf, ours = f"model.layers.{i}.", f"blocks.{i}."
        at, mx = hf + "self_attn.", ours + "mixer."
        mamba = [r for r in mixer_rules(hf + "mamba.", mx + "mamba.", f, d)
                 if f["gate_norm"] or not r.ours.endswith("norm.weight")]  # transformers' Identity: no weight
        out += [Rule(ours + "norm1.weight", [(hf + "input_layernorm.weight", (d,))]),
                Rule(mx + "attn.qkv.weight", [(at + "q_proj.weight", (H * P, d)), (at + "k_proj.weight", (Hk * P, d)),
                                              (at + "v_proj.weight", (Hk * P, d))]),
                Rule(mx + "attn.out.weight", [(at + "o_proj.weight", (d, H * P))]),
                *mamba,
                Rule(ours + "norm2.weight", [(hf + "pre_ff_layernorm.weight", (d,))]),
                *swiglu_rules(hf + "feed_forward.", ours + "mlp.", d, F, cfg["mlp_bias"])]
    out += [Rule("norm.weight", [("model.final_layernorm.weight", (d,))]),
            Rule("head.weight", [embed if tied else ("lm_head.weight", (V, d))])]
    return out


def _mup_vector(hf, m):
    """transformers' compute_mup_vector: ssm_multipliers over in_proj's row blocks [z, x, B, C, dt]."""
    d = hf.count("hidden_size")
    o = _mamba(hf, d)
    din, gn = o["d_inner"] or o["expand"] * d, o["ngroups"] * o["d_state"]
    sizes = [din, din, gn, gn, din // o["headdim"]]
    return np.repeat(np.asarray(m["ssm_multipliers"], np.float32), sizes)


def prepare(hf, tensors):
    """The HF tensors as the rules read them: every μP multiplier folded into the weights it scales (module
    docstring), zero conv biases for a checkpoint without them, and tied embeddings whose multipliers differ
    given a head of their own; -> the tensors transformers ignores (a tied lm_head)."""
    m, n = _multipliers(hf), hf.count("num_hidden_layers")
    tie = hf.flag("tie_word_embeddings", False)
    if tie and not _tied(hf):
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    scales = {"model.embed_tokens.weight": m["embedding_multiplier"]}
    if not _tied(hf):
        scales["lm_head.weight"] = m["lm_head_multiplier"]
    mup = _mup_vector(hf, m)[:, None]
    for i in range(n):
        at, mx, ff = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mamba.", f"model.layers.{i}.feed_forward."
        scales.update({at + "q_proj.weight": m["attention_in_multiplier"],
                       at + "k_proj.weight": m["attention_in_multiplier"] * m["key_multiplier"],
                       at + "v_proj.weight": m["attention_in_multiplier"],
                       at + "o_proj.weight": m["attention_out_multiplier"],
                       mx + "in_proj.weight": m["ssm_in_multiplier"] * mup,
                       mx + "out_proj.weight": m["ssm_out_multiplier"],
                       ff + "gate_proj.weight": m["mlp_multipliers"][0], ff + "gate_proj.bias": m["mlp_multipliers"][0],
                       ff + "down_proj.weight": m["mlp_multipliers"][1], ff + "down_proj.bias": m["mlp_multipliers"][1]})
    for name, scale in scales.items():
        if name in tensors and np.any(np.asarray(scale) != 1.0):
            tensors[name] = (tensors[name] * np.asarray(scale, np.float32)).astype(np.float32)
    if not hf.flag("mamba_conv_bias", True):
        zero_biases(tensors, [f"model.layers.{i}.mamba.conv1d.weight" for i in range(n)])
    ignored = {name for name in tensors if name.endswith("rotary_emb.inv_freq")}
    return ignored | ({"lm_head.weight"} if _tied(hf) else set())
