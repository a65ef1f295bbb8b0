"""Decayed linear attention (Mamba-2 / RetNet / GLA): the three forms, gradients, state passing, C = NumPy."""
import numpy as np
import pytest

from helpers import check_grads, rel_err
from hybridref.backends.numpy import linear_attention as nla

GRAD_NAMES = ("q", "k", "v", "g", "h0")


def _inputs(rng, B, T, Hq, H, K, V, Kg, dtype=np.float64, decay=(0.02, 0.5)):
    """q, k (B,T,Hq,K), v (B,T,H,V), g (B,T,H,Kg) = -uniform(decay), h0 (B,H,K,V), do (B,T,H,V)."""
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    g = -rng.uniform(*decay, (B, T, H, Kg)).astype(dtype)
    return (r(B, T, Hq, K), r(B, T, Hq, K), r(B, T, H, V), g), r(B, H, K, V), r(B, T, H, V)


# (B, T, Hq, H, K, V, Kg): Kg = 1 and Kg = K, grouped heads (Hq < H), odd sizes
CASES = [(2, 13, 1, 2, 3, 4, 1), (1, 11, 2, 4, 3, 5, 3), (2, 9, 2, 2, 4, 3, 4)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("chunk", [1, 4, 5, 64])
def test_forms_agree_numpy(rng, case, chunk):
    """recurrent = parallel = chunk (chunk lengths that do not divide T) in float64; the forms differ
    only in the order of their sums, so they agree to rounding (1e-13 leaves 100x margin)."""
    (q, k, v, g), h0, _ = _inputs(rng, *case)
    ro, rh = nla.recurrent_forward(q, k, v, g, 0.7, h0)
    for mode in ("recurrent", "parallel", "chunk"):
        o, h = nla.linear_attention_forward(q, k, v, g, 0.7, h0, chunk, mode)
        assert rel_err(o, ro) < 1e-13 and rel_err(h, rh) < 1e-13, mode
    rec = nla.recurrent_backward(v * 0.5, q, k, v, g, 0.7, h0, h0)
    got = nla.linear_attention_backward(v * 0.5, q, k, v, g, 0.7, h0, h0, chunk)
    for name, a, b in zip(GRAD_NAMES, got, rec):
        assert a.shape == b.shape and rel_err(a, b) < 1e-12, name


def test_recurrence_scalar_loop(rng):
    """The oracle against the recurrence written one (b, h, k, v) entry at a time."""
    (q, k, v, g), h0, _ = _inputs(rng, 1, 6, 1, 2, 3, 2, 3)
    B, T, _, K = q.shape
    H, V = v.shape[2], v.shape[3]
    o, S = np.zeros_like(v), h0.copy()
    for b in range(B):
        for h in range(H):
            for t in range(T):
                for i in range(K):
                    for j in range(V):
                        S[b, h, i, j] = np.exp(g[b, t, h, i]) * S[b, h, i, j] + k[b, t, 0, i] * v[b, t, h, j]
                o[b, t, h] = 0.5 * q[b, t, 0] @ S[b, h]
    got_o, got_h = nla.linear_attention_forward(q, k, v, g, 0.5, h0, 4)
    assert rel_err(got_o, o) < 1e-14 and rel_err(got_h, S) < 1e-14


@pytest.mark.parametrize("case", CASES[:2])
@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("use_dh_last", [False, True])
def test_gradcheck(rng, case, use_h0, use_dh_last):
    """float64 central differences of every input, g and h0 included, through two chunks of 5 and one of 3."""
    (q, k, v, g), h0, wo = _inputs(rng, *case)
    h0 = h0 if use_h0 else None
    wh = rng.standard_normal((case[0], case[3], case[4], case[5])) if use_dh_last else None

    def loss():
        o, h_last = nla.linear_attention_forward(q, k, v, g, 0.8, h0, 5)
        return float((o * wo).sum() + ((h_last * wh).sum() if use_dh_last else 0.0))

    grads = nla.linear_attention_backward(wo, q, k, v, g, 0.8, h0, wh, 5)
    assert (grads[-1] is None) != use_h0
    inputs = dict(q=q, k=k, v=v, g=g, **({"h0": h0} if use_h0 else {}))
    check_grads(loss, inputs, dict(zip(GRAD_NAMES, grads)))


def _check_split(fwd, bwd, ins, h0, do, dh_last, chunk, tol, T1=7):
    """forward over [x1, x2] == forward(x1, h0) then forward(x2, h_last of x1); the split backward
    (dh_last of the first part = dh0 of the second) == the backward of the whole."""
    split = lambda a: (np.ascontiguousarray(a[:, :T1]), np.ascontiguousarray(a[:, T1:]))
    part1, part2 = zip(*map(split, ins))
    do1, do2 = split(do)
    o, h_last = fwd(*ins, 0.9, h0, chunk)
    o1, h1 = fwd(*part1, 0.9, h0, chunk)
    o2, h2 = fwd(*part2, 0.9, h1, chunk)
    assert rel_err(np.concatenate([o1, o2], 1), o) < tol and rel_err(h2, h_last) < tol
    whole = bwd(do, *ins, 0.9, h0, dh_last, chunk)
    second = bwd(do2, *part2, 0.9, h1, dh_last, chunk)
    first = bwd(do1, *part1, 0.9, h0, second[-1], chunk)
    for i, name in enumerate(GRAD_NAMES[:4]):
        assert rel_err(np.concatenate([first[i], second[i]], 1), whole[i]) < tol, name
    assert (first[-1] is None) == (h0 is None) == (whole[-1] is None)
    if h0 is not None:
        assert rel_err(first[-1], whole[-1]) < tol


@pytest.mark.parametrize("case", CASES)
def test_split_numpy(rng, case):
    (q, k, v, g), h0, do = _inputs(rng, *case)
    # float64: the split only moves chunk boundaries, so the sums differ in order alone
    _check_split(nla.linear_attention_forward, nla.linear_attention_backward, (q, k, v, g), h0, do, rng.standard_normal(h0.shape), 4, 1e-13)
    _check_split(nla.linear_attention_forward, nla.linear_attention_backward, (q, k, v, g), None, do, None, 4, 1e-13)


def test_strong_decay_numpy(rng):
    """g = -50 per step and g near 0 mixed: every form stays finite in float32 and matches the float64
    recurrence (float32 rounding of O(chunk) terms per output: 1e-5)."""
    (q, k, v, g), h0, _ = _inputs(rng, 1, 40, 1, 2, 4, 3, 4, np.float32)
    g[:, 5:20] = -50.0
    g[:, 20:] = -1e-4
    ro, rh = nla.recurrent_forward(*(a.astype(np.float64) for a in (q, k, v, g)), 1.0, h0.astype(np.float64))
    for mode in ("recurrent", "parallel", "chunk"):
        o, h = nla.linear_attention_forward(q, k, v, g, 1.0, h0, 16, mode)
        assert np.isfinite(o).all() and np.isfinite(h).all()
        assert rel_err(o, ro) < 1e-5 and rel_err(h, rh) < 1e-5, mode


def test_numpy_rejects_bad_input(rng):
    (q, k, v, g), h0, do = _inputs(rng, 1, 5, 1, 2, 3, 4, 1)
    with pytest.raises(ValueError, match="^linear_attention_forward: chunk must be an int >= 1"):
        nla.linear_attention_forward(q, k, v, g, chunk=0)
    with pytest.raises(ValueError, match="^linear_attention_forward: mode must be one of"):
        nla.linear_attention_forward(q, k, v, g, mode="dual")
    with pytest.raises(ValueError, match="^linear_attention_forward: g must hold finite log decays <= 0"):
        nla.linear_attention_forward(q, k, v, -g)
    with pytest.raises(ValueError, match="^linear_attention_backward: need q, k"):
        nla.linear_attention_backward(do, q, k, v[:, :, :1].repeat(3, 2), g)
