"""Decayed linear attention (Mamba-2 / RetNet / GLA): the three forms, gradients, state passing, C = NumPy."""
import functools

import numpy as np
import pytest

from helpers import assert_same_for_thread_counts, check_grads, rel_err
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
def test_forms_agree_numpy(npb, rng, case, chunk):
    """recurrent = parallel = chunk (chunk lengths that do not divide T) in float64; the forms differ
    only in the order of their sums, so they agree to rounding: 1e-13 leaves 100x margin on the outputs,
    1e-12 on the gradients (dg of the chunked form is a sum of terms q ⊙ dq - k ⊙ dk that partly cancel)."""
    (q, k, v, g), h0, _ = _inputs(rng, *case)
    ro, rh = nla.recurrent_forward(q, k, v, g, 0.7, h0)
    for mode in ("recurrent", "parallel", "chunk"):
        o, h = npb.linear_attention_forward(q, k, v, g, 0.7, h0, chunk, mode)
        assert rel_err(o, ro) < 1e-13 and rel_err(h, rh) < 1e-13, mode
    rec = nla.recurrent_backward(v * 0.5, q, k, v, g, 0.7, h0, h0)
    got = npb.linear_attention_backward(v * 0.5, q, k, v, g, 0.7, h0, h0, chunk)
    for name, a, b in zip(GRAD_NAMES, got, rec):
        assert a.shape == b.shape and rel_err(a, b) < 1e-12, name


def test_recurrence_scalar_loop(npb, rng):
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
    got_o, got_h = npb.linear_attention_forward(q, k, v, g, 0.5, h0, 4)
    assert rel_err(got_o, o) < 1e-14 and rel_err(got_h, S) < 1e-14


@pytest.mark.parametrize("case", CASES[:2])
@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("use_dh_last", [False, True])
def test_gradcheck(npb, rng, case, use_h0, use_dh_last):
    """float64 central differences of every input, g and h0 included, through two chunks of 5 and one of 3."""
    (q, k, v, g), h0, wo = _inputs(rng, *case)
    h0 = h0 if use_h0 else None
    wh = rng.standard_normal((case[0], case[3], case[4], case[5])) if use_dh_last else None

    def loss():
        o, h_last = npb.linear_attention_forward(q, k, v, g, 0.8, h0, 5)
        return float((o * wo).sum() + ((h_last * wh).sum() if use_dh_last else 0.0))

    grads = npb.linear_attention_backward(wo, q, k, v, g, 0.8, h0, wh, 5)
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
def test_split_numpy(npb, rng, case):
    (q, k, v, g), h0, do = _inputs(rng, *case)
    # float64: the split only moves chunk boundaries, so the sums differ in order alone
    _check_split(npb.linear_attention_forward, npb.linear_attention_backward, (q, k, v, g), h0, do, rng.standard_normal(h0.shape), 4, 1e-13)
    _check_split(npb.linear_attention_forward, npb.linear_attention_backward, (q, k, v, g), None, do, None, 4, 1e-13)


def test_strong_decay_numpy(npb, rng):
    """g = -50 per step and g near 0 mixed: every form stays finite in float32 and matches the float64
    recurrence (float32 rounding of O(chunk) terms per output: 1e-5)."""
    (q, k, v, g), h0, _ = _inputs(rng, 1, 40, 1, 2, 4, 3, 4, np.float32)
    g[:, 5:20] = -50.0
    g[:, 20:] = -1e-4
    ro, rh = nla.recurrent_forward(*(a.astype(np.float64) for a in (q, k, v, g)), 1.0, h0.astype(np.float64))
    for mode in ("recurrent", "parallel", "chunk"):
        o, h = npb.linear_attention_forward(q, k, v, g, 1.0, h0, 16, mode)
        assert np.isfinite(o).all() and np.isfinite(h).all()
        assert rel_err(o, ro) < 1e-5 and rel_err(h, rh) < 1e-5, mode


def test_numpy_rejects_bad_input(npb, rng):
    (q, k, v, g), h0, do = _inputs(rng, 1, 5, 1, 2, 3, 4, 1)
    with pytest.raises(ValueError, match="^linear_attention_forward: chunk must be an int >= 1"):
        npb.linear_attention_forward(q, k, v, g, chunk=0)
    with pytest.raises(ValueError, match="^linear_attention_forward: mode must be one of"):
        npb.linear_attention_forward(q, k, v, g, mode="dual")
    with pytest.raises(ValueError, match="^linear_attention_forward: g must hold finite log decays <= 0"):
        npb.linear_attention_forward(q, k, v, -g)
    with pytest.raises(ValueError, match="^linear_attention_backward: need q, k"):
        npb.linear_attention_backward(do, q, k, v[:, :, :1].repeat(3, 2), g)


# ---- the C kernel ----------------------------------------------------------------------------------

def _f64(a):
    return None if a is None else a.astype(np.float64)


# Against the float64 oracle on the same float32 inputs: each output is a sum of O(L + K) float32 products
# (L terms inside a chunk, K or V in each product with the state), whose decay factors are products of at
# most L exponentials (~2 ulp each, a half-ulp per product); dg adds a reverse sum over the chunk. Measured
# up to 8e-7 on every ISA (every test below); 5e-6 leaves 6x margin and is far below any wrong or missing
# term (O(1)).
C_TOL = 5e-6

# (B, T, Hq, H, K, V, Kg, chunk): odd sizes, partial vectors, a last chunk shorter than the others, GLA
# sub-blocks of 16 with a partial last one, groups (Hq < H), one chunk (parallel), chunks of one position.
C_CASES = [(2, 37, 1, 2, 5, 7, 1, 16), (2, 37, 2, 4, 5, 7, 5, 16), (1, 70, 1, 1, 19, 33, 19, 64),
           (1, 70, 1, 3, 19, 33, 1, 64), (2, 50, 1, 3, 4, 4, 4, 1), (1, 45, 1, 1, 16, 16, 16, 45),
           (3, 21, 3, 3, 17, 9, 17, 7)]


@pytest.mark.parametrize("case", C_CASES)
@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("use_dh_last", [False, True])
def test_c_matches_numpy(cb, rng, case, use_h0, use_dh_last):
    *shape, chunk = case
    (q, k, v, g), h0, do = _inputs(rng, *shape, np.float32)
    h0 = h0 if use_h0 else None
    dh_last = rng.standard_normal((shape[0], shape[3], shape[4], shape[5])).astype(np.float32) if use_dh_last else None
    ins = (q, k, v, g)
    o, h_last = cb.linear_attention_forward(*ins, 0.6, h0, chunk)
    ro, rh = nla.recurrent_forward(*map(_f64, ins), 0.6, _f64(h0))
    assert o.dtype == np.float32 and rel_err(o, ro) < C_TOL and rel_err(h_last, rh) < C_TOL
    got = cb.linear_attention_backward(do, *ins, 0.6, h0, dh_last, chunk)
    want = nla.recurrent_backward(_f64(do), *map(_f64, ins), 0.6, _f64(h0), _f64(dh_last))
    for name, a, b in zip(GRAD_NAMES, got, want):
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == np.float32 and a.shape == b.shape and rel_err(a, b) < C_TOL, name


@pytest.mark.parametrize("Kg", [1, 6])
def test_c_forms_agree(cb, rng, Kg):
    """The C kernel's three forms (chunk 16, parallel = one chunk, recurrent = chunks of one) and chunk
    lengths that do not divide T agree with each other within float32 rounding (C_TOL, as above)."""
    (q, k, v, g), h0, do = _inputs(rng, 2, 41, 1, 2, 6, 5, Kg, np.float32)
    ref = cb.linear_attention_forward(q, k, v, g, 1.0, h0, 16)
    for mode, chunk in (("parallel", 16), ("recurrent", 16), ("chunk", 1), ("chunk", 5), ("chunk", 41),
                        ("chunk", 1000)):
        out = cb.linear_attention_forward(q, k, v, g, 1.0, h0, chunk, mode)
        assert all(rel_err(a, b) < C_TOL for a, b in zip(out, ref)), (mode, chunk)
    ref = cb.linear_attention_backward(do, q, k, v, g, 1.0, h0, h0, 16)
    for chunk in (1, 5, 41, 1000):
        out = cb.linear_attention_backward(do, q, k, v, g, 1.0, h0, h0, chunk)
        assert all(rel_err(a, b) < C_TOL for a, b in zip(out, ref)), chunk


@pytest.mark.parametrize("Kg", [1, 5])
@pytest.mark.parametrize("use_h0", [False, True])
def test_split_c(cb, rng, Kg, use_h0):
    (q, k, v, g), h0, do = _inputs(rng, 2, 29, 1, 2, 5, 6, Kg, np.float32)
    dh_last = rng.standard_normal(h0.shape).astype(np.float32)
    # float32: the split moves chunk boundaries (7 + 22 against 29), which regroups the sums: C_TOL
    _check_split(cb.linear_attention_forward, cb.linear_attention_backward, (q, k, v, g), h0 if use_h0 else None, do, dh_last, 8, C_TOL)


@pytest.mark.parametrize("Kg", [1, 8])
def test_c_strong_decay(cb, rng, Kg):
    """g = -50 per step (e^-50 ≈ 2e-22, below float32 resolution after one step) mixed with steps of almost
    no decay, across and inside chunks and GLA sub-blocks: finite and within C_TOL of the float64
    recurrence, forward and backward. A scheme forming e^{G_i}·e^{-G_j} would overflow here (|G| > 88)."""
    (q, k, v, g), h0, do = _inputs(rng, 1, 100, 1, 2, 8, 5, Kg, np.float32)
    g[:, 10:40] = -50.0
    g[:, 40:70] = -1e-4
    g[:, 75:77] = -50.0
    ins = (q, k, v, g)
    o, h_last = cb.linear_attention_forward(*ins, 1.0, h0, 64)
    ro, rh = nla.recurrent_forward(*map(_f64, ins), 1.0, _f64(h0))
    assert np.isfinite(o).all() and rel_err(o, ro) < C_TOL and rel_err(h_last, rh) < C_TOL
    got = cb.linear_attention_backward(do, *ins, 1.0, h0, h0, 64)
    want = nla.recurrent_backward(_f64(do), *map(_f64, ins), 1.0, _f64(h0), _f64(h0))
    for name, a, b in zip(GRAD_NAMES, got, want):
        assert np.isfinite(a).all() and rel_err(a, b) < C_TOL, name


def test_c_gla_gates(cb, rng):
    """GLA's gates g = logsigmoid(x)/16 (fla's gate_logit_normalizer) with x from near 0 to -1600 (g ≈ -100)."""
    (q, k, v, _), h0, do = _inputs(rng, 1, 90, 2, 2, 16, 8, 16, np.float32)
    x = rng.standard_normal((1, 90, 2, 16)) * np.array([1.0, 1e3])[None, None, :, None]
    g = (-np.logaddexp(0.0, -x) / 16).astype(np.float32)
    ins = (q, k, v, g)
    o, h_last = cb.linear_attention_forward(*ins, 0.25, h0, 64)
    ro, rh = nla.recurrent_forward(*map(_f64, ins), 0.25, _f64(h0))
    assert rel_err(o, ro) < C_TOL and rel_err(h_last, rh) < C_TOL
    got = cb.linear_attention_backward(do, *ins, 0.25, h0, None, 64)
    want = nla.recurrent_backward(_f64(do), *map(_f64, ins), 0.25, _f64(h0), None)
    for name, a, b in zip(GRAD_NAMES, got, want):
        assert rel_err(a, b) < C_TOL, name


@functools.lru_cache(maxsize=None)
def _long_case(T, H, K, Kg, decay, recurrent):
    """Inputs, float64 NumPy outputs and gradients (the recurrence, or the chunked form with chunks of 64 when
    T (K, V) states would not fit) of a long case, computed once for every ISA build."""
    (q, k, v, g), h0, do = _inputs(np.random.default_rng(1), 1, T, 1, H, K, K, Kg, np.float32, decay)
    ins = tuple(_f64(a) for a in (do, q, k, v, g))
    if recurrent:
        return ((q, k, v, g), h0, do, nla.recurrent_forward(*ins[1:], 0.125, _f64(h0)),
                nla.recurrent_backward(*ins, 0.125, _f64(h0), _f64(h0)))
    return ((q, k, v, g), h0, do, nla.chunk_forward(*ins[1:], 0.125, _f64(h0), 64),
            nla.chunk_backward(*ins, 0.125, _f64(h0), _f64(h0), 64))


@pytest.mark.parametrize("Kg", [1, 64])
def test_c_checkpointed_backward(cb, Kg):
    """More chunk states than the backward keeps (2 heads x 4501 chunks of 2 positions, K = V = 64: 37M
    floats, past the kernel's 2^25): it restarts segments of ~√4501 chunks from checkpoints, the last
    segment partial. Reference: the NumPy chunked backward in float64 (its states fit)."""
    ins, h0, do, _, want = _long_case(9001, 2, 64, Kg, (0.02, 0.5), recurrent=False)
    got = cb.linear_attention_backward(do, *ins, 0.125, h0, h0, 2)
    for name, a, b in zip(GRAD_NAMES, got, want):
        assert rel_err(a, b) < C_TOL, name


@pytest.mark.parametrize("Kg", [1, 8])
def test_c_long_sequence(cb, Kg):
    """T = 32,768, one small head, against the float64 recurrence. Decays down to -1e-3 keep ~1000 steps of
    memory, so each output sums ~1000 terms; errors do not grow with T (the state contracts)."""
    ins, h0, do, (ro, rh), want = _long_case(32768, 1, 8, Kg, (1e-3, 0.1), recurrent=True)
    o, h_last = cb.linear_attention_forward(*ins, 0.125, h0, 64)
    assert rel_err(o, ro) < C_TOL and rel_err(h_last, rh) < C_TOL
    got = cb.linear_attention_backward(do, *ins, 0.125, h0, h0, 64)
    for name, a, b in zip(GRAD_NAMES, got, want):
        assert rel_err(a, b) < C_TOL, name


@pytest.mark.parametrize("Kg", [1, 5])
def test_c_decode_step_in_place(cb, rng, Kg):
    """The mixers' C decode steps call the kernel with T = 1 and h_last = h0 (one buffer): T steps so
    equal the whole forward."""
    (q, k, v, g), h0, _ = _inputs(rng, 2, 9, 1, 2, 5, 3, Kg, np.float32)
    o, h_last = cb.linear_attention_forward(q, k, v, g, 0.5, h0, 64)
    state, f = h0.copy(), cb.f32
    for t in range(q.shape[1]):
        step = [np.ascontiguousarray(a[:, t:t + 1]) for a in (q, k, v, g)]
        o_t = np.empty((2, 1, 2, 3), np.float32)
        assert cb.lib.hr_linear_attention_forward(*map(f, step), f(state), f(o_t), f(state), 2, 1, 1, 2, 5, 3, Kg,
                                                  0.5, 64) == 0
        assert rel_err(o_t[:, 0], o[:, t]) < C_TOL
    assert rel_err(state, h_last) < C_TOL


def test_c_deterministic(cb, rng):
    (q, k, v, g), h0, do = _inputs(rng, 3, 37, 2, 4, 5, 7, 5, np.float32)
    run = lambda: (cb.linear_attention_forward(q, k, v, g, 0.5, h0, 16)
                   + cb.linear_attention_backward(do, q, k, v, g, 0.5, h0, h0, 16))
    # a task owns one (batch, head); the heads of a group add their dq, dk in head order
    assert_same_for_thread_counts(cb, run)


def test_c_rejects_bad_input(cb, rng):
    (q, k, v, g), h0, do = _inputs(rng, 2, 5, 1, 2, 3, 4, 1, np.float32)
    fwd, bwd = "linear_attention_forward", "linear_attention_backward"
    F, Bk = cb.linear_attention_forward, cb.linear_attention_backward
    wrong = {"k": (2, 5, 1, 4), "v": (2, 4, 2, 4), "g": (2, 5, 2, 2)}
    for i, name in enumerate(("k", "v", "g")):
        bad = [q, k, v, g]
        bad[i + 1] = np.zeros(wrong[name], np.float32)
        with pytest.raises(ValueError, match=f"^{fwd}: {name} must have shape"):
            F(*bad)
        with pytest.raises(ValueError, match=f"^{bwd}: {name} must have shape"):
            Bk(do, *bad)
    for i, name in enumerate(("q", "k", "v", "g")):
        bad = [q, k, v, g]
        bad[i] = bad[i].astype(np.float64)
        with pytest.raises(ValueError, match=f"^{fwd}: {name} must have dtype float32"):
            F(*bad)
        bad[i] = np.repeat([q, k, v, g][i], 2, axis=-1)[..., ::2]
        with pytest.raises(ValueError, match=f"^{bwd}: {name} must be C-contiguous"):
            Bk(do, *bad)
    with pytest.raises(ValueError, match=f"^{fwd}: the value heads H = 3"):
        F(np.zeros((2, 5, 2, 3), np.float32), np.zeros((2, 5, 2, 3), np.float32), np.zeros((2, 5, 3, 4), np.float32),
          np.zeros((2, 5, 3, 1), np.float32))
    with pytest.raises(ValueError, match=f"^{fwd}: g must hold finite log decays <= 0"):
        F(q, k, v, -g)
    with pytest.raises(ValueError, match=f"^{fwd}: g must hold finite log decays <= 0"):
        F(q, k, v, np.full_like(g, -np.inf))
    with pytest.raises(ValueError, match=f"^{fwd}: chunk must be an int >= 1"):
        F(q, k, v, g, chunk=0)
    with pytest.raises(ValueError, match=f"^{bwd}: chunk must be an int >= 1"):
        Bk(do, q, k, v, g, chunk=True)
    with pytest.raises(ValueError, match=f"^{fwd}: mode must be one of"):
        F(q, k, v, g, mode="dual")
    with pytest.raises(ValueError, match=f"^{fwd}: scale must be a finite number"):
        F(q, k, v, g, scale=None)
    with pytest.raises(ValueError, match=f"^{fwd}: h0 must have shape"):
        F(q, k, v, g, 1.0, h0[:, :1].copy())
    with pytest.raises(ValueError, match=f"^{bwd}: dh_last must have shape"):
        Bk(do, q, k, v, g, 1.0, h0, h0[:1].copy())
    with pytest.raises(ValueError, match=f"^{bwd}: do must have shape"):
        Bk(do[:, :4].copy(), q, k, v, g)
    with pytest.raises(ValueError, match=f"^{fwd}: key size K"):
        F(q[..., :0].copy(), k[..., :0].copy(), v, g)
