import numpy as np
import pytest

from helpers import check_grads, rel_err, assert_same_for_thread_counts


def _inputs(rng, B, T, C, W, dtype=np.float64):
    """x (B,T,C), w (C,W), bias (C,), prefix (B,W-1,C), dy (B,T,C)."""
    shapes = [(B, T, C), (C, W), (C,), (B, W - 1, C), (B, T, C)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("W", [1, 4])
@pytest.mark.parametrize("use_prefix", [False, True])
@pytest.mark.parametrize("use_bias", [False, True])
def test_conv1d_gradcheck(npb, rng, W, use_prefix, use_bias):
    x, w, bias, prefix, wy = _inputs(rng, 2, 5, 3, W)
    bias, prefix = (bias if use_bias else None), (prefix if use_prefix else None)
    loss = lambda: float((npb.causal_conv1d_forward(x, w, bias, prefix) * wy).sum())
    dx, dw, dbias, dprefix = npb.causal_conv1d_backward(wy, x, w, use_bias, prefix)
    assert (dbias is None) != use_bias and (dprefix is None) != use_prefix
    inputs, grads = {"x": x, "w": w}, {"x": dx, "w": dw}
    if use_bias:
        inputs["bias"], grads["bias"] = bias, dbias
    if use_prefix:
        inputs["prefix"], grads["prefix"] = prefix, dprefix
    check_grads(loss, inputs, grads)


def test_conv1d_current_token_is_last_tap(npb):
    """torch's weight[c, 0, j] layout: w[:, W-1] multiplies x_t, w[:, 0] multiplies x_{t-W+1}."""
    x = np.zeros((1, 4, 1))
    x[0, 1, 0] = 1.0
    w = np.array([[1.0, 2.0, 3.0]])
    y = npb.causal_conv1d_forward(x, w, None)
    np.testing.assert_array_equal(y[0, :, 0], [0.0, 3.0, 2.0, 1.0])


def _check_chunks(be, x, w, bias, dy, tol):
    """conv over [x1, x2] == conv(x1), then conv(x2, prefix = last W-1 tokens of x1); same for the backward."""
    W, T1 = w.shape[1], 9
    x1, x2, dy1, dy2 = x[:, :T1], x[:, T1:], dy[:, :T1], dy[:, T1:]
    x1, x2, dy1, dy2 = (np.ascontiguousarray(a) for a in (x1, x2, dy1, dy2))
    carry = np.ascontiguousarray(x1[:, T1 - (W - 1):])
    y = be.causal_conv1d_forward(x, w, bias)
    y_split = np.concatenate([be.causal_conv1d_forward(x1, w, bias), be.causal_conv1d_forward(x2, w, bias, carry)], 1)
    assert rel_err(y_split, y) < tol
    dx, dw, dbias, _ = be.causal_conv1d_backward(dy, x, w, True)
    dx2, dw2, dbias2, dcarry = be.causal_conv1d_backward(dy2, x2, w, True, carry)
    dx1, dw1, dbias1, dprefix1 = be.causal_conv1d_backward(dy1, x1, w, True)
    assert dprefix1 is None
    dx1[:, T1 - (W - 1):] += dcarry
    assert rel_err(np.concatenate([dx1, dx2], 1), dx) < tol
    assert rel_err(dw1 + dw2, dw) < tol
    assert rel_err(dbias1 + dbias2, dbias) < tol


def test_conv1d_chunks_numpy(npb, rng):
    x, w, bias, _, dy = _inputs(rng, 2, 20, 5, 4)
    _check_chunks(npb, x, w, bias, dy, 1e-14)  # float64: only the split of the dw/dbias sums differs


def test_conv1d_chunks_c(cb, rng):
    x, w, bias, _, dy = _inputs(rng, 3, 37, 67, 4, np.float32)
    # float32: the split changes only the order of the dw/dbias sums over 111 (b, t) terms (~1e-7 relative)
    _check_chunks(cb, x, w, bias, dy, 1e-6)


@pytest.mark.parametrize("T", [37, 1])  # T = 1: a streaming decoder step, the taps mostly on the prefix
@pytest.mark.parametrize("W", [4, 3, 1])
@pytest.mark.parametrize("use_prefix", [False, True])
@pytest.mark.parametrize("use_bias", [False, True])
def test_conv1d_c_matches_numpy(npb, cb, rng, T, W, use_prefix, use_bias):
    x, w, bias, prefix, dy = _inputs(rng, 3, T, 67, W, np.float32)
    bias, prefix = (bias if use_bias else None), (prefix if use_prefix else None)
    f64 = lambda a: None if a is None else a.astype(np.float64)
    # Reference: the NumPy oracle in float64 on the same float32 inputs. Outputs are sums of at most
    # W (dx, y) or B*T = 111 (dw, dbias) float32 products: ~sqrt(111) * 6e-8 ≈ 7e-7 relative at most.
    tol = 2e-6
    assert rel_err(cb.causal_conv1d_forward(x, w, bias, prefix),
                   npb.causal_conv1d_forward(f64(x), f64(w), f64(bias), f64(prefix))) < tol
    got = cb.causal_conv1d_backward(dy, x, w, use_bias, prefix)
    want = npb.causal_conv1d_backward(f64(dy), f64(x), f64(w), use_bias, f64(prefix))
    for name, g, r in zip(("dx", "dw", "dbias", "dprefix"), got, want):
        assert (g is None) == (r is None), name
        if g is not None:
            assert g.dtype == np.float32 and g.shape == r.shape, name
            assert rel_err(g, r) < tol, name


def test_conv1d_rejects_bad_input(cb):
    x, w, b, p = np.zeros((2, 5, 3), np.float32), np.zeros((3, 4), np.float32), np.zeros(3, np.float32), \
        np.zeros((2, 3, 3), np.float32)
    fwd, bwd = "causal_conv1d_forward", "causal_conv1d_backward"
    bad_calls = [
        (fwd, lambda: cb.causal_conv1d_forward(x.astype(np.float64), w, b), "dtype float32"),
        (fwd, lambda: cb.causal_conv1d_forward(x[:, ::2], w, b), "C-contiguous"),
        (fwd, lambda: cb.causal_conv1d_forward(x, np.zeros((4, 4), np.float32), b), "w must have shape"),
        (fwd, lambda: cb.causal_conv1d_forward(x, np.zeros((3, 0), np.float32), None), "conv width"),
        (fwd, lambda: cb.causal_conv1d_forward(x, w, np.zeros(4, np.float32)), "bias must have shape"),
        (fwd, lambda: cb.causal_conv1d_forward(x, w, b, np.zeros((2, 4, 3), np.float32)), "prefix must have shape"),
        (fwd, lambda: cb.causal_conv1d_forward(x[0], w, b), "x must be 3-D"),
        (bwd, lambda: cb.causal_conv1d_backward(np.zeros((2, 4, 3), np.float32), x, w, True), "dy must have shape"),
        (bwd, lambda: cb.causal_conv1d_backward(x, x, w, True, p[:, :2]), "prefix must have shape"),
        (bwd, lambda: cb.causal_conv1d_backward(x, x, w.T.copy(), True), "w must have shape"),
    ]
    for op, call, msg in bad_calls:
        with pytest.raises(ValueError, match=msg) as e:
            call()
        assert str(e.value).startswith(op + ":"), str(e.value)


def test_conv1d_deterministic(cb, rng):
    x, w, bias, prefix, dy = _inputs(rng, 3, 37, 67, 4, np.float32)
    run = lambda: (cb.causal_conv1d_forward(x, w, bias, prefix),) + cb.causal_conv1d_backward(dy, x, w, True, prefix)
    # dw/dbias sum each channel in (b, t) order whatever the partition: the thread count must not matter
    assert_same_for_thread_counts(cb, run)
