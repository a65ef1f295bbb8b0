"""Whole-model checks: float64 finite differences through every layer, C-vs-NumPy parity, and
determinism of training."""
import numpy as np
import pytest

from hybridref.models.mnist_hybrid import MnistHybrid
from helpers import check_model_grads, rel_err


def tiny_model(backend, dtype=np.float32, pattern="MAM"):
    # 14x14 patches -> 4 tokens; d_model 16 -> Mamba d_inner 32, dt_rank 1, 2 heads of 8
    return MnistHybrid(patch=14, d_model=16, pattern=pattern, n_heads=2, mlp_ratio=2, seed=3).to(backend).astype(dtype)


def batch(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def loss_and_grads(model, images, labels):
    be = model.be
    model.zero_grad()
    logits = model.forward(images)
    loss, probs = be.cross_entropy_forward(logits, labels)
    model.backward(be.cross_entropy_backward(probs, labels))
    return loss, logits, {n: p.grad.copy() for n, p in model.named_params()}


def test_model_gradcheck_float64(npb):
    """Central differences on random coordinates of every parameter (helpers.check_model_grads)."""
    model = tiny_model(npb, np.float64)
    images, labels = batch()
    _, _, grads = loss_and_grads(model, images, labels)

    def loss():
        out = model.forward(images)
        model.clear_saved()
        return npb.cross_entropy_forward(out, labels)[0]

    check_model_grads(model, loss, grads, np.random.default_rng(1))


def test_model_c_matches_numpy(npb, cb):
    """float32 C vs float32 NumPy through 3 blocks: both round differently at each of ~40 ops;
    errors stay ~1e-6 relative, 1e-4 leaves margin for cancellation in small gradients."""
    images, labels = batch(5)
    ln, lo_n, gn = loss_and_grads(tiny_model(npb), images, labels)
    lc, lo_c, gc = loss_and_grads(tiny_model(cb), images, labels)
    assert abs(ln - lc) < 1e-5 * abs(ln)
    assert rel_err(lo_c, lo_n) < 1e-5
    for name in gn:
        assert rel_err(gc[name], gn[name]) < 1e-4, name


def test_training_is_deterministic(cb):
    from hybridref.optim import AdamW
    images, labels = batch(8)
    runs = []
    for _ in range(2):
        model = tiny_model(cb)
        opt = AdamW(model.params(), lr=1e-2, weight_decay=0.1, clip_norm=1.0)
        for _ in range(3):
            loss_and_grads(model, images, labels)
            opt.step(cb)
        runs.append([p.data.copy() for p in model.params()])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def test_bad_pattern_and_patch_are_refused():
    with pytest.raises(ValueError, match="unknown mixer letters"):
        MnistHybrid(pattern="MQA")
    with pytest.raises(ValueError, match="must divide 28"):
        MnistHybrid(patch=5)
