import math

import numpy as np
import pytest

from helpers import check_grads, rel_err


def make_qkv(rng, B, T, H, Hk, P, dtype=np.float32):
    q = rng.standard_normal((B, T, H, P))
    k = rng.standard_normal((B, T, Hk, P))
    v = rng.standard_normal((B, T, Hk, P))
    return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def brute_row(q, k, v, b, h, i, window, do_row=None, q_offset=0, sinks=0):
    """Query row i of head h straight from the definition, in float64: a softmax over the
    visible keys written out (the window's, and the sinks 0..sinks-1). Returns o_i, lse_i and,
    given do_row = dO_i, this row's gradient terms (dq_i, dk and dv over the visible keys, their
    indices)."""
    P, G = q.shape[3], q.shape[2] // k.shape[2]
    pos = i + q_offset
    lo, hi = (0 if window is None else max(0, pos - window)), min(pos, k.shape[1] - 1)
    keys = [j for j in range(hi + 1) if j >= lo or j < sinks]
    if not keys:
        return np.zeros(P), -math.inf
    qi, kj, vj = (x.astype(np.float64) for x in (q[b, i, h], k[b, keys, h // G], v[b, keys, h // G]))
    s = np.array([qi @ kj[j] for j in range(len(kj))]) / math.sqrt(P)
    m = s.max()
    z = sum(math.exp(x - m) for x in s)
    p = np.array([math.exp(x - m) / z for x in s])
    o = sum(p[j] * vj[j] for j in range(len(vj)))
    if do_row is None:
        return o, m + math.log(z)
    dp = vj @ do_row
    ds = p * (dp - p @ dp)
    return o, m + math.log(z), (ds @ kj / math.sqrt(P), np.outer(ds, qi) / math.sqrt(P), np.outer(p, do_row), keys)


# (B, T, H, Hk, P, window): full causal, sliding window, grouped-query, multi-query
GRAD_CASES = [(2, 5, 2, 2, 3, None), (1, 7, 2, 2, 3, 3), (1, 6, 4, 2, 3, None), (1, 6, 3, 1, 2, 2)]


@pytest.mark.parametrize("B,T,H,Hk,P,window", GRAD_CASES, ids=["causal", "window3", "gqa", "mqa"])
def test_attention_gradcheck(npb, rng, B, T, H, Hk, P, window):
    q, k, v = make_qkv(rng, B, T, H, Hk, P, np.float64)
    w = rng.standard_normal(q.shape)
    loss = lambda: float((npb.attention_forward(q, k, v, window)[0] * w).sum())
    o, lse = npb.attention_forward(q, k, v, window)
    dq, dk, dv = npb.attention_backward(w, q, k, v, o, lse, window)
    check_grads(loss, {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})


@pytest.mark.parametrize("H,Hk,window", [(2, 2, None), (4, 2, 4), (3, 1, 0)])
def test_attention_numpy_matches_definition(npb, rng, H, Hk, window):
    q, k, v = make_qkv(rng, 2, 9, H, Hk, 5, np.float64)
    o, lse = npb.attention_forward(q, k, v, window)
    for b in range(2):
        for h in range(H):
            for i in range(9):
                o_i, lse_i = brute_row(q, k, v, b, h, i, window)
                np.testing.assert_allclose(o[b, i, h], o_i, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(lse[b, h, i], lse_i, rtol=1e-12)


# Odd sizes: one partial tile (T=37), three tiles with a window crossing tile edges (T=130),
# GQA, and an MQA case whose head dim spans three 16-float column chunks.
PARITY_CASES = [(2, 37, 3, 3, 13, None), (1, 130, 2, 2, 13, 17), (2, 67, 4, 2, 13, None), (1, 200, 3, 1, 37, 70)]


@pytest.mark.parametrize("B,T,H,Hk,P,window", PARITY_CASES, ids=["T37", "T130-W17", "gqa", "mqa-P37-W70"])
def test_attention_c_matches_numpy(npb, cb, rng, B, T, H, Hk, P, window):
    q, k, v = make_qkv(rng, B, T, H, Hk, P)
    do = rng.standard_normal(q.shape).astype(np.float32)
    q64, k64, v64, do64 = (x.astype(np.float64) for x in (q, k, v, do))
    o_ref, lse_ref = npb.attention_forward(q64, k64, v64, window)
    grads_ref = npb.attention_backward(do64, q64, k64, v64, o_ref, lse_ref, window)
    o, lse = cb.attention_forward(q, k, v, window)
    grads = cb.attention_backward(do, q, k, v, o, lse, window)
    # float32 (eps 6e-8) dot products over P and sums over <= 200 keys, exp within 2 ulp:
    # measured <= 3e-7 norm-wise against float64, so 1e-6 leaves 3x margin.
    assert rel_err(o, o_ref) < 1e-6
    assert rel_err(lse, lse_ref) < 1e-6
    for name, got, want in zip(("dq", "dk", "dv"), grads, grads_ref):
        assert rel_err(got, want) < 1e-6, name


def test_attention_window_at_least_T_is_full_causal(npb, cb, rng):
    q, k, v = make_qkv(rng, 2, 70, 4, 2, 13)
    do = rng.standard_normal(q.shape).astype(np.float32)
    for be in (npb, cb):
        o, lse = be.attention_forward(q, k, v)
        grads = be.attention_backward(do, q, k, v, o, lse)
        for window in (70, 71, 2**40):
            o_w, lse_w = be.attention_forward(q, k, v, window)
            grads_w = be.attention_backward(do, q, k, v, o, lse, window)
            for a, b in zip((o, lse) + grads, (o_w, lse_w) + grads_w):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("T,window", [(1, None), (1, 5), (40, 0)], ids=["T1", "T1-W5", "W0"])
def test_attention_single_visible_key(cb, rng, T, window):
    """With one visible key p = 1: o = v, lse = q·k/√P, dv = dO summed over the group, dq = dk = 0."""
    B, H, Hk, P = 2, 4, 2, 13
    q, k, v = make_qkv(rng, B, T, H, Hk, P)
    do = rng.standard_normal(q.shape).astype(np.float32)
    o, lse = cb.attention_forward(q, k, v, window)
    np.testing.assert_array_equal(o, np.repeat(v, H // Hk, axis=2))
    lse_want = np.einsum("bthp,bthp->bht", q, np.repeat(k, H // Hk, axis=2)) / math.sqrt(P)
    np.testing.assert_allclose(lse, lse_want, rtol=1e-5, atol=1e-6)
    dq, dk, dv = cb.attention_backward(do, q, k, v, o, lse, window)
    np.testing.assert_allclose(dv, do.reshape(B, T, Hk, H // Hk, P).sum(axis=3), rtol=1e-6, atol=1e-6)
    # dS = p (dP − Δ) with dP = Δ = dO·v in exact arithmetic; float32 leaves ~1e-6 of it.
    np.testing.assert_allclose(dq, 0, atol=1e-5)
    np.testing.assert_allclose(dk, 0, atol=1e-5)


@pytest.mark.parametrize("window", [None, 100])
def test_attention_long_sequence(npb, cb, rng, window):
    """T=3000 in C, checked where a check stays cheap: a prefix of rows against the NumPy oracle
    (causality makes it the same problem), late rows and their gradients against brute_row."""
    B, T, H, Hk, P = 1, 3000, 2, 1, 16
    q, k, v = make_qkv(rng, B, T, H, Hk, P)
    o, lse = cb.attention_forward(q, k, v, window)
    n = 256
    o_ref, lse_ref = npb.attention_forward(*(x[:, :n].astype(np.float64) for x in (q, k, v)), window)
    # as in the parity test (the same rows and key counts)
    assert rel_err(o[:, :n], o_ref) < 1e-6
    assert rel_err(lse[:, :, :n], lse_ref) < 1e-6
    # Single rows summing up to 3000 keys: measured <= 2.1e-6 (dq), so 1e-5 for the row checks.
    rows = [(0, 1500), (1, 2998), (0, 2999), (1, 2999)]  # (head, query)
    do = np.zeros(q.shape, np.float32)
    for h, i in rows:
        do[0, i, h] = rng.standard_normal(P)
    dq, dk, dv = cb.attention_backward(do, q, k, v, o, lse, window)
    dk_want, dv_want = np.zeros(k.shape), np.zeros(v.shape)
    for h, i in rows:
        o_i, lse_i, (dq_i, dk_i, dv_i, keys) = brute_row(q, k, v, 0, h, i, window, do[0, i, h].astype(np.float64))
        assert rel_err(o[0, i, h], o_i) < 1e-5
        assert abs(lse[0, h, i] - lse_i) < 1e-5 * abs(lse_i)
        assert rel_err(dq[0, i, h], dq_i) < 1e-5
        dk_want[0, keys, 0] += dk_i
        dv_want[0, keys, 0] += dv_i
    assert rel_err(dk, dk_want) < 1e-5
    assert rel_err(dv, dv_want) < 1e-5
    untouched = np.ones(q.shape, bool)
    for h, i in rows:
        untouched[0, i, h] = False
    assert not dq[untouched].any()  # rows with dO = 0 get dq = 0 exactly


def test_attention_rejects_bad_input(cb):
    f32 = lambda *s: np.zeros(s, np.float32)
    q, k = f32(2, 5, 4, 3), f32(2, 5, 2, 3)
    fwd, bwd = "attention_forward", "attention_backward"
    bad_forward = [
        ((q.astype(np.float64), k, k), "dtype float32"),
        ((np.zeros((2, 5, 4, 6), np.float32)[..., ::2], k, k), "C-contiguous"),
        ((f32(2, 5, 12), k, k), "q must be 4-D"),
        ((q, f32(2, 5, 2, 4), k), r"k must have shape \(2, \*, \*, 3\)"),
        ((q, f32(3, 5, 2, 3), k), r"k must have shape"),
        ((q, f32(2, 6, 2, 3), k), r"v must have shape \(2, 6, 2, 3\)"),
        ((q, k, f32(2, 5, 1, 3)), r"v must have shape \(2, 5, 2, 3\)"),
        ((q, f32(2, 5, 3, 3), f32(2, 5, 3, 3)), "multiple of kv heads"),
        ((f32(2, 0, 4, 3), f32(2, 0, 2, 3), f32(2, 0, 2, 3)), "query length Tq must be positive"),
        ((q, f32(2, 0, 2, 3), f32(2, 0, 2, 3)), "key length Tk must be positive"),
    ]
    for args, msg in bad_forward:
        with pytest.raises(ValueError, match=f"{fwd}: .*{msg}"):
            cb.attention_forward(*args)
    for window in (-1, 2.0, True, "3"):
        with pytest.raises(ValueError, match=f"{fwd}: window must be None or an int >= 0"):
            cb.attention_forward(q, k, k, window)
    for q_offset in (-1, 2.0, True, None):
        with pytest.raises(ValueError, match=f"{fwd}: q_offset must be an int >= 0"):
            cb.attention_forward(q, k, k, None, q_offset)
    o, lse = cb.attention_forward(q, k, k)
    bad_backward = [
        ((q[:1], q, k, k, o, lse), r"do must have shape \(2, 5, 4, 3\)"),
        ((q, q, k, k, o[:, :4], lse), "o must have shape"),
        ((q, q, k, k, o, lse[:, :2]), r"lse must have shape \(2, 4, 5\)"),
        ((q, q, k, k, o, lse.astype(np.float64)), "lse must have dtype float32"),
        ((q, q, k, f32(2, 5, 2, 4), o, lse), "v must have shape"),
    ]
    for args, msg in bad_backward:
        with pytest.raises(ValueError, match=f"{bwd}: {msg}"):
            cb.attention_backward(*args)
    with pytest.raises(ValueError, match=f"{bwd}: window must be"):
        cb.attention_backward(q, q, k, k, o, lse, window=-3)
    with pytest.raises(ValueError, match=f"{bwd}: q_offset must be"):
        cb.attention_backward(q, q, k, k, o, lse, q_offset=-2)


def test_attention_deterministic(cb, rng):
    q, k, v = make_qkv(rng, 2, 150, 4, 2, 13)
    do = rng.standard_normal(q.shape).astype(np.float32)
    runs = []
    threads = cb.threads
    try:
        for n in (threads, threads, 1):  # tasks own their outputs: even the thread count cannot matter
            cb.set_threads(n)
            o, lse = cb.attention_forward(q, k, v, 40)
            runs.append((o, lse) + cb.attention_backward(do, q, k, v, o, lse, 40))
    finally:
        cb.set_threads(threads)
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            np.testing.assert_array_equal(a, b)


@pytest.mark.torch
def test_attention_matches_torch(cb, rng):
    torch = pytest.importorskip("torch")
    q, k, v = make_qkv(rng, 2, 45, 4, 2, 13)
    do = rng.standard_normal(q.shape).astype(np.float32)
    o, lse = cb.attention_forward(q, k, v)
    dq, dk, dv = cb.attention_backward(do, q, k, v, o, lse)
    # torch wants (B,H,T,P) and equal head counts: repeat the kv heads, autograd sums them back
    tq, tk, tv = (torch.tensor(x, dtype=torch.float64).transpose(1, 2).requires_grad_() for x in (q, k, v))
    to = torch.nn.functional.scaled_dot_product_attention(tq, tk.repeat_interleave(2, 1), tv.repeat_interleave(2, 1),
                                                          is_causal=True)
    to.backward(torch.tensor(do, dtype=torch.float64).transpose(1, 2))
    as_np = lambda t: t.detach().transpose(1, 2).numpy()
    # float32 kernel against a float64 torch run: the parity tolerance
    for got, want in ((o, to), (dq, tq.grad), (dk, tk.grad), (dv, tv.grad)):
        assert rel_err(got, as_np(want)) < 1e-6


# ---- query blocks at an offset from key blocks (the MPI backend's ring) -------------------

# (B, Tq, Tk, H, Hk, P, window, q_offset): a later query block against an earlier key block,
# windowed, grouped-query, and keys running past the last query.
OFFSET_GRAD_CASES = [(1, 4, 6, 2, 1, 3, None, 6), (2, 5, 7, 2, 2, 3, 3, 4), (1, 6, 5, 4, 2, 2, None, 0)]


@pytest.mark.parametrize("B,Tq,Tk,H,Hk,P,window,q_offset", OFFSET_GRAD_CASES, ids=["later", "window", "Tk<Tq"])
def test_attention_offset_gradcheck(npb, rng, B, Tq, Tk, H, Hk, P, window, q_offset):
    q = rng.standard_normal((B, Tq, H, P))
    k, v = rng.standard_normal((B, Tk, Hk, P)), rng.standard_normal((B, Tk, Hk, P))
    w = rng.standard_normal(q.shape)
    loss = lambda: float((npb.attention_forward(q, k, v, window, q_offset)[0] * w).sum())
    o, lse = npb.attention_forward(q, k, v, window, q_offset)
    dq, dk, dv = npb.attention_backward(w, q, k, v, o, lse, window, q_offset)
    check_grads(loss, {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})


@pytest.mark.parametrize("Tq,Tk,window,q_offset", [(7, 9, None, 5), (9, 6, 2, 4), (5, 4, 1, 6)],
                         ids=["causal", "window-empty-rows", "all-empty"])
def test_attention_offset_matches_definition(npb, cb, rng, Tq, Tk, window, q_offset):
    """Every row against brute_row, including rows that see no key (o = 0, lse = -inf)."""
    q = rng.standard_normal((2, Tq, 4, 5))
    k, v = rng.standard_normal((2, Tk, 2, 5)), rng.standard_normal((2, Tk, 2, 5))
    o, lse = npb.attention_forward(q, k, v, window, q_offset)
    o32, lse32 = cb.attention_forward(*(x.astype(np.float32) for x in (q, k, v)), window, q_offset)
    for b in range(2):
        for h in range(4):
            for i in range(Tq):
                o_i, lse_i = brute_row(q, k, v, b, h, i, window, q_offset=q_offset)
                np.testing.assert_allclose(o[b, i, h], o_i, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(lse[b, h, i], lse_i, rtol=1e-12)
                # float32 against float64 over <= 9 keys: the parity tolerance, per row
                np.testing.assert_allclose(o32[b, i, h], o_i, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(lse32[b, h, i], lse_i, rtol=1e-5, atol=1e-6)


# Odd sizes, tiles crossing the offset; the windowed case has query rows past every key.
OFFSET_PARITY_CASES = [(2, 37, 53, 3, 3, 13, None, 16), (1, 90, 130, 2, 1, 13, 40, 100),
                       (1, 67, 130, 4, 2, 13, 70, 67), (1, 130, 67, 3, 1, 37, None, 0)]


@pytest.mark.parametrize("B,Tq,Tk,H,Hk,P,window,q_offset", OFFSET_PARITY_CASES,
                         ids=["T37-53", "W40-empty-rows", "gqa-W70", "Tk<Tq"])
def test_attention_offset_c_matches_numpy(npb, cb, rng, B, Tq, Tk, H, Hk, P, window, q_offset):
    q = rng.standard_normal((B, Tq, H, P)).astype(np.float32)
    k, v = (rng.standard_normal((B, Tk, Hk, P)).astype(np.float32) for _ in range(2))
    do = rng.standard_normal(q.shape).astype(np.float32)
    o_ref, lse_ref = npb.attention_forward(*(x.astype(np.float64) for x in (q, k, v)), window, q_offset)
    o, lse = cb.attention_forward(q, k, v, window, q_offset)
    # as in test_attention_c_matches_numpy; -inf rows compared exactly
    assert rel_err(o, o_ref) < 1e-6
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(lse_ref))
    finite = np.isfinite(lse_ref)
    assert rel_err(lse[finite], lse_ref[finite]) < 1e-6
    # the backward takes a finite lse (that of a whole key set): any finite value defines it
    lse_in = np.where(finite, lse, 0.5).astype(np.float32)
    grads_ref = npb.attention_backward(*(x.astype(np.float64) for x in (do, q, k, v, o, lse_in)), window, q_offset)
    grads = cb.attention_backward(do, q, k, v, o, lse_in, window, q_offset)
    for name, got, want in zip(("dq", "dk", "dv"), grads, grads_ref):
        assert rel_err(got, want) < 1e-6, name


def merge_blocks(parts):
    """Combine (o, lse) of one query block against several key blocks (the first with a finite lse):
    the online-softmax merge."""
    o, lse = parts[0]
    for o_b, lse_b in parts[1:]:
        new = np.logaddexp(lse, lse_b)
        w_old, w_b = (np.exp(x - new).transpose(0, 2, 1)[..., None] for x in (lse, lse_b))
        o, lse = o * w_old + o_b * w_b, new
    return o, lse


@pytest.mark.parametrize("window", [None, 9])
def test_attention_blocks_add_up(npb, cb, rng, window):
    """Attention over T split into unequal contiguous blocks: each query block merged over the key
    blocks up to it equals the whole, and per-block gradients taken with the whole o and lse
    add up to the whole's gradients."""
    B, T, H, Hk, P = 2, 71, 4, 2, 13
    edges = [0, 3, 30, 52, 71]
    q, k, v = make_qkv(rng, B, T, H, Hk, P)
    do = rng.standard_normal(q.shape).astype(np.float32)
    for be in (npb, cb):
        o_full, lse_full = be.attention_forward(q, k, v, window)
        dq_full, dk_full, dv_full = be.attention_backward(do, q, k, v, o_full, lse_full, window)
        dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
        blocks = list(zip(edges[:-1], edges[1:]))
        for qs, qe in blocks:
            parts = [be.attention_forward(q[:, qs:qe].copy(), k[:, ks:ke].copy(), v[:, ks:ke].copy(), window, qs - ks)
                     for ks, ke in reversed(blocks) if ks <= qs]
            o, lse = merge_blocks(parts)  # diagonal block first: its lse is finite
            # float32 merge of <= 4 partial softmaxes: a few ulp over the parity tolerance's sums
            assert rel_err(o, o_full[:, qs:qe]) < 1e-6
            assert rel_err(lse, lse_full[..., qs:qe]) < 1e-6
            for ks, ke in blocks:
                if ks <= qs:
                    g = be.attention_backward(do[:, qs:qe].copy(), q[:, qs:qe].copy(), k[:, ks:ke].copy(),
                                              v[:, ks:ke].copy(), o_full[:, qs:qe].copy(),
                                              lse_full[..., qs:qe].copy(), window, qs - ks)
                    dq[:, qs:qe] += g[0]
                    dk[:, ks:ke] += g[1]
                    dv[:, ks:ke] += g[2]
        # sums of <= 4 float32 block contributions against one tiled pass
        for got, want in ((dq, dq_full), (dk, dk_full), (dv, dv_full)):
            assert rel_err(got, want) < 1e-6


# ---- attention sinks: the block's first keys visible to every later query ----------------

# (B, Tq, Tk, H, Hk, P, window, q_offset, sinks): self-attention with sinks behind the window, GQA with the
# sinks reaching the window, a later query block whose window misses the sinks, and sinks past the block
SINK_GRAD_CASES = [(1, 9, 9, 2, 2, 3, 2, 0, 3), (2, 8, 8, 4, 2, 3, 3, 0, 4), (1, 4, 6, 2, 1, 3, 2, 6, 2),
                   (1, 5, 3, 2, 1, 2, 1, 0, 7)]


@pytest.mark.parametrize("B,Tq,Tk,H,Hk,P,window,q_offset,sinks", SINK_GRAD_CASES,
                         ids=["self", "gqa-reach", "later-block", "sinks>Tk"])
def test_attention_sinks_gradcheck(npb, rng, B, Tq, Tk, H, Hk, P, window, q_offset, sinks):
    q = rng.standard_normal((B, Tq, H, P))
    k, v = rng.standard_normal((B, Tk, Hk, P)), rng.standard_normal((B, Tk, Hk, P))
    w = rng.standard_normal(q.shape)
    loss = lambda: float((npb.attention_forward(q, k, v, window, q_offset, sinks)[0] * w).sum())
    o, lse = npb.attention_forward(q, k, v, window, q_offset, sinks)
    dq, dk, dv = npb.attention_backward(w, q, k, v, o, lse, window, q_offset, sinks)
    check_grads(loss, {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})


@pytest.mark.parametrize("Tq,Tk,window,q_offset,sinks", [(9, 9, 2, 0, 3), (9, 6, 1, 4, 2), (5, 4, 0, 6, 1)],
                         ids=["self", "offset", "sinks-only-rows"])
def test_attention_sinks_match_definition(npb, cb, rng, Tq, Tk, window, q_offset, sinks):
    """Every row against brute_row: the window's keys and the sinks, rows past the window seeing only sinks."""
    q = rng.standard_normal((2, Tq, 4, 5))
    k, v = rng.standard_normal((2, Tk, 2, 5)), rng.standard_normal((2, Tk, 2, 5))
    o, lse = npb.attention_forward(q, k, v, window, q_offset, sinks)
    o32, lse32 = cb.attention_forward(*(x.astype(np.float32) for x in (q, k, v)), window, q_offset, sinks)
    for b in range(2):
        for h in range(4):
            for i in range(Tq):
                o_i, lse_i = brute_row(q, k, v, b, h, i, window, q_offset=q_offset, sinks=sinks)
                np.testing.assert_allclose(o[b, i, h], o_i, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(lse[b, h, i], lse_i, rtol=1e-12)
                # as test_attention_offset_matches_definition
                np.testing.assert_allclose(o32[b, i, h], o_i, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(lse32[b, h, i], lse_i, rtol=1e-5, atol=1e-6)


# Tiles: sinks within one tile, sinks spanning two tiles (70) with the window far behind, rows past every
# key of a block seeing only its sinks, sinks up to the window (one span), and Tk < Tq.
SINK_PARITY_CASES = [(2, 130, 130, 4, 2, 13, 17, 0, 16), (1, 200, 200, 3, 1, 37, 40, 0, 70),
                     (1, 90, 130, 2, 1, 13, 40, 100, 5), (1, 150, 150, 2, 2, 16, 64, 0, 90),
                     (1, 130, 67, 3, 1, 13, 10, 0, 3)]


@pytest.mark.parametrize("B,Tq,Tk,H,Hk,P,window,q_offset,sinks", SINK_PARITY_CASES,
                         ids=["S16-W17", "S70-W40", "offset-S5", "S90-W64", "Tk<Tq"])
def test_attention_sinks_c_matches_numpy(npb, cb, rng, B, Tq, Tk, H, Hk, P, window, q_offset, sinks):
    q = rng.standard_normal((B, Tq, H, P)).astype(np.float32)
    k, v = (rng.standard_normal((B, Tk, Hk, P)).astype(np.float32) for _ in range(2))
    do = rng.standard_normal(q.shape).astype(np.float32)
    args = (window, q_offset, sinks)
    o_ref, lse_ref = npb.attention_forward(*(x.astype(np.float64) for x in (q, k, v)), *args)
    o, lse = cb.attention_forward(q, k, v, *args)
    # as test_attention_c_matches_numpy (every row sees a key: the sinks)
    assert rel_err(o, o_ref) < 1e-6
    assert rel_err(lse, lse_ref) < 1e-6
    grads_ref = npb.attention_backward(*(x.astype(np.float64) for x in (do, q, k, v, o, lse)), *args)
    grads = cb.attention_backward(do, q, k, v, o, lse, *args)
    for name, got, want in zip(("dq", "dk", "dv"), grads, grads_ref):
        assert rel_err(got, want) < 1e-6, name


def test_attention_sinks_over_a_gapped_key_block(npb, cb, rng):
    """A prefill from a decode state: queries at positions p0.. against the cached sinks 0..S-1, then the
    window's keys p0-W.. and their own; with q_offset = S + W (the keys' distances kept) this is the
    whole sequence's attention for those rows, and the gradients of the keys they read."""
    B, T, H, Hk, P, W, S, p0 = 2, 90, 4, 2, 13, 20, 6, 60
    q, k, v = make_qkv(rng, B, T, H, Hk, P)
    do = np.zeros(q.shape, np.float32)
    do[:, p0:] = rng.standard_normal(do[:, p0:].shape)
    keys = np.r_[0:S, p0 - W:T]
    for be in (npb, cb):
        o_full, lse_full = be.attention_forward(q, k, v, W, 0, S)
        dq_full, dk_full, dv_full = be.attention_backward(do, q, k, v, o_full, lse_full, W, 0, S)
        kg, vg = k[:, keys].copy(), v[:, keys].copy()
        o, lse = be.attention_forward(q[:, p0:].copy(), kg, vg, W, S + W, S)
        # the same sums in another tiling: the parity tolerance
        assert rel_err(o, o_full[:, p0:]) < 1e-6 and rel_err(lse, lse_full[..., p0:]) < 1e-6
        dq, dk, dv = be.attention_backward(do[:, p0:].copy(), q[:, p0:].copy(), kg, vg, o, lse, W, S + W, S)
        assert rel_err(dq, dq_full[:, p0:]) < 1e-6
        assert rel_err(dk, dk_full[:, keys]) < 1e-6 and rel_err(dv, dv_full[:, keys]) < 1e-6


def test_attention_sinks_limits(npb, cb, rng):
    """sinks 0 is the plain window (the same kernel path, bit for bit); sinks >= Tk or no window: every key is
    seen causally, as without a window; a negative or non-int count is a clear error."""
    q, k, v = make_qkv(rng, 2, 70, 4, 2, 13)
    do = rng.standard_normal(q.shape).astype(np.float32)
    for be in (npb, cb):
        o, lse = be.attention_forward(q, k, v, 9)
        for a, b in zip((o, lse) + be.attention_backward(do, q, k, v, o, lse, 9),
                        be.attention_forward(q, k, v, 9, 0, 0) + be.attention_backward(do, q, k, v, o, lse, 9, 0, 0)):
            np.testing.assert_array_equal(a, b)
        o, lse = be.attention_forward(q, k, v)
        full = (o, lse) + be.attention_backward(do, q, k, v, o, lse)
        for window, sinks in ((9, 70), (9, 2**40), (None, 5)):
            o_s, lse_s = be.attention_forward(q, k, v, window, 0, sinks)
            for a, b in zip(full, (o_s, lse_s) + be.attention_backward(do, q, k, v, o, lse, window, 0, sinks)):
                np.testing.assert_array_equal(a, b)
        for sinks in (-1, 2.0, None):
            with pytest.raises(ValueError, match="attention_forward: sinks must be an int >= 0"):
                be.attention_forward(q, k, v, 9, 0, sinks)
            with pytest.raises(ValueError, match="attention_backward: sinks must be an int >= 0"):
                be.attention_backward(do, q, k, v, o, lse, 9, 0, sinks)
