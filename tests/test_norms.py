import numpy as np
import pytest

from helpers import check_grads, rel_err

EPS = 1e-5
SHAPES = [(37, 67), (13, 5)]  # D = 67: whole 8-lane vectors plus a tail; D = 5: tail only


def test_layernorm_gradcheck(npb, rng):
    x, wy = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    w, b = rng.standard_normal(7), rng.standard_normal(7)
    loss = lambda: float((npb.layernorm_forward(x, w, b, EPS)[0] * wy).sum())
    _, mean, rstd = npb.layernorm_forward(x, w, b, EPS)
    dx, dw, db = npb.layernorm_backward(wy, x, w, mean, rstd)
    check_grads(loss, {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db})


def test_rmsnorm_gradcheck(npb, rng):
    x, wy, w = rng.standard_normal((5, 7)), rng.standard_normal((5, 7)), rng.standard_normal(7)
    loss = lambda: float((npb.rmsnorm_forward(x, w, EPS)[0] * wy).sum())
    dx, dw = npb.rmsnorm_backward(wy, x, w, npb.rmsnorm_forward(x, w, EPS)[1])
    check_grads(loss, {"x": x, "w": w}, {"x": dx, "w": dw})


def _inputs(rng, M, D):
    # a row offset of 3 makes the mean matter (the variance is taken about it)
    x = (rng.standard_normal((M, D)) + 3).astype(np.float32)
    w, b = (rng.standard_normal(D).astype(np.float32) for _ in range(2))
    dy = rng.standard_normal((M, D)).astype(np.float32)
    return x, w, b, dy


def f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("M,D", SHAPES)
def test_layernorm_c_matches_numpy(npb, cb, rng, M, D):
    x, w, b, dy = _inputs(rng, M, D)
    out = cb.layernorm_forward(x, w, b, EPS)
    grads = cb.layernorm_backward(dy, x, w, out[1], out[2])
    want_out = npb.layernorm_forward(*f64(x, w, b), EPS)
    want_grads = npb.layernorm_backward(*f64(dy, x, w, out[1], out[2]))
    # float32 sums of <= 67 terms against the float64 oracle: ~sqrt(67)·6e-8 ≈ 5e-7 (measured 1.3e-7)
    for got, want in zip(out + grads, want_out + want_grads):
        assert rel_err(got, want) < 1e-6


@pytest.mark.parametrize("M,D", SHAPES)
def test_rmsnorm_c_matches_numpy(npb, cb, rng, M, D):
    x, w, _, dy = _inputs(rng, M, D)
    out = cb.rmsnorm_forward(x, w, EPS)
    grads = cb.rmsnorm_backward(dy, x, w, out[1])
    want_out = npb.rmsnorm_forward(*f64(x, w), EPS)
    want_grads = npb.rmsnorm_backward(*f64(dy, x, w, out[1]))
    # as for layernorm: float32 sums of <= 67 terms
    for got, want in zip(out + grads, want_out + want_grads):
        assert rel_err(got, want) < 1e-6


def test_norm_param_grads_independent_of_threads(cb, rng):
    x, w, b, dy = _inputs(rng, 37, 67)
    _, mean, rstd = cb.layernorm_forward(x, w, b, EPS)
    rrstd = cb.rmsnorm_forward(x, w, EPS)[1]
    old = cb.threads
    try:
        runs = []
        for threads in (1, 3, 3):
            cb.set_threads(threads)
            runs.append(cb.layernorm_backward(dy, x, w, mean, rstd) + cb.rmsnorm_backward(dy, x, w, rrstd))
    finally:
        cb.set_threads(old)
    # dw, db: each column summed over rows in order by one thread, whatever the thread count
    for first, *others in zip(*runs):
        for other in others:
            np.testing.assert_array_equal(first, other)


def test_norms_reject_bad_input(cb):
    x, w, rstd = np.zeros((4, 6), np.float32), np.ones(6, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"layernorm_forward: b must have shape \(6\)"):
        cb.layernorm_forward(x, w, np.zeros(5, np.float32), EPS)
    with pytest.raises(ValueError, match="layernorm_forward: eps must be a finite number > 0"):
        cb.layernorm_forward(x, w, w, 0.0)
    with pytest.raises(ValueError, match="rmsnorm_forward: x must have dtype float32"):
        cb.rmsnorm_forward(x.astype(np.float64), w, EPS)
    with pytest.raises(ValueError, match="rmsnorm_forward: x must be 2-D"):
        cb.rmsnorm_forward(x[None], w, EPS)
    with pytest.raises(ValueError, match="rmsnorm_forward: width D must be positive"):
        cb.rmsnorm_forward(np.zeros((4, 0), np.float32), np.ones(0, np.float32), EPS)
    with pytest.raises(ValueError, match="rmsnorm_backward: dy must be C-contiguous"):
        cb.rmsnorm_backward(np.zeros((6, 4), np.float32).T, x, w, rstd)
    with pytest.raises(ValueError, match=r"layernorm_backward: mean must have shape \(4\)"):
        cb.layernorm_backward(x, x, w, np.zeros(3, np.float32), rstd)
    with pytest.raises(ValueError, match="rmsnorm_backward: rstd must have dtype float32"):
        cb.rmsnorm_backward(x, x, w, np.ones(4, np.float64))
