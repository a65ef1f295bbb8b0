"""Position-wise ops at the model's sizes (M = 2048 rows, widths D = 64/128/256):
the C kernels against the NumPy oracle and, where `import torch` works, PyTorch's CPU ops.

    python -m pytest benchmarks/bench_pointwise.py -o python_files='bench_*.py' --benchmark-only
"""
import numpy as np
import pytest

from hybridref.backends.c import CBackend
from hybridref.backends.numpy import NumpyBackend

M = 2048
WIDTHS = (64, 128, 256)
PEERS = ("c", "numpy", "torch")
EPS = 1e-5
ADAMW = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_scale=1.0)


def _inputs(op, D):
    """float32 / int64 arguments of `op` at (M, D); cross-entropy uses D classes."""
    rng = np.random.default_rng(0)
    x, dy, z = (rng.standard_normal((M, D)).astype(np.float32) for _ in range(3))
    w, b = rng.standard_normal(D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    mean, rstd = x.mean(axis=1), (1 / x.std(axis=1)).astype(np.float32)
    targets = rng.integers(0, D, M)
    return {
        "layernorm_forward": (x, w, b, EPS),
        "layernorm_backward": (dy, x, w, mean, rstd),
        "rmsnorm_forward": (x, w, EPS),
        "rmsnorm_backward": (dy, x, w, rstd),
        "gelu_forward": (x,),
        "gelu_backward": (dy, x),
        "silu_gate_forward": (x, z),
        "softplus_forward": (x,),
        "cross_entropy_forward": (x, targets),
        "embedding_backward": (dy, targets, D),
        "adamw_step": (x, dy, np.zeros_like(x), np.zeros_like(x)),
        "dropout": (x.reshape(16, M // 16, D), 0.1, 1234),  # (B, T, D): the mask hashes b, t, d
    }[op]


def _torch_op(op, threads):
    """The PyTorch function for `op` (forward ops only), or skip."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(threads)  # the same thread count as the C backend
    F = torch.nn.functional
    fns = {
        "layernorm_forward": lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], w, b, eps),
        "rmsnorm_forward": lambda x, w, eps: F.rms_norm(x, x.shape[-1:], w, eps),
        "gelu_forward": lambda x: F.gelu(x, approximate="tanh"),
        "silu_gate_forward": lambda x, z: x * F.silu(z),
        "softplus_forward": F.softplus,
        "cross_entropy_forward": F.cross_entropy,
        "dropout": lambda x, p, seed: F.dropout(x, p, training=True),  # torch's generator, not a hash
    }
    if op not in fns:
        pytest.skip(f"no PyTorch peer for {op}")
    return fns[op], torch.from_numpy


@pytest.fixture(scope="module")
def cbackend():
    return CBackend()


@pytest.mark.parametrize("D", WIDTHS)
@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("op", ["layernorm_forward", "layernorm_backward", "rmsnorm_forward", "rmsnorm_backward",
                                "gelu_forward", "gelu_backward", "silu_gate_forward", "softplus_forward",
                                "cross_entropy_forward", "embedding_backward", "adamw_step", "dropout"])
def test_pointwise(benchmark, cbackend, op, peer, D):
    args = _inputs(op, D)
    kwargs = dict(ADAMW, step=1) if op == "adamw_step" else {}
    if peer == "torch":
        fn, to_tensor = _torch_op(op, cbackend.threads)
        args = tuple(to_tensor(a) if isinstance(a, np.ndarray) else a for a in args)
    else:
        fn = getattr(cbackend if peer == "c" else NumpyBackend(), op)
    benchmark.group = f"{op} M={M} D={D}"
    benchmark.extra_info["threads"] = cbackend.threads
    benchmark(fn, *args, **kwargs)
