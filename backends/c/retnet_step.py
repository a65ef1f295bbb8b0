"""The RetNet mixer's record for the C decoder (csrc/retnet_step.c). Its kernels are the training
ops at T = 1 (rope, linear_attention, rmsnorm, silu_gate), so there is no op of its own here."""
from .decode import DecodeRecord


def decode_record(mixer, state, max_len):
    """ints [H, Kh, Vh, chunk]; floats [scale, norm eps, rope base, log γ_h (H)]; weights [in_proj w,
    g_norm w, out_proj w]; state [S (B, H, Kh, Vh)]. The step reads the position from the decoder and
    on_step keeps state["pos"] with it, for the NumPy step and a later prefill."""
    return DecodeRecord(
        ints=[mixer.n_heads, mixer.head_k, mixer.head_v, mixer.chunk],
        floats=[mixer.scale, mixer.EPS, mixer.ROPE_BASE, *mixer.log_decay[:, 0]],
        weights=[mixer.in_proj.weight.data, mixer.g_norm.data, mixer.out_proj.weight.data],
        states=[state["S"]],
        on_step=lambda pos: state.update(pos=pos))
