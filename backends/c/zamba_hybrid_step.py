"""Zamba's hybrid layer's record for the C decoder (csrc/zamba_hybrid_step.c): the "Z" call's record
(backends/c/zamba_step.py) and the Mamba's (backends/c/mamba_step.py) one after the other, with the norm
between them. Its kernels are those two steps', so there is no op of its own here."""
from .decode import DecodeRecord
from .mamba_step import decode_record as mamba_record
from .zamba_step import decode_record as zamba_record


def decode_record(mixer, state, max_len, shared):
    """ints [the Z record's counts of ints, floats, weights, states, | its ints | Mamba's]; floats [Z's | Mamba's];
    weights [Z's | norm w | Mamba's]; states [Z's (KV cache, the shared embeddings) | Mamba's (conv, ssm)].
    The norm's eps is the Z record's (one norm_eps option for the three norms)."""
    call = zamba_record(mixer.call, state, max_len, shared)
    mamba = mamba_record(mixer.mamba, state, max_len)
    if mixer.norm.eps != mixer.call.shared.norm_in.eps:
        raise ValueError("decoder: the zamba_hybrid layer's norms must share one eps")
    return DecodeRecord(ints=[len(call.ints), len(call.floats), len(call.weights), len(call.states), *call.ints,
                              *mamba.ints],
                        floats=call.floats + mamba.floats,
                        weights=call.weights + [mixer.norm.weight.data] + mamba.weights,
                        states=call.states + mamba.states, on_step=call.on_step)
