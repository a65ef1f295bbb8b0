"""One MNIST training step (forward, backward, AdamW) of the default model, per backend.

Target: the C backend >= 5x faster than the NumPy backend. Run:
    python -m pytest benchmarks/bench_train_step.py -o python_files='bench_*.py' --benchmark-only
"""
import numpy as np
import pytest

from hybridref.backends import get_backend
from hybridref.models.mnist_hybrid import MnistHybrid
from hybridref.optim import AdamW


@pytest.mark.parametrize("batch_size", [64])
@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_mnist_train_step(benchmark, backend, batch_size):
    be = get_backend(backend)
    model = MnistHybrid().to(be)
    opt = AdamW(model.params(), lr=1e-3, weight_decay=0.05, clip_norm=1.0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, batch_size)

    def step():
        model.zero_grad()
        loss, probs = be.cross_entropy_forward(model.forward(images), labels)
        model.backward(be.cross_entropy_backward(probs, labels))
        opt.step(be)
        return loss

    benchmark.extra_info.update(backend=be.describe(), batch_size=batch_size, params=model.num_params())
    benchmark.pedantic(step, rounds=10 if backend == "c" else 3, warmup_rounds=1)
