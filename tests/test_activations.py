import numpy as np
import pytest

from helpers import check_grads, rel_err

UNARY = ("gelu", "gelu_erf", "silu", "softplus")
# Finite inputs far into both tails, plus the softplus threshold at 20 from both sides.
EXTREME = np.concatenate([np.linspace(-100, 100, 201), [-1e4, 1e4, -60.5, 60.5, 19.99, 20.01]]).astype(np.float32)


def _op(backend, name, kind):
    return getattr(backend, f"{name}_{kind}")


@pytest.mark.parametrize("name", UNARY)
def test_unary_gradcheck(npb, rng, name):
    x = rng.standard_normal((4, 6)) * 3
    x[0, :2] = (25.0, -25.0)  # beyond the softplus threshold and deep in the tails
    w = rng.standard_normal((4, 6))
    loss = lambda: float((_op(npb, name, "forward")(x) * w).sum())
    check_grads(loss, {"x": x}, {"x": _op(npb, name, "backward")(w, x)})


def test_silu_gate_gradcheck(npb, rng):
    x, z, w = (rng.standard_normal((4, 6)) * 2 for _ in range(3))
    loss = lambda: float((npb.silu_gate_forward(x, z) * w).sum())
    dx, dz = npb.silu_gate_backward(w, x, z)
    check_grads(loss, {"x": x, "z": z}, {"x": dx, "z": dz})


@pytest.mark.parametrize("name", UNARY)
def test_unary_c_matches_numpy(npb, cb, rng, name):
    x = (rng.standard_normal((37, 67)) * 3).astype(np.float32)
    dy = rng.standard_normal((37, 67)).astype(np.float32)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    # against the float64 oracle on the same inputs: a few float32 ulp per element (measured ~6e-8)
    assert rel_err(_op(cb, name, "forward")(x), _op(npb, name, "forward")(x64)) < 1e-6
    assert rel_err(_op(cb, name, "backward")(dy, x), _op(npb, name, "backward")(dy64, x64)) < 1e-6


def test_silu_gate_c_matches_numpy(npb, cb, rng):
    x, z, dy = ((rng.standard_normal((13, 37)) * 3).astype(np.float32) for _ in range(3))
    x64, z64, dy64 = x.astype(np.float64), z.astype(np.float64), dy.astype(np.float64)
    # a few float32 ulp per element, as for the unary activations
    assert rel_err(cb.silu_gate_forward(x, z), npb.silu_gate_forward(x64, z64)) < 1e-6
    for got, want in zip(cb.silu_gate_backward(dy, x, z), npb.silu_gate_backward(dy64, x64, z64)):
        assert rel_err(got, want) < 1e-6


@pytest.mark.parametrize("name", UNARY)
def test_unary_extreme_inputs(npb, cb, name):
    x, ones = EXTREME, np.ones_like(EXTREME)
    y, dx = _op(cb, name, "forward")(x), _op(cb, name, "backward")(ones, x)
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    # element-wise, float32 ulps of each value; atol covers the far tails (|value| < 1e-6),
    # where the float64 oracle's 1 + tanh(u) itself cancels
    np.testing.assert_allclose(y, _op(npb, name, "forward")(x.astype(np.float64)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, _op(npb, name, "backward")(ones.astype(np.float64), x.astype(np.float64)),
                               rtol=1e-6, atol=1e-6)


def test_limits_at_float_max(cb):
    big = np.finfo(np.float32).max
    x = np.array([-big, -1e30, 1e30, big], np.float32)
    ones = np.ones_like(x)
    tails = np.where(x > 0, x, 0)
    # f(x) -> 0 for x -> -inf and -> x for x -> +inf; f'(x) -> 0 and 1 (no inf·0 = NaN)
    for name in UNARY:
        np.testing.assert_array_equal(_op(cb, name, "forward")(x), tails, err_msg=name)
        np.testing.assert_array_equal(_op(cb, name, "backward")(ones, x), [0, 0, 1, 1], err_msg=name)
    np.testing.assert_array_equal(cb.silu_gate_forward(ones, x), tails)
    dx, dz = cb.silu_gate_backward(ones, ones, x)
    np.testing.assert_array_equal(dx, tails)
    np.testing.assert_array_equal(dz, [0, 0, 1, 1])


def test_softplus_threshold_as_torch(cb):
    x = np.array([20.0, np.nextafter(20.0, 30, dtype=np.float32), 25.0], np.float32)
    # above 20 the output is x itself and the gradient exactly dy
    np.testing.assert_array_equal(cb.softplus_forward(x)[1:], x[1:])
    np.testing.assert_array_equal(cb.softplus_backward(np.full(3, 3.0, np.float32), x)[1:], [3.0, 3.0])


def test_any_shape_and_empty(npb, cb, rng):
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    y = cb.gelu_forward(x)
    assert y.shape == x.shape
    assert rel_err(y, npb.gelu_forward(x.astype(np.float64))) < 1e-6
    assert cb.silu_forward(np.zeros((0, 5), np.float32)).shape == (0, 5)


def test_activations_reject_bad_input(cb):
    x = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="gelu_forward: x must have dtype float32"):
        cb.gelu_forward(x.astype(np.float64))
    with pytest.raises(ValueError, match="silu_forward: x must be C-contiguous"):
        cb.silu_forward(x[:, ::2])
    with pytest.raises(ValueError, match=r"softplus_backward: dy must have shape \(4, 6\)"):
        cb.softplus_backward(np.zeros((4, 5), np.float32), x)
    with pytest.raises(ValueError, match=r"silu_gate_forward: z must have shape \(4, 6\)"):
        cb.silu_gate_forward(x, np.zeros((6, 4), np.float32))
    with pytest.raises(ValueError, match="silu_gate_backward: dy must be a numpy.ndarray"):
        cb.silu_gate_backward([0.0], x, x)
