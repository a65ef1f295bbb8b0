"""The long causal convolution of Hyena (the long_conv op), forward + backward (du and dh), B = 4,
D = 128 channels, a filter as long as the sequence, T = 1,024 ... 65,536, on 2 threads:

  c      csrc/long_conv.c (its auto path: the FFT at these sizes)
  torch  safari's fftconv_ref: torch.fft.rfft of size 2T of u and k, product, irfft, the first T
         positions (+ D·u), backward by autograd

Peers are interleaved (both at a T before the next T); each time is the minimum over a few rounds.
The last column is the C time over T·log2 T, which stays about constant if the cost grows as T log T.

  python benchmarks/bench_long_conv.py                 the table
  python benchmarks/bench_long_conv.py --crossover     the C direct sum against the C FFT by T (L = T),
                                                       forward + backward: where the auto path switches
"""
import argparse
import math
import time

import numpy as np

from hybridref.backends.c import CBackend

B, D, THREADS = 4, 128, 2
SIZES = (1024, 2048, 4096, 8192, 16384, 32768, 65536)


def _inputs(T):
    rng = np.random.default_rng(0)
    u, dy = (rng.standard_normal((B, T, D), dtype=np.float32) for _ in range(2))
    return u, rng.standard_normal((T, D), dtype=np.float32), dy


def _best(call, rounds):
    call()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def _c(be, u, h, dy, method="auto"):
    def call():
        be.long_conv_forward(u, h, method=method)
        be.long_conv_backward(dy, u, h, method=method)
    return call


def _torch(u, h, dy):
    import torch
    torch.set_num_threads(THREADS)
    ut = torch.tensor(u).transpose(1, 2).contiguous().requires_grad_()  # (B, D, T) as safari
    kt = torch.tensor(h).T.contiguous().requires_grad_()                 # (D, T)
    dyt = torch.tensor(dy).transpose(1, 2).contiguous()
    bias = torch.zeros(D)

    def call():
        T = ut.shape[-1]
        n = 2 * T
        k_f = torch.fft.rfft(kt, n=n) / n
        u_f = torch.fft.rfft(ut, n=n)
        y = torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., :T] + ut * bias[:, None]
        y.backward(dyt)
        ut.grad = kt.grad = None
    return call


def table():
    be = CBackend(threads=THREADS)
    print(f"long_conv forward+backward, B={B}, D={D}, L=T, {THREADS} threads ({be.describe()})")
    print(f"{'T':>7} {'c (s)':>9} {'torch (s)':>10} {'torch/c':>8} {'c/(T log2 T) (ns)':>19}")
    for T in SIZES:
        u, h, dy = _inputs(T)
        rounds = 5 if T <= 8192 else 2
        tc = _best(_c(be, u, h, dy), rounds)
        tt = _best(_torch(u, h, dy), rounds)
        print(f"{T:>7} {tc:>9.4f} {tt:>10.4f} {tt / tc:>8.2f} {1e9 * tc / (T * math.log2(T)):>19.3f}", flush=True)


def crossover():
    be = CBackend(threads=THREADS)
    print(f"long_conv forward+backward, B={B}, D={D}, L=T: direct sum vs FFT ({be.describe()})")
    print(f"{'T':>6} {'direct (ms)':>12} {'fft (ms)':>9}")
    for T in (16, 32, 48, 64, 96, 128, 192, 256, 512):
        u, h, dy = _inputs(T)
        td, tf = (_best(_c(be, u, h, dy, m), 60) for m in ("direct", "fft"))
        print(f"{T:>6} {1e3 * td:>12.3f} {1e3 * tf:>9.3f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crossover", action="store_true")
    (crossover if ap.parse_args().crossover else table)()
