"""Mixture-of-experts MLP (hybridref/layers/moe.py) and its ops (backends/numpy/moe.py, csrc/moe.c).

Gradients through routing: top-k selection is piecewise constant, so a finite difference is the
derivative only where no perturbation crosses a tie (two logits equal, or the k-th and (k+1)-th
largest). The inputs are drawn at random and each check asserts the gap between every row's k-th and
(k+1)-th logit is far above what a perturbation of 1e-6 moves a logit (|∂logit/∂θ| ≤ ~10 here), so the
selection is the same at θ ± ε and the loss is smooth there.
"""
import importlib

import numpy as np
import pytest

from hybridref.backends.numpy import moe as npmoe
from hybridref.errors import UserError
from hybridref.layers.mlp import MLP_KINDS
from hybridref.layers.moe import MoE, aux_loss, normalize_moe
from hybridref.models.char_lm import CharLM
from tests.fuzz_ops import rms_error
from tests.helpers import check_lm_grads, check_model_grads, rel_err

# C (float32) against NumPy (float64) on the same float32 inputs, per op: the RMS of the difference over
# the RMS of the result; the sums are at most 40 terms (a GEMM's K), so float32 rounding gives ~1e-6:
# the fuzzer's tolerance (tests/fuzz_ops.py TOL, 2e-5) with its argument.
OP_TOL = 2e-5
# A whole MoE layer, C against NumPy float64: router GEMM, softmax, two expert GEMMs, GELU, combine
# chained, each ~1e-6; 1e-4 leaves an order of magnitude.
LAYER_TOL = 1e-4


def _logits(rng, M, E, gap=0.05):
    """Logits whose sorted values per row are at least `gap` apart (no ties, nor near ties)."""
    base = rng.permuted(np.tile(np.arange(E, dtype=np.float64), (M, 1)), axis=1)
    return base * gap * 4 + rng.uniform(0, gap, (M, E))


def _gap(logits, k):
    s = -np.sort(-logits, axis=1)
    return float((s[:, k - 1] - s[:, k]).min()) if k < logits.shape[1] else np.inf


# ---- the router ----------------------------------------------------------------------------------

@pytest.mark.parametrize("normalize", [False, True])
def test_route_is_softmax_then_top_k(normalize):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 5))
    experts, weights, probs, lse, stats = npmoe.moe_route_forward(x, 2, normalize)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, p, rtol=1e-12)
    np.testing.assert_allclose(lse, np.log(np.exp(x).sum(1)), rtol=1e-12)
    np.testing.assert_array_equal(experts, np.argsort(-x, axis=1)[:, :2])
    top = np.take_along_axis(p, experts, 1)
    np.testing.assert_allclose(weights, top / top.sum(1, keepdims=True) if normalize else top, rtol=1e-12)
    np.testing.assert_allclose(stats[:5], np.bincount(experts.ravel(), minlength=5))
    np.testing.assert_allclose(stats[5:10], p.sum(0), rtol=1e-12)
    assert stats[10] == 9 and np.isclose(stats[11], (lse ** 2).sum())


def test_ties_go_to_the_lowest_index(npb, cb):
    x = np.array([[1, 3, 3, 0, 3], [2, 2, 2, 2, 2], [0, 0, 1, 1, 5]], np.float32)
    want = [[1, 2, 4], [0, 1, 2], [4, 2, 3]]
    for be in (npb, cb):
        np.testing.assert_array_equal(be.moe_route_forward(x, 3, False)[0], want)


def test_top_k_matches_transformers_topk_routers():
    """Jamba's router (softmax, top-k, weights as they are) and Mixtral's (renormalised), as transformers
    writes them (JambaTopKRouter, MixtralTopKRouter)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = _logits(rng, 16, 8)
    p = torch.softmax(torch.tensor(x), dim=-1)
    top, idx = torch.topk(p, 2, dim=-1)
    for normalize, want in ((False, top), (True, top / top.sum(-1, keepdim=True))):
        experts, weights, *_ = npmoe.moe_route_forward(x, 2, normalize)
        np.testing.assert_array_equal(experts, idx.numpy())
        np.testing.assert_allclose(weights, want.numpy(), rtol=1e-12)


# ---- the layer -----------------------------------------------------------------------------------

def _layer(kind="gelu", E=4, k=2, normalize=False, aux=0.01, z=0.001, bias=True, d=6, hidden=5, seed=0):
    rng = np.random.default_rng(seed)
    m = MoE(d, hidden, rng, expert_kind=kind, n_experts=E, top_k=k, aux_loss_coef=aux, z_loss_coef=z,
            normalize_top_k=normalize, bias=bias)
    m.router.weight.data[...] = rng.standard_normal(m.router.weight.shape)  # spread routing beyond the init's
    return m


def _dense_mixture(m, x, combine):
    """Every expert on every token as a dense MLP of its kind, weighted by combine (M,E) and summed."""
    y = 0
    for e in range(m.n_experts):
        mlp = MLP_KINDS[m.expert_kind](m.d, m.hidden, np.random.default_rng(0), bias=m.experts.fc.bias is not None)
        mlp.fc.weight.data, mlp.proj.weight.data = m.experts.fc.weight.data[e], m.experts.proj.weight.data[e]
        if mlp.fc.bias is not None:
            mlp.fc.bias.data, mlp.proj.bias.data = m.experts.fc.bias.data[e], m.experts.proj.bias.data[e]
        y = y + combine[:, e:e + 1] * mlp.to(m.be).forward(x)
    return y


@pytest.mark.parametrize("kind", sorted(MLP_KINDS))
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_every_expert_on_every_token_masked(npb, kind, normalize, bias):
    m = _layer(kind, normalize=normalize, bias=bias).astype(np.float64).to(npb)
    x = np.random.default_rng(2).standard_normal((11, m.d))
    y = m.forward(x)
    experts, weights, *_ = npb.moe_route_forward(x @ m.router.weight.data.T, m.top_k, normalize)
    combine = np.zeros((11, m.n_experts))
    np.put_along_axis(combine, experts, weights, axis=1)
    assert rel_err(y, _dense_mixture(m, x, combine)) < 1e-12


def test_top_k_equal_to_experts_is_the_dense_softly_weighted_mixture(npb):
    m = _layer(E=4, k=4).astype(np.float64).to(npb)
    x = np.random.default_rng(3).standard_normal((7, m.d))
    logits = x @ m.router.weight.data.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    assert rel_err(m.forward(x), _dense_mixture(m, x, p / p.sum(1, keepdims=True))) < 1e-12


def test_balance_and_z_loss_follow_their_definitions(npb):
    m = _layer(E=5, k=2, aux=0.3, z=0.2).astype(np.float64).to(npb)
    x = np.random.default_rng(4).standard_normal((13, m.d))
    m.forward(x)
    logits = x @ m.router.weight.data.T
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    chosen = np.argsort(-logits, axis=1)[:, :2]
    f = np.array([(chosen == e).any(1).mean() for e in range(5)])  # fraction of tokens routed to e
    balance = 5 * np.sum(f * p.mean(0))
    z = np.mean(np.log(np.exp(logits).sum(1)) ** 2)
    assert np.isclose(m.balance, balance, rtol=1e-12) and np.isclose(m.z, z, rtol=1e-12)
    assert np.isclose(m.aux_loss(), 0.3 * balance + 0.2 * z, rtol=1e-12)
    np.testing.assert_allclose(m.load, np.bincount(chosen.ravel(), minlength=5) / 26, rtol=1e-12)


def test_balance_equals_transformers_load_balancing_loss_func(npb):
    torch = pytest.importorskip("torch")
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    for E, k in ((8, 2), (4, 1), (6, 3)):
        m = _layer(E=E, k=k, d=7).astype(np.float64).to(npb)
        x = np.random.default_rng(E).standard_normal((33, m.d))
        m.forward(x)
        logits = torch.tensor(x @ m.router.weight.data.T)
        want = mixtral.load_balancing_loss_func((logits,), num_experts=E, top_k=k)
        assert np.isclose(m.balance, float(want), rtol=1e-6), (E, k)


@pytest.mark.parametrize("kind", sorted(MLP_KINDS))
@pytest.mark.parametrize("normalize", [False, True])
def test_gradients_through_routing_and_the_aux_losses(npb, kind, normalize):
    """Central differences (float64) of Σ y ⊙ r + aux_loss() against the backward, which adds the
    balance and z-loss gradients itself; every parameter and the input."""
    m = _layer(kind, E=4, k=2, normalize=normalize, aux=0.5, z=0.3).astype(np.float64).to(npb)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, m.d))
    r = rng.standard_normal(x.shape)
    assert _gap(x.reshape(-1, m.d) @ m.router.weight.data.T, 2) > 1e-3  # no selection flips at ε = 1e-6

    def loss():
        out = np.sum(m.forward(x) * r) + m.aux_loss()
        m.clear_saved()
        return out

    m.zero_grad()
    m.forward(x)
    dx = m.backward(r)
    grads = {n: p.grad.copy() for n, p in m.named_params()}
    check_model_grads(m, loss, grads, rng, per_param=8)
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + 1e-6
        lp = loss()
        x[i] = old - 1e-6
        num[i] = (lp - loss()) / 2e-6
        x[i] = old
    assert rel_err(dx, num) < 1e-6


def test_model_gradients_with_moe_blocks(npb):
    """A character LM with MoE MLPs (pattern MA, MoE in block 1): its loss's gradient by central
    differences, the aux losses off (check_lm_grads differentiates the cross entropy only)."""
    model = CharLM(11, d_model=8, pattern="MA", n_heads=2, d_state=4, mlp_hidden=6,
                   moe=dict(n_experts=3, top_k=2, aux_loss_coef=0.0)).astype(np.float64).to(npb)
    model.blocks[1].mlp.router.weight.data *= 50  # routing decided by wide logit gaps
    rng = np.random.default_rng(6)
    ids = rng.integers(0, 11, (2, 6))
    check_lm_grads(model, npb, ids, rng.integers(0, 11, 12), rng, per_param=4)


# ---- C against NumPy -----------------------------------------------------------------------------

def _op_cases(rng, M=37, E=6, k=2, D=19, hidden=23):
    """A valid call of every MoE op, its arrays chained as the layer chains them (float32)."""
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    logits = _logits(rng, M, E).astype(np.float32)
    experts, weights, probs, lse, _ = npmoe.moe_route_forward(logits.astype(np.float64), k, False)
    f32 = lambda a: a.astype(np.float32)
    xs, slot_pos, offsets = npmoe.moe_dispatch_forward(f(M, D), experts, E)
    return {
        "moe_route_forward": [dict(logits=logits, top_k=k, normalize=n) for n in (False, True)],
        "moe_route_backward": [dict(dweights=f(M, k), experts=experts, probs=f32(probs), lse=f32(lse),
                                    aux_dprobs=f(E), z_scale=0.3, normalize=n) for n in (False, True)],
        "moe_dispatch_forward": [dict(x=f(M, D), experts=experts, n_experts=E)],
        "moe_dispatch_backward": [dict(dxs=f(M * k, D), slot_pos=slot_pos)],
        "moe_expert_linear_forward": [dict(xs=xs, offsets=offsets, w=f(E, hidden, D), b=b) for b in (f(E, hidden), None)],
        "moe_expert_linear_backward": [dict(dys=f(M * k, hidden), xs=xs, offsets=offsets, w=f(E, hidden, D),
                                            has_bias=h) for h in (True, False)],
        "moe_combine_forward": [dict(ys=f(M * k, D), slot_pos=slot_pos, weights=f32(weights))],
        "moe_combine_backward": [dict(dy=f(M, D), ys=f(M * k, D), slot_pos=slot_pos, weights=f32(weights))],
    }


def test_every_op_in_c_equals_numpy(npb, cb):
    cases = _op_cases(np.random.default_rng(7))
    # an expert with no rows: its GEMMs are skipped, its gradients zero
    empty = _op_cases(np.random.default_rng(8), E=9, k=1, M=5)
    for op, calls in cases.items():
        for args in calls + empty[op]:
            want = getattr(npb, op)(**{k: v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32
                                       else v for k, v in args.items()})
            got = getattr(cb, op)(**args)
            for i, (g, w) in enumerate(zip(got if isinstance(got, tuple) else (got,),
                                           want if isinstance(want, tuple) else (want,))):
                assert (g is None) == (w is None), (op, i)
                if g is not None:
                    assert g.shape == w.shape and rms_error(np.asarray(g), np.asarray(w)) < OP_TOL, (op, i)


def test_the_layer_in_c_equals_numpy(npb, cb):
    for kind in sorted(MLP_KINDS):
        ref = _layer(kind, E=5, k=2, d=16, hidden=24, aux=0.1, z=0.05, seed=9)
        out = {}
        for be, dtype in ((npb, np.float64), (cb, np.float32)):
            m = _layer(kind, E=5, k=2, d=16, hidden=24, aux=0.1, z=0.05, seed=9).astype(dtype).to(be)
            for p, q in zip(m.params(), ref.params()):
                p.data[...] = q.data
            rng = np.random.default_rng(10)
            x, r = rng.standard_normal((3, 21, 16)).astype(dtype), rng.standard_normal((3, 21, 16)).astype(dtype)
            y = m.forward(x)
            dx = m.backward(r)
            out[be.name] = (y, dx, m.aux_loss(), *[p.grad for p in m.params()])
        for i, (g, w) in enumerate(zip(out["c"], out["numpy"])):
            assert rms_error(np.asarray(g, np.float64), np.asarray(w)) < LAYER_TOL, (kind, i)


def test_c_results_do_not_depend_on_the_thread_count(cb):
    from tests.helpers import assert_same_for_thread_counts
    cases = _op_cases(np.random.default_rng(11), M=700, D=40)

    def run():
        results = [getattr(cb, op)(**args) for op, calls in cases.items() for args in calls]
        return tuple(a for r in results for a in (r if isinstance(r, tuple) else (r,)) if a is not None)
    assert_same_for_thread_counts(cb, run)


def test_no_tokens(npb, cb):
    """An empty batch: an empty output and gradient, nothing to balance (aux loss 0)."""
    for be in (npb, cb):
        m = _layer(aux=0.5, z=0.5).to(be)
        m.forward(np.ones((2, 3, m.d), np.float32))
        y = m.forward(np.zeros((1, 0, m.d), np.float32))
        assert y.shape == (1, 0, m.d) and m.aux_loss() == 0.0 and not m.load.any()
        assert m.backward(np.zeros_like(y)).shape == (1, 0, m.d)


# ---- bad input -----------------------------------------------------------------------------------

def test_bad_options_are_refused_by_name():
    for bad, what in ((dict(top_k=9), "top_k"), (dict(n_experts=0), "n_experts"), (dict(period=0), "period"),
                      (dict(offset=2, period=2), "offset"), (dict(aux_loss_coef=-1.0), "aux_loss_coef"),
                      (dict(normalize_top_k=1), "normalize_top_k"), (dict(experts=4), "unknown")):
        with pytest.raises(ValueError, match=what):
            normalize_moe(bad)
        with pytest.raises(UserError, match=what):
            CharLM(5, d_model=8, pattern="MA", moe=bad)
    with pytest.raises(ValueError, match="top_k"):
        MoE(4, 4, np.random.default_rng(0), n_experts=2, top_k=3)


@pytest.mark.parametrize("be_name", ["numpy", "c"])
def test_bad_op_inputs_are_refused(npb, cb, be_name):
    be = npb if be_name == "numpy" else cb
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="moe_route_forward: top_k = 5 exceeds the 4 experts"):
        be.moe_route_forward(x, 5, False)
    with pytest.raises(ValueError, match="top_k"):
        be.moe_route_forward(x, 0, False)
    experts = np.array([[0, 1], [1, 2], [3, 0]], np.int64)
    with pytest.raises(ValueError, match="experts must lie in"):
        be.moe_dispatch_forward(x, experts, 3)
    xs, slot_pos, offsets = be.moe_dispatch_forward(x, experts, 4)
    with pytest.raises(ValueError, match="permutation"):
        be.moe_combine_forward(xs, np.zeros_like(slot_pos), np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="offsets"):
        be.moe_expert_linear_forward(xs, offsets[::-1].copy(), np.zeros((4, 2, 4), np.float32), None)
    if be_name == "c":
        with pytest.raises(ValueError, match="must have shape"):
            be.moe_expert_linear_forward(xs, offsets, np.zeros((4, 2, 5), np.float32), None)
        with pytest.raises(ValueError, match="dweights must have shape"):
            be.moe_route_backward(np.zeros((3, 3), np.float32), experts, np.zeros((3, 4), np.float32),
                                  np.zeros(3, np.float32), np.zeros(4, np.float32), 0.0, False)


# ---- models --------------------------------------------------------------------------------------

def test_period_and_offset_place_the_moe_blocks_as_jamba():
    def kinds(**moe):
        model = CharLM(5, d_model=8, pattern="MMMMM", d_state=4, mlp_hidden=4, moe=moe or None)
        return "".join("E" if b.mlp.kind == "moe" else "." for b in model.blocks)
    assert kinds() == "....."
    assert kinds(n_experts=2) == ".E.E."  # Jamba's default: period 2, offset 1
    assert kinds(n_experts=2, period=1, offset=0) == "EEEEE"
    assert kinds(n_experts=2, period=3, offset=0) == "E..E."


def test_an_old_config_without_moe_loads_dense():
    cfg = CharLM.normalize_config(dict(vocab_size=5, d_model=8, pattern="MA"))
    assert cfg["moe"] is None
    assert CharLM.normalize_config(dict(vocab_size=5, moe=dict(top_k=1)))["moe"] == {
        **normalize_moe({}), "top_k": 1}


def test_checkpoint_round_trip_of_an_moe_model(tmp_path, npb):
    from hybridref.checkpoint import load_checkpoint, restore, save_checkpoint
    model = CharLM(7, d_model=8, pattern="MA", n_heads=2, d_state=4, mlp_hidden=6,
                   moe=dict(n_experts=3, top_k=1, normalize_top_k=True))
    for p in model.params():
        p.data[...] = np.random.default_rng(12).standard_normal(p.shape)
    path = tmp_path / "moe.safetensors"
    save_checkpoint(path, model, "abcdefg")
    ckpt = load_checkpoint(path)
    other = CharLM.from_config(ckpt["config"]).to(npb)
    restore(ckpt, other)
    assert other.config == model.config and other.blocks[1].mlp.experts.fc.weight.shape == (3, 6, 8)
    ids = np.arange(14).reshape(2, 7) % 7
    np.testing.assert_array_equal(other.forward(ids), model.to(npb).forward(ids))


def test_training_adds_the_aux_loss_and_reports_it(npb):
    model = CharLM(5, d_model=8, pattern="MA", n_heads=2, d_state=4, mlp_hidden=4,
                   moe=dict(n_experts=4, z_loss_coef=0.01)).to(npb)
    assert model.aux_loss() == 0.0
    model.forward(np.zeros((1, 6), np.int64))
    moe = model.blocks[1].mlp
    assert model.aux_loss() == aux_loss(model) == moe.aux_loss() > 0


# ---- decoding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(MLP_KINDS))
def test_decode_equals_forward(npb, cb, kind):
    """The C one-call decoder (csrc/moe_step.c) and the NumPy decoder step MoE MLPs (router, top-k, k
    experts per stream) as the parallel forward computes them, within 1e-4 (float32 through 4 blocks;
    measured ~1e-7), at 3 and 17 streams."""
    from tests.helpers import decode_all
    for be in (npb, cb):
        for batch, bias in ((3, True), (17, False)):
            model = CharLM(13, d_model=16, pattern="MAMA", n_heads=2, d_state=4, mlp_hidden=12, mlp_kind=kind,
                           mlp_bias=bias, moe=dict(n_experts=4, top_k=2, normalize_top_k=bias)).to(be)
            ids = np.random.default_rng(13).integers(0, 13, (batch, 10))
            full = model.forward(ids)
            model.clear_saved()
            assert np.abs(decode_all(model, ids, 4) - full[:, 3:]).max() < 1e-4, (be.name, batch)


def test_the_c_decoder_refuses_expert_kinds_it_lacks_by_name(cb):
    model = CharLM(5, d_model=8, pattern="MA", n_heads=2, d_state=4, mlp_hidden=4, moe=dict(n_experts=2)).to(cb)
    model.blocks[1].mlp.expert_kind = "relu"
    with pytest.raises(ValueError, match="block 1 has MoE experts of kind 'relu', which the C decoder does not run"):
        model.decoder(1, 8)


# ---- PyTorch: the sparse MoE block as transformers writes it (tests/torch_ref/moe.py) ---------------

@pytest.mark.parametrize("kind", sorted(MLP_KINDS))
@pytest.mark.parametrize("normalize", [False, True])
def test_forward_and_gradients_equal_the_transformers_block(npb, cb, kind, normalize):
    """y and the gradients of Σ y ⊙ r + aux_loss() (x, router, every expert weight) against autograd
    through the per-expert loop of Mixtral's/Jamba's block: NumPy in float64 within 1e-10, C in float32
    within LAYER_TOL (torch in float64 on the same float32 weights)."""
    torch = pytest.importorskip("torch")
    tref = importlib.import_module("tests.torch_ref.moe")
    ref = _layer(kind, E=5, k=2, d=12, hidden=10, normalize=normalize, aux=0.2, z=0.05, seed=14)
    for p in ref.params():
        p.data[...] = p.data.astype(np.float32)
    rng = np.random.default_rng(15)
    x, r = rng.standard_normal((2, 9, 12)).astype(np.float32), rng.standard_normal((2, 9, 12)).astype(np.float32)
    assert _gap(x.reshape(-1, 12).astype(np.float64) @ ref.router.weight.data.T.astype(np.float64), 2) > 1e-3

    p = {k: v.double().requires_grad_() for k, v in tref.params(ref).items()}
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty, logits = tref.forward(p, tx, kind, 2, normalize)
    (torch.sum(ty * torch.tensor(r, dtype=torch.float64))
     + 0.2 * tref.balance_loss(logits, 2) + 0.05 * tref.z_loss(logits)).backward()
    want = [ty.detach().numpy(), tx.grad.numpy()] + [p[name].grad.numpy() for name, _ in ref.named_params()]

    for be, dtype, tol in ((npb, np.float64, 1e-10), (cb, np.float32, LAYER_TOL)):
        m = _layer(kind, E=5, k=2, d=12, hidden=10, normalize=normalize, aux=0.2, z=0.05, seed=14).astype(dtype)
        for q, src in zip(m.params(), ref.params()):
            q.data[...] = src.data
        m.to(be)
        y = m.forward(x.astype(dtype))
        dx = m.backward(r.astype(dtype))
        got = [y, dx] + [q.grad for q in m.params()]
        for (name, _), g, w in zip([("y", 0), ("dx", 0), *m.named_params()], got, want):
            assert rel_err(g, w) < tol, (be.name, name, rel_err(g, w))


def test_train_shakespeare_with_moe_reports_the_expert_load(tmp_path):
    """`train shakespeare --moe ...`: every evaluation prints the aux loss and each expert's share; a bad
    --moe entry is a usage error naming it."""
    from click.testing import CliRunner
    from hybridref.cli import main
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("First Citizen:\nBefore we proceed any further.\n" * 200)
    args = ["train", "shakespeare", "--backend", "c", "--data-dir", str(tmp_path), "--pattern", "MA", "--d-model",
            "16", "--steps", "4", "--eval-every", "2", "--eval-batches", "1", "--batch-size", "2", "--block-size", "16"]
    out = CliRunner().invoke(main, args + ["--moe", "n_experts=3,top_k=1,period=1,offset=0"])
    assert out.exit_code == 0, out.output
    lines = [ln for ln in out.output.splitlines() if "tokens per expert" in ln]
    assert len(lines) == 2 and lines[0].count("[") == 2  # two evaluations, two MoE blocks
    bad = CliRunner().invoke(main, args + ["--moe", "experts=3"])
    assert bad.exit_code == 2 and "--moe" in bad.output and "experts=3" in bad.output
