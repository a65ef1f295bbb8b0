import numpy as np

from helpers import check_grads, rel_err


def test_mean_pool_gradcheck(npb, rng):
    x = rng.standard_normal((3, 5, 7))
    w = rng.standard_normal((3, 7))
    loss = lambda: float((npb.mean_pool_forward(x) * w).sum())
    check_grads(loss, {"x": x}, {"x": npb.mean_pool_backward(w, 5)})


def test_mean_pool_c_matches_numpy(npb, cb, rng):
    x = rng.standard_normal((3, 13, 19)).astype(np.float32)
    dy = rng.standard_normal((3, 19)).astype(np.float32)
    # float32 sums of 13 terms: error ~ 13 * 6e-8 relative
    assert rel_err(cb.mean_pool_forward(x), npb.mean_pool_forward(x)) < 1e-6
    assert rel_err(cb.mean_pool_backward(dy, 13), npb.mean_pool_backward(dy, 13)) < 1e-6


def test_mean_pool_rejects_bad_input(cb):
    import pytest
    with pytest.raises(ValueError, match="mean_pool_forward: x must be 3-D"):
        cb.mean_pool_forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="dtype float32"):
        cb.mean_pool_forward(np.zeros((2, 3, 4)))
