"""One MNIST training step (forward, backward, AdamW) of the default model (7x7 patches, 16
tokens, 6 Mamba + 2 attention, d_model 64), per backend, and the same model in PyTorch
(tests/torch_ref/models.py: autograd, a Python loop for the scan) as the peer.

Target: the C backend >= 5x faster than the NumPy backend. Run:
    python -m pytest benchmarks/bench_train_step.py -o python_files='bench_*.py' --benchmark-only
"""
import numpy as np
import pytest

from hybridref.backends import get_backend
from hybridref.models.mnist_hybrid import MnistHybrid, patchify
from hybridref.optim import AdamW

BATCH = 64


def batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (BATCH, 28, 28), dtype=np.uint8), rng.integers(0, 10, BATCH)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_mnist_train_step(benchmark, backend):
    be = get_backend(backend)
    model = MnistHybrid().to(be)
    opt = AdamW(model.params(), lr=1e-3, weight_decay=0.05, clip_norm=1.0)
    images, labels = batch()

    def step():
        model.zero_grad()
        loss, probs = be.cross_entropy_forward(model.forward(images), labels)
        model.backward(be.cross_entropy_backward(probs, labels))
        opt.step(be)

    benchmark.extra_info.update(backend=be.describe(), batch_size=BATCH, params=model.num_params())
    benchmark.pedantic(step, rounds=20 if backend == "c" else 3, warmup_rounds=2)


def test_mnist_train_step_torch(benchmark):
    torch = pytest.importorskip("torch")
    from torch_ref.models import mnist_hybrid
    model = MnistHybrid()
    params = {n: torch.tensor(p.data, requires_grad=True) for n, p in model.named_params()}
    opt = torch.optim.AdamW(params.values(), lr=1e-3, weight_decay=0.05)
    images, labels = batch()
    tokens, targets = torch.tensor(patchify(images, 7)), torch.tensor(labels)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(mnist_hybrid(params, tokens, model.config), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()

    benchmark.extra_info.update(backend=f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
                                batch_size=BATCH)
    benchmark.pedantic(step, rounds=10, warmup_rounds=2)
