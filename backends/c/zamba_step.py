"""Zamba's shared block's record for the C decoder (csrc/zamba_step.c): the attention record's layout
(backends/c/attention_step.py) followed by the shared block's own part. Its kernels are the attention
step's and the decoder's MLP, so there is no op of its own here."""
import numpy as np

from .attention_step import decode_record as attention_record
from .decode import _MLP_KINDS


def decode_record(mixer, state, max_len, shared):
    """ints [attention's 6, mlp kind, mlp hidden, D]; floats [rope base, norm eps]; weights [qkv w, out w,
    out b (None), norm_in w, norm_ff w, fc w, fc b, proj w, proj b, call w]; state [k cache, v cache, embed (B,D)].

    embed is the side input "embed", the token embeddings: one buffer for every record of the decoder
    (through `shared`), which the decoder fills before the blocks of each step."""
    block = mixer.shared
    rec = attention_record(block.attn, state, max_len)
    if "embed" not in shared:
        shared["embed"] = np.zeros((state["k"].shape[0], mixer.d_model), state["k"].dtype)
    mlp = block.mlp
    if block.norm_in.eps != block.norm_ff.eps:
        raise ValueError("decoder: the zamba block's two norms must share one eps")
    rec.ints += [_MLP_KINDS[mlp.kind], mlp.hidden, mixer.d_model]
    rec.floats += [block.norm_in.eps]
    rec.weights += [block.norm_in.weight.data, block.norm_ff.weight.data, mlp.fc.weight.data,
                    None if mlp.fc.bias is None else mlp.fc.bias.data, mlp.proj.weight.data,
                    None if mlp.proj.bias is None else mlp.proj.bias.data, mixer.call_out.weight.data]
    rec.states += [shared["embed"]]
    return rec
