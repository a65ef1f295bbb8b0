import numpy as np
import pytest

from helpers import check_grads


def test_embedding_gradcheck(npb, rng):
    ids = np.array([3, 1, 3, 0, 3, 2], np.int64)  # repeats: the gradient must add them up
    table, w = rng.standard_normal((5, 4)), rng.standard_normal((6, 4))
    loss = lambda: float((npb.embedding_forward(ids, table) * w).sum())
    check_grads(loss, {"table": table}, {"table": npb.embedding_backward(w, ids, 5)})


@pytest.mark.parametrize("V,M,D", [(11, 37, 67), (7, 13, 5)])  # V < M: ids repeat; D = 5 < one cache line
def test_embedding_c_matches_numpy(npb, cb, rng, V, M, D):
    ids = rng.integers(0, V, M)
    table = rng.standard_normal((V, D)).astype(np.float32)
    dy = rng.standard_normal((M, D)).astype(np.float32)
    # the forward copies rows; the backward adds each table row's float32 terms in
    # order of m, as np.add.at does: both are exact matches
    np.testing.assert_array_equal(cb.embedding_forward(ids, table), npb.embedding_forward(ids, table))
    np.testing.assert_array_equal(cb.embedding_backward(dy, ids, V), npb.embedding_backward(dy, ids, V))


def test_embedding_backward_independent_of_threads(cb, rng):
    ids = rng.integers(0, 7, 41)
    dy = rng.standard_normal((41, 35)).astype(np.float32)
    old = cb.threads
    try:
        runs = []
        for threads in (1, 3, 3):
            cb.set_threads(threads)
            runs.append(cb.embedding_backward(dy, ids, 9))
    finally:
        cb.set_threads(old)
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)
    assert not runs[0][7:].any()  # ids never reach rows 7 and 8: they stay zero


def test_embedding_rejects_bad_input(cb):
    table, dy = np.zeros((5, 3), np.float32), np.zeros((4, 3), np.float32)
    ids = np.array([0, 1, 4, 2], np.int64)
    with pytest.raises(ValueError, match=r"embedding_forward: ids must lie in \[0, 5\), got 5"):
        cb.embedding_forward(np.array([0, 5]), table)
    with pytest.raises(ValueError, match=r"embedding_forward: ids must lie in \[0, 5\), got -1"):
        cb.embedding_forward(np.array([-1, 2]), table)
    with pytest.raises(ValueError, match="embedding_forward: ids must have dtype int64"):
        cb.embedding_forward(ids.astype(np.int32), table)
    with pytest.raises(ValueError, match="embedding_forward: ids must be 1-D"):
        cb.embedding_forward(ids.reshape(2, 2), table)
    with pytest.raises(ValueError, match="embedding_forward: table must have dtype float32"):
        cb.embedding_forward(ids, table.astype(np.float64))
    with pytest.raises(ValueError, match=r"embedding_backward: ids must lie in \[0, 3\), got 4"):
        cb.embedding_backward(dy, ids, 3)
    with pytest.raises(ValueError, match=r"embedding_backward: ids must have shape \(4,\)"):
        cb.embedding_backward(dy, ids[:3], 5)
    with pytest.raises(ValueError, match="embedding_backward: dy must be C-contiguous"):
        cb.embedding_backward(np.zeros((3, 4), np.float32).T, ids, 5)
    with pytest.raises(ValueError, match="embedding_backward: vocab_size must be an int >= 1"):
        cb.embedding_backward(dy, ids, 0)
