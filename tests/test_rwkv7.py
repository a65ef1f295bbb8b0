"""RWKV-7 as a model (the mixers "W" rwkv7 and "C" rwkv7_cmix; the per-mixer checks are the conformance
suite's): the value residual across layers (float64 gradients, its routing, the C decoder's shared
buffer), the whole model against the independent torch model, RWKV-LM's init, the preset's size."""
import numpy as np
import pytest

from helpers import check_lm_grads, rel_err
from hybridref.layers.registry import mixer_spec
from hybridref.layers.rwkv7 import RWKV7
from hybridref.models.char_lm import CharLM

V = 11
SMALL = {"W": dict(head_size=4, decay_low_rank=3, a_low_rank=2, v_low_rank=2, gate_low_rank=5, zero_init=False),
         "C": dict(hidden_ratio=1.5, zero_init=False)}
# the preset proposed for hybridref/models/char_lm.py: 6 time-mix + 6 channel-mix layers, heads of 32,
# LayerNorm as RWKV; channel mix 2.75·D = 352 wide puts it at ~1.2 M parameters (RWKV-LM's 4·D: 1.45 M)
PRESET = dict(pattern="WCWCWCWCWCWC", mixers={"W": dict(head_size=32), "C": dict(hidden_ratio=2.75)},
              mlp_hidden=0, norm="layernorm")


def small_lm(pattern="WCWAW", seed=0, **kw):
    return CharLM(V, d_model=12, pattern=pattern, mixers={c: SMALL[c] for c in set(pattern) if c in SMALL},
                  mlp_hidden=0, n_heads=3, seed=seed, **kw)


def test_value_residual_gradients_float64(npb):
    """Central differences of the loss of a model whose later rwkv7 layers read the first one's v
    (helpers.check_model_grads: 1e-6), every parameter, through side.add_grad / pop_grad."""
    model = small_lm().to(npb).astype(np.float64)
    ids, targets = np.random.default_rng(0).integers(0, V, (2, 6)), np.random.default_rng(1).integers(0, V, 12)

    grads = check_lm_grads(model, npb, ids, targets, np.random.default_rng(2), per_param=8)
    # the first rwkv7 layer leaves its value-residual gate unused; the later ones use theirs
    for name in ("v1.weight", "v2.weight", "v2.bias"):
        assert not grads[f"blocks.0.mixer.{name}"].any() and grads[f"blocks.2.mixer.{name}"].any()
        assert grads[f"blocks.4.mixer.{name}"].any()


@pytest.mark.parametrize("letter", ["W", "C"])
def test_gradient_from_a_decode_state(npb, letter):
    """A forward that continues from a decode state (random shift token and WKV state) and advances it in
    place: its backward is the gradient of u from the state it started from (float64 central differences,
    helpers.check_grads: 1e-6)."""
    from helpers import check_grads
    layer = mixer_spec(letter).build(12, np.random.default_rng(8), SMALL[letter], out_std=0.3).to(npb)
    layer.astype(np.float64)
    rng = np.random.default_rng(9)
    start = {k: rng.standard_normal(v.shape) for k, v in layer.init_state(2, 8, np.float64).items()}
    u, G = rng.standard_normal((2, 2, 5, 12))

    def loss():
        out = layer.forward(u, {k: v.copy() for k, v in start.items()})
        layer.clear_saved()
        return float((out * G).sum())

    layer.zero_grad()
    layer.forward(u, {k: v.copy() for k, v in start.items()})
    check_grads(loss, {"u": u}, {"u": layer.backward(G)})


def test_v_first_is_the_first_layers_v(npb):
    """The first rwkv7 layer of the pass puts its v; a second producer would be an error, a later layer reads it."""
    from hybridref.layers.side import SideInputs
    model = small_lm("WW").to(npb)
    x = np.random.default_rng(3).standard_normal((2, 5, 12)).astype(np.float32)
    side = SideInputs()
    first, second = model.blocks[0].mixer, model.blocks[1].mixer
    first.forward(x, side=side)
    v = first.value.forward(first.be.token_shift_forward(x, first.mix.data)[:, :, 3].copy())
    np.testing.assert_array_equal(side.get("v_first"), v)
    second.forward(x, side=side)  # reads it, puts nothing
    with pytest.raises(ValueError, match="'v_first' is already set"):
        side.put("v_first", v)


def test_decoders_share_v_first(npb, cb):
    """Prefill + steps = the parallel forward for a model with several rwkv7 layers, on the NumPy step and the
    C decoder (whose rwkv7 records share one v_first buffer, written by the first). float32: 1e-5."""
    model = small_lm("WCWAWC", seed=4)
    ids = np.random.default_rng(5).integers(0, V, (3, 12))
    full = model.to(npb).prefill(ids, model.init_state(3, 12))
    for be in (npb, cb):
        dec = model.to(be).decoder(3, 12)
        steps = [dec.prefill(ids[:, :4])] + [dec.step(ids[:, t]) for t in range(4, 12)]
        assert rel_err(np.stack(steps, 1), full[:, 3:]) < 1e-5, be.name
    from hybridref.backends.c.rwkv7_step import decode_record
    shared, states = {}, model.init_state(3, 12)
    records = [decode_record(b.mixer, st, 12, shared) for b, st in zip(model.blocks, states) if b.mixer.letter == "W"]
    assert [r.ints[-1] for r in records] == [1, 0, 0]  # the first writes v_first, the others read it
    assert all(r.states[2] is shared["v_first"] for r in records)  # one buffer in the three records


def test_whole_model_matches_torch(npb):
    """The model (LayerNorm, "WCWC" with no MLP: RWKV's block) against the torch model built from the torch
    references, value residual through its side dict; logits and every gradient in float64 (1e-9, two
    exact-arithmetic implementations), and the torch model's own decode steps."""
    torch = pytest.importorskip("torch")
    from torch_ref.models import TorchCharLM, char_lm_forward
    model = small_lm("WCWCW", norm="layernorm").to(npb).astype(np.float64)
    ids, targets = np.random.default_rng(6).integers(0, V, (2, 9)), np.random.default_rng(7).integers(0, V, 18)
    model.zero_grad()
    logits = model.forward(ids)
    loss, probs = npb.cross_entropy_forward(logits.reshape(-1, V), targets)
    model.backward(npb.cross_entropy_backward(probs, targets).reshape(2, 9, V))
    p = {n: torch.tensor(prm.data, requires_grad=True) for n, prm in model.named_params()}
    tl = char_lm_forward(p, torch.from_numpy(ids), model.config)
    torch.nn.functional.cross_entropy(tl.reshape(-1, V), torch.from_numpy(targets)).backward()
    assert rel_err(logits, tl.detach().numpy()) < 1e-9
    for name, prm in model.named_params():
        assert rel_err(prm.grad, p[name].grad.numpy()) < 1e-9, name
    peer = TorchCharLM({n: prm.data for n, prm in model.named_params()}, model.config)
    with torch.inference_mode():
        state = peer.init_state(2, 9)
        steps = np.stack([peer.step(torch.from_numpy(ids[:, t]), state).numpy() for t in range(9)], 1)
    assert rel_err(steps, logits) < 1e-10


def test_init_follows_rwkv_lm():
    """RWKV-LM train_temp's init of layer i of n: the token-shift mixes, w0 (decay speeds), a0, v0, k_k by
    depth; orthogonal ×0.1 second low-rank factors; zero first factors and output; no weight decay but on
    the four C×C projections."""
    model = CharLM(V, **PRESET)
    C, N, n = 128, 32, 6
    ddd, lin = np.arange(C) / C, np.arange(C) / (C - 1) - 0.5
    zig = ((np.arange(C) % N) - (N - 1) / 2) / ((N - 1) / 2)
    zig = zig * np.abs(zig)
    for i in range(n):
        att, ffn = model.blocks[2 * i].mixer, model.blocks[2 * i + 1].mixer
        r01, r10 = i / (n - 1), 1 - i / n
        np.testing.assert_allclose(att.mix.data[0], 1 - ddd ** (0.2 * r10), atol=1e-6)  # x_r
        np.testing.assert_allclose(att.mix.data[1], 1 - ddd ** (0.9 * r10), atol=1e-6)  # x_w
        www = -6 + 6 * (np.arange(C) / (C - 1)) ** (1 + r01 ** 0.3)
        np.testing.assert_allclose(att.w2.bias.data, www + 0.5 + zig * 2.5, atol=1e-5)
        np.testing.assert_allclose(att.a2.bias.data, -0.19 + zig * 0.3 + lin * 0.4, atol=1e-6)
        np.testing.assert_allclose(att.v2.bias.data, 0.73 - lin * 0.4, atol=1e-6)
        np.testing.assert_allclose(ffn.mix.data[0], 1 - ddd ** (r10 ** 4), atol=1e-6)
        for first, second in ((att.w1, att.w2), (att.a1, att.a2), (att.v1, att.v2), (att.g1, att.g2)):
            assert not first.weight.data.any()
            q = second.weight.data.astype(np.float64)  # (C, R): orthonormal columns × 0.1
            np.testing.assert_allclose(q.T @ q, 0.01 * np.eye(q.shape[1]), atol=1e-6)
        assert not att.output.weight.data.any() and not ffn.value.weight.data.any()
        decayed = {name for name, p in att.named_params() if p.decay}
        assert decayed == {f"{m}.weight" for m in ("receptance", "key", "value", "output")}
        assert (att.w1.d_out, att.a1.d_out, att.v1.d_out, att.g1.d_out) == (32, 32, 32, 64)  # RWKV-LM at C = 128


def test_preset_size_and_no_mlp():
    model = CharLM(65, **PRESET)
    assert all(b.mlp is None for b in model.blocks)
    assert mixer_spec("W").mlp_hidden(128) == mixer_spec("C").mlp_hidden(128) == 0
    assert 1.15e6 < model.num_params() < 1.25e6, model.num_params()


def test_bad_options():
    with pytest.raises(ValueError, match="rwkv7: d_model 12 must be a positive multiple of head_size 5"):
        RWKV7(12, np.random.default_rng(0), head_size=5)
    with pytest.raises(ValueError, match="rwkv7: gate_low_rank must be an int >= 1 or None"):
        RWKV7(12, np.random.default_rng(0), head_size=4, gate_low_rank=0)
    with pytest.raises(ValueError, match="rwkv7_cmix: hidden_ratio"):
        CharLM(V, d_model=12, pattern="C", mixers={"C": dict(hidden_ratio=0.0)})
