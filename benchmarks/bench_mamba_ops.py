"""Benchmarks of the Mamba block's sequence-mixing ops: depthwise causal conv1d and the selective scan.

Shapes (B, T, Din, N), conv width 4 over C = Din channels:
  mnist: (64, 16, 128, 16), the MNIST model's layer;  long: (1, 32768, 128, 16), one long sequence.
Peers: the C kernels, the NumPy oracle and, when `import torch` works, PyTorch (F.conv1d for the
conv; for the scan, a loop over time as state-spaces/mamba's selective_scan_ref, as torch has no
scan op). A Python loop over 32768 steps takes seconds per call, so the long scan is C only.
forward_backward times the forward and then the backward (autograd for torch).

  python -m pytest benchmarks/bench_mamba_ops.py -o python_files='bench_*.py' --benchmark-only
"""
import numpy as np
import pytest

from hybridref.backends.c import CBackend
from hybridref.backends.numpy import NumpyBackend

SHAPES = {"mnist": (64, 16, 128, 16), "long": (1, 32768, 128, 16)}
WIDTH = 4
PEERS = ("c", "numpy", "torch")


class TorchPeer:
    """The two ops in PyTorch, forward and forward + autograd backward, on the same NumPy inputs."""

    def __init__(self, torch):
        self.torch = torch

    def _tensors(self, arrays, grad):
        return [self.torch.from_numpy(a).requires_grad_(grad) for a in arrays]

    def conv(self, x, w, bias):
        T, C = x.shape[1], x.shape[2]
        y = self.torch.nn.functional.conv1d(x.transpose(1, 2), w[:, None, :], bias, padding=WIDTH - 1, groups=C)
        return y[..., :T].transpose(1, 2)

    def scan(self, x, delta, A, Bm, Cm, D):
        decay = self.torch.exp(delta[..., None] * A)               # (B,T,Din,N)
        inp = (delta * x)[..., None] * Bm[:, :, None, :]
        h = self.torch.zeros_like(decay[:, 0])
        ys = []
        # unbind, not decay[:, t]: autograd then joins the per-step gradients with one stack
        for decay_t, inp_t, C_t in zip(decay.unbind(1), inp.unbind(1), Cm.unbind(1)):
            h = decay_t * h + inp_t
            ys.append(self.torch.einsum("bdn,bn->bd", h, C_t))
        return self.torch.stack(ys, 1) + D * x

    def run(self, fn, arrays, dy, backward):
        with self.torch.set_grad_enabled(backward):
            out = fn(*self._tensors(arrays, backward))
            if backward:
                out.backward(self.torch.from_numpy(dy))


@pytest.fixture(scope="module", params=PEERS)
def peer(request):
    if request.param == "torch":
        return request.param, TorchPeer(pytest.importorskip("torch"))
    return request.param, (CBackend() if request.param == "c" else NumpyBackend())


def _scan_inputs(B, T, Din, N):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((B, T, Din)), rng.uniform(0.001, 0.1, (B, T, Din)), -rng.uniform(1, N, (Din, N)),
              rng.standard_normal((B, T, N)), rng.standard_normal((B, T, N)), rng.standard_normal(Din)]
    return [a.astype(np.float32) for a in arrays], rng.standard_normal((B, T, Din)).astype(np.float32)


def _conv_inputs(B, T, C):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(B, T, C), (C, WIDTH), (C,), (B, T, C)]]
    return arrays[:3], arrays[3]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward_backward"])
def test_selective_scan(benchmark, peer, shape, backward):
    name, be = peer
    if shape == "long" and name != "c":
        pytest.skip("a Python loop over 32768 time steps: C only")
    ins, dy = _scan_inputs(*SHAPES[shape])
    benchmark.group = f"selective_scan {shape} {'forward+backward' if backward else 'forward'}"
    if name == "torch":
        benchmark(be.run, be.scan, ins, dy, backward)
    elif backward:
        benchmark(lambda: (be.selective_scan_forward(*ins), be.selective_scan_backward(dy, *ins)))
    else:
        benchmark(be.selective_scan_forward, *ins)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward_backward"])
def test_causal_conv1d(benchmark, peer, shape, backward):
    name, be = peer
    B, T, C, _ = SHAPES[shape]
    (x, w, bias), dy = _conv_inputs(B, T, C)
    benchmark.group = f"causal_conv1d {shape} {'forward+backward' if backward else 'forward'}"
    if name == "torch":
        benchmark(be.run, be.conv, (x, w, bias), dy, backward)
    elif backward:
        benchmark(lambda: (be.causal_conv1d_forward(x, w, bias), be.causal_conv1d_backward(dy, x, w, True)))
    else:
        benchmark(be.causal_conv1d_forward, x, w, bias)
