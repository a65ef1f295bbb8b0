"""Mixture-of-experts MLP, forward + backward (with the load-balancing loss).

Peers, interleaved (each size runs both before the next): hybridref's MoE layer on the C backend
(hybridref/layers/moe.py: router GEMM, csrc/moe.c's routing and counting sort, one GEMM per expert on
its grouped rows, GELU, combine; the Python glue between the ops included), and the sparse MoE block
as transformers writes Mixtral's/Jamba's in PyTorch (tests/torch_ref/moe.py: softmax, topk, a Python
loop over the experts hit, torch.where on the one-hot mask, index_add_) with autograd for the backward
and transformers' load-balancing loss. Tokens 4,096 (as B·T), D = 128, E = 8 experts of GELU MLPs
4·D = 512 wide, top-2, Jamba's weights (not renormalised); float32, both on THREADS threads (1).

  python -m pytest benchmarks/bench_moe.py -o python_files='bench_*.py' --benchmark-only \\
      --benchmark-columns=min,median,rounds --benchmark-min-rounds=5
"""
import numpy as np
import pytest

from hybridref.backends.c import CBackend
from hybridref.layers.moe import MoE

try:
    import torch
except ImportError:
    torch = None

TOKENS, D, E, K, HIDDEN = 4096, 128, 8, 2, 512
AUX = 0.01
# One thread each: on the shared 2-core machine (load 7-12 from other jobs) a 2-thread OpenMP region waits
# a scheduler tick (~4 ms) at its barrier whenever a thread is descheduled, which swamped the ~1 ms GEMMs
# (measured: a 1024x128x512 GEMM at 44 ms min on 2 threads, 1.5 ms on 1).
THREADS = 1
PEERS = ("c", "torch")


def _layer():
    m = MoE(D, HIDDEN, np.random.default_rng(0), expert_kind="gelu", n_experts=E, top_k=K, aux_loss_coef=AUX)
    m.router.weight.data[...] = np.random.default_rng(1).standard_normal((E, D)).astype(np.float32) * 0.1
    return m


def _inputs():
    """x and the output gradient dy, (TOKENS, D) each."""
    rng = np.random.default_rng(2)
    return rng.standard_normal((TOKENS, D), dtype=np.float32), rng.standard_normal((TOKENS, D), dtype=np.float32)


def _c_call():
    m = _layer().to(CBackend(threads=THREADS))
    x, dy = _inputs()

    def call():
        m.zero_grad()
        m.forward(x)
        return m.backward(dy)
    return call


def _torch_call():
    from torch_ref import moe as tref
    torch.set_num_threads(THREADS)
    m = _layer()
    p = {k: v.requires_grad_() for k, v in tref.params(m).items()}
    x, dy = (torch.from_numpy(a) for a in _inputs())

    def call():
        for t in p.values():
            t.grad = None
        leaf = x.detach().requires_grad_()
        y, logits = tref.forward(p, leaf, "gelu", K, False)
        (torch.sum(y * dy) + AUX * tref.balance_loss(logits, K)).backward()
        return leaf.grad
    return call


@pytest.mark.parametrize("peer", PEERS)
def test_moe(benchmark, peer):
    if peer == "torch" and torch is None:
        pytest.skip("torch is not installed")
    call = _torch_call() if peer == "torch" else _c_call()
    benchmark.group = f"moe forward+backward tokens {TOKENS} D {D} E {E} top-{K} hidden {HIDDEN}"
    benchmark(call)
