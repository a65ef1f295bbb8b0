"""WKV-7 (RWKV-7's generalized delta rule), forward + backward.

Peers, interleaved (both run at each T before the next T): the C kernel, and the same recurrence in
PyTorch the way RWKV-LM runs it without its CUDA kernel (rwkv_v7_demo.py's step: a Python loop over
time, per step S = S ⊙ w + S (aᵀb) + vᵀk and y = S r on (B,H,N,N) tensors), with autograd for the
backward. B = 4, H = 4 heads of N = 64 (RWKV's head size), T = 1,024 ... 16,384; both on 2 threads.
Autograd keeps ~1 MB of state tensors per step at this size, so the torch peer stops at T = 4,096
(4 GB); the C backward keeps a checkpoint every ~√T steps instead (~2 MB per thread at T = 16,384).

  python -m pytest benchmarks/bench_wkv7.py -o python_files='bench_*.py' --benchmark-only \\
      --benchmark-columns=min,median,rounds --benchmark-min-rounds=3
"""
import numpy as np
import pytest

from hybridref.backends.c import CBackend

try:
    import torch
except ImportError:
    torch = None

B, H, N = 4, 4, 64
SIZES = (1024, 2048, 4096, 8192, 16384)
TORCH_MAX_T = 4096
THREADS = 2
PEERS = ("c", "torch")


def _inputs(T):
    """As RWKV-7 calls it: decays in (0.545, 1), a = −κ̂, b = κ̂ ⊙ iclr; (B,T,H,N) each, and dy."""
    rng = np.random.default_rng(0)
    n = lambda: rng.standard_normal((B, T, H, N), dtype=np.float32)
    kk = n()
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    w = rng.uniform(0.545, 1.0, (B, T, H, N)).astype(np.float32)
    iclr = rng.uniform(0.0, 1.0, (B, T, H, N)).astype(np.float32)
    return (n(), w, n(), n(), -kk, kk * iclr), n()


@pytest.fixture(scope="module")
def cb():
    return CBackend(threads=THREADS)


def _c_call(be, ins, dy):
    def call():
        be.wkv7_forward(*ins)
        return be.wkv7_backward(dy, *ins)
    return call


def torch_wkv7(r, w, k, v, a, b):
    """(B,T,H,N) each -> y (B,T,H,N): rwkv_v7_demo.py's recurrence, S (B,H,N,N) in its layout (V×K)."""
    S = r.new_zeros(B, H, N, N)
    ys = []
    # unbind, not r[:, t]: autograd then joins the per-step gradients with one stack
    for rt, wt, kt, vt, at, bt in zip(*(x.unbind(1) for x in (r, w, k, v, a, b))):
        S = S * wt[..., None, :] + S @ (at[..., :, None] @ bt[..., None, :]) + vt[..., :, None] @ kt[..., None, :]
        ys.append((S @ rt[..., :, None])[..., 0])
    return torch.stack(ys, 1)


def _torch_call(ins, dy):
    torch.set_num_threads(THREADS)
    tensors, tdy = [torch.from_numpy(x) for x in ins], torch.from_numpy(dy)

    def call():
        leaves = [x.detach().requires_grad_() for x in tensors]
        torch_wkv7(*leaves).backward(tdy)
        return [x.grad for x in leaves]
    return call


@pytest.mark.parametrize("T,peer", [(T, p) for T in SIZES for p in PEERS],
                         ids=[f"T{T}-{p}" for T in SIZES for p in PEERS])
def test_wkv7(benchmark, cb, T, peer):
    ins, dy = _inputs(T)
    if peer == "torch":
        if torch is None:
            pytest.skip("torch is not installed")
        if T > TORCH_MAX_T:
            pytest.skip(f"autograd through a {T}-step Python loop keeps ~{T // 1024} GB of states")
        call = _torch_call(ins, dy)
    else:
        call = _c_call(cb, ins, dy)
    benchmark.group = f"wkv7 forward+backward B{B} H{H} N{N} T{T}"
    benchmark(call)
