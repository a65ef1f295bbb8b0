"""Decode speed (tokens/s, one stream) of the three ~1.2M-parameter presets at context 64, 512 and 4096:
the C decoder (one C call per token) against the NumPy layer-by-layer decoder and the same model in
PyTorch generating with a KV cache and Mamba's recurrent state (tests/torch_ref/models.py).

    python -m pytest benchmarks/bench_decode.py -o python_files='bench_*.py' --benchmark-only

A timed call is STEPS tokens; the decoder is then rewound by STEPS positions, so every call runs at
the same context (cache rows are overwritten, nothing else depends on the position). hybridref's
states come from a real prefill of a random prompt; the torch peer's are filled with random values
(a step's cost does not depend on what the cache holds). tokens/s = STEPS / mean time.

test_step_cost_vs_position: the C decoder's step at positions 10 and 8000: a recurrent model's step
(Mamba, Mamba-2, RetNet, GLA, RWKV-7, and Griffin, whose local attention keeps a ring of its window)
costs the same at both, a global-attention model's grows with the position.
"""
import numpy as np
import pytest

from hybridref.backends import get_backend
from hybridref.models.char_lm import PRESETS, CharLM

try:
    import torch
    from torch_ref.models import TorchCharLM
except ImportError:
    torch = None

V, STEPS = 65, 16
CONTEXTS = (64, 512, 4096)


def _model(arch, backend):
    return CharLM.preset(arch, V).to(get_backend(backend))


def _hybridref_stream(model, ctx):
    dec = model.decoder(1, ctx + STEPS)
    rng = np.random.default_rng(0)
    dec.prefill(rng.integers(0, V, (1, ctx)))
    ids = rng.integers(0, V, STEPS)

    def run():
        for t in range(STEPS):
            dec.step(ids[t:t + 1])
        # rewind the position (a benchmark-only trick: Mamba states are not rewound, which changes
        # their values but not the cost), so the next call decodes at the same positions again
        ref = getattr(dec, "_ref", dec)  # the C decoder keeps its position in the reference decoder
        ref.pos -= STEPS
        for st in dec.states:
            if "k" in st:
                st["length"] = ref.pos
    return run


def _torch_stream(model, ctx):
    peer = TorchCharLM(model.state_dict(), model.config)
    state = peer.init_state(1, ctx + STEPS, pos=ctx, fill=torch.Generator().manual_seed(0))
    ids = torch.randint(0, V, (STEPS, 1), generator=torch.Generator().manual_seed(1))

    def run():
        with torch.inference_mode():
            for t in range(STEPS):
                peer.step(ids[t], state)
        state["pos"] -= STEPS
    return run


@pytest.mark.parametrize("ctx", CONTEXTS, ids=[f"ctx{c}" for c in CONTEXTS])
@pytest.mark.parametrize("arch", list(PRESETS))
@pytest.mark.parametrize("peer", ["c", "numpy", "torch"])
def test_decode(benchmark, peer, arch, ctx):
    model = _model(arch, "numpy" if peer == "torch" else peer)
    limit = min(getattr(b.mixer, "l_max", ctx + STEPS) for b in model.blocks)
    if ctx + STEPS > limit:  # Hyena's implicit filters cover l_max positions
        pytest.skip(f"{arch} decodes at most {limit} positions (its filters' l_max)")
    if peer == "torch":
        if torch is None:
            pytest.skip("torch is not installed")
        run = _torch_stream(model, ctx)
    else:
        run = _hybridref_stream(model, ctx)
    benchmark.group = f"decode {arch} ctx {ctx}"
    benchmark.extra_info["tokens_per_call"] = STEPS
    benchmark.pedantic(run, rounds=10 if peer == "c" else 3, iterations=1, warmup_rounds=1)
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["tokens_per_s"] = STEPS / benchmark.stats.stats.mean


@pytest.mark.parametrize("pos", [10, 8000], ids=["pos10", "pos8000"])
@pytest.mark.parametrize("arch", ["mamba", "transformer", "mamba2", "retnet", "gla", "griffin", "rwkv7"])
def test_step_cost_vs_position(benchmark, arch, pos):
    run = _hybridref_stream(_model(arch, "c"), pos)
    benchmark.group = f"step cost {arch}"
    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    if benchmark.stats:
        benchmark.extra_info["us_per_token"] = 1e6 * benchmark.stats.stats.mean / STEPS
