"""Throughput of batched decoding: B independent streams of one preset, prompts of different lengths
(each stream at its own position: Decoder.prefill_streams), through the C token loop (Decoder.generate:
a step of all B streams, then sampling at temperature 1, in one C call per TOKENS tokens).

    python benchmarks/bench_decode_batched.py [--arch hybrid] [--batches 1 8 32 128] [--threads 1 2]
                                              [--tokens 64] [--rounds 5]

tokens/s = B · TOKENS / the time of the call. Prompts are 32 to 96 tokens (context ~64, as the one-stream
figures of profile_decode.py). Every (B, threads) case is timed once per round, the cases interleaved, the
median over rounds reported with the load average (the machine is shared).

Batched decoding is bound by arithmetic, not by reading the weights, so the table also gives the GFLOP/s of
the decoder's matrix products (2 · the multiply-adds of its weight matrices per token · tokens/s) against
a compute bound measured in the same run: numpy's float32 matmul (OpenBLAS) of two 2048 × 2048 matrices
on as many threads, in a child process with OPENBLAS_NUM_THREADS set, the best of three.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from hybridref.backends import get_backend
from hybridref.models.char_lm import CharLM

V = 65


def rate(model, B, tokens, rng):
    """tokens/s of one call of B streams generating `tokens` tokens each."""
    prompts = [rng.integers(0, V, int(n)) for n in rng.integers(32, 97, B)]
    dec = model.decoder(B, 96 + tokens)
    logits = dec.prefill_streams(prompts)
    t0 = time.perf_counter()
    dec.generate(logits, tokens, seed=0, temperature=1.0)
    return B * tokens / (time.perf_counter() - t0)


SGEMM = """
import time, numpy as np
a, b = (np.random.default_rng(i).standard_normal((2048, 2048), dtype=np.float32) for i in (0, 1))
best = 0.0
for _ in range(3):
    t0 = time.perf_counter(); a @ b; best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - t0))
print(best / 1e9)
"""


def sgemm_gflops(threads):
    """numpy's (OpenBLAS) float32 matmul GFLOP/s on `threads` threads, in a child process (the thread count
    of OpenBLAS is fixed when numpy loads)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    return float(subprocess.run([sys.executable, "-c", SGEMM], env=env, capture_output=True, text=True,
                                check=True).stdout)


def matrix_macs(model):
    """Multiply-adds per token of the decoder's weight matrices (the embedding is a lookup)."""
    return sum(w.size for w in model.decoder(1, 1).matrices if w is not model.embed.weight.data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="hybrid")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32, 128])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    be = get_backend("c")
    model = CharLM.preset(args.arch, V).to(be)
    rng = np.random.default_rng(0)
    cases = [(B, t) for t in args.threads for B in args.batches]
    results = {case: [] for case in cases}
    peak = {t: [] for t in args.threads}
    for _ in range(args.rounds):
        for B, threads in cases:
            be.set_threads(threads)
            results[(B, threads)].append(rate(model, B, args.tokens, rng))
        for threads in args.threads:
            peak[threads].append(sgemm_gflops(threads))
    load, flops = os.getloadavg(), 2 * matrix_macs(model)
    peak = {t: np.median(v) for t, v in peak.items()}
    print(f"{args.arch}, {args.tokens} tokens per stream per call, median of {args.rounds} rounds; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, 2 cores); {flops / 1e6:.2f} MFLOP of matrix "
          f"products per token; OpenBLAS sgemm: " + ", ".join(f"{peak[t]:.0f} GFLOP/s on {t}" for t in args.threads))
    print("| streams B | " + " | ".join(f"{t} thread{'s' * (t > 1)}: tokens/s (GFLOP/s, % of sgemm)"
                                        for t in args.threads) + " |")
    print("| ---: |" + " ---: |" * len(args.threads))
    for B in args.batches:
        cells = []
        for t in args.threads:
            r = np.median(results[(B, t)])
            cells.append(f"{r:,.0f} ({r * flops / 1e9:.0f}, {100 * r * flops / 1e9 / peak[t]:.0f} %)")
        print(f"| {B} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
