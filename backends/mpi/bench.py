"""The long-sequence scaling workload of `hybridref bench mpi` (and benchmarks/bench_mpi.py).

One process of `mpiexec -n P python -m hybridref.backends.mpi.bench ...`: a Mamba-heavy stack
(default "MMMA": three Mamba blocks and one sliding-window attention block, each with an MLP)
runs forward + backward on one long sequence split over the P processes; the loss is
Σ out ⊙ G for a fixed random G, so no pooling or head is involved. Rank 0 prints one JSON line
with the step times (each step between two barriers, so it is the slowest process's time).
"""
import argparse
import json
import time

import numpy as np

from hybridref.layers.block import build_blocks
from hybridref.layers.linear import Linear
from hybridref.layers.module import Module
from hybridref.layers.registry import resolve_mlp_hidden, resolve_options

from . import MPIBackend


class LongSequenceStack(Module):
    """x (B,T,F) -> Linear -> blocks -> (B,T,D): the model graph of any layer pattern, no pooling."""

    def __init__(self, d_in, d_model, pattern, n_heads, window, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.embed = Linear(d_in, d_model, rng=rng)
        mixers = resolve_options(pattern, flat=dict(n_heads=n_heads, window=window, rope_base=None))
        self.blocks = build_blocks(pattern, d_model, mixers, resolve_mlp_hidden(pattern, d_model, 4 * d_model), "rmsnorm",
                                   rng)

    def forward(self, x):
        h = self.embed.forward(self.be.shard_tokens(x))
        for block in self.blocks:
            h = block.forward(h)
        return h

    def backward(self, dout):
        for block in reversed(self.blocks):
            dout = block.backward(dout)
        self.embed.backward(dout)


def run(tokens, pattern, d_model, n_heads, window, threads, steps, local="c", batch=1, scan="pipeline"):
    """Time `steps` forward+backward passes (after one warm-up); returns a summary dict (all ranks)."""
    be = MPIBackend(local=local, threads=threads, scan=scan)
    model = LongSequenceStack(16, d_model, pattern, n_heads, window).to(be)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, tokens, 16)).astype(np.float32)
    g = be.shard_tokens(rng.standard_normal((batch, tokens, d_model)).astype(np.float32))
    times = []
    for step in range(steps + 1):
        model.zero_grad()
        be.comm.Barrier()
        t0 = time.perf_counter()
        model.forward(x)
        model.backward(g)
        be.reduce_gradients(model.params())
        be.comm.Barrier()
        if step:  # the first pass warms caches and allocators up
            times.append(time.perf_counter() - t0)
    return dict(processes=be.size, threads=be.threads, tokens=tokens, batch=batch, pattern=pattern,
                d_model=d_model, window=window, local=be.local.name, scan=be.scan, step_s=times,
                median_s=float(np.median(times)), min_s=min(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--pattern", default="MMMA")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--local", default="c")
    ap.add_argument("--scan", default="pipeline", help="how the selective scan's state is passed: pipeline, exscan")
    a = ap.parse_args(argv)
    out = run(a.tokens, a.pattern, a.d_model, a.heads, a.window, a.threads, a.steps, a.local, scan=a.scan)
    from mpi4py import MPI
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
