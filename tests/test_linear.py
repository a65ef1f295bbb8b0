import numpy as np
import pytest

from helpers import check_grads, rel_err

U32 = 6e-8  # float32 unit roundoff (2^-24)


def f32_tol(k):
    """A float32 sum of k products has relative error ~ sqrt(k) u (rounding errors
    of the running sum add up like a random walk); 4x covers the spread over
    elements, while any wrong or missing term gives an error of order 1/sqrt(k)."""
    return 4 * np.sqrt(max(k, 1)) * U32


def op_shape(shape, trans):
    return shape[::-1] if trans else shape


# (M, K, N): odd sizes, 1x1x1, and sizes just past each blocking size of every ISA
# build (MR 12/6/4 and NR 32/16/8 plus one, a half-wide edge panel of <= NR/2 columns,
# N = NC + 1, K past KC so C is accumulated over several rank-kc steps, and leading
# dimensions past 512, where operands are packed instead of read in place).
MATMUL_SHAPES = [(37, 67, 13), (1, 1, 1), (129, 5, 300), (13, 257, 1025), (7, 33, 17), (5, 9, 48),
                 (25, 300, 16), (530, 601, 47), (64, 2100, 33)]


@pytest.mark.parametrize("M,K,N", MATMUL_SHAPES)
def test_matmul_c_matches_numpy(npb, cb, rng, M, K, N):
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = rng.standard_normal(op_shape((M, K), trans_a)).astype(np.float32)
            b = rng.standard_normal(op_shape((K, N), trans_b)).astype(np.float32)
            want = npb.matmul(a.astype(np.float64), b.astype(np.float64), trans_a, trans_b)
            got = cb.matmul(a, b, trans_a, trans_b)
            assert got.shape == (M, N) and got.dtype == np.float32
            err = rel_err(got, want)
            assert err < f32_tol(K), f"trans_a={trans_a} trans_b={trans_b}: relative error {err:.2e}"


def test_matmul_empty_sizes(cb):
    assert cb.matmul(np.zeros((0, 3), np.float32), np.zeros((3, 4), np.float32)).shape == (0, 4)
    c = cb.matmul(np.ones((2, 0), np.float32), np.ones((0, 4), np.float32))
    assert c.shape == (2, 4) and not c.any()


@pytest.mark.parametrize("has_bias", [True, False])
def test_linear_gradcheck(npb, rng, has_bias):
    x = rng.standard_normal((5, 4))
    w = rng.standard_normal((3, 4))
    b = rng.standard_normal(3) if has_bias else None
    r = rng.standard_normal((5, 3))
    loss = lambda: float((npb.linear_forward(x, w, b) * r).sum())
    dx, dw, db = npb.linear_backward(r, x, w, has_bias)
    inputs, grads = {"x": x, "w": w}, {"x": dx, "w": dw}
    if has_bias:
        inputs["b"], grads["b"] = b, db
    else:
        assert db is None
    check_grads(loss, inputs, grads)


@pytest.mark.parametrize("M,K,N", [(37, 67, 13), (130, 19, 36), (1, 1, 1), (13, 300, 1025)])
@pytest.mark.parametrize("has_bias", [True, False])
def test_linear_c_matches_numpy(npb, cb, rng, M, K, N, has_bias):
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32) if has_bias else None
    dy = rng.standard_normal((M, N)).astype(np.float32)
    f64 = lambda t: None if t is None else t.astype(np.float64)
    # y sums K products (+ the bias); dx sums N, dw and db sum M.
    assert rel_err(cb.linear_forward(x, w, b), npb.linear_forward(f64(x), f64(w), f64(b))) < f32_tol(K + 1)
    got = cb.linear_backward(dy, x, w, has_bias)
    want = npb.linear_backward(f64(dy), f64(x), f64(w), has_bias)
    assert rel_err(got[0], want[0]) < f32_tol(N)
    assert rel_err(got[1], want[1]) < f32_tol(M)
    if has_bias:
        assert got[2].shape == (N,) and rel_err(got[2], want[2]) < f32_tol(M)
    else:
        assert got[2] is None


def test_matmul_rejects_bad_input(cb):
    f32 = lambda *s: np.zeros(s, np.float32)
    with pytest.raises(ValueError, match=r"matmul: op\(a\) is \(2, 3\) but op\(b\) is \(4, 5\)"):
        cb.matmul(f32(2, 3), f32(4, 5))
    with pytest.raises(ValueError, match="matmul: .*inner sizes must match"):
        cb.matmul(f32(2, 3), f32(3, 5), trans_a=True)
    with pytest.raises(ValueError, match="matmul: a must have dtype float32"):
        cb.matmul(np.zeros((2, 3)), f32(3, 5))
    with pytest.raises(ValueError, match="matmul: b must be C-contiguous"):
        cb.matmul(f32(2, 3), f32(5, 3).T)
    with pytest.raises(ValueError, match="matmul: a must be 2-D"):
        cb.matmul(f32(3), f32(3, 5))
    with pytest.raises(ValueError, match="matmul: trans_a must be a bool"):
        cb.matmul(f32(2, 3), f32(3, 5), trans_a="yes")


def test_linear_rejects_bad_input(cb):
    f32 = lambda *s: np.zeros(s, np.float32)
    with pytest.raises(ValueError, match=r"linear_forward: w must have shape \(5, 3\), got \(5, 4\)"):
        cb.linear_forward(f32(2, 3), f32(5, 4), None)
    with pytest.raises(ValueError, match="linear_forward: x must be 2-D"):
        cb.linear_forward(f32(3), f32(5, 3), None)
    with pytest.raises(ValueError, match="linear_forward: b must have shape"):
        cb.linear_forward(f32(2, 3), f32(5, 3), f32(4))
    with pytest.raises(ValueError, match="linear_forward: x must have dtype float32"):
        cb.linear_forward(np.zeros((2, 3), np.float16), f32(5, 3), None)
    with pytest.raises(ValueError, match="linear_forward: x must be C-contiguous"):
        cb.linear_forward(f32(2, 6)[:, ::2], f32(5, 3), None)
    with pytest.raises(ValueError, match=r"linear_backward: dy must have shape \(2, 5\), got \(2, 4\)"):
        cb.linear_backward(f32(2, 4), f32(2, 3), f32(5, 3), True)
    with pytest.raises(ValueError, match="linear_backward: w must have shape"):
        cb.linear_backward(f32(2, 5), f32(2, 3), f32(5, 4), False)
    with pytest.raises(ValueError, match="linear_backward: dy must have dtype float32"):
        cb.linear_backward(np.zeros((2, 5)), f32(2, 3), f32(5, 3), False)


def test_deterministic_and_independent_of_thread_count(cb, rng):
    """Large enough to run threaded; no C element is split over K between threads,
    so repeated calls, and even other thread counts, agree bit for bit."""
    a = rng.standard_normal((300, 530)).astype(np.float32)
    b = rng.standard_normal((300, 97)).astype(np.float32)
    w = rng.standard_normal((97, 530)).astype(np.float32)
    first = cb.matmul(a, b, True, False)
    grads = cb.linear_backward(b, a, w, True)
    assert np.array_equal(first, cb.matmul(a, b, True, False))
    for g1, g2 in zip(grads, cb.linear_backward(b, a, w, True)):
        assert np.array_equal(g1, g2)
    threads = cb.threads
    try:
        cb.set_threads(1)
        assert np.array_equal(first, cb.matmul(a, b, True, False))
        for g1, g2 in zip(grads, cb.linear_backward(b, a, w, True)):
            assert np.array_equal(g1, g2)
    finally:
        cb.set_threads(threads)
