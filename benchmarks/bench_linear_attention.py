"""Decayed linear attention (the Mamba-2 / RetNet / GLA recurrence), chunked forward + backward.

Peers, interleaved (both run at each T before the next T): the C kernel, and the same chunked algorithm
in PyTorch with autograd through matmuls, in the style of state-spaces/mamba's ssd_minimal.py (quadratic
inside chunks of 64, the state passed from chunk to chunk). One decay per head and step (Kg = 1:
Mamba-2, RetNet); "c-gla" is the C kernel with one decay per key dim (Kg = K, GLA), which torch would need
fla's secondary chunking for (not written here). B = 4, H = 4, K = V = 64, T = 512 ... 8192; both
peers on 2 threads.

test_linear_attention_per_token: the C kernel's time per token at T = 1024 and T = 32768 (B = 1, H = 4:
four tasks on two threads either way). The chunked form is linear in T; what grows is memory traffic
(q, k, v, dO and the backward's 513 chunk states per head, 34 MB, no longer fit in cache), so the two
should be within ~1.3x.

  python -m pytest benchmarks/bench_linear_attention.py -o python_files='bench_*.py' --benchmark-only \\
      --benchmark-columns=min,median,mean,rounds
"""
import numpy as np
import pytest

from hybridref.backends.c import CBackend

try:
    import torch
except ImportError:
    torch = None

B, H, K, V, CHUNK, SCALE = 4, 4, 64, 64, 64, 0.125
SIZES = (512, 1024, 2048, 4096, 8192)
THREADS = 2
PEERS = ("c", "torch", "c-gla")


def _inputs(B, T, H, Kg):
    rng = np.random.default_rng(0)
    q, k = (0.1 * rng.standard_normal((B, T, H, K), dtype=np.float32) for _ in range(2))
    v, do = (rng.standard_normal((B, T, H, V), dtype=np.float32) for _ in range(2))
    g = -rng.uniform(0.01, 0.2, (B, T, H, Kg)).astype(np.float32)
    return (q, k, v, g), do


@pytest.fixture(scope="module")
def cb():
    return CBackend(threads=THREADS)


def _c_call(be, ins, do):
    def call():
        be.linear_attention_forward(*ins, SCALE, None, CHUNK)
        return be.linear_attention_backward(do, *ins, SCALE, None, None, CHUNK)
    return call


def _segsum(x):
    """x (..., L) -> (..., L, L): entry [i, j] = Σ_{j<s<=i} x_s, -inf above the diagonal (ssd_minimal's)."""
    L = x.shape[-1]
    below = torch.tril(torch.ones(L, L, dtype=torch.bool), -1)
    sums = x[..., None].expand(*x.shape, L).masked_fill(~below, 0).cumsum(-2)
    return sums.masked_fill(~torch.tril(torch.ones(L, L, dtype=torch.bool)), -torch.inf)


def torch_chunked(q, k, v, g, scale, L):
    """q, k (B,H,T,K), v (B,H,T,V), g (B,H,T) with T a multiple of L -> o (B,H,T,V), from a zero state."""
    Bq, Hq, T, Kq = q.shape
    c = T // L
    q, k, v = (x.reshape(Bq, Hq, c, L, x.shape[-1]) for x in (q, k, v))
    g = g.reshape(Bq, Hq, c, L)
    G = g.cumsum(-1)                                                               # from each chunk's start
    o = ((q @ k.transpose(-1, -2)) * torch.exp(_segsum(g))) @ v                      # inside the chunks
    states = (k * torch.exp(G[..., -1:] - G)[..., None]).transpose(-1, -2) @ v      # each chunk's own (B,H,c,K,V)
    S, entering = q.new_zeros(Bq, Hq, Kq, v.shape[-1]), []
    # unbind, not states[:, :, i]: autograd then joins the per-chunk gradients with one stack
    for lam, own in zip(torch.exp(G[..., -1]).unbind(2), states.unbind(2)):
        entering.append(S)
        S = lam[..., None, None] * S + own
    o = o + (q * torch.exp(G)[..., None]) @ torch.stack(entering, 2)                # from the earlier chunks
    return scale * o.reshape(Bq, Hq, T, -1)


def _torch_call(ins, do):
    torch.set_num_threads(THREADS)
    q, k, v, g = (torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 2, 1))) for x in ins)
    g, tdo = g[..., 0], torch.from_numpy(np.ascontiguousarray(np.moveaxis(do, 2, 1)))

    def call():
        leaves = [x.detach().requires_grad_() for x in (q, k, v, g)]
        torch_chunked(*leaves, SCALE, CHUNK).backward(tdo)
        return [x.grad for x in leaves]
    return call


@pytest.mark.parametrize("T,peer", [(T, p) for T in SIZES for p in PEERS],
                         ids=[f"T{T}-{p}" for T in SIZES for p in PEERS])
def test_linear_attention(benchmark, cb, T, peer):
    ins, do = _inputs(B, T, H, K if peer == "c-gla" else 1)
    if peer == "torch":
        if torch is None:
            pytest.skip("torch is not installed")
        call = _torch_call(ins, do)
    else:
        call = _c_call(cb, ins, do)
    benchmark.group = f"linear_attention forward+backward B{B} H{H} K{K} V{V} T{T}"
    benchmark(call)


@pytest.mark.parametrize("T", [1024, 32768])
def test_linear_attention_per_token(benchmark, cb, T):
    ins, do = _inputs(1, T, H, 1)
    benchmark.group = "linear_attention forward+backward per token: B1 H4 K64 V64, T 1024 vs 32768"
    benchmark.extra_info["tokens"] = T
    benchmark(_c_call(cb, ins, do))
