"""Streaming decoding: attention over a KV cache, and prefill + one-token steps of whole models
equal to the parallel forward, on the NumPy oracle and the C decoder (every ISA build)."""
import numpy as np
import pytest

from helpers import decode_all, rel_err
from hybridref.models.char_lm import CharLM

V = 11


def tiny_lm(pattern, **kw):
    cfg = dict(d_model=16, n_heads=2, mlp_hidden={"A": 24, "M": 8}, d_state=4)
    return CharLM(V, pattern=pattern, **{**cfg, **kw})


# every layer kind alone, hybrid stacks, GQA/MQA, sliding window, LayerNorm, no MLP, no RoPE, a
# Mamba without conv state (d_conv 1)
MODELS = {
    "attention": ("A", {}),
    "mamba": ("M", {}),
    "hybrid": ("MAM", {}),
    "hybrid-gqa-window": ("AMAM", dict(n_heads=4, n_kv_heads=2, window=3)),
    "mqa-layernorm": ("AAM", dict(n_kv_heads=1, norm="layernorm")),
    "no-mlp-no-rope": ("MA", dict(mlp_hidden=0, rope_base=None)),
    "mamba-conv1": ("MM", dict(d_conv=1)),
    # Griffin: recurrent blocks and multi-query local attention whose KV cache is a ring of window+1
    # rows, wrapping several times within the 17 positions; gated GeLU MLPs
    "griffin-ring": ("LLA", dict(n_kv_heads=1, window=3, mlp_kind="gated_gelu")),
}


@pytest.mark.parametrize("name", MODELS)
def test_decode_equals_parallel_forward(npb, cb, rng, name):
    pattern, kw = MODELS[name]
    model = tiny_lm(pattern, **kw).to(npb)
    ids = rng.integers(0, V, (3, 17))
    full = model.prefill(ids, model.init_state(3, 17))  # the parallel forward (states unused here)
    # float32: each position's logits go through the same ops in another summation order (GEMV vs
    # GEMM, one-row attention vs tiles); measured ~3e-7, the bound is 1e-4
    for be in (npb, cb):
        model.to(be)
        for prompt in (1, 6):
            got = decode_all(model, ids, prompt)
            assert rel_err(got, full[:, prompt - 1:]) < 1e-5, (be.name, prompt)


def test_decoding_a_model_left_in_training_mode_turns_dropout_off(npb, cb, rng):
    """Training leaves dropout seeds set; prefill turns them off, so prefill and steps agree with
    the evaluation forward (tolerance as above)."""
    model = tiny_lm("MAM", dropout=0.3).to(npb)
    ids = rng.integers(0, V, (2, 9))
    full = model.forward(ids)
    model.clear_saved()
    for be in (npb, cb):
        model.to(be).set_dropout_seed((0, 7))
        assert rel_err(decode_all(model, ids, 4), full[:, 3:]) < 1e-5, be.name


def test_c_decoder_is_one_call_and_matches_python_steps(npb, cb, rng):
    """The C step (hr_decode_step) against the NumPy layer-by-layer step, position by position."""
    model = tiny_lm("MAMA", window=5).to(cb)
    ids = rng.integers(0, V, (2, 12))
    c_logits = decode_all(model, ids, 4)
    model.to(npb)
    # same ops, same float32 inputs; only GEMV vs BLAS and the scan's order differ
    assert rel_err(c_logits, decode_all(model, ids, 4)) < 1e-5


def test_streams_are_independent(cb, rng):
    model = tiny_lm("MA").to(cb)
    ids = rng.integers(0, V, (3, 9))
    both = decode_all(model, ids, 3)
    alone = decode_all(model, ids[1:2], 3)
    # one row of a batched GEMV is the same dot product as the single-row one
    assert np.array_equal(both[1:2], alone)


def test_decoder_is_deterministic(cb, rng):
    model = tiny_lm("AMM").to(cb)
    ids = rng.integers(0, V, (2, 10))
    assert np.array_equal(decode_all(model, ids, 2), decode_all(model, ids, 2))


def test_context_limit_is_a_clear_error(npb, cb, rng):
    for be in (npb, cb):
        model = tiny_lm("MA").to(be)
        dec = model.decoder(1, 4)
        dec.prefill(rng.integers(0, V, (1, 3)))
        dec.step(np.array([1]))
        with pytest.raises(ValueError, match="holds 4 tokens"):
            dec.step(np.array([1]))
        with pytest.raises(ValueError, match="holds 4 tokens"):
            model.decoder(1, 4).prefill(rng.integers(0, V, (1, 5)))


def test_decoder_rejects_bad_ids(cb):
    dec = tiny_lm("M").to(cb).decoder(2, 8)
    with pytest.raises(ValueError, match=r"ids must have shape \(2\)"):
        dec.step(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"lie in \[0, 11\)"):
        dec.step(np.array([1, 11]))
    with pytest.raises(ValueError, match="prefill starts a fresh decoder"):
        dec.step(np.array([1, 2]))
        dec.prefill(np.zeros((2, 2), np.int64))


# (B, H, Hk, P, L, length, window); position j in row j % L: the rings (L = window + 1 < length) wrap
# long-*: the C step's blocks of keys and value rows, with their short last ones, and P in several vector spans
DECODE_CASES = [(2, 3, 3, 13, 37, 37, None), (1, 4, 2, 37, 67, 20, 5), (3, 6, 1, 8, 19, 1, None),
                (2, 2, 1, 67, 130, 129, 0), (2, 4, 1, 16, 6, 40, 5), (1, 2, 2, 9, 10, 23, 7), (1, 2, 1, 8, 1, 9, 0),
                (1, 4, 2, 32, 700, 700, None), (2, 4, 1, 80, 301, 1000, 300)]


@pytest.mark.parametrize("B,H,Hk,P,L,length,window", DECODE_CASES,
                         ids=["full", "gqa-window", "mqa-first", "w0", "ring-mqa", "ring-longer", "ring-w0",
                              "long-gqa", "long-ring-spans"])
def test_attention_decode_matches_last_row_of_attention(npb, cb, rng, B, H, Hk, P, L, length, window):
    q = rng.standard_normal((B, length, H, P)).astype(np.float32)
    k = rng.standard_normal((B, length, Hk, P)).astype(np.float32)
    v = rng.standard_normal((B, length, Hk, P)).astype(np.float32)
    o_full, _ = npb.attention_forward(q, k, v, window)
    kc = np.zeros((B, Hk, L, P), np.float32)
    vc = np.zeros((B, Hk, L, P), np.float32)
    for j in range(length):  # every position written in turn: a ring keeps the last L
        kc[:, :, j % L], vc[:, :, j % L] = k[:, j], v[:, j]
    qn = np.ascontiguousarray(q[:, -1])
    ref = npb.attention_decode(qn, kc, vc, length, window)
    assert rel_err(ref, o_full[:, -1]) < 1e-6  # float32 softmax over <= 700 keys, two formulations
    assert rel_err(cb.attention_decode(qn, kc, vc, length, window), ref) < 1e-6
    assert np.array_equal(cb.attention_decode(qn, kc, vc, length, window),
                          cb.attention_decode(qn, kc, vc, length, window))


# (B, H, Hk, P, sinks S, window W, length): the cache is S sink rows and a ring of W + 1; queries before the
# sinks end, within the first window, and several windows past it (the ring wrapped many times), W = 0
SINK_DECODE_CASES = [(2, 4, 2, 13, 3, 5, 2), (1, 3, 1, 37, 4, 6, 9), (2, 4, 1, 16, 5, 7, 61), (1, 2, 2, 9, 2, 0, 23)]


@pytest.mark.parametrize("B,H,Hk,P,S,W,length", SINK_DECODE_CASES, ids=["in-sinks", "first-window", "far", "w0"])
def test_attention_decode_with_sinks_matches_last_row(npb, cb, rng, B, H, Hk, P, S, W, length):
    """The sinks' rows keep positions 0..S-1 while the ring after them keeps the window's: the query's row of
    attention_forward with the same sinks and window."""
    from hybridref.backends.numpy.attention_step import cache_rows
    q, k, v = (rng.standard_normal((B, length, h, P)).astype(np.float32) for h in (H, Hk, Hk))
    o_full, _ = npb.attention_forward(q, k, v, W, 0, S)
    L = S + W + 1
    kc, vc = np.zeros((B, Hk, L, P), np.float32), np.zeros((B, Hk, L, P), np.float32)
    for j in range(length):  # every position written in turn at its row
        row = int(cache_rows(j, L, S))
        kc[:, :, row], vc[:, :, row] = k[:, j], v[:, j]
    qn = np.ascontiguousarray(q[:, -1])
    ref = npb.attention_decode(qn, kc, vc, length, W, S)
    assert rel_err(ref, o_full[:, -1]) < 1e-6  # as test_attention_decode_matches_last_row_of_attention
    assert rel_err(cb.attention_decode(qn, kc, vc, length, W, S), ref) < 1e-6
    for be in (npb, cb) if length > S + W else ():  # one row short of the ring: the window's first key is gone
        with pytest.raises(ValueError, match=rf"reads {S + W + 1} keys \(window {W}, {S} sinks\) but "
                                             rf"the cache holds {L - 1} rows, {S} of them for the sinks"):
            be.attention_decode(qn, kc[:, :, :-1].copy(), vc[:, :, :-1].copy(), length, W, S)


def test_attention_decode_rejects_bad_input(npb, cb):
    q, kc = np.zeros((2, 4, 8), np.float32), np.zeros((2, 2, 16, 8), np.float32)
    with pytest.raises(ValueError, match=r"attention_decode: length must be an int .*got 0"):
        cb.attention_decode(q, kc, kc, 0)
    for be in (npb, cb):  # a key the query reads is no longer in the cache
        with pytest.raises(ValueError, match=r"attention_decode: the query at position 16 reads 17 keys"):
            be.attention_decode(q, kc, kc, 17)
        with pytest.raises(ValueError, match=r"attention_decode: the query at position 29 reads 17 keys "
                                             r"\(window 16\) but the cache holds 16 rows"):
            be.attention_decode(q, kc, kc, 30, window=16)
    with pytest.raises(ValueError, match="attention_decode: v_cache must have shape"):
        cb.attention_decode(q, kc, kc[:, :, :8].copy(), 3)
    with pytest.raises(ValueError, match="attention_decode: query heads H=3"):
        cb.attention_decode(np.zeros((2, 3, 8), np.float32), kc, kc, 3)
    with pytest.raises(ValueError, match="attention_decode: q must have dtype float32"):
        cb.attention_decode(q.astype(np.float64), kc, kc, 3)
    with pytest.raises(ValueError, match="attention_decode: window must be None or an int >= 0"):
        cb.attention_decode(q, kc, kc, 3, window=-2)


def test_windowed_cache_is_a_ring_of_window_plus_one_rows(npb, rng):
    """A windowed layer's state is min(max_len, window + 1) rows whatever max_len; without a window,
    max_len rows."""
    model = tiny_lm("LAA", n_kv_heads=1, mixers={"A": dict(n_heads=2, n_kv_heads=1, window=5)})
    assert [s["k"].shape[2] for s in model.init_state(2, 1000)[1:]] == [6, 6]
    assert [s["k"].shape[2] for s in model.init_state(2, 4)[1:]] == [4, 4]
    assert tiny_lm("A").init_state(2, 1000)[0]["k"].shape[2] == 1000


def test_windowed_layers_decode_past_max_len(npb, cb, rng):
    """max_len bounds a windowed layer's memory, not its context: a stack of recurrent and windowed
    layers decodes 30 positions from states made for max_len 4 (rings of 4 rows, and the layers' steps
    put no bound on the position); it equals the parallel forward (float32 as above: 1e-5). The
    decoders still count tokens against their max_len (test_context_limit_is_a_clear_error)."""
    model = tiny_lm("LALA", n_kv_heads=1, window=3, mlp_kind="gated_gelu").to(npb)
    ids = rng.integers(0, V, (2, 30))
    full = model.prefill(ids, model.init_state(2, 30))
    for be in (npb, cb):
        model.to(be)
        states = model.init_state(2, 4)
        out = [model.prefill(ids[:, :5], states)[:, -1]]  # a prefill longer than the ring, too
        out += [model.step(ids[:, t], states) for t in range(5, 30)]
        assert rel_err(np.stack(out, 1), full[:, 4:]) < 1e-5, be.name
        assert states[1]["k"].shape[2] == 4 and states[1]["length"] == 30


def test_windowed_prefill_in_chunks_across_the_ring(npb, cb, rng):
    """Chunks longer and shorter than the ring (window 3: 4 rows), each continuing the last: the same
    logits as one prefill, and the same ring afterwards (1e-5 as above)."""
    model = tiny_lm("AL", n_kv_heads=1, window=3)
    ids = rng.integers(0, V, (2, 19))
    for be in (npb, cb):
        model.to(be)
        whole = model.init_state(2, 64)
        want = model.prefill(ids, whole)
        states = model.init_state(2, 64)
        got = np.concatenate([model.prefill(ids[:, a:b], states) for a, b in ((0, 2), (2, 9), (9, 10), (10, 19))],
                             axis=1)
        assert rel_err(got, want) < 1e-5, be.name
        for key in ("k", "v"):
            assert rel_err(states[0][key], whole[0][key]) < 1e-5, (be.name, key)
