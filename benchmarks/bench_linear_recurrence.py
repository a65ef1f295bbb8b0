"""The RG-LRU (Griffin's recurrence with its gates), forward + backward: r = σ(ga), i = σ(gx),
a = exp(−8 r softplus(Λ)), h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ i_t ⊙ x_t (1 at position 0).

Peers, interleaved (every peer at a T before the next T), all on 2 threads, B = 4, C = 256 channels
(lru_width), T = 1,024 ... 16,384:
  c              the rglru_gate and linear_recurrence ops (csrc/rglru.c, csrc/linear_recurrence.c)
  torch-chunked  the same function in PyTorch with autograd, the recurrence in its cumulative form
                 inside chunks of 64 (h = e^{G} ⊙ (h_in + cumsum(x̃ e^{−G})), G = cumsum(log a) from the
                 chunk's start, bounded by 64·8·softplus(Λ) so e^{−G} stays finite) and a loop
                 across chunks: the fastest stable torch formulation without a custom kernel
  torch-loop     recurrentgemma's torch rnn_scan: a Python loop over time (T = 1,024 only: it is the
                 slowest by far)

  python -m pytest benchmarks/bench_linear_recurrence.py -o python_files='bench_*.py' --benchmark-only \\
      --benchmark-columns=min,median,mean,rounds
"""
import numpy as np
import pytest

from hybridref.backends.c import CBackend
from hybridref.layers.rglru import rnn_param_init

try:
    import torch
except ImportError:
    torch = None

B, C, CHUNK, THREADS = 4, 256, 64, 2
SIZES = (1024, 2048, 4096, 8192, 16384)
PEERS = ("c", "torch-chunked", "torch-loop")
LOOP_MAX_T = 1024


def _inputs(T):
    rng = np.random.default_rng(0)
    x, gx, ga, dh = (rng.standard_normal((B, T, C), dtype=np.float32) for _ in range(4))
    return (x, gx, ga, rnn_param_init(rng, C).astype(np.float32)), dh


@pytest.fixture(scope="module")
def cb():
    return CBackend(threads=THREADS)


def _c_call(be, ins, dh):
    def call():
        a, xn = be.rglru_gate_forward(*ins)
        h, _ = be.linear_recurrence_forward(a, xn)
        da, dxn, _ = be.linear_recurrence_backward(dh, a, xn)
        return be.rglru_gate_backward(da, dxn, *ins)
    return call


def _gates(x, gx, ga, lam):
    """-> log a, x̃ (B,T,C): the recurrence's log decays and normalised input."""
    log_a = -8.0 * torch.sigmoid(ga) * torch.nn.functional.softplus(lam)
    mult = torch.sqrt(1.0 - torch.exp(2.0 * log_a))
    mult = torch.cat([torch.ones_like(mult[:, :1]), mult[:, 1:]], dim=1)  # position 0: 1
    return log_a, mult * torch.sigmoid(gx) * x


def rglru_chunked(x, gx, ga, lam):
    log_a, xt = _gates(x, gx, ga, lam)
    Bq, T, Cq = x.shape
    G = log_a.reshape(Bq, T // CHUNK, CHUNK, Cq).cumsum(2)
    inner = torch.exp(G) * (xt.reshape(G.shape) * torch.exp(-G)).cumsum(2)  # each chunk from a zero state
    h_in, out = x.new_zeros(Bq, Cq), []
    for g, own in zip(G.unbind(1), inner.unbind(1)):
        out.append(own + torch.exp(g) * h_in[:, None])
        h_in = out[-1][:, -1]
    return torch.cat(out, 1)


def rglru_loop(x, gx, ga, lam):
    log_a, xt = _gates(x, gx, ga, lam)
    a, h, out = torch.exp(log_a), x.new_zeros(x.shape[0], x.shape[2]), []
    for t in range(x.shape[1]):
        h = a[:, t] * h + xt[:, t]
        out.append(h)
    return torch.stack(out, 1)


def _torch_call(fn, ins, dh):
    torch.set_num_threads(THREADS)
    tins, tdh = [torch.from_numpy(a) for a in ins], torch.from_numpy(dh)

    def call():
        leaves = [a.detach().requires_grad_() for a in tins]
        fn(*leaves).backward(tdh)
        return [a.grad for a in leaves]
    return call


def test_torch_peers_compute_the_op(cb):
    """The peers time the same function: outputs and gradients against the C ops (float32, different
    formulations: 1e-4)."""
    if torch is None:
        pytest.skip("torch is not installed")
    ins, dh = _inputs(256)
    a, xn = cb.rglru_gate_forward(*ins)
    h, _ = cb.linear_recurrence_forward(a, xn)
    want = _c_call(cb, ins, dh)()
    for fn in (rglru_chunked, rglru_loop):
        leaves = [torch.from_numpy(v).requires_grad_() for v in ins]
        out = fn(*leaves)
        assert np.linalg.norm(out.detach().numpy() - h) / np.linalg.norm(h) < 1e-4
        out.backward(torch.from_numpy(dh))
        for g, w in zip(leaves, want):
            assert np.linalg.norm(g.grad.numpy() - w) / np.linalg.norm(w) < 1e-4


@pytest.mark.parametrize("T,peer", [(T, p) for T in SIZES for p in PEERS],
                         ids=[f"T{T}-{p}" for T in SIZES for p in PEERS])
def test_rglru(benchmark, cb, T, peer):
    ins, dh = _inputs(T)
    if peer == "c":
        call = _c_call(cb, ins, dh)
    elif torch is None:
        pytest.skip("torch is not installed")
    elif peer == "torch-loop" and T > LOOP_MAX_T:
        pytest.skip(f"the Python loop is timed up to T = {LOOP_MAX_T}")
    else:
        call = _torch_call(rglru_chunked if peer == "torch-chunked" else rglru_loop, ins, dh)
    benchmark.group = f"RG-LRU forward+backward B{B} C{C} T{T}"
    benchmark.extra_info["tokens"] = B * T
    benchmark.pedantic(call, rounds=5 if peer == "c" else 3, iterations=1, warmup_rounds=1)
