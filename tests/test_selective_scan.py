import numpy as np
import pytest

from helpers import check_grads, rel_err, assert_same_for_thread_counts

NAMES = ("x", "delta", "A", "Bm", "Cm", "D")
GRAD_NAMES = ("x", "delta", "A", "Bm", "Cm", "D", "h0")


def _inputs(rng, B, T, Din, N, dtype=np.float64):
    """The six scan inputs (Mamba-like: Δ > 0 after softplus, A < 0), plus h0 (B,Din,N) and dy (B,T,Din)."""
    arrays = [rng.standard_normal((B, T, Din)), rng.uniform(0.05, 0.5, (B, T, Din)), -rng.uniform(0.5, 2.0, (Din, N)),
              rng.standard_normal((B, T, N)), rng.standard_normal((B, T, N)), rng.standard_normal(Din)]
    h0, dy = rng.standard_normal((B, Din, N)), rng.standard_normal((B, T, Din))
    return [a.astype(dtype) for a in arrays], h0.astype(dtype), dy.astype(dtype)


@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("use_dh_last", [False, True])
def test_scan_gradcheck(npb, rng, use_h0, use_dh_last):
    ins, h0, wy = _inputs(rng, 2, 5, 3, 4)
    h0 = h0 if use_h0 else None
    wh = rng.standard_normal((2, 3, 4)) if use_dh_last else None

    def loss():
        y, h_last = npb.selective_scan_forward(*ins, h0)
        return float((y * wy).sum() + ((h_last * wh).sum() if use_dh_last else 0.0))

    grads = npb.selective_scan_backward(wy, *ins, h0, wh)
    assert (grads[-1] is None) != use_h0
    inputs = dict(zip(NAMES, ins), **({"h0": h0} if use_h0 else {}))
    check_grads(loss, inputs, dict(zip(GRAD_NAMES, grads)))


def test_scan_matches_scalar_loop(npb, rng):
    """The oracle against the recurrence written one (b, d, n) at a time."""
    (x, delta, A, Bm, Cm, D), h0, _ = _inputs(rng, 2, 6, 3, 4)
    B, T, Din = x.shape
    N = A.shape[1]
    y, h_last = np.zeros_like(x), np.zeros_like(h0)
    for b in range(B):
        for d in range(Din):
            for n in range(N):
                h = h0[b, d, n]
                for t in range(T):
                    h = np.exp(delta[b, t, d] * A[d, n]) * h + delta[b, t, d] * x[b, t, d] * Bm[b, t, n]
                    y[b, t, d] += Cm[b, t, n] * h
                h_last[b, d, n] = h
    y += D * x
    got_y, got_h = npb.selective_scan_forward(x, delta, A, Bm, Cm, D, h0)
    assert rel_err(got_y, y) < 1e-14 and rel_err(got_h, h_last) < 1e-14


def _check_chunks(be, ins, h0, dy, dh_last, tol):
    """scan over [x1, x2] == scan(x1, h0), then scan(x2, h0 = h_last of x1); the backward of the
    split form (dh_last of the first part = dh0 of the second) == the backward of the whole."""
    T1 = 11
    split = lambda a: (np.ascontiguousarray(a[:, :T1]), np.ascontiguousarray(a[:, T1:]))
    time_major = [a.ndim == 3 for a in ins]  # x, delta, Bm, Cm run over time; A, D do not
    part1 = [split(a)[0] if tm else a for a, tm in zip(ins, time_major)]
    part2 = [split(a)[1] if tm else a for a, tm in zip(ins, time_major)]
    dy1, dy2 = split(dy)

    y, h_last = be.selective_scan_forward(*ins, h0)
    y1, h1 = be.selective_scan_forward(*part1, h0)
    y2, h2 = be.selective_scan_forward(*part2, h1)
    assert rel_err(np.concatenate([y1, y2], 1), y) < tol and rel_err(h2, h_last) < tol

    whole = be.selective_scan_backward(dy, *ins, h0, dh_last)
    second = be.selective_scan_backward(dy2, *part2, h1, dh_last)
    first = be.selective_scan_backward(dy1, *part1, h0, second[-1])
    for i, name in enumerate(GRAD_NAMES):
        if name in ("A", "D"):
            joined = first[i] + second[i]
        elif name == "h0":
            assert (first[i] is None) == (h0 is None) == (whole[i] is None)
            if h0 is None:
                continue
            joined = first[i]
        else:
            joined = np.concatenate([first[i], second[i]], 1)
        assert rel_err(joined, whole[i]) < tol, name


def test_scan_chunks_numpy(npb, rng):
    ins, h0, dy = _inputs(rng, 2, 25, 5, 3)
    _check_chunks(npb, ins, h0, dy, rng.standard_normal(h0.shape), 1e-13)  # float64: only summation order differs


@pytest.mark.parametrize("use_h0", [False, True])
def test_scan_chunks_c(cb, rng, use_h0):
    ins, h0, dy = _inputs(rng, 3, 37, 67, 13, np.float32)
    dh_last = rng.standard_normal(h0.shape).astype(np.float32)
    # float32: the split only regroups the dA/dD sums over t (~sqrt(37) * 6e-8); the states carried
    # across the split are the very values the unsplit scan uses
    _check_chunks(cb, ins, h0 if use_h0 else None, dy, dh_last, 1e-6)


# (3, 37, 67, 13) and (3, 37, 67, 16): odd sizes, a partial vector of states, a partial channel group.
# (2, 400, 20, 13): more states than the backward's budget (every ISA), so it restarts chunks from checkpoints.
# (2, 1, 19, 16): one step, as the streaming decoder runs it.
@pytest.mark.parametrize("shape", [(3, 37, 67, 13), (3, 37, 67, 16), (2, 400, 20, 13), (2, 1, 19, 16)])
@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("use_dh_last", [False, True])
def test_scan_c_matches_numpy(npb, cb, rng, shape, use_h0, use_dh_last):
    ins, h0, dy = _inputs(rng, *shape, np.float32)
    h0 = h0 if use_h0 else None
    dh_last = rng.standard_normal((shape[0], shape[2], shape[3])).astype(np.float32) if use_dh_last else None
    f64 = lambda a: None if a is None else a.astype(np.float64)
    # Reference: the NumPy oracle in float64 on the same float32 inputs. Each output is a sum over at
    # most T·N (B·T for dA, dD; Din·B for the reductions) float32 terms through a contracting
    # recurrence, with exp within 2 ulp: measured up to 5e-7; 3e-6 leaves 6x margin and is far below any wrong term.
    tol = 3e-6
    y, h_last = cb.selective_scan_forward(*ins, h0)
    ry, rh = npb.selective_scan_forward(*map(f64, ins), f64(h0))
    assert y.dtype == np.float32 and rel_err(y, ry) < tol and rel_err(h_last, rh) < tol
    got = cb.selective_scan_backward(dy, *ins, h0, dh_last)
    want = npb.selective_scan_backward(f64(dy), *map(f64, ins), f64(h0), f64(dh_last))
    for name, g, r in zip(GRAD_NAMES, got, want):
        assert (g is None) == (r is None), name
        if g is not None:
            assert g.dtype == np.float32 and g.shape == r.shape, name
            assert rel_err(g, r) < tol, name


def test_scan_rejects_bad_input(cb, rng):
    ins, h0, dy = _inputs(rng, 2, 5, 3, 4, np.float32)
    fwd, bwd = "selective_scan_forward", "selective_scan_backward"
    wrong_shape = {"x": (2, 5, 4), "delta": (2, 4, 3), "A": (4, 4), "Bm": (2, 5, 3), "Cm": (1, 5, 4), "D": (4,)}
    for i, name in enumerate(NAMES):
        bad = list(ins)
        bad[i] = np.zeros(wrong_shape[name], np.float32)
        # a mismatch is reported on whichever of the pair is checked second (delta when x is off)
        with pytest.raises(ValueError, match=f"^{fwd}: ({name}|delta) must have shape"):
            cb.selective_scan_forward(*bad)
        with pytest.raises(ValueError, match=f"^{bwd}: ({name}|delta) must have shape"):
            cb.selective_scan_backward(dy, *bad)
        bad[i] = ins[i].astype(np.float64)
        with pytest.raises(ValueError, match=f"^{fwd}: {name} must have dtype float32"):
            cb.selective_scan_forward(*bad)
        bad[i] = np.repeat(ins[i], 2, axis=-1)[..., ::2]  # same shape and values, strided
        with pytest.raises(ValueError, match=f"^{bwd}: {name} must be C-contiguous"):
            cb.selective_scan_backward(dy, *bad)
    with pytest.raises(ValueError, match=f"^{fwd}: h0 must have shape"):
        cb.selective_scan_forward(*ins, np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match=f"^{bwd}: dh_last must have shape"):
        cb.selective_scan_backward(dy, *ins, h0, np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=f"^{bwd}: dy must have shape"):
        cb.selective_scan_backward(dy[:, :4].copy(), *ins)
    with pytest.raises(ValueError, match=f"^{fwd}: state size N"):
        cb.selective_scan_forward(*ins[:2], np.zeros((3, 0), np.float32), *(np.zeros(a.shape[:-1] + (0,), np.float32)
                                                                          for a in ins[3:5]), ins[5])


def test_scan_deterministic(cb, rng):
    ins, h0, dy = _inputs(rng, 3, 37, 67, 13, np.float32)
    run = lambda: cb.selective_scan_forward(*ins, h0) + cb.selective_scan_backward(dy, *ins, h0, h0)
    # every reduction adds per-task partials in task order: the thread count must not matter
    assert_same_for_thread_counts(cb, run)
