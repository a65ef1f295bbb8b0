"""Hymba (hybridref/layers/hymba.py, the CharLM option meta_tokens, the zoo preset "hymba") beyond the
conformance suite, which checks the mixer on its own and in two-layer stacks, where every layer is
global and computes its own keys: here stacks of six, with local layers, a key/value pair shared between
consecutive layers and meta tokens, which the local layers' queries all see (attention sinks; the mask
itself against PyTorch in tests/test_zoo_torch.py).

Tolerances: float64 finite differences as tests/test_mixer_conformance.py (helpers.check_model_grads);
decoding against the parallel forward in float32 1e-5 (each position through the same ops in another
summation order)."""
import numpy as np
import pytest

from helpers import check_lm_grads, decode_all, rel_err
from hybridref.generate import decode_state_bytes
from hybridref.layers.hymba import Hymba, hymba_roles
from hybridref.models.char_lm import CharLM

V = 11


def small(meta_tokens=3, window=2, **kw):
    """Six hymba layers at d_model 12 (global 0, 2, 5; local 1, 3, 4; 4 reads 3's keys and values)."""
    return CharLM(V, d_model=12, pattern="YYYYYY", mlp_kind="swiglu", mlp_hidden=5, meta_tokens=meta_tokens, seed=1,
                  mixers={"Y": dict(n_heads=2, n_kv_heads=1, d_state=4, dt_rank=2, window=window, **kw)})


def test_roles_are_hymba_1_5b_at_32_layers():
    """Hymba-1.5B-Base's global_attn_idx [0, 15, 31] and kv_reuse_group: pairs of local layers, the
    second run starting with the triple [16, 17, 18]."""
    is_global, producer = hymba_roles(32, 1024, True)
    assert [i for i in range(32) if is_global[i]] == [0, 15, 31]
    groups = {}
    for i, p in enumerate(producer):
        if p is not None:
            groups.setdefault(p, [p]).append(i)
    want = [[i, i + 1] for i in range(1, 15, 2)] + [[16, 17, 18]] + [[i, i + 1] for i in range(19, 31, 2)]
    assert sorted(groups.values()) == want
    assert hymba_roles(32, 1024, False)[1] == [None] * 32
    assert hymba_roles(6, None, True) == ([True] * 6, [None] * 6)  # no window: every layer global, nothing shared


def test_consumer_has_no_kv_projection_and_no_cache(npb):
    model = small().to(npb)
    producer, consumer = model.blocks[3].mixer, model.blocks[4].mixer
    assert (producer.kv_consumers, consumer.kv_from) == (1, 3)
    assert consumer.in_proj.d_out == producer.in_proj.d_out - 3 * 6  # k (1 head of 6) and v (2·6)
    states = model.init_state(2, 8)
    assert "k" in states[3] and "k" not in states[4]
    assert decode_state_bytes(small(kv_share=False), 8) > decode_state_bytes(small(), 8)


@pytest.mark.parametrize("meta_tokens", [0, 3])
def test_gradients_float64(npb, meta_tokens):
    """Every input of the loss: the meta tokens, the shared keys' producer (its gradient from both
    layers), the local layers' windows."""
    rng = np.random.default_rng(0)
    model = small(meta_tokens).to(npb).astype(np.float64)
    ids, targets = rng.integers(0, V, (2, 7)), rng.integers(0, V, 14)
    grads = check_lm_grads(model, npb, ids, targets, rng, per_param=4)
    if meta_tokens:
        assert np.abs(grads["meta"]).max() > 0


def test_c_matches_numpy_training_step(npb, cb):
    """float32 C against NumPy, logits and every gradient: 1e-4 (as the conformance suite's gradients)."""
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, V, (3, 9)), rng.integers(0, V, 27)
    out = []
    for be in (npb, cb):
        model = small().to(be)
        logits = model.forward(ids)
        _, probs = be.cross_entropy_forward(logits.reshape(-1, V), targets)
        model.backward(be.cross_entropy_backward(probs, targets).reshape(logits.shape))
        out.append((logits, {n: p.grad.copy() for n, p in model.named_params()}))
    assert rel_err(out[1][0], out[0][0]) < 1e-5
    for name, grad in out[0][1].items():
        assert rel_err(out[1][1][name], grad) < 1e-4, name


@pytest.mark.parametrize("meta_tokens,T,prompts", [(0, 12, (1, 5)), (3, 12, (1, 5)), (3, 40, (1, 23))],
                         ids=["no-meta", "meta", "meta-40"])
def test_decode_equals_parallel_forward(npb, cb, meta_tokens, T, prompts):
    """Prefill + steps through the windows' rings, the shared cache and after the meta tokens, on the
    NumPy decoder and the one-call C decoder; at 40 tokens the window-2 rings wrap 13 times while the
    local layers' queries still see the meta tokens."""
    model = small(meta_tokens)
    ids = np.random.default_rng(2).integers(0, V, (2, T))
    full = model.to(npb).forward(ids)
    model.clear_saved()
    for be in (npb, cb):
        model.to(be)
        for prompt in prompts:
            assert rel_err(decode_all(model, ids, prompt), full[:, prompt - 1:]) < 1e-5, (be.name, prompt)


@pytest.mark.parametrize("lengths,steps", [((2, 5), 1), ((4, 19), 15)], ids=["short", "far-past-the-window"])
def test_decode_streams_at_their_own_positions(cb, lengths, steps):
    """The C decoder's streams prefilled with prompts of different lengths, then `steps` steps: each stream's
    logits are those of its own sequence's forward (the meta tokens' positions counted; from 19 tokens, 15
    steps pass the window-2 rings many times while the local layers' queries still see the meta tokens)."""
    model = small().to(cb)
    ids = np.random.default_rng(3).integers(0, V, (2, max(lengths) + steps))
    dec = model.decoder(2, ids.shape[1])
    logits = [dec.prefill_streams([ids[b, :n] for b, n in enumerate(lengths)])]
    for t in range(steps):
        logits.append(dec.step(np.array([ids[b, n + t] for b, n in enumerate(lengths)])))
    for b, n in enumerate(lengths):
        ref = model.forward(ids[b:b + 1, :n + steps])
        model.clear_saved()
        assert rel_err(np.stack([x[b] for x in logits]), ref[0, n - 1:]) < 1e-5, b


def test_local_cache_holds_the_meta_tokens_and_a_ring(npb):
    """A local layer's cache: the S meta tokens' rows and the window's ring of W + 1, the global layers' the
    whole context; the decoder's state bytes count them (3 more rows in each of the 5 caching layers)."""
    model = small(meta_tokens=3, window=2).to(npb)
    states = model.init_state(2, 40)
    assert [s["k"].shape[2] if "k" in s else None for s in states] == [43, 3 + 3, 43, 3 + 3, None, 43]
    assert [b.mixer.role for b in model.blocks][1] == "window 2 + 3 meta"
    row = (1 * 6 + 2 * 6) * 4  # float32 k (1 kv head of 6) and v (2 chunks of 6) of one position
    assert decode_state_bytes(small(3), 40) - decode_state_bytes(small(0), 40) == 5 * 3 * row


def test_consumer_alone_is_a_clear_error(npb):
    consumer = small().to(npb).blocks[4].mixer
    with pytest.raises(ValueError, match="hymba: layer 4 shares keys and values"):
        consumer.forward(np.zeros((1, 3, 12), np.float32))


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="hymba: expand must be a whole number"):
        Hymba(12, np.random.default_rng(0), n_heads=2, expand=1.5)
    with pytest.raises(ValueError, match="n_heads 2 is not a multiple of n_kv_heads 3"):
        CharLM(V, d_model=12, pattern="Y", mixers={"Y": dict(n_heads=2, n_kv_heads=3)})
    with pytest.raises(ValueError, match="meta_tokens"):
        small(meta_tokens=-1)


def test_checkpoint_round_trip_with_meta_tokens(tmp_path, npb):
    from hybridref.checkpoint import load_checkpoint, restore, save_checkpoint
    model = small().to(npb)
    path = tmp_path / "hymba.safetensors"
    save_checkpoint(path, model, "abcdefghijk")
    ckpt = load_checkpoint(path)
    other = CharLM.from_config(ckpt["config"])
    restore(ckpt, other)
    assert other.config["meta_tokens"] == 3 and np.array_equal(other.meta.data, model.meta.data)
    ids = np.random.default_rng(4).integers(0, V, (2, 6))
    np.testing.assert_array_equal(other.to(npb).forward(ids), model.forward(ids))


def test_generate_on_both_decoders(npb, cb):
    """The token loop (greedy) of the NumPy decoder and the one-call C loop of the C decoder, from the
    same prompt: the same tokens (their positions count the meta tokens in both)."""
    model = small()
    prompt = np.random.default_rng(5).integers(0, V, (2, 4))
    out = []
    for be in (npb, cb):
        dec = model.to(be).decoder(2, 12)
        out.append(dec.generate(dec.prefill(prompt), 8, seed=1, temperature=0.0)[0])
    np.testing.assert_array_equal(out[0], out[1])
