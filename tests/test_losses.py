import numpy as np
import pytest

from helpers import check_grads, rel_err


def test_cross_entropy_gradcheck(npb, rng):
    logits, targets = rng.standard_normal((5, 7)) * 2, np.array([0, 6, 3, 3, 1])
    loss = lambda: npb.cross_entropy_forward(logits, targets)[0]
    probs = npb.cross_entropy_forward(logits, targets)[1]
    check_grads(loss, {"logits": logits}, {"logits": npb.cross_entropy_backward(probs, targets)})


def _logits(rng, kind, M, C):
    if kind == "normal":
        return (rng.standard_normal((M, C)) * 3).astype(np.float32)
    if kind == "uniform60":
        return rng.uniform(-60, 60, (M, C)).astype(np.float32)
    return np.where(rng.random((M, C)) < 0.5, -60.0, 60.0).astype(np.float32)  # ±60: e^-120 underflows


@pytest.mark.parametrize("kind", ["normal", "uniform60", "pm60"])
@pytest.mark.parametrize("M,C", [(37, 67), (13, 29)])  # 29 = 16 + 8 + 5: every vector width and a tail
def test_cross_entropy_c_matches_numpy(npb, cb, rng, kind, M, C):
    logits, targets = _logits(rng, kind, M, C), rng.integers(0, C, M)
    loss, probs = cb.cross_entropy_forward(logits, targets)
    want_loss, want_probs = npb.cross_entropy_forward(logits.astype(np.float64), targets)
    assert isinstance(loss, float) and np.isfinite(probs).all()
    # per-row loss log(s) + max - x[t] in float32: a few ulp of |logit| <= 60 (measured 1e-8 relative)
    assert abs(loss - want_loss) <= 1e-6 * max(1.0, abs(want_loss))
    # a float32 exp (~2 ulp) and one scaling per element (measured 1e-7)
    assert rel_err(probs, want_probs) < 1e-6
    # (p - onehot) / M: the same two correctly rounded float32 operations as NumPy's
    np.testing.assert_array_equal(cb.cross_entropy_backward(probs, targets), npb.cross_entropy_backward(probs, targets))


def test_cross_entropy_loss_independent_of_threads(cb, rng):
    logits, targets = _logits(rng, "normal", 53, 19), rng.integers(0, 19, 53)
    old = cb.threads
    try:
        runs = []
        for threads in (1, 3, 3):
            cb.set_threads(threads)
            runs.append(cb.cross_entropy_forward(logits, targets))
    finally:
        cb.set_threads(old)
    # the mean adds the per-row losses in row order in float64, whatever the thread count
    for loss, probs in runs[1:]:
        assert loss == runs[0][0]
        np.testing.assert_array_equal(probs, runs[0][1])


def test_cross_entropy_rejects_bad_input(cb):
    logits, targets = np.zeros((4, 3), np.float32), np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"cross_entropy_forward: targets must lie in \[0, 3\), got 3"):
        cb.cross_entropy_forward(logits, np.array([0, 1, 3, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy_backward: targets must lie in \[0, 3\), got -2"):
        cb.cross_entropy_backward(logits, np.array([0, -2, 1, 1]))
    with pytest.raises(ValueError, match="cross_entropy_forward: targets must have dtype int64"):
        cb.cross_entropy_forward(logits, targets.astype(np.int32))
    with pytest.raises(ValueError, match=r"cross_entropy_forward: targets must have shape \(4,\)"):
        cb.cross_entropy_forward(logits, targets[:2])
    with pytest.raises(ValueError, match="cross_entropy_forward: logits must have dtype float32"):
        cb.cross_entropy_forward(logits.astype(np.float64), targets)
    with pytest.raises(ValueError, match="cross_entropy_backward: probs must be C-contiguous"):
        cb.cross_entropy_backward(np.zeros((3, 4), np.float32).T, targets)
    with pytest.raises(ValueError, match="cross_entropy_forward: number of rows M must be positive"):
        cb.cross_entropy_forward(np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
