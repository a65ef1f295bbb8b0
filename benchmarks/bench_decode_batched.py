"""Throughput of batched decoding: B independent streams of one preset, prompts of different lengths
(each stream at its own position: Decoder.prefill_streams), through the C token loop (Decoder.generate:
a step of all B streams, then sampling at temperature 1, in one C call per TOKENS tokens).

    python benchmarks/bench_decode_batched.py [--arch hybrid] [--batches 1 8 32 128] [--threads 1 2]
                                              [--tokens 64] [--rounds 5]

tokens/s = B · TOKENS / the time of the call. Prompts are 32 to 96 tokens (context ~64, as the one-stream
figures of profile_decode.py). Every (B, threads) case is timed once per round, the cases interleaved, the
median over rounds reported with the load average (the machine is shared).
"""
import argparse
import os
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
    for _ in range(args.rounds):
        for B, threads in cases:
            be.set_threads(threads)
            results[(B, threads)].append(rate(model, B, args.tokens, rng))
    load = os.getloadavg()
    print(f"{args.arch}, {args.tokens} tokens per stream per call, median of {args.rounds} rounds; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, 2 cores)")
    print("| streams B | " + " | ".join(f"{t} thread{'s' * (t > 1)} tokens/s" for t in args.threads) + " |")
    print("| ---: |" + " ---: |" * len(args.threads))
    for B in args.batches:
        print(f"| {B} | " + " | ".join(f"{np.median(results[(B, t)]):,.0f}" for t in args.threads) + " |")


if __name__ == "__main__":
    main()
