"""The Hyena operator's record for the C decoder (csrc/hyena_step.c). Its kernels are the decoder's GEMV and
conv step and a sum over each long convolution's history; the filter is the decode state's, computed by
init_state over the state's max_len positions."""
from .decode import DecodeRecord


def decode_record(mixer, state, max_len):
    """ints [N, W, M]; weights [in_proj w, b, conv w, b, filter (M, (N−1)D), filter bias, out_proj w, b];
    state [conv (B, W−1, (N+1)D), hist (N−1, B, M, D)]. on_step keeps the state's `pos` in step."""
    return DecodeRecord(
        ints=[mixer.order, mixer.conv_weight.shape[1], state["hist"].shape[2]],
        weights=[mixer.in_proj.weight.data, mixer.in_proj.bias.data, mixer.conv_weight.data, mixer.conv_bias.data,
                 state["filter"], mixer.filter_bias.data, mixer.out_proj.weight.data, mixer.out_proj.bias.data],
        states=[state["conv"], state["hist"]],
        on_step=lambda pos: state.update(pos=pos))
