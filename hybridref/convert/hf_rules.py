"""Where each hybridref weight comes from in a `transformers` state dict, and back.

A Rule says: hybridref's parameter `ours` is the rows of the HF tensors `theirs`, concatenated in
order, reshaped to ours's shape. One rule covers the three cases of these architectures:

    one tensor, same shape        norm weights, out_proj, embeddings
    one tensor, another shape     Mamba's depthwise conv1d.weight (Din, 1, W) = our conv_weight (Din, W)
    several tensors, stacked      attention's qkv = [q_proj; k_proj; v_proj], a gated MLP's fc = [gate; up]

so the import (concatenate) and the export (split at the same rows) are one table read both ways.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass
class Rule:
    ours: str
    theirs: list  # [(HF tensor name, its shape)]


def import_params(rules, tensors, shapes, where, ignored=()):
    """{our name: array} from the HF tensors. Every rule's tensors must be there with the shapes the config
    implies, and every tensor must be used by a rule or be `ignored` (tensors transformers itself does not
    load, such as a tied lm_head): a tensor with no place in the model is refused, never dropped."""
    params, used = {}, set()
    for rule in rules:
        parts = []
        for name, shape in rule.theirs:
            if name not in tensors:
                raise UserError(f"{where}: the weights have no tensor {name!r} (for hybridref's {rule.ours}); the "
                                f"checkpoint does not match its config.json")
            if tensors[name].shape != tuple(shape):
                raise UserError(f"{where}: tensor {name!r} has shape {tensors[name].shape}, but config.json implies "
                                f"{tuple(shape)}")
            parts.append(tensors[name].reshape(shape[0], -1))
            used.add(name)
        params[rule.ours] = np.concatenate(parts, axis=0).reshape(shapes[rule.ours])
    extra = sorted(set(tensors) - used - set(ignored))
    if extra:
        raise UserError(f"{where}: tensors {extra[:5]}{' ...' if len(extra) > 5 else ''} have no place in the model "
                        f"config.json describes (an option the conversion does not know about?); not converted")
    return params


def export_params(rules, params):
    """{HF name: array} from our parameters: each rule's array split at the rows of its HF tensors. A name
    already written (the embedding, read again by a tied head's rule) is written once."""
    out = {}
    for rule in rules:
        rows = [shape[0] for _, shape in rule.theirs]
        pieces = np.split(params[rule.ours].reshape(sum(rows), -1), np.cumsum(rows)[:-1])
        for (name, shape), piece in zip(rule.theirs, pieces):
            out.setdefault(name, np.ascontiguousarray(piece.reshape(shape)))
    return out


def zero_biases(tensors, weights):
    """Put a zero bias beside each of the named weights that is present (a conv1d saved without its
    bias, use_conv_bias false): NAME.weight (C, ...) gets NAME.bias = zeros (C,), so that the rules
    read one layout whatever the option."""
    for name in weights:
        if name in tensors:
            tensors[name[:-len("weight")] + "bias"] = np.zeros(len(tensors[name]), np.float32)
