"""The GLA mixer's record for the C decoder (csrc/gla_step.c). Its kernels are the training ops at
T = 1 (linear_attention, softplus, rmsnorm, silu_gate), so there is no op of its own here."""
from .decode import DecodeRecord


def decode_record(mixer, state, max_len):
    """ints [H, Kh, Vh, r, chunk]; floats [scale, norm eps, gate logit normalizer]; weights [in_proj w,
    gk_proj w, gk_proj b, g_norm w, out_proj w]; state [S (B, H, Kh, Vh)]."""
    return DecodeRecord(
        ints=[mixer.n_heads, mixer.head_k, mixer.head_v, mixer.rank, mixer.chunk],
        floats=[mixer.scale, mixer.EPS, mixer.normalizer],
        weights=[mixer.in_proj.weight.data, mixer.gk_proj.weight.data, mixer.gk_proj.bias.data,
                 mixer.g_norm.data, mixer.out_proj.weight.data],
        states=[state["S"]])
