"""Decode memory and per-token cost of a Griffin model against the context length: the C decoder
(one C call per token), one stream, at context 64, 4,096 and 32,768.

The model is the proposed "griffin" preset (GRIFFIN below: "LLALLA", d_model 128, RG-LRU blocks,
multi-query local attention with a window of 128, gated GeLU MLPs). Its attention layers keep a ring
of window + 1 = 129 key/value rows and its recurrent blocks a (3 + 1) × lru_width state, so the
decode state and the cost of a step are the same at every context. For contrast, the same model with
global attention (window None): its KV cache has max_len rows and a step reads every one.

Griffin's states come from a real prefill of a random prompt of the context's length (the parallel
C forward). The global-attention model is not prefilled at 32,768 tokens (O(T²)): its decoder is
placed at the context position with its caches as they are (a step's cost does not depend on what
the cache holds). Each round times STEPS steps, then rewinds the decoder by STEPS positions (cache
rows are overwritten; a recurrent state's values drift, its cost does not), so every round decodes
at the same context; rounds of the contexts and models are interleaved; the median is reported.

    python benchmarks/bench_griffin_decode.py [--threads 2] [--steps 64] [--rounds 7]
"""
import argparse
import time

import numpy as np

from hybridref.backends.c import CBackend
from hybridref.models.char_lm import CharLM

V = 65
CONTEXTS = (64, 4096, 32768)
GRIFFIN = dict(d_model=128, pattern="LLALLA", mlp_kind="gated_gelu", mlp_hidden={"L": 384, "A": 384},
               mixers={"L": dict(n_heads=4), "A": dict(n_heads=4, n_kv_heads=1, window=128)})


def model(window, be):
    cfg = dict(GRIFFIN, mixers={**GRIFFIN["mixers"], "A": {**GRIFFIN["mixers"]["A"], "window": window}})
    return CharLM(V, **cfg).to(be)


def state_bytes(dec):
    """Bytes of every layer's decode state (KV rings or caches, conv and recurrence states)."""
    return sum(a.nbytes for st in dec.states for a in st.values() if isinstance(a, np.ndarray))


def stream(m, ctx, steps, prefill):
    dec = m.decoder(1, ctx + steps)
    rng = np.random.default_rng(0)
    if prefill:
        dec.prefill(rng.integers(0, V, (1, ctx)))
    else:  # placed at position ctx without computing it (see the module docstring)
        dec.prefill(rng.integers(0, V, (1, 1)))
        dec._ref.pos = ctx
        for st in dec.states:
            if "length" in st:
                st["length"] = ctx
    ids = rng.integers(0, V, steps)

    def run():
        t0 = time.perf_counter()
        for t in range(steps):
            dec.step(ids[t:t + 1])
        elapsed = time.perf_counter() - t0
        dec._ref.pos -= steps  # rewind: the C decoder keeps its position in the reference decoder
        for st in dec.states:
            for key in ("length", "pos"):
                if key in st:
                    st[key] = dec._ref.pos
        return elapsed / steps
    return dec, run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    be = CBackend(threads=args.threads)
    models = {"griffin (window 128)": model(128, be), "global attention": model(None, be)}
    print(f"griffin: {models['griffin (window 128)'].num_params():,} parameters")
    runs = {}
    for ctx in CONTEXTS:
        for name, m in models.items():
            t0 = time.perf_counter()
            runs[name, ctx] = stream(m, ctx, args.steps, prefill=name.startswith("griffin"))
            if name.startswith("griffin"):
                print(f"prefill {ctx} tokens ({name}): {time.perf_counter() - t0:.2f} s", flush=True)
    times = {key: [] for key in runs}
    for _ in range(args.rounds):  # interleaved: every (model, context) once per round
        for key, (_, run) in runs.items():
            times[key].append(run())
    print(f"\nC decoder, 1 stream, {args.threads} threads, {args.steps} steps x {args.rounds} rounds (median)")
    print(f"{'model':<22} {'context':>8} {'state (KiB)':>12} {'us/token':>10}")
    for (name, ctx), (dec, _) in runs.items():
        print(f"{name:<22} {ctx:>8} {state_bytes(dec) / 1024:>12.1f} {1e6 * np.median(times[name, ctx]):>10.1f}")


if __name__ == "__main__":
    main()
