"""The Falcon-H1 mixer (hybridref/layers/falcon_h1.py, letter "F") beyond the conformance suite, which checks
it on its own and in two-layer stacks: here a Falcon-H1 model (every block the mixer with a SwiGLU MLP, as
FalconH1DecoderLayer) against the torch model built from tests/torch_ref/falcon_h1.py, the C training step
against NumPy, and the C decoder's streams.

Tolerances: float64 NumPy against float64 torch 1e-9 (two exact-arithmetic implementations, as
tests/test_torch_crosscheck.py); float32 C against NumPy 1e-5 for logits, 1e-4 for gradients (as
tests/test_hymba.py); decoding against the parallel forward 1e-5 (the same ops in another order)."""
import numpy as np
import pytest

from helpers import rel_err
from hybridref.layers.falcon_h1 import FalconH1
from hybridref.models.char_lm import CharLM

V = 11


def small(gate_norm=False, pattern="FFF"):
    """Falcon-H1 blocks at d_model 12: 2 query heads and 1 key/value head of 6, a Mamba-2 branch of 6 heads
    of 4 in 2 groups with chunk 4 (sequences cross chunks), SwiGLU MLPs of 7."""
    return CharLM(V, d_model=12, pattern=pattern, mlp_kind="swiglu", mlp_bias=False, mlp_hidden=7, seed=1,
                  mixers={"F": dict(n_heads=2, n_kv_heads=1, d_state=4, headdim=4, ngroups=2, chunk=4,
                                    gate_norm=gate_norm, norm_eps=1e-3)})


def loss_and_grads(model, be, ids, targets):
    model.zero_grad()
    logits = model.forward(ids)
    _, probs = be.cross_entropy_forward(logits.reshape(-1, V), targets)
    model.backward(be.cross_entropy_backward(probs, targets).reshape(logits.shape))
    return logits, {n: p.grad.copy() for n, p in model.named_params()}


@pytest.mark.parametrize("gate_norm", [False, True])
def test_whole_model_matches_torch(npb, gate_norm):
    """Logits and every gradient in float64 against the torch model, and the torch model's own decode steps."""
    torch = pytest.importorskip("torch")
    from torch_ref.models import TorchCharLM, char_lm_forward
    model = small(gate_norm).to(npb).astype(np.float64)
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, V, (2, 9)), rng.integers(0, V, 18)
    logits, grads = loss_and_grads(model, npb, ids, targets)
    p = {n: torch.tensor(prm.data, requires_grad=True) for n, prm in model.named_params()}
    tl = char_lm_forward(p, torch.from_numpy(ids), model.config)
    torch.nn.functional.cross_entropy(tl.reshape(-1, V), torch.from_numpy(targets)).backward()
    assert rel_err(logits, tl.detach().numpy()) < 1e-9
    assert ("blocks.0.mixer.mamba.norm.weight" in grads) == gate_norm
    for name, grad in grads.items():
        assert rel_err(grad, p[name].grad.numpy()) < 1e-9, name
    peer = TorchCharLM({n: prm.data for n, prm in model.named_params()}, model.config)
    with torch.inference_mode():
        state = peer.init_state(2, 9)
        steps = np.stack([peer.step(torch.from_numpy(ids[:, t]), state).numpy() for t in range(9)], 1)
    assert rel_err(steps, logits) < 1e-10


@pytest.mark.parametrize("gate_norm", [False, True])
def test_c_matches_numpy_training_step(npb, cb, gate_norm):
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, V, (3, 9)), rng.integers(0, V, 27)
    (l_np, g_np), (l_c, g_c) = (loss_and_grads(small(gate_norm).to(be), be, ids, targets) for be in (npb, cb))
    assert rel_err(l_c, l_np) < 1e-5
    for name, grad in g_np.items():
        assert rel_err(g_c[name], grad) < 1e-4, name


@pytest.mark.parametrize("gate_norm", [False, True])
def test_decode_streams_at_their_own_positions(cb, gate_norm):
    """The C decoder's streams prefilled with prompts of different lengths: each stream's logits, after the
    prefill and after a step, are those of its own sequence's forward (attention at its own position, the
    Mamba-2 state of its own tokens)."""
    model = small(gate_norm).to(cb)
    rng = np.random.default_rng(3)
    prompts = [rng.integers(0, V, n) for n in (2, 6)]
    dec = model.decoder(2, 9)
    logits = dec.prefill_streams(prompts)
    nxt = rng.integers(0, V, 2)
    logits2 = dec.step(nxt)
    for b, p in enumerate(prompts):
        ref = model.forward(np.concatenate([p, nxt[b:b + 1]])[None])
        model.clear_saved()
        assert rel_err(logits[b], ref[0, -2]) < 1e-5
        assert rel_err(logits2[b], ref[0, -1]) < 1e-5


def test_both_branches_reach_the_output(npb):
    """Zeroing either branch's output projection moves the mixer's output by far more than rounding."""
    layer = FalconH1(12, np.random.default_rng(2), n_heads=2, d_state=4, headdim=4, ngroups=2, chunk=4).to(npb)
    u = np.random.default_rng(3).standard_normal((2, 5, 12)).astype(np.float32)
    full = layer.forward(u)
    for out in (layer.attn.out, layer.mamba.out_proj):
        kept = out.weight.data.copy()
        out.weight.data[...] = 0
        assert rel_err(layer.forward(u), full) > 1e-2
        out.weight.data[...] = kept
    layer.clear_saved()


def test_bad_options_are_clear_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="falcon_h1: gate_norm must be true or false"):
        FalconH1(12, rng, n_heads=2, headdim=4, gate_norm="yes")
    with pytest.raises(ValueError, match="attention: d_model 12 is not divisible by n_heads 5"):
        FalconH1(12, rng, n_heads=5, headdim=4)
    with pytest.raises(ValueError, match="mamba2: d_inner = expand·d_model = 24 is not divisible by headdim 5"):
        FalconH1(12, rng, n_heads=2, headdim=5)
