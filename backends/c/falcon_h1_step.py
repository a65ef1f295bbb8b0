"""Falcon-H1's record for the C decoder (csrc/falcon_h1_step.c): the Mamba-2 record
(backends/c/mamba2_step.py) followed by the attention record (backends/c/attention_step.py). Its kernels are
those two steps', so there is no op of its own here."""
from .attention_step import decode_record as attention_record
from .decode import DecodeRecord
from .mamba2_step import decode_record as mamba2_record


def decode_record(mixer, state, max_len):
    """ints [Mamba-2's 5, attention's]; floats [norm eps, rope base]; weights [Mamba-2's 8, attention's];
    state [conv, ssm, k cache, v cache]: each branch's record over the one state dict."""
    m, a = mamba2_record(mixer.mamba, state, max_len), attention_record(mixer.attn, state, max_len)
    # the step finds the attention part after these lengths (FH_M2_* of csrc/falcon_h1_step.c)
    assert (len(m.ints), len(m.floats), len(m.weights), len(m.states)) == (5, 1, 8, 2)
    return DecodeRecord(ints=m.ints + a.ints, floats=m.floats + a.floats, weights=m.weights + a.weights,
                        states=m.states + a.states, on_step=a.on_step)
