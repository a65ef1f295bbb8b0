"""The Mamba mixer's record for the C decoder (csrc/mamba_step.c). Its kernels are the training
ops at T = 1 (causal_conv1d, selective_scan), so there is no op of its own here."""
import numpy as np

from .decode import DecodeRecord


def decode_record(mixer, state, max_len):
    """ints [Din, N, R, W, bcdt (0/1), heads]; floats [bcdt eps]; weights [in_proj w, conv w, conv b, x_proj w,
    dt_proj w, dt_proj b, A = −exp(A_log), D, out_proj w, dt norm w, B norm w, C norm w (NULL without
    bcdt_rms)] (x_proj, dt_proj: one matrix per head, stacked, with mamba_heads > 1); state [conv (B, W−1,
    Din), ssm (B, Din, N)].
    A is computed here once: updating A_log in place afterwards is not seen by the decoder."""
    A = np.ascontiguousarray(-np.exp(mixer.A_log.data))
    bcdt = mixer.bcdt_rms is not None
    norms = [mixer.dt_layernorm.weight.data, mixer.b_layernorm.weight.data, mixer.c_layernorm.weight.data] \
        if bcdt else [None] * 3
    return DecodeRecord(
        ints=[mixer.d_inner, mixer.d_state, mixer.dt_rank, mixer.conv_weight.shape[1], int(bcdt), mixer.heads],
        floats=[mixer.bcdt_rms if bcdt else 0.0],
        weights=[mixer.in_proj.weight.data, mixer.conv_weight.data, mixer.conv_bias.data, mixer.x_proj.weight.data,
                 mixer.dt_proj.weight.data, mixer.dt_proj.bias.data, A, mixer.D.data, mixer.out_proj.weight.data,
                 *norms],
        states=[state["conv"], state["ssm"]])
