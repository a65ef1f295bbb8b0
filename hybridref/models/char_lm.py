"""A character-level language model: embedding, a stack of mixer blocks, final norm, linear head.

    x      = drop(embed[ids])                 ids (B,T) -> (B,T,D); drop: dropout while training
    x      = blocks(x)                         pattern string: "AAAAAA", "MMMMMM", "MMMAMM", ...
    logits = head(norm(x))                     -> (B,T,V)

Attention layers get their positions from RoPE (no learned position table), so a model trained on
256-token windows can decode any context length up to the KV cache size. The head is untied from
the embedding: at V = 65 it is 8 K parameters, and the presets' counts are easier to read.

Presets (d_model 128, 6 blocks, RMSNorm, 4 heads of 32, Mamba expand 2, d_state 16): every block
holds ~198 K parameters, because an attention block's MLP is 4·D = 512 wide and a Mamba block's
(whose mixer is larger) is 2.5·D = 320 wide (each mixer's default, registry.MixerSpec.mlp_hidden), so
the three presets have about the same size.

The config holds, per letter of the pattern, every option of that mixer (`mixers`) and the MLP
width of its blocks (`mlp_hidden`); `normalize_config` fills in defaults, so a checkpoint written
before an option existed (or with the flat options of earlier versions) still loads.
"""
import math
import numbers
from functools import partial

import numpy as np

from ..errors import UserError
from ..limits import C_INT_MAX, check_allocation, format_bytes
from ..layers.block import backward_blocks, build_blocks, run_blocks
from ..layers.dropout import Dropout
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..layers.mlp import check_mlp_kind
from ..layers.module import Module, Param
from ..layers.moe import aux_loss, is_moe_block, normalize_moe
from ..layers.norm import make_norm
from ..layers.registry import mixer_spec, resolve_mlp_hidden, resolve_options
from ..layers.side import SideInputs
from ..layers.softcap import SoftCappedLinear
from .zoo import ZOO_PRESETS

PRESETS = {
    "transformer": dict(pattern="AAAAAA"),
    "mamba": dict(pattern="MMMMMM"),
    "hybrid": dict(pattern="MMMAMM"),
    "mamba2": dict(pattern="SSSSSS", mixers={"S": dict(headdim=32)}),  # d_state 64, 8 heads of 32
    "retnet": dict(pattern="RRRRRR"),  # 4 heads, value dim 2·D, MLP 2·D (the paper's FFN)
    "gla": dict(pattern="GGGGGG"),  # 4 heads, key dim D/2, value dim D, MLP 4·D
    "hyena": dict(pattern="HHHHHH", mixers={"H": dict(emb_dim=33)}, mlp_hidden=432),  # order 2, l_max 1024
    "griffin": dict(pattern="LLALLA", mlp_kind="gated_gelu", mlp_hidden=376,  # local MQA, window 128
                    mixers={"L": dict(n_heads=4), "A": dict(n_heads=4, n_kv_heads=1, window=128)}),
    "rwkv7": dict(pattern="WCWCWCWCWCWC", mlp_hidden=0, norm="layernorm",  # 6 time + 6 channel mixes
                  mixers={"W": dict(head_size=32), "C": dict(hidden_ratio=2.75)}),
    **ZOO_PRESETS,  # the hybrid zoo: hybridref/models/zoo.py
}
MODEL_KEYS = ("vocab_size", "d_model", "pattern", "mixers", "mlp_hidden", "mlp_kind", "mlp_bias", "norm", "norm_eps",
              "dropout", "seed", "moe", "meta_tokens", "logit_softcap")
# The largest integer mixer option (heads, state sizes, expansions, conv widths, chunk lengths) a config
# may hold, and the largest of one whose default is None (a window, a rank): a damaged config must not
# size the mixers' weights. Far above any model this implementation runs.
MAX_MIXER_OPTION, MAX_OPTIONAL_MIXER_OPTION = 2 ** 12, 2 ** 16


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_count(name, value, minimum=1):
    if not _is_int(value) or not minimum <= value <= C_INT_MAX:
        raise UserError(f"config {name} must be a whole number from {minimum} to {C_INT_MAX}, got {value!r}")


def check_mixer_option(letter, name, value, default):
    """A mixer option of the type of its default: a bool, a count (an int, bounded), a finite number,
    a string; or None (a feature turned off: no RoPE, no window), which the mixer checks itself. An
    option whose default is None may be a count or a number."""
    if value is None:
        return
    where = f"config option {name!r} of mixer {letter}"
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, (bool, type(None)))
    elif isinstance(default, int) or (default is None and _is_int(value)):
        most = MAX_MIXER_OPTION if isinstance(default, int) else MAX_OPTIONAL_MIXER_OPTION
        if _is_int(value) and value > most:
            raise UserError(f"{where} is {value}, more than {most}: not a model this implementation runs")
        ok = _is_int(value) and value >= 0
    elif isinstance(default, float) or default is None and number:
        ok = number and math.isfinite(value)
    else:
        ok = default is not None and isinstance(value, type(default))
    if not ok:
        raise UserError(f"{where} is {value!r}, not a value of its kind (default {default!r})")


def _least_params(cfg):
    """A lower bound of the parameter count of the model `cfg` describes: embedding, head, meta tokens and
    the MLPs (a gated MLP holds more; an MoE MLP n_experts of them), without the mixers, whose sizes are their own
    business."""
    d, moe = cfg["d_model"], cfg["moe"]
    return (2 * cfg["vocab_size"] + cfg["meta_tokens"]) * d + sum(
        2 * d * cfg["mlp_hidden"][letter] * (moe["n_experts"] if is_moe_block(i, moe) else 1)
        for i, letter in enumerate(cfg["pattern"]))


def _moe_options(moe):
    """The MoE options with defaults (hybridref/layers/moe.py), or None; a UserError for bad ones."""
    try:
        return normalize_moe(moe)
    except ValueError as e:
        raise UserError(f"config {e}") from None


def _sizes(cfg):
    return f"d_model {cfg['d_model']}, vocab_size {cfg['vocab_size']}, {len(cfg['pattern'])} blocks"


def _check_values(cfg):
    """The types and sizes of a normalized config (UserError naming the entry): a config can come from a
    damaged file, and its sizes decide what building the model allocates, checked here against
    hybridref.limits.memory_limit()."""
    _check_count("vocab_size", cfg["vocab_size"])
    _check_count("d_model", cfg["d_model"])
    for letter, width in cfg["mlp_hidden"].items():
        _check_count(f"mlp_hidden of {letter}", width, minimum=0)
    if not _is_int(cfg["seed"]) or cfg["seed"] < 0:
        raise UserError(f"config seed must be a whole number >= 0, got {cfg['seed']!r}")
    if not isinstance(cfg["norm"], str):
        raise UserError(f"config norm must be 'rmsnorm' or 'layernorm', got {cfg['norm']!r}")
    eps = cfg["norm_eps"]
    if not (isinstance(eps, numbers.Real) and not isinstance(eps, bool) and math.isfinite(eps) and 0 < eps < 1):
        raise UserError(f"config norm_eps must be a number between 0 and 1 (the norms' epsilon), got {eps!r}")
    _check_count("meta_tokens", cfg["meta_tokens"], minimum=0)
    cap = cfg["logit_softcap"]
    if cap is not None and not (isinstance(cap, numbers.Real) and not isinstance(cap, bool) and 0 < cap < math.inf):
        raise UserError(f"config logit_softcap must be null or a positive number (logits c·tanh(z/c)), got {cap!r}")
    if not isinstance(cfg["mlp_bias"], bool):
        raise UserError(f"config mlp_bias must be true or false, got {cfg['mlp_bias']!r}")
    for letter, options in cfg["mixers"].items():
        defaults = mixer_spec(letter).options
        for name, value in options.items():
            check_mixer_option(letter, name, value, defaults[name])
    params = _least_params(cfg)
    check_allocation(f"a model of {_sizes(cfg)} (at least {params:,} parameters)", 4 * params, "choose smaller sizes")


class CharLM(Module):
    def __init__(self, vocab_size, d_model=128, pattern="MMMAMM", mixers=None, mlp_hidden=None, norm="rmsnorm",
                 dropout=0.0, seed=0, mlp_kind="gelu", norm_eps=1e-5, mlp_bias=True, moe=None, meta_tokens=0,
                 logit_softcap=None,
                 **mixer_options):
        """mixers: {letter: {option: value}}; mixer_options: an option for every mixer of the pattern
        that has it (n_heads=2, d_state=4, ...); mlp_hidden: int or {letter: width}; mlp_kind: "gelu",
        "gated_gelu" or "swiglu" (hybridref/layers/mlp.py), every block's, with biases unless mlp_bias
        is False; norm_eps: every norm's epsilon (1e-5; Llama checkpoints use 1e-6); moe: None (dense
        MLPs) or MoE options {n_experts, top_k, period, offset, aux_loss_coef, z_loss_coef,
        normalize_top_k} (hybridref/layers/moe.py; missing ones take their defaults); meta_tokens: Hymba's
        learned meta tokens, that many vectors prepended to every sequence (0: none)."""
        super().__init__()
        self.config = cfg = self.normalize_config(dict(
            vocab_size=vocab_size, d_model=d_model, pattern=pattern, mixers=mixers, mlp_hidden=mlp_hidden,
            mlp_kind=mlp_kind, mlp_bias=mlp_bias, norm=norm, norm_eps=norm_eps, dropout=dropout, seed=seed,
            moe=moe, meta_tokens=meta_tokens, logit_softcap=logit_softcap, **mixer_options))
        rng = np.random.default_rng(seed)
        self.vocab_size = vocab_size
        self.embed = Embedding(vocab_size, d_model, rng)
        self.drop = Dropout(dropout)
        self.blocks = build_blocks(pattern, d_model, cfg["mixers"], cfg["mlp_hidden"], norm, rng, dropout,
                                   cfg["mlp_kind"], norm_eps, mlp_bias, cfg["moe"])
        self.norm = make_norm(norm, d_model, norm_eps)
        # logit_softcap c: logits c·tanh(z/c) (RecurrentGemma's; hybridref/layers/softcap.py)
        head = Linear if logit_softcap is None else partial(SoftCappedLinear, cap=logit_softcap)
        self.head = head(d_model, vocab_size, bias=False, rng=rng, std=0.02)
        self.meta_tokens = cfg["meta_tokens"]
        if self.meta_tokens:  # drawn last, so a model without them draws what it always did
            self.meta = Param(rng.normal(0.0, 0.02, (self.meta_tokens, d_model)), decay=False)
        for block in self.blocks:  # Hymba's local layers keep the meta tokens visible to every query
            if hasattr(block.mixer, "set_sinks"):
                block.mixer.set_sinks(self.meta_tokens)

    @staticmethod
    def normalize_config(config, strict=True):
        """The full config of a model: per-mixer options and MLP widths filled in. Keys that are not
        model keys are mixer options (flat); strict=False drops those no mixer of the pattern has
        (configs of earlier versions stored every mixer's options flat)."""
        if not isinstance(config, dict):
            raise UserError(f"a model config is a dict, got a {type(config).__name__}")
        if "vocab_size" not in config:
            raise UserError("the model config has no vocab_size")
        config = dict(config)
        flat = {k: config.pop(k) for k in list(config) if k not in MODEL_KEYS}
        pattern, d = config.get("pattern", "MMMAMM"), config.get("d_model", 128)
        _check_count("d_model", d)
        mlp_hidden = config.get("mlp_hidden")
        for width in (mlp_hidden.values() if isinstance(mlp_hidden, dict) else []):
            _check_count("mlp_hidden", width, minimum=0)
        mixers = resolve_options(pattern, config.get("mixers"), flat=flat, strict=strict)
        cfg = dict(vocab_size=config["vocab_size"], d_model=d, pattern=pattern, mixers=mixers,
                   mlp_hidden=resolve_mlp_hidden(pattern, d, mlp_hidden),
                   mlp_kind=check_mlp_kind(config.get("mlp_kind", "gelu")), mlp_bias=config.get("mlp_bias", True),
                   norm=config.get("norm", "rmsnorm"), norm_eps=config.get("norm_eps", 1e-5),
                   dropout=config.get("dropout", 0.0),
                   seed=config.get("seed", 0), moe=_moe_options(config.get("moe")),
                   logit_softcap=config.get("logit_softcap"),
                   meta_tokens=config.get("meta_tokens", 0))
        _check_values(cfg)
        return cfg

    @classmethod
    def from_config(cls, config, max_params=None):
        """The model a (possibly older) saved config describes. Keys that are neither model keys nor an
        option of any mixer are refused; max_params (the parameters a checkpoint holds) refuses a
        config whose sizes need more, before anything is allocated."""
        cfg = cls.normalize_config(config, strict=True)
        params = _least_params(cfg)
        if max_params is not None and params > max_params:
            raise UserError(f"its config ({_sizes(cfg)}) implies at least {params:,} parameters "
                            f"({format_bytes(4 * params)}), but the checkpoint holds {max_params:,}")
        return cls(**cfg)

    @classmethod
    def preset(cls, arch, vocab_size, **overrides):
        if arch not in PRESETS:
            raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(PRESETS)}")
        return cls(vocab_size, **{**PRESETS[arch], **overrides})

    def aux_loss(self):
        """The auxiliary losses of the last forward (MoE load balancing and router z-loss, weighted by their
        coefficients; 0.0 without MoE), which training adds to its loss (hybridref/layers/moe.py)."""
        return aux_loss(self)

    def forward(self, ids, states=None):
        """int64 ids (B,T) -> logits (B,T,V). With `states` (init_state) it is the prefill: it also fills them.
        On a backend spread over processes, this process's share: the logits of be.shard_tokens(ids).

        With meta tokens, the sequence through the blocks is (meta tokens, embeddings) and the logits
        are those of the real tokens; decode states hold the meta tokens already (init_state), so a
        prefill from them does not prepend them again."""
        x = self.embed.forward(self.be.shard_tokens(ids))
        prepend = self.meta_tokens if states is None else 0
        n_meta = prepend if prepend and self.be.prepend_positions(prepend) else 0  # 0 on a later process
        if n_meta:
            x = np.concatenate([np.broadcast_to(self.meta.data.astype(x.dtype), (len(x),) + self.meta.shape), x], axis=1)
        x = self.drop.forward(x)
        side = SideInputs(embed=x)
        self.save(side, prepend, n_meta)
        return self.head.forward(self.norm.forward(run_blocks(self.blocks, x, states, side)[:, n_meta:]))

    def backward(self, dlogits):
        side, prepend, n_meta = self.saved()
        if prepend:  # the split with the meta tokens again (the targets may have gone through shard_tokens since)
            self.be.prepend_positions(prepend)
        dh = self.norm.backward(self.head.backward(dlogits))
        if n_meta:  # the meta tokens' outputs are not read: their gradient enters at the blocks
            dh = np.concatenate([np.zeros((len(dh), n_meta, dh.shape[2]), dh.dtype), dh], axis=1)
        dx = backward_blocks(self.blocks, dh)
        dembed = side.pop_grad("embed")
        dx = self.drop.backward(dx if dembed is None else dx + dembed)
        if n_meta:
            self.meta.grad += dx[:, :n_meta].sum(axis=0)
        self.embed.backward(np.ascontiguousarray(dx[:, n_meta:]))

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len, dtype=np.float32):
        """One decode state per block (KV cache of max_len tokens, or Mamba's conv and scan states). With
        meta tokens the states have room for them too and hold them already: the meta tokens are
        prefilled here, once, so the decoders' positions count the real tokens only (a batch of 0,
        which only sizes the states, prefills nothing)."""
        states = [block.init_state(batch, max_len + self.meta_tokens, dtype) for block in self.blocks]
        if self.meta_tokens and batch:
            self.set_dropout_seed(None)
            meta = np.ascontiguousarray(np.broadcast_to(self.meta.data.astype(dtype), (batch,) + self.meta.shape))
            run_blocks(self.blocks, meta, states, SideInputs(embed=meta))
            self.clear_saved()
        return states

    def prefill(self, ids, states):
        """The parallel forward over a prompt (B,T) that fills fresh `states`; -> logits (B,T,V).
        Decoding is inference: dropout is turned off, as the one-token steps never apply it."""
        self.set_dropout_seed(None)
        logits = self.forward(ids, states)
        self.clear_saved()
        return logits

    def step(self, ids, states):
        """One token per stream, ids (B,) -> logits (B,V); advances `states` in place."""
        x = self.embed.step(ids)
        side = SideInputs(embed=x)
        for block, state in zip(self.blocks, states):
            x = block.step(x, state, side)
        return self.head.step(self.norm.step(x))

    def decoder(self, batch, max_len, weights="f32"):
        """A streaming decoder for `batch` independent streams of up to max_len tokens: the backend's
        own (one C call per token on the C backend), else the layer-by-layer Python one. weights: the
        element type of its weight matrices, "f32" or (C backend) "bf16"."""
        make = getattr(self.be, "decoder", None)
        if make is None:
            from hybridref.backends.numpy.decode import Decoder, check_weights
            check_weights(weights)
            return Decoder(self, batch, max_len)
        return make(self, batch, max_len, weights)
