"""The RWKV-7 channel mixing's record for the C decoder (csrc/rwkv7_cmix_step.c); its kernels are the
token_shift op at T = 1 and the decoder's GEMV."""
from .decode import DecodeRecord


def decode_record(mixer, state, max_len):
    """ints [C, hidden]; weights [mix (1,C), key w (hidden,C), value w (C,hidden)]; state [shift (B,1,C)]."""
    return DecodeRecord(ints=[mixer.d_model, mixer.hidden],
                        weights=[mixer.mix.data, mixer.key.weight.data, mixer.value.weight.data],
                        states=[state["shift"]])
