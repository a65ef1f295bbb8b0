"""Falcon-H1's record for the C decoder (csrc/falcon_h1_step.c): the Mamba-2 record (backends/c/mamba2_step.py)
and the attention record (backends/c/attention_step.py) one after the other, after the first's counts. Its
kernels are those two steps', so there is no op of its own here."""
from .attention_step import decode_record as attention_record
from .decode import DecodeRecord
from .mamba2_step import decode_record as mamba2_record


def decode_record(mixer, state, max_len):
    """ints [the Mamba-2 record's counts of ints, floats, weights, states, | its ints | attention's]; floats,
    weights, states [Mamba-2's | attention's]: each branch's record over the one state dict."""
    m, a = mamba2_record(mixer.mamba, state, max_len), attention_record(mixer.attn, state, max_len)
    return DecodeRecord(ints=[len(m.ints), len(m.floats), len(m.weights), len(m.states), *m.ints, *a.ints],
                        floats=m.floats + a.floats, weights=m.weights + a.weights, states=m.states + a.states,
                        on_step=a.on_step)
