"""The Mamba-2 mixer's record for the C decoder (csrc/mamba2_step.c). Its kernels are the training
ops at T = 1 (causal_conv1d, linear_attention, rmsnorm), so there is no op of its own here."""
import numpy as np

from hybridref.layers.mamba2 import GatedGroupRMSNorm

from .decode import DecodeRecord


def decode_record(mixer, state, max_len):
    """ints [Din, N, G, H, W]; floats [norm eps]; weights [in_proj w, conv w, conv b, dt_bias,
    A = −exp(A_log), D, norm w (None for a SiluGate: no norm), out_proj w]; state [conv (B, W−1, Din+2GN),
    ssm (B, H, N, P)]. A is computed here once: updating A_log in place afterwards is not seen by the decoder."""
    A = np.ascontiguousarray(-np.exp(mixer.A_log.data))
    norm = mixer.norm if isinstance(mixer.norm, GatedGroupRMSNorm) else None
    return DecodeRecord(
        ints=[mixer.d_inner, mixer.d_state, mixer.ngroups, mixer.n_heads, mixer.conv_weight.shape[1]],
        floats=[0.0 if norm is None else norm.eps],
        weights=[mixer.in_proj.weight.data, mixer.conv_weight.data, mixer.conv_bias.data, mixer.dt_bias.data, A,
                 mixer.D.data, None if norm is None else norm.weight.data, mixer.out_proj.weight.data],
        states=[state["conv"], state["ssm"]])
