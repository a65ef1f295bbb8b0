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
"""
import numpy as np
import pytest

from helpers import check_grads, check_model_grads, decode_all, rel_err
from hybridref.checkpoint import load_checkpoint, restore, save_checkpoint
from hybridref.layers.registry import mixers
from hybridref.models.char_lm import CharLM

MIXERS = mixers()
LETTERS = sorted(MIXERS)
IDS = [f"{c}={MIXERS[c].name}" for c in LETTERS]
D, V = 12, 11


def options(letter):
    spec = MIXERS[letter]
    return {**spec.options, **spec.test_options}


def build(letter, d=D, seed=0):
    return MIXERS[letter].build(d, np.random.default_rng(seed), options(letter), out_std=0.3)


def tiny_lm(pattern, seed=0, **kw):
    """A CharLM of `pattern` with every mixer at its test options; MLP widths small and odd."""
    return CharLM(V, d_model=D, pattern=pattern, mixers={c: options(c) for c in set(pattern)},
                  mlp_hidden={c: 9 for c in set(pattern)}, seed=seed, **kw)


def run(layer, x, dy, state=None):
    """(y, dx, {param: grad}) of one forward/backward."""
    layer.zero_grad()
    y = layer.forward(x, state)
    dx = layer.backward(dy)
    return y, dx, {n: p.grad.copy() for n, p in layer.named_params()}


@pytest.mark.parametrize("letter", LETTERS, ids=IDS)
def test_gradients_float64(npb, letter):
    """Central differences (helpers.check_grads / check_model_grads: eps 1e-6, truncation ~1e-12,
    rounding ~1e-10 relative) of L = Σ y ⊙ G: every input coordinate, random coordinates of every
    parameter."""
    rng = np.random.default_rng(1)
    layer = build(letter).to(npb).astype(np.float64)
    x, G = rng.standard_normal((2, 2, 5, D))

    def loss():
        out = layer.forward(x)
        layer.clear_saved()
        return float((out * G).sum())

    _, dx, grads = run(layer, x, G)
    check_grads(loss, {"x": x}, {"x": dx})
    check_model_grads(layer, loss, grads, rng)


@pytest.mark.parametrize("letter", LETTERS, ids=IDS)
def test_c_matches_numpy_float32(npb, cb, letter):
    """Odd sizes (B 3, T 13, D 20). Both float32 through the mixer's ~10-20 ops, rounding at each in
    a different order (GEMM blocking, scan and softmax reductions): measured ~1e-6 relative; 1e-5 for
    outputs and 1e-4 for gradients (small parameter gradients are sums with cancellation)."""
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((2, 3, 13, 20)).astype(np.float32)
    layer = build(letter, d=20)
    ref = run(layer.to(npb), x, dy)
    got = run(layer.to(cb), x, dy)
    assert rel_err(got[0], ref[0]) < 1e-5
    assert rel_err(got[1], ref[1]) < 1e-4
    for name in ref[2]:
        assert rel_err(got[2][name], ref[2][name]) < 1e-4, name


@pytest.mark.parametrize("split", [1, 6])
@pytest.mark.parametrize("letter", LETTERS, ids=IDS)
def test_prefill_in_chunks_equals_one_piece(npb, cb, letter, split):
    """forward(x[:, :s], state) then forward(x[:, s:], state) = forward(x), outputs and the state left
    behind. float32, the same ops in other blockings: 1e-5."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 11, D)).astype(np.float32)
    layer = build(letter)
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


@pytest.mark.parametrize("letter", LETTERS, ids=IDS)
def test_decode_equals_parallel_forward(npb, cb, letter):
    """A stack mixing the mixer with attention; the NumPy layer-by-layer steps and the one-call C
    decoder. float32, each position through the same ops in another summation order: 1e-5."""
    model = tiny_lm(f"{letter}A{letter}")
    ids = np.random.default_rng(4).integers(0, V, (2, 14))
    full = model.to(npb).prefill(ids, model.init_state(2, 14))
    for be in (npb, cb):
        model.to(be)
        for prompt in (1, 5):
            assert rel_err(decode_all(model, ids, prompt), full[:, prompt - 1:]) < 1e-5, (be.name, prompt)


@pytest.mark.parametrize("letter", LETTERS, ids=IDS)
def test_checkpoint_round_trip(tmp_path, npb, cb, letter):
    model = tiny_lm(f"{letter}A", seed=5)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, "abcdefghijk")
    ckpt = load_checkpoint(path)
    ids = np.random.default_rng(5).integers(0, V, (2, 7))
    for be in (npb, cb):
        other = CharLM.from_config(ckpt["config"])
        restore(ckpt, other)
        assert other.config == model.config
        np.testing.assert_array_equal(other.to(be).forward(ids), model.to(be).forward(ids))
        model.clear_saved(), other.clear_saved()


@pytest.mark.parametrize("letter", LETTERS, ids=IDS)
def test_bad_input_is_a_clear_error(npb, cb, letter):
    name = MIXERS[letter].name
    layer = build(letter)
    for be in (npb, cb):
        layer.to(be)
        with pytest.raises(ValueError, match=rf"{name}: input must be an array of shape \(B, T, {D}\)"):
            layer.forward(np.zeros((2, 5, D + 1), np.float32))
        with pytest.raises(ValueError, match=rf"{name}: input must be an array of shape \(B, T, {D}\)"):
            layer.forward(np.zeros((5, D), np.float32))
        with pytest.raises(ValueError, match=rf"{name}: input must be float32"):
            layer.forward(np.zeros((2, 5, D), np.int64))
        with pytest.raises(ValueError, match=rf"{name}: input must be an array of shape \(B, {D}\)"):
            layer.step(np.zeros((2, 1, D), np.float32), layer.init_state(2, 4))
    with pytest.raises(ValueError, match=r"must have dtype float32"):
        layer.to(cb).forward(np.zeros((2, 5, D), np.float64))
    with pytest.raises(ValueError, match=rf"mixer {letter} \({name}\) has no option 'no_such_option'"):
        CharLM(V, d_model=D, pattern=letter, mixers={letter: {"no_such_option": 1}})


def test_unknown_letters_and_options_list_what_is_known():
    known = ", ".join(f"{c}={MIXERS[c].name}" for c in MIXERS)
    with pytest.raises(ValueError, match=rf"unknown mixer letters \['Q'\]; known: {known}"):
        CharLM(V, pattern="MQA")
    with pytest.raises(ValueError, match=r"'n_head' is not an option of any mixer; options: A \(attention\): n_heads"):
        CharLM(V, pattern="MA", n_head=2)
