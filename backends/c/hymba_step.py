"""Hymba's record for the C decoder (csrc/hymba_step.c): the Mamba record (backends/c/mamba_step.py) with
its in_proj the x, z rows of W_in, followed by the attention heads' part. Its kernels are the Mamba
step's and attention_decode, so there is no op of its own here."""
from .mamba_step import decode_record as mamba_record


def decode_record(mixer, state, max_len, shared):
    """ints [Mamba's 6, H, Hk, P, e, window or −1, rope, L, own_kv, sinks (the model's meta tokens)]; floats
    [bcdt eps, rope base, norm eps];
    weights [Mamba's 12 (in_proj: W_in's x, z rows; out_proj: W_out), W_qkv (W_in's q, k, v rows), norm_a w,
    norm_m w]; state [conv, ssm, k cache, v cache].

    A producer of shared keys and values puts its cache in `shared` under the mixer's kv_key; its
    consumers' records hold those buffers (they have no cache of their own)."""
    W_in = mixer.in_proj.weight.data
    din = mixer.d_inner
    rec = mamba_record(mixer, state, max_len)
    rec.weights[0] = W_in[W_in.shape[0] - 2 * din:]  # Mamba's x, z rows
    own = mixer.kv_from is None
    if own:
        cache = [state["k"], state["v"]]
        if mixer.kv_consumers:
            shared[mixer.kv_key] = cache
    else:
        cache = shared[mixer.kv_key]
    L = cache[0].shape[2]
    window = -1 if mixer.window is None else int(min(mixer.window, L))
    rope = mixer.rope_base is not None
    rec.ints += [mixer.n_heads, mixer.n_kv_heads, mixer.head_dim, mixer.expand, window, int(rope), L, int(own),
                 mixer.sinks]
    rec.floats += [mixer.rope_base if rope else 0.0, mixer.norm_a.eps]
    rec.weights += [W_in[:W_in.shape[0] - 2 * din], mixer.norm_a.weight.data, mixer.norm_m.weight.data]
    rec.states += cache
    rec.on_step = lambda pos: state.update(length=pos)
    return rec
