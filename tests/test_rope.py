"""Rotary position embedding: gradients, C vs NumPy, definition, bad input, determinism."""
import math

import numpy as np
import pytest

from helpers import check_grads, rel_err


def test_rope_gradcheck(npb, rng):
    x = rng.standard_normal((2, 5, 3, 6))
    w = rng.standard_normal(x.shape)
    loss = lambda: float((npb.rope_forward(x, 7, 100.0) * w).sum())
    check_grads(loss, {"x": x}, {"x": npb.rope_backward(w, 7, 100.0)})


def test_rope_numpy_matches_definition(npb, rng):
    x = rng.standard_normal((1, 3, 2, 4))
    y = npb.rope_forward(x, offset=5, base=10.0)
    for t in range(3):
        for i in range(2):
            a = (5 + t) * 10.0 ** (-2 * i / 4)
            x1, x2 = x[0, t, :, i], x[0, t, :, i + 2]
            np.testing.assert_allclose(y[0, t, :, i], x1 * math.cos(a) - x2 * math.sin(a), rtol=1e-12)
            np.testing.assert_allclose(y[0, t, :, i + 2], x2 * math.cos(a) + x1 * math.sin(a), rtol=1e-12)


def test_rope_offset_continues_a_sequence(npb, rng):
    """Rotating tokens 3..7 with offset 3 equals rows 3..7 of rotating tokens 0..7 (prefill vs decode)."""
    x = rng.standard_normal((2, 8, 3, 6))
    np.testing.assert_allclose(npb.rope_forward(x[:, 3:], offset=3), npb.rope_forward(x)[:, 3:], rtol=1e-12)


@pytest.mark.parametrize("shape,offset", [((2, 13, 3, 38), 0), ((1, 7, 5, 6), 4093), ((3, 1, 2, 74), 12345)])
def test_rope_c_matches_numpy(npb, cb, rng, shape, offset):
    x = rng.standard_normal(shape).astype(np.float32)
    # one rotation in float32 from angles rounded once to float32: a few ulp per element
    assert rel_err(cb.rope_forward(x, offset), npb.rope_forward(x, offset)) < 1e-6
    assert rel_err(cb.rope_backward(x, offset), npb.rope_backward(x, offset)) < 1e-6


def test_rope_rejects_bad_input(cb):
    with pytest.raises(ValueError, match="rope_forward: head dim P must be even"):
        cb.rope_forward(np.zeros((1, 2, 3, 5), np.float32))
    with pytest.raises(ValueError, match="rope_forward: x must have dtype float32"):
        cb.rope_forward(np.zeros((1, 2, 3, 4)))
    with pytest.raises(ValueError, match="rope_backward: dy must be C-contiguous"):
        cb.rope_backward(np.zeros((1, 2, 4, 3), np.float32).transpose(0, 1, 3, 2))
    with pytest.raises(ValueError, match=r"rope_forward: offset must be an int in \[0, "):
        cb.rope_forward(np.zeros((1, 2, 3, 4), np.float32), offset=-1)
    with pytest.raises(ValueError, match="rope_forward: x must be 4-D"):
        cb.rope_forward(np.zeros((2, 3, 4), np.float32))


def test_rope_is_deterministic(cb, rng):
    x = rng.standard_normal((4, 67, 4, 32)).astype(np.float32)
    assert np.array_equal(cb.rope_forward(x, 9), cb.rope_forward(x, 9))
