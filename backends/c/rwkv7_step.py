"""The RWKV-7 time mixing's record for the C decoder (csrc/rwkv7_step.c). Its kernels are the training
ops at T = 1 (token_shift, wkv7, layernorm), so there is no op of its own here."""
import numpy as np

from .decode import DecodeRecord


def decode_record(mixer, state, max_len, shared):
    """ints [C, H, P, Rw, Ra, Rv, Rg, first]; floats [GroupNorm eps]; weights [mix, receptance, key, value,
    w1, w2, w0, a1, a2, a0, v1, v2, v0, g1, g2, k_k, k_a, r_k, ln w, ln b, output]; state [shift (B,1,C),
    wkv (B,H,P,P), v_first (B,C)].

    v_first is the value residual's side input, a buffer every rwkv7 record of the decoder shares
    through `shared`: the first record built (the model's first rwkv7 layer, as in a forward pass the
    first to find no "v_first" in the side inputs) creates it and is marked first, so its step writes
    its v there; the later ones read it."""
    first = "v_first" not in shared
    if first:
        shared["v_first"] = np.zeros((state["wkv"].shape[0], mixer.d_model), state["wkv"].dtype)
    m = mixer
    return DecodeRecord(
        ints=[m.d_model, m.n_heads, m.head_size, m.w1.d_out, m.a1.d_out, m.v1.d_out, m.g1.d_out, int(first)],
        floats=[m.GN_EPS],
        weights=[m.mix.data, m.receptance.weight.data, m.key.weight.data, m.value.weight.data,
                 m.w1.weight.data, m.w2.weight.data, m.w2.bias.data, m.a1.weight.data, m.a2.weight.data,
                 m.a2.bias.data, m.v1.weight.data, m.v2.weight.data, m.v2.bias.data, m.g1.weight.data,
                 m.g2.weight.data, m.k_k.data, m.k_a.data, m.r_k.data, m.ln_w.data, m.ln_b.data,
                 m.output.weight.data],
        states=[state["shift"], state["wkv"], shared["v_first"]])
