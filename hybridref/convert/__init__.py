"""Hugging Face `transformers` checkpoints in and out (`hybridref convert`).

    from_hf(folder, out)         config.json + safetensors weights -> a hybridref checkpoint (+ tokenizer)
    to_hf(checkpoint, folder)    a hybridref checkpoint -> config.json + model.safetensors

for every architecture whose layers hybridref has, one module each (hf_mamba.py, hf_llama.py: the
config entries, what is refused, and the table of weights, hf_rules.Rule). The files are read and
written directly (hf_files.py: the `safetensors` NumPy API); transformers is never imported.

A converted model is a CharLM (hybridref/models/char_lm.py) whose tokens are the checkpoint's token
ids: it has no character vocabulary, and the folder's tokenizer.json is copied beside it
(tokenizer.py). transformers ties the lm_head to the embeddings when tie_word_embeddings is set;
hybridref's head is always its own matrix, so the import copies the embeddings into it, and the
export writes tie_word_embeddings true exactly when the two matrices are equal (training a converted
tied model in hybridref unties them).

An architecture whose weights transformers stores otherwise than hybridref's layers use them
(RecurrentGemma's: scaled embeddings, norms of 1 + w, transposed gate blocks) also defines
to_ours(cfg, params) and to_theirs(cfg, params), applied after the rules' import and before their export.
"""
import os

import numpy as np

from ..checkpoint import save_checkpoint
from ..errors import UserError
from ..models.char_lm import CharLM
from . import hf_bamba, hf_falcon_h1, hf_jamba, hf_llama, hf_mamba, hf_mamba2, hf_recurrentgemma, hf_zamba
from .hf_config import HFConfig
from .hf_files import read_config, read_weights, write_checkpoint
from .hf_rules import export_params, import_params
from .tokenizer import FILE as TOKENIZER, copy_tokenizer, tokenizer_beside

ARCHITECTURES = {m.MODEL_TYPE: m for m in (hf_mamba, hf_mamba2, hf_llama, hf_jamba, hf_recurrentgemma, hf_bamba,
                                            hf_falcon_h1, hf_zamba)}
SUPPORTED = ", ".join(f"{m.ARCH} (model_type {t!r})" for t, m in ARCHITECTURES.items())
# transformers architectures whose hybridref counterpart computes another function: refused with the reason
NOT_CONVERTED = {
    "zamba2": "Zamba2 has Mamba-2 layers (hybridref's 'S', which has no Zamba layout here), num_mem_blocks "
              "alternating shared blocks (hybridref's Zamba layers share one) and a LoRA per call on the shared "
              "block (adapter_rank), none of which hybridref's Zamba hybrid layer ('X', converted from model_type "
              "'zamba') has",
}


def _architecture(hf):
    """The module of the config's model_type, whose causal-LM class its `architectures` must name."""
    model_type, names = hf.get("model_type"), hf.get("architectures") or []
    arch = ARCHITECTURES.get(model_type)
    if model_type in NOT_CONVERTED:
        raise UserError(f"{hf.where}: model_type {model_type!r} is not converted: {NOT_CONVERTED[model_type]}")
    if arch is None:
        raise UserError(f"{hf.where}: model_type {model_type!r} (architectures {names}) is not supported: hybridref "
                        f"converts {SUPPORTED}")
    if names and list(names) != [arch.ARCH]:
        raise UserError(f"{hf.where}: architectures {names} is not supported: hybridref converts the causal language "
                        f"model {arch.ARCH} of model_type {model_type!r} ({SUPPORTED})")
    return arch


def _map(arch, direction, cfg, params):
    """params through the architecture's to_ours / to_theirs when it has one (most store ours as they are)."""
    convert = getattr(arch, direction, None)
    return params if convert is None else convert(cfg, params)


def from_hf(folder, out):
    """Convert the transformers checkpoint in `folder` to the hybridref checkpoint `out`; -> a summary dict."""
    hf = HFConfig(read_config(folder), folder)
    arch = _architecture(hf)
    config, tied = arch.config_from_hf(hf)
    model = CharLM.from_config(config)  # sizes checked against the memory limit before allocating
    tensors = read_weights(folder)
    ignored = arch.prepare(hf, tensors)
    shapes = {name: p.shape for name, p in model.named_params()}
    params = import_params(arch.rules(model.config, tied), tensors, shapes, folder, ignored)
    model.load_state_dict(_map(arch, "to_ours", model.config, params))
    save_checkpoint(out, model)
    tokenizer = copy_tokenizer(os.path.join(folder, TOKENIZER), tokenizer_beside(out))
    return dict(architecture=arch.ARCH, parameters=model.num_params(), tied_embeddings=tied, tokenizer=tokenizer)


def to_hf(checkpoint, folder):
    """Write the hybridref checkpoint `checkpoint` as a transformers checkpoint folder; -> a summary dict."""
    from ..generate import load_model
    model, _ = load_model(checkpoint, None, need_vocab=False)
    cfg, params = model.config, model.state_dict()
    reasons = {arch.ARCH: arch.unfit(cfg) for arch in ARCHITECTURES.values()}
    fits = [arch for arch in ARCHITECTURES.values() if reasons[arch.ARCH] is None]
    if not fits:
        raise UserError(f"{checkpoint}: its model is none of the architectures hybridref writes for transformers: "
                        + "; ".join(f"not {name}: {why}" for name, why in reasons.items()))
    arch = fits[0]
    params = _map(arch, "to_theirs", cfg, params)
    tied = bool(np.array_equal(params["head.weight"], params["embed.weight"]))
    write_checkpoint(folder, arch.config_to_hf(cfg, tied), export_params(arch.rules(cfg, tied), params))
    tokenizer = copy_tokenizer(tokenizer_beside(checkpoint), os.path.join(folder, TOKENIZER))
    return dict(architecture=arch.ARCH, parameters=model.num_params(), tied_embeddings=tied, tokenizer=tokenizer)
