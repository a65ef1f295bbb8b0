"""GEMM throughput (GFLOP/s) of the C backend's matmul against numpy (OpenBLAS) and torch.

Shapes: the model's linear layers (M, K, N) in the three forms training runs
(forward y = x wᵀ, NT; dx = dy w, NN; dw = dyᵀ x, TN) and 512/1024/2048 squares.
Target: C >= 0.8x numpy everywhere. Run either
    python -m pytest benchmarks/bench_gemm.py -o python_files='bench_*.py' --benchmark-only
or, for a side-by-side table (best call, peers alternating, robust to a busy machine),
    python benchmarks/bench_gemm.py [--seconds 2] [--threads 2] [--only square]
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


def _best_gflops(runners, flops, budget_s, window_s=0.1):
    """Best GFLOP/s of each runner over rounds of back-to-back calls, each peer
    running for window_s in turn until budget_s has passed: a burst of load from
    elsewhere hits all peers alike. Whole windows, not single calls, alternate
    because a BLAS's worker threads keep spinning for a while after each call and
    would steal the cores from the next call of another peer."""
    best = {peer: float("inf") for peer in runners}
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s:
        for peer, fn in runners.items():
            fn()  # the first call after another peer's window pays for its spinning threads
            end, calls = time.perf_counter() + window_s, 0
            while calls < 3 or time.perf_counter() < end:
                t = time.perf_counter()
                fn()
                best[peer] = min(best[peer], time.perf_counter() - t)
                calls += 1
    return {peer: flops / seconds / 1e9 for peer, seconds in best.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per shape")
    parser.add_argument("--threads", type=int, default=None, help="C backend OpenMP threads (default: all)")
    parser.add_argument("--only", default="", help="run only shapes whose label contains this text")
    args = parser.parse_args()
    be = CBackend(threads=args.threads)
    print(f"# {be.describe()}; numpy {np.__version__}; best call, peers alternating in 0.1 s windows, {args.seconds} s per shape")
    print(f"{'shape':<26}{'C GFLOP/s':>10}{'numpy':>10}{'ratio':>8}" + (f"{'torch':>10}" if torch else ""))
    for label, a_shape, b_shape, trans_a, trans_b in CASES:
        if args.only not in label:
            continue
        a, b = _operands(a_shape, b_shape)
        runners = {peer: _runner(peer, a, b, trans_a, trans_b) for peer in PEERS}
        gf = _best_gflops(runners, _flops(a_shape, b_shape, trans_a, trans_b), args.seconds)
        line = f"{label:<26}{gf['c']:>10.1f}{gf['numpy']:>10.1f}{gf['c'] / gf['numpy']:>8.2f}"
        print(line + (f"{gf['torch']:>10.1f}" if torch else ""), flush=True)


if __name__ == "__main__":
    main()
