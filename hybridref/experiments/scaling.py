"""Experiment `scaling`: cost against the sequence length T.

For every registered mixer alone (a character LM of one block, d_model 128) and for the transformer,
mamba and hybrid presets, at T = 512, 1,024, ..., 32,768 (one sequence, the C backend, the runner's
thread count): the time and peak memory of forward+backward, of the prefill (the decoder's parallel
forward over T tokens) and of one decode step at position T. Times are the median of repeated calls
(one call when the first takes MIN_TIMED_S or more, which is then also the warm-up); a decode step is
the median of DECODE_STEPS steps at positions T, T+1, ... Each is measured as wall time and as the
process's CPU time (timing.py); the slopes, ratios and plots use the CPU time, which on one thread
does not count the time the process waited for a core on this shared machine.

A mixer with an `l_max` option (Hyena's implicit filters) gets l_max = T + DECODE_STEPS. A cell whose
shorter neighbour was skipped, or whose time predicted from the two shorter lengths passes the time
cap, is skipped without running.
"""
import math
import statistics

import numpy as np

from ..layers.registry import mixers
from ..models.char_lm import CharLM
from .memory import PeakRSS, decoder_state_bytes, param_bytes, saved_bytes
from .plot import loglog_slope, pyplot, save
from .report import markdown_table, mib, number
from .timing import median_step_s, timed

TITLE = "Scaling: cost against sequence length"
TIME_CAP_S = dict(quick=60, full=900)
LENGTHS = dict(quick=(32, 64), full=tuple(512 * 2 ** i for i in range(7)))  # 512 ... 32,768
PRESETS = ("transformer", "mamba", "hybrid")
QUICK_MODELS = (("mixer", "attention"), ("mixer", "mamba"), ("mixer", "hyena"), ("preset", "hybrid"))
VOCAB, D_MODEL, DECODE_STEPS = 65, 128, 8  # Tiny Shakespeare's 65 characters
MIN_TIMED_S = dict(quick=0.0, full=1.0)
RATIO_AT = 16384  # the notes: "at 16K the hybrid costs 17 % of the Transformer"
# the CPU times (one thread: the work itself, not the waits of a shared machine) are fitted and plotted
PHASES = (("fwd_bwd_cpu_s", "forward+backward"), ("prefill_cpu_s", "prefill"),
          ("decode_step_cpu_s", "decode step at T"))


def models(quick):
    """(kind, name) of every model the grid measures: each registered mixer alone, then the presets."""
    if quick:
        return list(QUICK_MODELS)
    return [("mixer", spec.name) for spec in mixers().values()] + [("preset", name) for name in PRESETS]


def cells(quick):
    size = "quick" if quick else "full"
    return [dict(kind=kind, model=name, T=T) for kind, name in models(quick) for T in LENGTHS[size]]


def label(kind, name):
    return f"{name} (1 block)" if kind == "mixer" else f"{name} preset"


def build(cell):
    if cell["kind"] == "preset":
        return CharLM.preset(cell["model"], VOCAB)
    spec = next(s for s in mixers().values() if s.name == cell["model"])
    model = CharLM(VOCAB, d_model=D_MODEL, pattern=spec.letter)
    if "l_max" in spec.options:
        # CharLM's config refuses integer options above 4,096 (a guard against damaged checkpoints), so the
        # mixer with its filters over T + DECODE_STEPS positions is built here and replaces the config's
        options = dict(model.config["mixers"][spec.letter], l_max=cell["T"] + DECODE_STEPS)
        model.blocks[0].mixer = spec.build(D_MODEL, np.random.default_rng(0), options, out_std=0.02 / math.sqrt(2))
    return model


def measure(cell, quick):
    from ..backends import get_backend

    be = get_backend("c")
    model = build(cell).to(be)
    T, min_s = cell["T"], MIN_TIMED_S["quick" if quick else "full"]
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (1, T))
    targets = rng.integers(0, VOCAB, T)
    kept = {}

    def forward_backward():
        model.zero_grad()
        logits = model.forward(ids)
        kept["saved"] = saved_bytes(model)
        loss, probs = be.cross_entropy_forward(logits.reshape(T, VOCAB), targets)
        model.backward(be.cross_entropy_backward(probs, targets).reshape(logits.shape))

    out = dict(params=model.num_params(), param_bytes=param_bytes(model),
               grad_bytes=sum(p.grad.nbytes for p in model.params()))
    with PeakRSS() as peak:
        out["fwd_bwd_s"], out["fwd_bwd_cpu_s"], out["fwd_bwd_calls"] = timed(forward_backward, min_s)
    out.update(saved_bytes=kept["saved"], baseline_rss_bytes=peak.start_bytes, fwd_bwd_peak_rss_bytes=peak.bytes)
    def prefill(dec):
        dec.prefill(ids)
        kept["dec"] = dec

    with PeakRSS() as peak:
        out["prefill_s"], out["prefill_cpu_s"], out["prefill_calls"] = timed(
            prefill, min_s, setup=lambda: model.decoder(1, T + DECODE_STEPS))
    out["prefill_peak_rss_bytes"] = peak.bytes
    dec, steps = kept.pop("dec"), rng.integers(0, VOCAB, (DECODE_STEPS, 1))
    with PeakRSS() as peak:
        out["decode_step_s"], out["decode_step_cpu_s"] = median_step_s(dec, steps)
    out.update(decode_peak_rss_bytes=peak.bytes, decoder=type(dec).__module__,
               decode_state_bytes=decoder_state_bytes(dec))
    return out


def skip_reason(cell, records):
    """Skip a length after a skipped shorter one of the same model, or when the time predicted from the
    two shorter lengths (the same growth again, at least linear) passes the cap."""
    mine = sorted((r["cell"]["T"], r) for r in records if (r["cell"]["kind"], r["cell"]["model"]) ==
                  (cell["kind"], cell["model"]) and r["cell"]["T"] < cell["T"])
    if not mine:
        return None
    if mine[-1][1]["status"] == "skipped":
        return f"T={mine[-1][0]} was skipped"
    if len(mine) >= 2 and mine[-2][1]["status"] == "done":
        (t1, r1), (t2, r2) = mine[-2:]
        growth = max(t2 / t1, r2["wall_s"] / r1["wall_s"])
        predicted, cap = r2["wall_s"] * growth, TIME_CAP_S["quick" if r2["quick"] else "full"]
        if predicted > cap:
            return f"predicted {predicted:.0f} s (from T={t1}, {t2}) passes the time cap of {cap} s"
    return None


# -- report -------------------------------------------------------------------------------------------

def series(records):
    """{(kind, model): [(T, result), ...] of measured cells, T ascending}, in grid order."""
    out = {}
    for r in records:
        line = out.setdefault((r["cell"]["kind"], r["cell"]["model"]), [])
        if r["status"] == "done":
            line.append((r["cell"]["T"], r["result"]))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in out.items()}


def slope(points, key):
    """The log-log slope of `key` against T over the three longest measured lengths."""
    tail = points[-3:]
    return loglog_slope([T for T, _ in tail], [r[key] for _, r in tail])


def _ratio_rows(lines):
    hybrid, transformer = (dict(lines.get(("preset", name), [])).get(RATIO_AT) for name in ("hybrid", "transformer"))
    if not (hybrid and transformer):
        return []
    keys = [("fwd_bwd_cpu_s", "forward+backward, CPU s", number), ("prefill_cpu_s", "prefill, CPU s", number),
            ("decode_step_cpu_s", "decode step at T, CPU ms", lambda s: number(1e3 * s)),
            ("fwd_bwd_peak_rss_bytes", "peak resident set, forward+backward, MiB", mib),
            ("saved_bytes", "activations kept for backward, MiB", mib),
            ("decode_state_bytes", "decode state, MiB", mib)]
    return [(what, show(hybrid[k]), show(transformer[k]), f"{100 * hybrid[k] / transformer[k]:.0f} %")
            for k, what, show in keys]


def table(records):
    lines = series(records)
    rows = []
    for r in records:
        res, (kind, name) = r["result"], (r["cell"]["kind"], r["cell"]["model"])
        if r["status"] == "skipped":
            rows.append((label(kind, name), f"{r['cell']['T']:,}", f"skipped: {r['reason']}", *[""] * 9))
            continue
        rows.append((label(kind, name), f"{r['cell']['T']:,}", number(res["fwd_bwd_cpu_s"]),
                     number(res["fwd_bwd_s"]),
                     number(res["prefill_cpu_s"]), number(1e3 * res["decode_step_cpu_s"]),
                     mib(res["fwd_bwd_peak_rss_bytes"]),
                     mib(res["prefill_peak_rss_bytes"]), mib(res["decode_peak_rss_bytes"]), mib(res["saved_bytes"]),
                     mib(res["decode_state_bytes"]), f"{res['params']:,}"))
    slopes = [(label(*k), *(number(slope(v, key), 2) for key, _ in PHASES)) for k, v in lines.items()]
    ratio = _ratio_rows(lines)
    parts = [
        "## Fitted slopes",
        "",
        "Exponent p of CPU time ∝ T^p, the least-squares line through the three longest measured lengths in "
        "log-log axes (expected: ≈ 2 for attention's forward+backward, ≈ 1 for recurrent mixers, ≈ 1 plus a "
        "log factor for Hyena's FFT convolution; a decode step: ≈ 1 for attention, which reads T cached "
        "rows, ≈ 0 for a recurrent state). Three points on a loaded machine: read the second digit as noise.",
        "",
        markdown_table(["model", "forward+backward", "prefill", "decode step"], slopes),
        "",
        f"## Hybrid against transformer at T = {RATIO_AT:,}",
        "",
        (markdown_table(["", "hybrid", "transformer", "hybrid / transformer"], ratio) if ratio else
         f"Not measured: the hybrid or the transformer preset has no result at T = {RATIO_AT:,}."),
        "",
        "The lecture notes' figure, from a formula: \"at 16K the hybrid costs 17 % of the Transformer\".",
        "",
        "## Every cell",
        "",
        "Times in seconds (decode in ms), CPU time of the cell's one-thread process unless marked wall; "
        "memory in MiB: peak resident set of the cell's process during each "
        "phase (measured; a phase starts from what the process holds, so the decode peak includes the states and "
        "whatever the allocator kept after the prefill), activations kept for backward and the decoder's states "
        "at T + 8 (counted).",
        "",
        markdown_table(["model", "T", "fwd+bwd CPU s", "fwd+bwd wall s", "prefill CPU s", "decode CPU ms",
                        "peak fwd+bwd", "peak prefill",
                        "peak decode", "saved for backward", "decode state", "params"], rows),
    ]
    return "\n".join(parts)


PRESET_COLORS = ("black", "darkred", "darkgreen", "navy")


def plot(records, path):
    plt = pyplot()
    lines = series(records)
    fig, axes = plt.subplots(2, 2, figsize=(17, 10))
    panels = [(key, f"{what}: CPU seconds") for key, what in PHASES] + [
        ("fwd_bwd_peak_rss_bytes", "peak resident set, forward+backward: MiB")]
    mixer_count = 0
    styles = {}
    for kind, name in lines:  # mixers: dashed, tab10 colours; presets: solid, thick, dark colours
        if kind == "mixer":
            styles[kind, name] = dict(color=plt.get_cmap("tab10")(mixer_count % 10), ls="--", lw=1)
            mixer_count += 1
        else:
            styles[kind, name] = dict(color=PRESET_COLORS[(len(styles) - mixer_count) % len(PRESET_COLORS)], ls="-",
                                      lw=2)
    for ax, (key, title) in zip(axes.flat, panels):
        scale = 1 / 2 ** 20 if key.endswith("bytes") else 1.0
        for (kind, name), points in lines.items():
            if not points:
                continue
            Ts, ys = [T for T, _ in points], [r[key] * scale for _, r in points]
            fitted = "" if key.endswith("bytes") else f", p = {number(slope(points, key), 2)}"
            ax.loglog(Ts, ys, marker="o", ms=3, label=f"{label(kind, name)}{fitted}", **styles[kind, name])
        if not key.endswith("bytes"):
            _reference_slopes(ax, lines, key)
        ax.set_title(title)
        ax.set_xlabel("sequence length T")
        ax.set_xscale("log", base=2)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Cost against sequence length (one sequence, d_model 128, C backend, one thread); p: fitted slope "
                 "over the three longest lengths; grey: ideal slopes 1 and 2 (reference lines, not fitted)",
                 fontsize=10)
    fig.tight_layout()
    save(fig, path)


def _reference_slopes(ax, lines, key):
    """Grey lines of slope 1 and 2 from the geometric mean of the shortest length's values."""
    firsts = [(points[0][0], points[0][1][key]) for points in lines.values() if points]
    ends = [points[-1][0] for points in lines.values() if points]
    if not firsts:
        return
    T0, y0 = firsts[0][0], math.exp(statistics.mean(math.log(y) for _, y in firsts))
    Ts = np.array([T0, max(ends)], dtype=float)
    for p, style in ((1, ":"), (2, "-.")):
        ax.loglog(Ts, y0 * (Ts / T0) ** p, style, color="grey", lw=1, label=f"ideal slope {p}")
