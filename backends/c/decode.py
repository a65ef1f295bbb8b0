"""Wrapper of csrc/decode.c: the whole-model streaming decoder, one C call per token.

The model is described to C once: a header, then per block its norms and MLP and its mixer's
record, which the mixer kind's C wrapper lays out (`decode_record` in backends/c/<name>_step.py,
read back by hr_<name>_step in csrc/<name>_step.c). A mixer kind with no C step is refused by name
here, never run as another kind.
"""
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from hybridref.layers.embedding import Embedding
from hybridref.layers.linear import Linear
from hybridref.layers.moe import GroupedLinear
from hybridref.layers.norm import LayerNorm, RMSNorm
from hybridref.layers.rglru import BlockDiagonalLinear

from ..numpy.decode import Decoder as Reference
from . import checks
from .bfloat16 import to_bfloat16
from .panels import to_panels

# must match csrc/decode.c
_HEADER, _LAYER_INTS, _BLOCK_W = 7, 8, 8
_H_EMBED, _H_WTYPES, _H_STREAMS = 4, 5, 6  # header slots
# the element types of the decoder's weights (DEC_F32, DEC_BF16 of csrc/decode_mixer.h), by `weights` option,
# and the flag of a matrix in panel layout (DEC_PANELS)
WEIGHTS = {"f32": 0, "bf16": 1}
_PANELS = 2
# the modules whose weight is a matrix the C steps read only through the GEMV hr_dec_linear (or, the
# embedding, by rows): what the decoder stores in panel layout, and weights="bf16" in bfloat16
_MATRIX_MODULES = (Linear, GroupedLinear, BlockDiagonalLinear, Embedding)
NONFINITE = 2  # HR_ENONFINITE of csrc/common.h: sampling met a non-finite logit
# MLP_GELU, MLP_GATED_GELU, MLP_SWIGLU, MLP_GATED_GELU_ERF: hybridref/layers/mlp.py
_MLP_KINDS = {"gelu": 0, "gated_gelu": 1, "swiglu": 2, "gated_gelu_erf": 3}


def _moe_ints(mlp, kind, w_at):
    """The ints of a mixture-of-experts MLP's record (csrc/moe_step.c), its weights at w[w_at]."""
    return [mlp.n_experts, mlp.top_k, int(mlp.normalize), kind, mlp.experts.fc.d_out, w_at]


def _moe_weights(mlp):
    """router (E,D), fc w (E,F,D), fc b (E,F) or None, proj w (E,D,hidden), proj b (E,D) or None."""
    fc, proj = mlp.experts.fc, mlp.experts.proj
    return [mlp.router.weight.data, fc.weight.data, _bias_data(fc), proj.weight.data, _bias_data(proj)]


@dataclass
class DecodeRecord:
    """A mixer's part of the decoder's arrays: ints, floats, weight arrays (None: NULL) and state
    arrays, in the order its C step reads them; on_step(pos) is called after each C step (Python-side
    bookkeeping of the state, such as a KV cache's fill)."""
    ints: list
    weights: list
    states: list
    floats: list = field(default_factory=list)
    on_step: Optional[Callable[[int], None]] = None


def _bias_data(linear):
    """A Linear's bias array, or None (NULL in C) when it has none."""
    return None if linear.bias is None else linear.bias.data


def _record_of(be, mixer, state, max_len, index, shared):
    """(kind, record) of block `index`'s mixer. `shared` is one dict for all the records of a decoder:
    a record function that takes it (`decode_record(mixer, state, max_len, shared)`) finds there the
    state buffers earlier records put, and puts its own, so a side input crosses layers in C."""
    name = mixer.mixer_name
    try:
        module = importlib.import_module(f"hybridref.backends.c.{name}_step")
    except ModuleNotFoundError:
        module = None
    kind = be.lib.hr_decode_kind(name.encode())
    if module is None or kind < 0:
        raise ValueError(f"decoder: block {index} is a {name!r} mixer, which has no C decode step "
                         f"(csrc/{name}_step.c and backends/c/{name}_step.py); decode on the numpy backend, "
                         f"whose decoder runs each layer's step")
    record = module.decode_record
    if "shared" in inspect.signature(record).parameters:
        return kind, record(mixer, state, max_len, shared)
    return kind, record(mixer, state, max_len)


class Decoder:
    """The streaming decoder of backends/numpy/decode.py, with each step one C call (hr_decode_step).

    The matrices of the model's Linear layers (every projection, the MLPs, the head; Mamba's x_proj and
    dt_proj, RWKV-7's low-rank maps, the RG-LRU gates, MoE experts and router) are copied here into the
    panel layout of csrc/decode_mixer.h (backends/c/panels.py), which the step's GEMV streams front to
    back and its GEMM reads without packing; so later updates of those weights are not seen: build a new
    decoder after training or load_state_dict. The other weights (the embedding table, norm weights,
    biases, conv taps) are read in place, except what a mixer's record derives from them (Mamba's
    A = −exp(A_log)). The prefill is the model's parallel forward on the C kernels.

    weights="bf16" stores those matrices and the embedding as bfloat16 copies, rounded to nearest even
    (backends/c/bfloat16.py): a step reads half the bytes, and its arithmetic stays float32 on the
    rounded weights. Norm weights, biases, conv taps, Mamba's A and D and the like stay float32. The
    prefill (the parallel forward) runs the float32 weights."""

    def __init__(self, be, model, batch, max_len, weights="f32"):
        if weights not in WEIGHTS:
            raise ValueError(f"decoder: weights must be one of {', '.join(map(repr, WEIGHTS))} (the element type "
                             f"of its weight matrices), got {weights!r}")
        self.be, self.model, self.weights = be, model, weights
        self._ref = Reference(model, batch, max_len)  # prefill, argument checks, states
        self.batch, self.max_len = batch, max_len
        self._keep = []  # arrays whose pointers C holds
        cfg, floats, weights, states, self._on_step = self._describe(model, self._ref.states, max_len)
        wtypes = self._matrix_types(model, weights)
        cfg[_H_WTYPES] = len(cfg)  # the element types follow the records
        strides = self._stream_strides(model, states, max_len)
        if strides is not None:  # then the states' floats per stream
            cfg[_H_STREAMS] = len(cfg) + len(wtypes)
        self._cfg = np.ascontiguousarray(cfg + wtypes + ([len(states)] + strides if strides is not None else []),
                                         dtype=np.int32)
        self._fcfg = np.ascontiguousarray(floats, dtype=np.float32)
        self._w = be.ffi.new("float *[]", len(weights))
        unit = be.ffi.new("int *")
        width = be.lib.hr_dec_panel_width(unit)
        stored = {}  # (id of a float32 array, its layout) -> the copy C reads: a matrix in several records is copied once
        self.matrices = []  # the model's float32 arrays the decoder reads as copies (in panel layout, or bf16 rows)
        for i, (arr, wtype) in enumerate(zip(weights, wtypes)):
            if arr is None:
                self._w[i] = be.ffi.NULL
            elif wtype == WEIGHTS["f32"]:
                self._w[i] = be.f32(self._kept(arr))
            else:
                key = (id(arr), wtype)
                if key not in stored:
                    checks.check_array("decoder", "a model weight", arr)
                    bf16 = bool(wtype & WEIGHTS["bf16"])
                    copy = to_panels(arr, width, unit[0], bf16) if wtype & _PANELS else to_bfloat16(arr)
                    stored[key] = self._kept(copy, np.uint16 if bf16 else np.float32)
                    self.matrices.append(arr)
                self._w[i] = be.ffi.cast("float *", be.ffi.from_buffer(stored[key]))
        self._state = be.ffi.new("float *[]", max(1, len(states)))
        for i, arr in enumerate(states):
            self._state[i] = be.f32(self._kept(arr))
        self._logits = np.empty((batch, model.vocab_size), np.float32)
        # stream b stands at position pos − behind[b]: streams prefilled with prompts of different lengths
        # (prefill_streams) stay that far behind the longest, whose position is the reference decoder's
        self._behind = np.zeros(batch, np.int32)

    @property
    def pos(self):
        return self._ref.pos

    @property
    def states(self):
        return self._ref.states

    def _kept(self, arr, dtype=np.float32):
        checks.check_array("decoder", "a model weight or state", arr, dtype=dtype)
        self._keep.append(arr)
        return arr

    def _matrix_types(self, model, weights):
        """The element type and layout of each weight pointer (WEIGHTS, _PANELS): the weight matrices of
        _MATRIX_MODULES in panel layout (the embedding table, slot 0, by rows), in bfloat16 under the
        "bf16" option; float32 read in place for everything else."""
        matrices = {id(m.weight.data) for m in model.modules() if isinstance(m, _MATRIX_MODULES)}

        def is_matrix(arr):  # such a weight, or rows of one (a view: Hymba's split in_proj)
            while arr is not None and id(arr) not in matrices:
                arr = arr.base
            return arr is not None

        element = WEIGHTS[self.weights]
        return [WEIGHTS["f32"] if arr is None or not is_matrix(arr) else element if i == 0 else element | _PANELS
                for i, arr in enumerate(weights)]

    def _stream_strides(self, model, states, max_len):
        """Each state's floats per stream when every state holds the streams along its first axis, so that the
        token loop can step slices of the streams on different threads (csrc/decode.c, hr_generate); else
        None (Hyena's history holds them on its second axis and its filter is shared). A state of the
        layers' own is per stream when one stream's state has the same shape with 1 on that axis; a buffer
        a record adds (a side input) holds one row per stream."""
        if self.batch < 2:
            return None
        alone = {}
        for mine, its in zip(self._ref.states, model.init_state(1, max_len)):
            alone.update({id(arr): its[key].shape for key, arr in mine.items() if isinstance(arr, np.ndarray)})
        strides = []
        for arr in states:
            if arr.ndim == 0 or arr.shape[0] != self.batch or alone.get(id(arr), (1,) + arr.shape[1:]) != (1,) + arr.shape[1:]:
                return None
            strides.append(arr.size // self.batch)
        return strides

    def _describe(self, model, layer_states, max_len):
        """(cfg ints, floats, weight arrays, state arrays, on_step callbacks) in csrc/decode.c's layout."""
        kinds = {type(m) for m in model.modules() if isinstance(m, (RMSNorm, LayerNorm))}
        if len(kinds) != 1:
            raise ValueError(f"decoder: the C decoder needs one norm kind throughout, got {sorted(k.__name__ for k in kinds)}")
        is_ln = kinds.pop() is LayerNorm
        eps = {m.eps for m in model.modules() if isinstance(m, (RMSNorm, LayerNorm))}
        if len(eps) != 1:
            raise ValueError(f"decoder: the C decoder needs one norm eps throughout, got {sorted(eps)}")
        bias = (lambda n: n.bias.data) if is_ln else (lambda n: None)
        blocks = model.blocks
        head = [model.vocab_size, model.embed.d, len(blocks), int(is_ln), -1, -1, -1]  # embed, wtypes, streams: later
        layer_ints, mixer_ints, floats = [], [], [eps.pop(), float(model.config.get("logit_softcap") or 0.0)]
        weights = [model.embed.weight.data, model.norm.weight.data, bias(model.norm), model.head.weight.data,
                   _bias_data(model.head)]
        states, on_step, shared = [], [], {}
        for i, (blk, state) in enumerate(zip(blocks, layer_states)):
            kind, rec = _record_of(self.be, blk.mixer, state, max_len, i, shared)
            mlp = blk.mlp
            moe = mlp is not None and mlp.kind == "moe"  # a mixture of experts: its record follows the mixer's
            mlp_kind = mlp and (mlp.expert_kind if moe else mlp.kind)
            if mlp is not None and mlp_kind not in _MLP_KINDS:
                raise ValueError(f"decoder: block {i} has {'MoE experts of' if moe else 'an MLP of'} kind {mlp_kind!r}, "
                                 f"which the C decoder does not run (it runs {', '.join(_MLP_KINDS)}); decode on the "
                                 f"numpy backend")
            layer_ints += [kind, mlp.hidden if mlp else 0, _MLP_KINDS[mlp_kind] if mlp else 0,
                           len(head) + _LAYER_INTS * len(blocks) + len(mixer_ints), len(floats), len(weights),
                           len(states), len(head) + _LAYER_INTS * len(blocks) + len(mixer_ints) + len(rec.ints)
                           if moe else -1]
            # no norm1 (a mixer reading the residual stream itself, block.py): NULL, and C copies x
            weights += [blk.norm1.weight.data, bias(blk.norm1)] if blk.norm1 else [None, None]
            if mlp is None or moe:  # no MLP, or its experts' weights in the MoE record
                dense = [None] * 4
            else:
                dense = [mlp.fc.weight.data, _bias_data(mlp.fc), mlp.proj.weight.data, _bias_data(mlp.proj)]
            weights += [blk.norm2.weight.data if mlp else None, bias(blk.norm2) if mlp else None, *dense]
            mixer_ints += rec.ints
            floats += rec.floats
            weights += rec.weights
            if moe:
                mixer_ints += _moe_ints(mlp, _MLP_KINDS[mlp_kind], len(weights))
                weights += _moe_weights(mlp)
            states += rec.states
            if rec.on_step is not None:
                on_step.append(rec.on_step)
        if "embed" in shared:  # the token embeddings' buffer a record asked for (Zamba's shared block)
            head[_H_EMBED] = next(i for i, arr in enumerate(states) if arr is shared["embed"])
        return head + layer_ints + mixer_ints, floats, weights, states, on_step

    def prefill(self, ids):
        """The prompt (B,T) through the parallel forward; -> logits (B,V) at its last token."""
        return self._ref.prefill(ids)

    def prefill_streams(self, prompts):
        """A fresh decoder's B streams each prefilled with its own prompt (a sequence of token ids, lengths
        from 1 to max_len), one stream at a time through the parallel forward into its row of the
        states; then each stream stands at its own position, the length of its prompt. -> logits (B,V)
        at each prompt's last token."""
        ref, model = self._ref, self.model
        if len(prompts) != self.batch:
            raise ValueError(f"decoder: prefill_streams takes one prompt per stream ({self.batch}), got {len(prompts)}")
        if ref.pos:
            raise ValueError(f"decoder: prefill starts a fresh decoder; this one is at position {ref.pos}")
        prompts = [np.asarray(p, dtype=np.int64) for p in prompts]
        bad = [(b, p.shape) for b, p in enumerate(prompts) if p.ndim != 1 or not 1 <= len(p) <= self.max_len]
        if bad:
            raise ValueError(f"decoder: each prompt must be 1-D with 1 to max_len = {self.max_len} tokens; stream "
                             f"{bad[0][0]} has shape {bad[0][1]}")
        logits = np.empty_like(self._logits)
        for b, ids in enumerate(prompts):
            one = Reference(model, 1, self.max_len)
            logits[b] = one.prefill(ids[None])[0]
            for mine, its in zip(ref.states, one.states):
                for key, arr in its.items():  # the per-stream arrays: batch axis first (not those shared)
                    dst = mine[key]
                    if isinstance(arr, np.ndarray) and dst.shape == (self.batch,) + arr.shape[1:] and arr.shape[0] == 1:
                        dst[b] = arr[0]
        lengths = np.array([len(p) for p in prompts])
        ref.pos = int(lengths.max())
        self._behind[:] = ref.pos - lengths
        for advance in self._on_step:
            advance(ref.pos + self.model.meta_tokens)  # the state's length counts the meta tokens
        return logits

    def _positions(self):
        """int32 (B,): each stream's position in the model's sequence (pos − behind, after the meta tokens)."""
        return np.ascontiguousarray(self._ref.pos - self._behind + self.model.meta_tokens, dtype=np.int32)

    def step(self, ids):
        """One token per stream in one C call; -> logits (B,V) of the following token."""
        ref = self._ref
        ids = ref._check_ids(ids, 1)
        ref._check_room(1)
        positions = self._positions()
        status = self.be.lib.hr_decode_step(self.be.ffi.cast("int *", self.be.ffi.from_buffer(self._cfg)),
                                            self.be.f32(self._fcfg), self._w, self._state, self.be.i64(ids),
                                            self.be.f32(self._logits), self.batch,
                                            self.be.ffi.cast("int *", self.be.ffi.from_buffer(positions)))
        self.be.raise_status("decode_step", status)
        ref.pos += 1
        for advance in self._on_step:
            advance(ref.pos + self.model.meta_tokens)  # the state's length counts the meta tokens
        return self._logits.copy()

    def generate(self, logits, n, seed, temperature=1.0, top_k=0, top_p=1.0, final=True):
        """The token loop of backends/numpy/decode.py in one C call (hr_generate: sampling by csrc/sample.c,
        the same draws as the oracle's for the same logits); -> (tokens (B,n), logits or None when final)."""
        ref = self._ref
        logits, n, final, seed, temperature, top_k, top_p = ref._check_generate(logits, n, final, seed, temperature,
                                                                                top_k, top_p)
        self._logits[...] = logits
        tokens = np.empty((self.batch, n), dtype=np.int64)
        be, positions = self.be, self._positions()
        status = be.lib.hr_generate(be.ffi.cast("int *", be.ffi.from_buffer(self._cfg)), be.f32(self._fcfg), self._w,
                                    self._state, be.f32(self._logits), self.batch,
                                    be.ffi.cast("int *", be.ffi.from_buffer(positions)), n, int(final),
                                    temperature, top_k, top_p, seed, be.i64(tokens))
        if status == NONFINITE:
            ref._refuse_nonfinite()
        be.raise_status("generate", status)
        ref.pos += n - final
        for advance in self._on_step:
            advance(ref.pos + self.model.meta_tokens)  # the state's length counts the meta tokens
        return tokens, None if final else self._logits.copy()
