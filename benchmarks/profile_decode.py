"""Where the time of one decode step goes, per token, for the ~1.2 M-parameter presets on one thread:

    python benchmarks/profile_decode.py [--archs hybrid transformer mamba] [--contexts 64 4096] [--tokens 2000]

Rows (µs per token, each measured on its own, all at the same context):
  C <part>        the parts of hr_decode_step, timed inside C by its optional hook (hr_decode_profile):
                  scratch alloc/free, embedding, norms, residual adds, MLP, head, and each mixer kind
  cffi call       the bare hr_decode_step call with the hook on, minus the time measured inside C: the
                  crossing of the cffi boundary and argument conversion
  hook            the hook's own clock reads: the bare call with the hook on minus with it off
  Python step     Decoder.step minus the bare call: argument checks, the logits copy, on_step callbacks
  sampling        hybridref.generate.sample (temperature 1, top-k 20, top-p 0.9) on one row of logits
  generate        tokens/s of hybridref.generate.stream (the path of `hybridref generate`, sampling
                  as above), the prompt (the context) prefilled before the clock starts

A step is timed in blocks of 16 tokens after which the decoder is rewound (as benchmarks/bench_decode.py),
so every step runs at the context asked for; `generate` runs its tokens past the context (+--tokens).
The machine is shared: every figure is the median of --rounds rounds, interleaved, and `uptime`'s load is
printed with the table.
"""
import argparse
import os
import time

import numpy as np

from hybridref.backends import get_backend
from hybridref.data.shakespeare import CharVocab
from hybridref.generate import sample, stream
from hybridref.models.char_lm import CharLM

V, BLOCK = 65, 16
SAMPLING = dict(temperature=1.0, top_k=20, top_p=0.9)
PARTS = ["scratch alloc/free", "embedding", "norms", "residual adds", "MLP", "head"]  # DEC_PROF_* of decode.c
KINDS = ["attention", "mamba"]  # the mixer kinds of the presets profiled


def _decoder(model, ctx, tokens):
    dec = model.decoder(1, ctx + tokens)
    dec.prefill(np.random.default_rng(0).integers(0, V, (1, ctx)))
    return dec


def _rewind(dec, n):
    """Back n positions (benchmark only: a recurrent state is not rewound, which changes its values, not its cost)."""
    dec._ref.pos -= n
    for st in dec.states:
        if "k" in st:
            st["length"] = dec._ref.pos


def _per_token(dec, run, tokens, rewind=True):
    """Seconds per token of run(t) over `tokens` steps in blocks of BLOCK, rewinding after each block
    (a run that does not advance the decoder's position has nothing to rewind)."""
    elapsed = 0.0
    for _ in range(tokens // BLOCK):
        t0 = time.perf_counter()
        for t in range(BLOCK):
            run(t)
        elapsed += time.perf_counter() - t0
        if rewind:
            _rewind(dec, BLOCK)
    return elapsed / (tokens // BLOCK * BLOCK)


def _raw_call(dec):
    """The bare hr_decode_step call of Decoder.step with its arguments converted once (no checks, no copy),
    at positions pos + t; it leaves the decoder's position where it is."""
    be, ffi = dec.be, dec.be.ffi
    ids = np.zeros(1, np.int64)
    args = (ffi.cast("int *", ffi.from_buffer(dec._cfg)), be.f32(dec._fcfg), dec._w, dec._state, be.i64(ids),
            be.f32(dec._logits), 1)
    lib = be.lib

    def run(t):
        lib.hr_decode_step(*args, dec._ref.pos + t)
    return run


def profile(arch, ctx, tokens):
    """{row: µs per token} for one preset at one context."""
    be = get_backend("c")
    model = CharLM.preset(arch, V).to(be)
    lib, ffi = be.lib, be.ffi
    out = {}
    dec = _decoder(model, ctx, BLOCK)
    ids = np.zeros(1, np.int64)
    step = _per_token(dec, lambda t: dec.step(ids), tokens)
    raw_off = _per_token(dec, _raw_call(dec), tokens, rewind=False)
    slots = np.zeros(lib.hr_decode_profile(ffi.NULL), np.float64)
    lib.hr_decode_profile(ffi.cast("double *", ffi.from_buffer(slots)))
    try:
        raw_on = _per_token(dec, _raw_call(dec), tokens, rewind=False)
    finally:
        lib.hr_decode_profile(ffi.NULL)
    n = tokens // BLOCK * BLOCK
    for name, s in zip(PARTS, slots):
        out[f"C {name}"] = s / n
    for kind in KINDS:
        out[f"C {kind} mixers"] = slots[len(PARTS) + lib.hr_decode_kind(kind.encode())] / n
    out["cffi call"] = raw_on - slots.sum() / n
    out["hook (clock reads)"] = raw_on - raw_off
    out["Python step"] = step - raw_off
    logits = dec.step(ids)[0]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(tokens):
        sample(logits, rng, **SAMPLING)
    out["sampling"] = (time.perf_counter() - t0) / tokens
    out["= one step (Decoder.step)"] = step
    vocab = CharVocab("".join(chr(32 + i) for i in range(V)))
    prompt = "".join(np.random.default_rng(1).choice(list(vocab.chars), ctx))
    text = stream(model, vocab, prompt, tokens, seed=0, **SAMPLING)
    t0 = time.perf_counter()
    for _ in text:
        pass
    out["generate (per token)"] = (time.perf_counter() - t0) / tokens
    return {k: 1e6 * v for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="+", default=["hybrid", "transformer", "mamba"])
    ap.add_argument("--contexts", nargs="+", type=int, default=[64, 4096])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    get_backend("c").set_threads(1)
    cases = [(a, c) for a in args.archs for c in args.contexts]
    results = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case in cases:
            results[case].append(profile(*case, args.tokens))
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min, 2 cores); "
          f"median of {args.rounds} rounds, {args.tokens} tokens each, 1 thread, µs per token")
    rows = list(results[cases[0]][0])
    print("| part | " + " | ".join(f"{a} ctx {c}" for a, c in cases) + " |")
    print("| --- |" + " ---: |" * len(cases))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{np.median([r[row] for r in results[case]]):.1f}" for case in cases) + " |")
    print("| generate tokens/s | " + " | ".join(
        f"{1e6 / np.median([r['generate (per token)'] for r in results[case]]):,.0f}" for case in cases) + " |")


if __name__ == "__main__":
    main()
