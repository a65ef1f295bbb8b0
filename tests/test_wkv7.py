"""WKV-7 (RWKV-7's generalized delta rule) and the token shift: the NumPy oracles against RWKV-LM's
formula and finite differences, C = NumPy on every ISA build, split = whole, long sequences (the
checkpointed backward), thread-count determinism, bad input."""
import functools

import numpy as np
import pytest

from helpers import assert_same_for_thread_counts, check_grads, rel_err
from hybridref.backends.numpy import wkv7 as nwkv

GRAD_NAMES = ("r", "w", "k", "v", "a", "b", "h0")


def _inputs(rng, B, T, H, K, V, dtype=np.float64, w_lo=0.5):
    """As RWKV-7 passes them: r, k, v ~ N(0, 1); decays w ~ U(w_lo, 1); a = −κ̂, b = κ̂ ⊙ iclr, κ̂ of unit
    norm per head, iclr ~ U(0, 1). -> (r, w, k, v, a, b), h0 (B,H,K,V), dy (B,T,H,V)."""
    n = lambda *s: rng.standard_normal(s)
    kk = n(B, T, H, K)
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    ins = (n(B, T, H, K), rng.uniform(w_lo, 1.0, (B, T, H, K)), n(B, T, H, K), n(B, T, H, V), -kk,
           kk * rng.uniform(0.0, 1.0, (B, T, H, K)))
    return tuple(x.astype(dtype) for x in ins), n(B, H, K, V).astype(dtype), n(B, T, H, V).astype(dtype)


def _f64(a):
    return None if a is None else a.astype(np.float64)


def test_oracle_is_rwkv_lm_formula(npb, rng):
    """The oracle against rwkv_v7_demo.py's step written out in its own layout, one head at a time:
    S (V×K), S_t = S_{t−1} (diag(w_t) + a_tᵀ b_t) + v_tᵀ k_t, y_t = S_t r_t, with h0 = Sᵀ."""
    (r, w, k, v, a, b), h0, _ = _inputs(rng, 2, 7, 2, 4, 3)
    y, h_last = npb.wkv7_forward(r, w, k, v, a, b, h0)
    for bb in range(2):
        for hh in range(2):
            S = h0[bb, hh].T.copy()
            for t in range(7):
                at, bt = a[bb, t, hh][:, None], b[bb, t, hh][None, :]
                S = S @ (np.diag(w[bb, t, hh]) + at @ bt) + v[bb, t, hh][:, None] @ k[bb, t, hh][None, :]
                np.testing.assert_allclose(y[bb, t, hh], S @ r[bb, t, hh], rtol=1e-13, atol=1e-13)
            np.testing.assert_allclose(h_last[bb, hh], S.T, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("use_dh_last", [False, True])
def test_gradcheck(npb, rng, use_h0, use_dh_last):
    """float64 central differences of every input, h0 included (helpers.check_grads: 1e-6)."""
    (r, w, k, v, a, b), h0, dy = _inputs(rng, 2, 6, 2, 3, 4)
    h0 = h0 if use_h0 else None
    wh = rng.standard_normal((2, 2, 3, 4)) if use_dh_last else None

    def loss():
        y, h_last = npb.wkv7_forward(r, w, k, v, a, b, h0)
        return float((y * dy).sum() + ((h_last * wh).sum() if use_dh_last else 0.0))

    grads = npb.wkv7_backward(dy, r, w, k, v, a, b, h0, wh)
    assert (grads[-1] is None) != use_h0
    inputs = dict(r=r, w=w, k=k, v=v, a=a, b=b, **({"h0": h0} if use_h0 else {}))
    check_grads(loss, inputs, dict(zip(GRAD_NAMES, grads)))


def test_token_shift_gradcheck(npb, rng):
    """float64 central differences of x, mu and the prefix; without a prefix, zeros precede x."""
    x, prefix, mu, dy = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 1, 4)), rng.uniform(0, 1, (3, 4)), \
        rng.standard_normal((2, 5, 3, 4))
    for p in (None, prefix):
        loss = lambda: float((npb.token_shift_forward(x, mu, p) * dy).sum())
        dx, dmu, dprefix = npb.token_shift_backward(dy, x, mu, p)
        check_grads(loss, dict(x=x, mu=mu, **({} if p is None else {"prefix": p})),
                    dict(x=dx, mu=dmu, prefix=dprefix))
    y = npb.token_shift_forward(x, mu)
    np.testing.assert_allclose(y[:, 0], x[:, 0, None, :] * (1 - mu), rtol=1e-15, atol=1e-15)


# ---- the C kernels -----------------------------------------------------------------------------------

# Against the float64 oracle on the same float32 inputs: each output is a sum of K products with the state,
# which is itself a contraction (|w| <= 1, the delta-rule term a projection scaled by iclr <= 1) of float32
# updates of ~K terms, so rounding does not accumulate with T. Measured up to 3e-7 on every ISA (every test
# below); 5e-6 leaves >10x margin and is far below any wrong or missing term (O(1)).
C_TOL = 5e-6

# (B, T, H, K, V): odd sizes and partial vectors, V above and below a vector, K != V, RWKV's head of 64.
C_CASES = [(2, 37, 2, 5, 7), (1, 20, 3, 16, 16), (2, 13, 1, 19, 33), (1, 9, 2, 64, 64), (3, 1, 2, 3, 2)]


@pytest.mark.parametrize("case", C_CASES)
@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("use_dh_last", [False, True])
def test_c_matches_numpy(cb, rng, case, use_h0, use_dh_last):
    ins, h0, dy = _inputs(rng, *case, np.float32)
    h0 = h0 if use_h0 else None
    B, T, H, K, V = case
    dh_last = rng.standard_normal((B, H, K, V)).astype(np.float32) if use_dh_last else None
    y, h_last = cb.wkv7_forward(*ins, h0)
    ry, rh = nwkv.wkv7_forward(*map(_f64, ins), _f64(h0))
    assert y.dtype == np.float32 and rel_err(y, ry) < C_TOL and rel_err(h_last, rh) < C_TOL
    got = cb.wkv7_backward(dy, *ins, h0, dh_last)
    want = nwkv.wkv7_backward(_f64(dy), *map(_f64, ins), _f64(h0), _f64(dh_last))
    for name, x, ref in zip(GRAD_NAMES, got, want):
        assert (x is None) == (ref is None), name
        if x is not None:
            assert x.dtype == np.float32 and x.shape == ref.shape and rel_err(x, ref) < C_TOL, name


def test_c_h_last_may_alias_h0(cb, rng):
    """The decode step advances its state in place (h_last = h0): the same result as a fresh output."""
    ins, h0, _ = _inputs(rng, 2, 1, 2, 8, 8, np.float32)
    want = cb.wkv7_forward(*ins, h0)
    state = h0.copy()
    y = np.empty_like(want[0])
    f = cb.f32
    assert cb.lib.hr_wkv7_forward(*map(f, ins), f(state), f(y), f(state), 2, 1, 2, 8, 8) == 0
    np.testing.assert_array_equal(y, want[0])
    np.testing.assert_array_equal(state, want[1])


@pytest.mark.parametrize("use_h0", [False, True])
def test_split_c(cb, rng, use_h0):
    """Two pieces, the second from the first's h_last and the first's backward from the second's dh0, equal
    the whole: the same float32 operations in the same order, so bit for bit."""
    ins, h0, dy = _inputs(rng, 2, 29, 2, 5, 6, np.float32)
    h0 = h0 if use_h0 else None
    dh_last = rng.standard_normal((2, 2, 5, 6)).astype(np.float32)
    split = lambda x: (np.ascontiguousarray(x[:, :11]), np.ascontiguousarray(x[:, 11:]))
    one, two = zip(*map(split, ins))
    y, h_last = cb.wkv7_forward(*ins, h0)
    y1, h1 = cb.wkv7_forward(*one, h0)
    y2, h2 = cb.wkv7_forward(*two, h1)
    np.testing.assert_array_equal(np.concatenate([y1, y2], 1), y)
    np.testing.assert_array_equal(h2, h_last)
    whole = cb.wkv7_backward(dy, *ins, h0, dh_last)
    dy1, dy2 = split(dy)
    second = cb.wkv7_backward(dy2, *two, h1, dh_last)
    first = cb.wkv7_backward(dy1, *one, h0, second[-1])
    for i, name in enumerate(GRAD_NAMES[:-1]):
        np.testing.assert_array_equal(np.concatenate([first[i], second[i]], 1), whole[i], err_msg=name)
    if use_h0:
        np.testing.assert_array_equal(first[-1], whole[-1])


@functools.lru_cache(maxsize=None)
def _long_case(T, H, K):
    """Inputs and the float64 oracle's outputs and gradients of a long case, computed once for every ISA."""
    ins, h0, dy = _inputs(np.random.default_rng(1), 1, T, H, K, K, np.float32, w_lo=0.9)
    f = tuple(map(_f64, ins))
    return ins, h0, dy, nwkv.wkv7_forward(*f, _f64(h0)), nwkv.wkv7_backward(_f64(dy), *f, _f64(h0), _f64(h0))


def test_c_long_sequence_checkpointed(cb):
    """T = 8,192, two heads of 64 (RWKV's head size): 8193 states of 64×64 are 34M floats, past the backward's
    2^18 per task, so it keeps a checkpoint every ~√T = 91 steps and recomputes each segment, the last one
    partial. Decays in (0.9, 1) keep long memory; against the float64 recurrence within C_TOL."""
    ins, h0, dy, (ry, rh), want = _long_case(8192, 2, 64)
    y, h_last = cb.wkv7_forward(*ins, h0)
    assert rel_err(y, ry) < C_TOL and rel_err(h_last, rh) < C_TOL
    got = cb.wkv7_backward(dy, *ins, h0, h0)
    for name, x, ref in zip(GRAD_NAMES, got, want):
        assert rel_err(x, ref) < C_TOL, name


def test_c_thread_count_determinism(cb, rng):
    """Every gradient is per position or per (batch, head): nothing is reduced across threads, so the results
    are bit-identical for any thread count; the token shift's dmu is owned by channel blocks."""
    ins, h0, dy = _inputs(rng, 3, 40, 3, 16, 16, np.float32)
    assert_same_for_thread_counts(cb, lambda: (*cb.wkv7_forward(*ins, h0), *cb.wkv7_backward(dy, *ins, h0, h0)))
    x, mu = rng.standard_normal((3, 50, 37)).astype(np.float32), rng.uniform(0, 1, (6, 37)).astype(np.float32)
    dy6 = rng.standard_normal((3, 50, 6, 37)).astype(np.float32)
    assert_same_for_thread_counts(cb, lambda: (cb.token_shift_forward(x, mu), *cb.token_shift_backward(dy6, x, mu, None)[:2]))


@pytest.mark.parametrize("use_prefix", [False, True])
def test_token_shift_c_matches_numpy(npb, cb, rng, use_prefix):
    """One multiply-add per output and a sum of M (dx) or B·T (dmu) products: float32 rounding, 1e-6."""
    x, mu = rng.standard_normal((3, 21, 37)).astype(np.float32), rng.uniform(0, 1, (6, 37)).astype(np.float32)
    prefix = rng.standard_normal((3, 1, 37)).astype(np.float32) if use_prefix else None
    dy = rng.standard_normal((3, 21, 6, 37)).astype(np.float32)
    assert rel_err(cb.token_shift_forward(x, mu, prefix), npb.token_shift_forward(*map(_f64, (x, mu, prefix)))) < 1e-6
    got, want = cb.token_shift_backward(dy, x, mu, prefix), npb.token_shift_backward(*map(_f64, (dy, x, mu, prefix)))
    for name, g, ref in zip(("dx", "dmu", "dprefix"), got, want):
        assert (g is None) == (ref is None) and (g is None or rel_err(g, ref) < 1e-6), name


def test_bad_input(npb, cb, rng):
    ins, h0, dy = _inputs(rng, 1, 5, 2, 3, 4, np.float32)
    r, w, k, v, a, b = ins
    x = np.ones((1, 5, 3), np.float32)
    for be in (npb, cb):
        with pytest.raises(ValueError, match=r"^wkv7_forward: .*w"):
            be.wkv7_forward(r, w[:, :, :1], k, v, a, b)
        with pytest.raises(ValueError, match=r"^wkv7_forward: .*v"):
            be.wkv7_forward(r, w, k, v[:, :4], a, b)
        with pytest.raises(ValueError, match=r"^wkv7_backward: .*h0"):
            be.wkv7_backward(dy, r, w, k, v, a, b, h0[:, :, :2])
        with pytest.raises(ValueError, match=r"^token_shift_forward: .*mu"):
            be.token_shift_forward(x, np.ones((2, 4), np.float32))
        with pytest.raises(ValueError, match=r"^token_shift_backward: .*prefix"):
            be.token_shift_backward(np.ones((1, 5, 2, 3), np.float32), x, np.ones((2, 3), np.float32),
                                    np.ones((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^wkv7_forward: r must have dtype float32"):
        cb.wkv7_forward(r.astype(np.float64), w, k, v, a, b)
    with pytest.raises(ValueError, match=r"^wkv7_backward: dy must have shape"):
        cb.wkv7_backward(dy[:, :2], r, w, k, v, a, b)
