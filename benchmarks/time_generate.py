"""Load time and greedy decode speed of `hybridref generate` on a checkpoint of token ids (a model converted
from Hugging Face), on the C backend, the path of the command (hybridref.generate.stream_ids):

    OMP_NUM_THREADS=1 python benchmarks/time_generate.py runs/mamba-130m.safetensors [--tokens 64] [--rounds 3]

The clock of a round covers the prefill of an 8-token prompt and --tokens decode steps. The machine may be
shared: each round is printed, with `uptime`'s load.
"""
import argparse
import os
import time

import numpy as np

from hybridref.backends import get_backend
from hybridref.generate import load_model, stream_ids

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    be = get_backend("c")
    start = time.perf_counter()
    model, _ = load_model(args.checkpoint, be, need_vocab=False)
    print(f"load {time.perf_counter() - start:.1f} s ({model.num_params():,} parameters), threads {be.threads}, "
          f"load average {os.getloadavg()[0]:.1f}")
    prompt = np.arange(1, 9, dtype=np.int64)
    for _ in range(args.rounds):
        start = time.perf_counter()
        list(stream_ids(model, prompt, args.tokens, temperature=0))
        seconds = time.perf_counter() - start
        print(f"prefill 8 + {args.tokens} tokens: {seconds:.2f} s = {args.tokens / seconds:.1f} tokens/s")
