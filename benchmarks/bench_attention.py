"""Causal attention, forward and forward+backward: the C kernels against the NumPy oracle and,
when torch imports, torch.nn.functional.scaled_dot_product_attention(is_causal=True) on CPU.

    python -m pytest benchmarks/bench_attention.py -o python_files='bench_*.py' --benchmark-only

Threads: the C kernels and torch both take OMP_NUM_THREADS; on a loaded machine,
OMP_NUM_THREADS=1 gives the comparison least disturbed by descheduled threads.

Shapes (B, T, H, P): the MNIST model's attention, a mid-length batch and one long sequence.
Every peer gets its native layout, built outside the timed call: (B,T,H,P) for hybridref,
(B,H,T,P) for torch.
"""
import numpy as np
import pytest

from hybridref.backends.c import CBackend
from hybridref.backends.numpy import NumpyBackend

try:
    import torch
except ImportError:
    torch = None

SHAPES = {"mnist-B64-T16": (64, 16, 4, 16), "B8-T256": (8, 256, 4, 32), "B1-T4096": (1, 4096, 4, 32)}
BACKENDS = ("c", "numpy", "torch")


def _hybridref_call(be, q, k, v, do, backward):
    def call():
        o, lse = be.attention_forward(q, k, v)
        return be.attention_backward(do, q, k, v, o, lse) if backward else o
    return call


def _torch_call(q, k, v, do, backward):
    tq, tk, tv, tdo = (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1, 3))) for x in (q, k, v, do))
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def call():
        if not backward:
            with torch.no_grad():
                return sdpa(tq, tk, tv, is_causal=True)
        leaves = [x.detach().requires_grad_() for x in (tq, tk, tv)]
        sdpa(*leaves, is_causal=True).backward(tdo)
        return [x.grad for x in leaves]
    return call


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_attention(benchmark, backend, shape, backward):
    B, T, H, P = SHAPES[shape]
    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal((B, T, H, P)).astype(np.float32) for _ in range(4))
    if backend == "torch":
        if torch is None:
            pytest.skip("torch is not installed")
        call = _torch_call(q, k, v, do, backward)
    else:
        be = CBackend() if backend == "c" else NumpyBackend()
        call = _hybridref_call(be, q, k, v, do, backward)
    benchmark.group = f"attention {'forward+backward' if backward else 'forward'} {shape}"
    if backend == "numpy" and T >= 4096:  # seconds per call: a few rounds say enough
        benchmark.pedantic(call, rounds=3, warmup_rounds=0)
    else:
        benchmark(call)
