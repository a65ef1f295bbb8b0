"""The conformance suite: every registered mixer (hybridref/layers/registry.py), checked the same way
with no test code of its own. Each mixer is built with its spec's `test_options` (small sizes).

- float64 finite differences of the layer: the input and every parameter (NumPy backend);
- C vs NumPy in float32 on odd sizes, forward and backward, on every ISA build the CPU runs;
- a prefill in two chunks, the second continuing from the decode state the first left, equals the
  prefill in one piece (the op-level split of h0/dh_last, prefix, ... is tests/test_sequence_forms.py);
- prefill + step-by-step decoding equals the parallel forward, for a stack mixing the mixer with
  attention, on the NumPy step and on the one-call C decoder;
- checkpoint save/load round trip on both backends;
- bad input (shape, dtype, wrong width) is a clear ValueError naming the mixer.
Multi-process equality under mpiexec is tests/test_mpi.py, over the same registry.

A mixer class may list `test_variants`, option sets checked as configurations of their own (Mamba's
directions=2 and 4). A non-causal configuration (`layer.causal` False: its output reads later
positions) cannot decode: instead of the prefill and decoding checks it must refuse both.
"""
import math

import numpy as np
import pytest

from helpers import check_layer_grads, decode_all, rel_err
from hybridref.checkpoint import load_checkpoint, restore, save_checkpoint
from hybridref.layers.registry import mixers
from hybridref.models.char_lm import CharLM

MIXERS = mixers()
# (letter, variant options): every mixer at its test options, then each of its test_variants
CONFIGS = [(c, variant) for c in sorted(MIXERS) for variant in ({}, *getattr(MIXERS[c].cls, "test_variants", ()))]
IDS = [f"{c}={MIXERS[c].name}" + "".join(f"-{k}={v}" for k, v in variant.items()) for c, variant in CONFIGS]
D, V = 12, 11


def options(letter, variant=None):
    spec = MIXERS[letter]
    return {**spec.options, **spec.test_options, **(variant or {})}


def build(config, d=D, seed=0):
    letter, variant = config
    return MIXERS[letter].build(d, np.random.default_rng(seed), options(letter, variant), out_std=0.3)


def seq_len(config, T):
    """T, or for a cross scan (which reads the tokens as a square patch grid) the next square, k² >= T."""
    if config[1].get("directions") == 4:
        return (math.isqrt(T - 1) + 1) ** 2
    return T


def tiny_lm(pattern, seed=0, config=None, **kw):
    """A CharLM of `pattern` with every mixer at its test options (the letter of `config` at its
    variant's); MLP widths small and odd."""
    mixer_options = {c: options(c) for c in set(pattern)}
    if config is not None:
        mixer_options[config[0]] = options(*config)
    return CharLM(V, d_model=D, pattern=pattern, mixers=mixer_options,
                  mlp_hidden={c: 9 for c in set(pattern)}, seed=seed, **kw)


def run(layer, x, dy, state=None):
    """(y, dx, {param: grad}) of one forward/backward."""
    layer.zero_grad()
    y = layer.forward(x, state)
    dx = layer.backward(dy)
    return y, dx, {n: p.grad.copy() for n, p in layer.named_params()}


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_gradients_float64(npb, config):
    """Central differences (helpers.check_grads / check_model_grads: eps 1e-6, truncation ~1e-12,
    rounding ~1e-10 relative) of L = Σ y ⊙ G: every input coordinate, random coordinates of every
    parameter."""
    rng = np.random.default_rng(1)
    layer = build(config).to(npb).astype(np.float64)
    x, G = rng.standard_normal((2, 2, seq_len(config, 5), D))
    check_layer_grads(layer, x, G, rng)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_c_matches_numpy_float32(npb, cb, config):
    """Odd sizes (B 3, T 13, D 20; a cross scan's T 16). Both float32 through the mixer's ~10-20 ops,
    rounding at each in a different order (GEMM blocking, scan and softmax reductions): measured ~1e-6
    relative; 1e-5 for outputs and 1e-4 for gradients (small parameter gradients are sums with
    cancellation)."""
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((2, 3, seq_len(config, 13), 20)).astype(np.float32)
    layer = build(config, d=20)
    ref = run(layer.to(npb), x, dy)
    got = run(layer.to(cb), x, dy)
    assert rel_err(got[0], ref[0]) < 1e-5
    assert rel_err(got[1], ref[1]) < 1e-4
    for name in ref[2]:
        assert rel_err(got[2][name], ref[2][name]) < 1e-4, name


def refuses_decoding(*calls):
    """Each call (a decode state, a prefill, a decoder) of a non-causal mixer, or of a model holding
    one, is refused."""
    for call in calls:
        with pytest.raises(ValueError, match="cannot decode token by token"):
            call()


@pytest.mark.parametrize("split", [1, 6])
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_prefill_in_chunks_equals_one_piece(npb, cb, config, split):
    """forward(x[:, :s], state) then forward(x[:, s:], state) = forward(x), outputs and the state left
    behind. float32, the same ops in other blockings: 1e-5. A non-causal mixer refuses a state."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, seq_len(config, 11), D)).astype(np.float32)
    layer = build(config)
    if not layer.causal:
        causal = build((config[0], {}))
        refuses_decoding(lambda: layer.init_state(2, 16),
                         lambda: layer.forward(x, causal.init_state(2, 16)))
        return
    for be in (npb, cb):
        layer.to(be)
        whole_state = layer.init_state(2, 16)
        whole = layer.forward(x, whole_state)
        state = layer.init_state(2, 16)
        parts = np.concatenate([layer.forward(x[:, :split], state), layer.forward(x[:, split:], state)], axis=1)
        layer.clear_saved()
        assert rel_err(parts, whole) < 1e-5, be.name
        for key, value in whole_state.items():
            if isinstance(value, np.ndarray):
                assert rel_err(state[key], value) < 1e-5, (be.name, key)
            else:
                assert state[key] == value, (be.name, key)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_decode_equals_parallel_forward(npb, cb, config):
    """A stack mixing the mixer with attention; the NumPy layer-by-layer steps and the one-call C
    decoder. float32, each position through the same ops in another summation order: 1e-5. A stack
    with a non-causal mixer refuses to decode, on both decoders."""
    letter = config[0]
    model = tiny_lm(f"{letter}A{letter}", config=config)
    ids = np.random.default_rng(4).integers(0, V, (2, seq_len(config, 14)))
    if not model.blocks[0].mixer.causal:
        refuses_decoding(lambda: model.to(npb).init_state(2, 14),
                         lambda: decode_all(model.to(npb), ids, 1), lambda: decode_all(model.to(cb), ids, 1))
        return
    full = model.to(npb).prefill(ids, model.init_state(2, 14))
    for be in (npb, cb):
        model.to(be)
        for prompt in (1, 5):
            assert rel_err(decode_all(model, ids, prompt), full[:, prompt - 1:]) < 1e-5, (be.name, prompt)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_checkpoint_round_trip(tmp_path, npb, cb, config):
    model = tiny_lm(f"{config[0]}A", seed=5, config=config)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, "abcdefghijk")
    ckpt = load_checkpoint(path)
    ids = np.random.default_rng(5).integers(0, V, (2, seq_len(config, 7)))
    for be in (npb, cb):
        other = CharLM.from_config(ckpt["config"])
        restore(ckpt, other)
        assert other.config == model.config
        np.testing.assert_array_equal(other.to(be).forward(ids), model.to(be).forward(ids))
        model.clear_saved(), other.clear_saved()


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_bad_input_is_a_clear_error(npb, cb, config):
    letter = config[0]
    name = MIXERS[letter].name
    layer = build(config)
    T = seq_len(config, 5)
    for be in (npb, cb):
        layer.to(be)
        with pytest.raises(ValueError, match=rf"{name}: input must be an array of shape \(B, T, {D}\)"):
            layer.forward(np.zeros((2, T, D + 1), np.float32))
        with pytest.raises(ValueError, match=rf"{name}: input must be an array of shape \(B, T, {D}\)"):
            layer.forward(np.zeros((T, D), np.float32))
        with pytest.raises(ValueError, match=rf"{name}: input must be float32"):
            layer.forward(np.zeros((2, T, D), np.int64))
        if layer.causal:
            with pytest.raises(ValueError, match=rf"{name}: input must be an array of shape \(B, {D}\)"):
                layer.step(np.zeros((2, 1, D), np.float32), layer.init_state(2, 4))
    with pytest.raises(ValueError, match=r"must have dtype float32"):
        layer.to(cb).forward(np.zeros((2, T, D), np.float64))
    with pytest.raises(ValueError, match=rf"mixer {letter} \({name}\) has no option 'no_such_option'"):
        CharLM(V, d_model=D, pattern=letter, mixers={letter: {"no_such_option": 1}})


def test_unknown_letters_and_options_list_what_is_known():
    known = ", ".join(f"{c}={MIXERS[c].name}" for c in MIXERS)
    with pytest.raises(ValueError, match=rf"unknown mixer letters \['Q'\]; known: {known}"):
        CharLM(V, pattern="MQA")
    with pytest.raises(ValueError, match=r"'n_head' is not an option of any mixer; options: (.*; )?A \(attention\): n_heads"):
        CharLM(V, pattern="MA", n_head=2)
