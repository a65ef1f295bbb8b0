"""Falcon-H1's record for the C decoder (csrc/falcon_h1_step.c): the attention record
(backends/c/attention_step.py) followed by the Mamba-2 record (backends/c/mamba2_step.py). Its kernels are
those two steps', so there is no op of its own here."""
from .attention_step import decode_record as attention_record
from .decode import DecodeRecord
from .mamba2_step import decode_record as mamba2_record


def decode_record(mixer, state, max_len):
    """ints [attention's 6, Mamba-2's 5]; floats [rope base, norm eps]; weights [attention's 3, Mamba-2's 8];
    state [k cache, v cache, conv, ssm]: each branch's record over the one state dict."""
    a, m = attention_record(mixer.attn, state, max_len), mamba2_record(mixer.mamba, state, max_len)
    # the step finds the Mamba-2 part after these lengths (FH_AT_* of csrc/falcon_h1_step.c)
    assert (len(a.ints), len(a.floats), len(a.weights), len(a.states)) == (6, 1, 3, 2)
    return DecodeRecord(ints=a.ints + m.ints, floats=a.floats + m.floats, weights=a.weights + m.weights,
                        states=a.states + m.states, on_step=a.on_step)
