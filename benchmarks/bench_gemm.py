"""GEMM throughput (GFLOP/s) of the C backend's matmul against numpy (OpenBLAS) and torch.

Shapes: the model's linear layers (M, K, N) in the three forms training runs
(forward y = x wᵀ, NT; dx = dy w, NN; dw = dyᵀ x, TN) and 512/1024/2048 squares.
Target: C >= 0.8x numpy everywhere. Run either
    python -m pytest benchmarks/bench_gemm.py -o python_files='bench_*.py' --benchmark-only
or, for a side-by-side table (best of interleaved rounds, robust to a busy machine),
    python benchmarks/bench_gemm.py [--rounds 15] [--threads 2]
"""
import argparse
import time

import numpy as np
import pytest

from hybridref.backends.c import CBackend

try:
    import torch
except ImportError:
    torch = None

MODEL_SHAPES = [(2048, 64, 256), (2048, 256, 64), (2048, 64, 128), (2048, 128, 64), (2048, 64, 64), (2048, 128, 36)]


def _cases():
    """(label, a shape, b shape, trans_a, trans_b) for every benchmarked product."""
    cases = []
    for M, K, N in MODEL_SHAPES:
        cases.append((f"fwd x wT {M}x{K}x{N}", (M, K), (N, K), False, True))
        cases.append((f"dx dy w {M}x{N}x{K}", (M, N), (N, K), False, False))
        cases.append((f"dw dyT x {N}x{M}x{K}", (M, N), (M, K), True, False))
    for n in (512, 1024, 2048):
        cases.append((f"square {n}", (n, n), (n, n), False, False))
    return cases


CASES = _cases()


def _flops(a_shape, b_shape, trans_a, trans_b):
    M, K = a_shape[::-1] if trans_a else a_shape
    N = b_shape[0] if trans_b else b_shape[1]
    return 2.0 * M * K * N


def _operands(a_shape, b_shape):
    rng = np.random.default_rng(0)
    return rng.standard_normal(a_shape, dtype=np.float32), rng.standard_normal(b_shape, dtype=np.float32)


def _runner(peer, a, b, trans_a, trans_b):
    """A no-argument callable computing op(a) op(b) with `peer` (c, numpy or torch)."""
    if peer == "c":
        be = CBackend()
        return lambda: be.matmul(a, b, trans_a, trans_b)
    if peer == "numpy":
        oa, ob = (a.T if trans_a else a), (b.T if trans_b else b)
        return lambda: oa @ ob
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    oa, ob = (ta.T if trans_a else ta), (tb.T if trans_b else tb)
    return lambda: torch.matmul(oa, ob)


PEERS = ["c", "numpy"] + (["torch"] if torch is not None else [])


@pytest.mark.parametrize("case", CASES, ids=[c[0].replace(" ", "_") for c in CASES])
@pytest.mark.parametrize("peer", PEERS)
def test_gemm(benchmark, peer, case):
    label, a_shape, b_shape, trans_a, trans_b = case
    fn = _runner(peer, *_operands(a_shape, b_shape), trans_a, trans_b)
    benchmark.group = label
    benchmark(fn)
    flops = _flops(a_shape, b_shape, trans_a, trans_b)
    benchmark.extra_info.update(peer=peer, flops=flops,
                                gflops_best=flops / benchmark.stats.stats.min / 1e9,
                                gflops_median=flops / benchmark.stats.stats.median / 1e9)


def _best_seconds(fn, budget_s):
    """Best time of one call over calls filling about budget_s (after one warm-up call)."""
    fn()
    best, spent = float("inf"), 0.0
    while spent < budget_s:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved C/numpy rounds per shape")
    parser.add_argument("--threads", type=int, default=None, help="C backend OpenMP threads (default: all)")
    args = parser.parse_args()
    be = CBackend(threads=args.threads)
    print(f"# {be.describe()}; numpy {np.__version__}; best of {args.rounds} interleaved rounds")
    print(f"{'shape':<26}{'C GFLOP/s':>10}{'numpy':>10}{'ratio':>8}" + (f"{'torch':>10}" if torch else ""))
    for label, a_shape, b_shape, trans_a, trans_b in CASES:
        a, b = _operands(a_shape, b_shape)
        runners = {peer: _runner(peer, a, b, trans_a, trans_b) for peer in PEERS}
        best = {peer: float("inf") for peer in PEERS}
        # Alternate peers round by round so a burst of load from elsewhere hits both.
        for _ in range(args.rounds):
            for peer, fn in runners.items():
                best[peer] = min(best[peer], _best_seconds(fn, 0.02))
        gf = {peer: _flops(a_shape, b_shape, trans_a, trans_b) / best[peer] / 1e9 for peer in PEERS}
        line = f"{label:<26}{gf['c']:>10.1f}{gf['numpy']:>10.1f}{gf['c'] / gf['numpy']:>8.2f}"
        print(line + (f"{gf['torch']:>10.1f}" if torch else ""), flush=True)


if __name__ == "__main__":
    main()
