"""Where the time of one decode step goes, per token, for the ~1.2 M-parameter presets on one thread:

    python benchmarks/profile_decode.py [--archs hybrid transformer mamba] [--contexts 64 4096] [--tokens 2000]
                                        [--weights f32 bf16]

Rows (µs per token, each measured on its own, all at the same context):
  C <part>        the parts of the C token loop (hr_generate: decoder step and sampling), timed inside C
                  by its optional hook (hr_decode_profile): scratch alloc/free, embedding, norms,
                  residual adds, MLP, head, sampling, and each mixer kind
  call + Python   Decoder.generate of BLOCK tokens minus the time measured inside C, per token: the cffi
                  crossing, argument checks and conversion, shared by the tokens of a call
  hook            the hook's own clock reads: Decoder.generate with the hook on minus with it off
  = token loop    Decoder.generate (hook off), per token
  generate        tokens/s of hybridref.generate.stream (the path of `hybridref generate`: chunks of up to
                  256 tokens of the token loop), the prompt (the context) prefilled before the clock starts,
                  --generate-tokens tokens past it (default --tokens): the context grows by as many
and, for comparison, the per-token Python path that `hybridref generate` took before the token loop
moved to C:
  Decoder.step    one C step per Python call (checks, the call, the logits copy)
  NumPy sampling  backends/numpy/sample.py on one row of logits
Sampling is temperature 1, top-k 20, top-p 0.9 throughout.

The token loop is timed in calls of BLOCK = 16 tokens after which the decoder is rewound (as
benchmarks/bench_decode.py), so every step runs at the context asked for; `generate` runs its tokens past
the context (+--generate-tokens). --weights: the decoder's weight matrices (f32, or bf16: half the bytes a token
reads), each a column of its own. The machine is shared: every figure is the median of --rounds rounds,
interleaved, and the load average is printed with the table.
"""
import argparse
import os
import time

import numpy as np

from hybridref.backends import get_backend
from hybridref.backends.numpy.sample import sample
from hybridref.generate import stream_ids
from hybridref.models.char_lm import CharLM

V, BLOCK = 65, 16
SAMPLING = dict(seed=0, temperature=1.0, top_k=20, top_p=0.9)
PARTS = ["scratch alloc/free", "embedding", "norms", "residual adds", "MLP", "head", "sampling"]  # DEC_PROF_*
KINDS = ["attention", "mamba"]  # the mixer kinds of the presets profiled


def _rewind(dec, n):
    """Back n positions (benchmark only: a recurrent state is not rewound, which changes its values, not its cost)."""
    dec._ref.pos -= n
    for st in dec.states:
        if "k" in st:
            st["length"] = dec._ref.pos


def _per_token(dec, run, tokens):
    """Seconds per token of run() (BLOCK tokens) over `tokens` tokens, rewinding after each call."""
    elapsed = 0.0
    for _ in range(tokens // BLOCK):
        t0 = time.perf_counter()
        run()
        elapsed += time.perf_counter() - t0
        _rewind(dec, BLOCK)
    return elapsed / (tokens // BLOCK * BLOCK)


def profile(arch, ctx, weights, tokens, generate_tokens):
    """{row: µs per token} for one preset at one context with the decoder's `weights`."""
    be = get_backend("c")
    model = CharLM.preset(arch, V).to(be)
    lib, ffi = be.lib, be.ffi
    dec = model.decoder(1, ctx + BLOCK + 1, weights=weights)
    logits = dec.prefill(np.random.default_rng(0).integers(0, V, (1, ctx)))
    loop = lambda: dec.generate(logits, BLOCK, final=False, **SAMPLING)  # noqa: E731
    off = _per_token(dec, loop, tokens)
    slots = np.zeros(lib.hr_decode_profile(ffi.NULL), np.float64)
    lib.hr_decode_profile(ffi.cast("double *", ffi.from_buffer(slots)))
    try:
        on = _per_token(dec, loop, tokens)
    finally:
        lib.hr_decode_profile(ffi.NULL)
    n = tokens // BLOCK * BLOCK
    out = {f"C {name}": s / n for name, s in zip(PARTS, slots)}
    for kind in KINDS:
        out[f"C {kind} mixers"] = slots[len(PARTS) + lib.hr_decode_kind(kind.encode())] / n
    out["call + Python"] = on - slots.sum() / n
    out["hook (clock reads)"] = on - off
    out["= token loop (Decoder.generate)"] = off
    ids = np.zeros(1, np.int64)

    def steps():
        for _ in range(BLOCK):
            dec.step(ids)
    out["before: Decoder.step"] = _per_token(dec, steps, tokens)
    t0, positions = time.perf_counter(), np.zeros(1, np.int64)
    for _ in range(tokens):
        sample(logits, positions, **SAMPLING)
    out["before: NumPy sampling"] = (time.perf_counter() - t0) / tokens
    prompt = np.random.default_rng(1).integers(0, V, ctx)
    text = stream_ids(model, prompt, generate_tokens, **SAMPLING, weights=weights)
    t0 = time.perf_counter()
    for _ in text:
        pass
    out["generate (per token)"] = (time.perf_counter() - t0) / generate_tokens
    return {k: 1e6 * v for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="+", default=["hybrid", "transformer", "mamba"])
    ap.add_argument("--contexts", nargs="+", type=int, default=[64, 4096])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--weights", nargs="+", choices=["f32", "bf16"], default=["f32"])
    ap.add_argument("--generate-tokens", type=int, default=None,
                    help="tokens the generate row runs past the context (default: --tokens)")
    args = ap.parse_args()
    generate_tokens = args.generate_tokens or args.tokens
    get_backend("c").set_threads(1)
    cases = [(a, c, w) for a in args.archs for c in args.contexts for w in args.weights]
    results = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case in cases:
            results[case].append(profile(*case, args.tokens, generate_tokens))
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min, 2 cores); "
          f"median of {args.rounds} rounds, {args.tokens} tokens each (generate: {generate_tokens} past the context), "
          f"1 thread, µs per token")
    rows = list(results[cases[0]][0])
    print("| part | " + " | ".join(f"{a} ctx {c}" + (f" {w}" if len(args.weights) > 1 else "")
                                    for a, c, w in cases) + " |")
    print("| --- |" + " ---: |" * len(cases))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{np.median([r[row] for r in results[case]]):.1f}" for case in cases) + " |")
    print("| generate tokens/s | " + " | ".join(
        f"{1e6 / np.median([r['generate (per token)'] for r in results[case]]):,.0f}" for case in cases) + " |")


if __name__ == "__main__":
    main()
