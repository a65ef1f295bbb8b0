import math

import numpy as np
import pytest

from helpers import rel_err

HP = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


def test_sum_squares_c_matches_numpy(npb, cb, rng):
    for shape in [(1001,), (3, 37, 67), (5,)]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = cb.sum_squares(x)
        assert isinstance(got, float) and isinstance(npb.sum_squares(x), float)
        # squares of float32 values are exact in float64; only the float64 sums round
        assert abs(got - npb.sum_squares(x)) <= 1e-12 * npb.sum_squares(x)
    assert cb.sum_squares(np.zeros((0,), np.float32)) == 0.0


def test_sum_squares_independent_of_threads(cb, rng):
    x = (rng.standard_normal(100_003) * 1e3).astype(np.float32)
    old = cb.threads
    try:
        runs = []
        for threads in (1, 3, 3):
            cb.set_threads(threads)
            runs.append(cb.sum_squares(x))
    finally:
        cb.set_threads(old)
    assert runs[0] == runs[1] == runs[2]  # fixed 64-part split, partials added in part order


def test_numpy_adamw_matches_hand_computed_step(npb):
    param = np.array([1.0, -2.0, 0.5], np.float32)
    grad = np.array([0.5, 0.0, -4.0], np.float32)
    m = np.array([0.1, 0.0, 0.2], np.float32)
    v = np.array([0.01, 0.0, 0.3], np.float32)
    p0, g0, m0, v0 = (a.astype(np.float64).tolist() for a in (param, grad, m, v))
    npb.adamw_step(param, grad, m, v, step=3, grad_scale=0.5, **HP)
    for i in range(3):
        g = g0[i] * 0.5
        mi = 0.9 * m0[i] + 0.1 * g
        vi = 0.95 * v0[i] + 0.05 * g * g
        m_hat, v_hat = mi / (1 - 0.9 ** 3), vi / (1 - 0.95 ** 3)
        p = p0[i] - 1e-2 * (m_hat / (math.sqrt(v_hat) + 1e-8) + 0.1 * p0[i])
        # float32 arithmetic against float64 by hand: a few ulp
        assert math.isclose(m[i], mi, rel_tol=1e-6)
        assert math.isclose(v[i], vi, rel_tol=1e-6)
        assert math.isclose(param[i], p, rel_tol=1e-6)
    # element 1: zero grad and moments, so only the decoupled decay moves it
    assert math.isclose(param[1], -2.0 * (1 - 1e-2 * 0.1), rel_tol=1e-7)


def test_adamw_c_matches_numpy_three_steps(npb, cb, rng):
    shape = (37, 67)
    param = rng.standard_normal(shape).astype(np.float32)
    states = {name: [param.copy(), np.zeros(shape, np.float32), np.zeros(shape, np.float32)] for name in ("c", "np")}
    for step in (1, 2, 3):
        grad = rng.standard_normal(shape).astype(np.float32)
        for name, backend in (("c", cb), ("np", npb)):
            p, m, v = states[name]
            backend.adamw_step(p, grad, m, v, step=step, grad_scale=0.7, **HP)
    # a few float32 roundings per element per step (FMA in C, separate rounding in NumPy)
    for got, want in zip(states["c"], states["np"]):
        assert rel_err(got, want) < 1e-6
    assert rel_err(states["c"][0], param) > 1e-3  # the parameters did move


def test_adamw_rejects_bad_input(cb):
    a = np.zeros((4, 3), np.float32)
    kw = dict(step=1, grad_scale=1.0, **HP)
    with pytest.raises(ValueError, match=r"adamw_step: m must have shape \(4, 3\)"):
        cb.adamw_step(a, a.copy(), np.zeros((3, 4), np.float32), a.copy(), **kw)
    with pytest.raises(ValueError, match="adamw_step: grad must have dtype float32"):
        cb.adamw_step(a, a.astype(np.float64), a.copy(), a.copy(), **kw)
    with pytest.raises(ValueError, match="adamw_step: param must be C-contiguous"):
        cb.adamw_step(np.zeros((3, 4), np.float32).T, a, a.copy(), a.copy(), **kw)
    with pytest.raises(ValueError, match=r"adamw_step: step must be an int >= 1 .*\(the first step is 1\), got 0"):
        cb.adamw_step(a, a.copy(), a.copy(), a.copy(), **{**kw, "step": 0})
    with pytest.raises(ValueError, match=r"adamw_step: beta2 must be a finite number in \[0, 1\)"):
        cb.adamw_step(a, a.copy(), a.copy(), a.copy(), **{**kw, "beta2": 1.0})
    with pytest.raises(ValueError, match="adamw_step: grad_scale must be a finite number"):
        cb.adamw_step(a, a.copy(), a.copy(), a.copy(), **{**kw, "grad_scale": float("nan")})
    with pytest.raises(ValueError, match="sum_squares: x must have dtype float32"):
        cb.sum_squares(np.zeros(3))
