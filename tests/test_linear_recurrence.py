"""The diagonal linear recurrence h_t = a_t ⊙ h_{t−1} + x_t and the RG-LRU gates that feed it
(backends/numpy/linear_recurrence.py, backends/numpy/rglru.py; csrc/linear_recurrence.c, csrc/rglru.c).
Splitting either op over the sequence is tests/test_sequence_forms.py (declared forms); the layer is
the conformance suite's (tests/test_mixer_conformance.py -k rglru)."""
import numpy as np
import pytest

from helpers import assert_same_for_thread_counts, check_grads, rel_err


def _recurrence_inputs(rng, B, T, C, dtype=np.float64):
    """Decays in [0.5, 1) (an RG-LRU's range at init is [0.9^8, 1)), inputs, h0, dh, dh_last."""
    a = rng.uniform(0.5, 1.0, (B, T, C))
    x, dh = rng.standard_normal((2, B, T, C))
    h0, dh_last = rng.standard_normal((2, B, C))
    return [v.astype(dtype) for v in (a, x, h0, dh, dh_last)]


def _gate_inputs(rng, B, T, C, dtype=np.float64):
    """x, gate pre-activations, Λ as recurrentgemma initialises it (base decay in [0.9, 0.999]), and
    the gradients of a and xn."""
    x, gx, ga, da, dxn = rng.standard_normal((5, B, T, C))
    a0 = np.sqrt(rng.uniform(0.9 ** 2, 0.999 ** 2, C))
    a_param = np.log(1.0 / a0 - 1.0)
    return [v.astype(dtype) for v in (x, gx, ga, a_param, da, dxn)]


def test_recurrence_matches_scalar_loop(npb, rng):
    a, x, h0, _, _ = _recurrence_inputs(rng, 2, 7, 3)
    want = np.zeros_like(x)
    for b in range(2):
        for c in range(3):
            h = h0[b, c]
            for t in range(7):
                h = want[b, t, c] = a[b, t, c] * h + x[b, t, c]
    h, h_last = npb.linear_recurrence_forward(a, x, h0)
    assert rel_err(h, want) < 1e-15 and rel_err(h_last, want[:, -1]) < 1e-15


@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("use_dh_last", [False, True])
def test_recurrence_gradcheck(npb, rng, use_h0, use_dh_last):
    a, x, h0, wh, wl = _recurrence_inputs(rng, 2, 6, 3)
    h0 = h0 if use_h0 else None
    wl = wl if use_dh_last else None

    def loss():
        h, h_last = npb.linear_recurrence_forward(a, x, h0)
        return float((h * wh).sum() + ((h_last * wl).sum() if use_dh_last else 0.0))

    da, dx, dh0 = npb.linear_recurrence_backward(wh, a, x, h0, wl)
    assert (dh0 is None) != use_h0
    check_grads(loss, dict(a=a, x=x, **({"h0": h0} if use_h0 else {})), dict(a=da, x=dx, h0=dh0))


# B, T, C: one task; channel blocks with a partial last one (C = 37, 131: 64-channel tasks and a
# masked vector tail); long T; one step (a decode step)
SHAPES = [(1, 5, 8), (2, 33, 37), (3, 17, 131), (2, 1025, 20), (4, 1, 64)]


@pytest.mark.parametrize("B,T,C", SHAPES)
def test_recurrence_c_matches_numpy(npb, cb, rng, B, T, C):
    """float32 C against float64 NumPy. Each state is a sum of T decayed terms, rounded once per step
    in float32 (~6e-8 each, and a < 1 damps older errors): 1e-6 norm-wise."""
    a, x, h0, dh, dh_last = _recurrence_inputs(rng, B, T, C)
    f32 = lambda *v: [u.astype(np.float32) for u in v]
    for h0_, dl in ((None, None), (h0, dh_last)):
        want = npb.linear_recurrence_forward(a, x, h0_)
        got = cb.linear_recurrence_forward(*f32(a, x), *(f32(h0_) if h0_ is not None else [None]))
        for g, w in zip(got, want):
            assert rel_err(g, w) < 1e-6
        want = npb.linear_recurrence_backward(dh, a, x, h0_, dl)
        got = cb.linear_recurrence_backward(*f32(dh, a, x), *(f32(h0_, dl) if h0_ is not None else [None, None]))
        for g, w in zip(got, want):
            assert (g is None) == (w is None)
            if w is not None:
                assert rel_err(g, w) < 1e-6


def test_recurrence_is_thread_count_independent(cb, rng):
    a, x, h0, dh, dh_last = (v.astype(np.float32) for v in _recurrence_inputs(rng, 3, 300, 150))
    assert_same_for_thread_counts(cb, lambda: (*cb.linear_recurrence_forward(a, x, h0),
                                               *cb.linear_recurrence_backward(dh, a, x, h0, dh_last)))


def test_recurrence_rejects_bad_input(cb):
    a = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"linear_recurrence_forward: a must have shape \(2, 3, 4\)"):
        cb.linear_recurrence_forward(a[:, :2].copy(), a)
    with pytest.raises(ValueError, match=r"linear_recurrence_forward: h0 must have shape \(2, 4\)"):
        cb.linear_recurrence_forward(a, a, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"linear_recurrence_backward: dh_last must have shape \(2, 4\)"):
        cb.linear_recurrence_backward(a, a, a, None, np.zeros((4,), np.float32))
    with pytest.raises(ValueError, match="linear_recurrence_forward: x must have dtype float32"):
        cb.linear_recurrence_forward(a, a.astype(np.float64))


def test_gate_matches_the_paper(npb, rng):
    """a = σ(−Λ)^(8 r) (the paper's form of exp(−8 r softplus(Λ))), xn = √(1 − a²) i x, and at the
    sequence's position 0 xn = i x; a later chunk (time_offset > 0) has no position 0."""
    x, gx, ga, a_param, _, _ = _gate_inputs(rng, 2, 5, 3)
    sig = lambda z: 1 / (1 + np.exp(-z))
    a_want = sig(-a_param) ** (8 * sig(ga))
    xn_want = np.sqrt(1 - a_want ** 2) * sig(gx) * x
    a, xn = npb.rglru_gate_forward(x, gx, ga, a_param)
    assert rel_err(a, a_want) < 1e-14
    assert rel_err(xn[:, 1:], xn_want[:, 1:]) < 1e-14
    assert rel_err(xn[:, 0], sig(gx[:, 0]) * x[:, 0]) < 1e-14
    a3, xn3 = npb.rglru_gate_forward(x, gx, ga, a_param, time_offset=3)
    assert rel_err(a3, a_want) < 1e-14 and rel_err(xn3, xn_want) < 1e-14


def test_lambda_init_gives_base_decays_in_range():
    """recurrentgemma's rnn_param_init: a0² ~ U[0.9², 0.999²], Λ = softplus⁻¹(−log a0), so the base decay
    exp(−softplus(Λ)) = σ(−Λ) = a0 lies in [0.9, 0.999]."""
    from hybridref.layers.rglru import rnn_param_init
    lam = rnn_param_init(np.random.default_rng(0), 4096)
    a0 = 1 / (1 + np.exp(lam))
    assert 0.9 <= a0.min() and a0.max() <= 0.999
    assert abs(np.mean(a0 ** 2) - (0.81 + 0.998001) / 2) < 2e-3  # uniform in a0²


@pytest.mark.parametrize("time_offset", [0, 2])
def test_gate_gradcheck(npb, rng, time_offset):
    x, gx, ga, a_param, wa, wx = _gate_inputs(rng, 2, 4, 3)

    def loss():
        a, xn = npb.rglru_gate_forward(x, gx, ga, a_param, time_offset)
        return float((a * wa).sum() + (xn * wx).sum())

    grads = npb.rglru_gate_backward(wa, wx, x, gx, ga, a_param, time_offset)
    check_grads(loss, dict(x=x, gx=gx, ga=ga, a_param=a_param), dict(zip(("x", "gx", "ga", "a_param"), grads)))


def test_gate_sqrt_gradient_is_bounded(npb, cb):
    """A gate that rounds a to 1 (√(1 − a²) = 0): the √ derivative is capped at 1000, as recurrentgemma's
    SqrtBoundDerivative, so the gradient stays finite (the exact one is infinite)."""
    one = np.ones((1, 2, 1), np.float32)
    for be in (npb, cb):
        a, _ = be.rglru_gate_forward(one, one, -30 * one, np.full(1, -30, np.float32))
        assert np.all(a == 1)
        grads = be.rglru_gate_backward(one, one, one, one, -30 * one, np.full(1, -30, np.float32))
        assert all(np.isfinite(g).all() for g in grads), be.name


@pytest.mark.parametrize("B,T,C", [(1, 3, 5), (2, 9, 37), (3, 40, 130)])
@pytest.mark.parametrize("time_offset", [0, 7])
def test_gate_c_matches_numpy(npb, cb, rng, B, T, C, time_offset):
    """float32 C against float64 NumPy: exponentials (~2 ulp), a square root of 1 − a² (which loses
    log2(1/(1 − a²)) ≲ 7 bits for a ≤ 0.996) and products: 1e-5 element-wise outputs; dΛ is a sum of
    B·T terms: 1e-5 norm-wise too."""
    ins = _gate_inputs(rng, B, T, C)
    x, gx, ga, a_param, da, dxn = ins
    f = [v.astype(np.float32) for v in ins]
    want = npb.rglru_gate_forward(x, gx, ga, a_param, time_offset)
    for g, w in zip(cb.rglru_gate_forward(*f[:4], time_offset), want):
        assert rel_err(g, w) < 1e-5
    got = cb.rglru_gate_backward(f[4], f[5], *f[:4], time_offset)
    want = npb.rglru_gate_backward(da, dxn, x, gx, ga, a_param, time_offset)
    for g, w in zip(got, want):
        assert rel_err(g, w) < 1e-5


def test_gate_is_thread_count_independent(cb, rng):
    f = [v.astype(np.float32) for v in _gate_inputs(rng, 3, 200, 70)]
    assert_same_for_thread_counts(cb, lambda: (*cb.rglru_gate_forward(*f[:4]),
                                               *cb.rglru_gate_backward(f[4], f[5], *f[:4])))


def test_gate_rejects_bad_input(cb):
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"rglru_gate_forward: a_param must have shape \(4\)"):
        cb.rglru_gate_forward(x, x, x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"rglru_gate_forward: time_offset must be an int"):
        cb.rglru_gate_forward(x, x, x, np.zeros(4, np.float32), -1)
    with pytest.raises(ValueError, match=r"rglru_gate_backward: dxn must have shape \(2, 3, 4\)"):
        cb.rglru_gate_backward(x, x[:1].copy(), x, x, x, np.zeros(4, np.float32))
