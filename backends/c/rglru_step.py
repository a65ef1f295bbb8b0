"""Griffin's recurrent block's record for the C decoder (csrc/rglru_step.c). Its kernels are the
training ops at T = 1 (causal_conv1d, rglru_gate, linear_recurrence), so there is no op of its own
here."""
from .decode import DecodeRecord


def decode_record(mixer, state, max_len):
    """ints [C, H, W]; weights [linear_y w, b, linear_x w, b, conv w, conv b, input gate w, b, a gate w, b,
    Λ, linear_out w, b]; state [conv (B, W−1, C), h (B, C)]. The step reads the stream position from
    the decoder; on_step keeps the state's `pos` (what a NumPy step or a later prefill reads) in step."""
    return DecodeRecord(
        ints=[mixer.lru_width, mixer.n_heads, mixer.conv_weight.shape[1]],
        weights=[mixer.linear_y.weight.data, mixer.linear_y.bias.data, mixer.linear_x.weight.data,
                 mixer.linear_x.bias.data, mixer.conv_weight.data, mixer.conv_bias.data,
                 mixer.input_gate.weight.data, mixer.input_gate.bias.data, mixer.a_gate.weight.data,
                 mixer.a_gate.bias.data, mixer.a_param.data, mixer.linear_out.weight.data, mixer.linear_out.bias.data],
        states=[state["conv"], state["h"]],
        on_step=lambda pos: state.update(pos=pos))
