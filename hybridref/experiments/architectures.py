"""Experiment `architectures`: every character-LM preset at ~equal parameters on Tiny Shakespeare.

A cell is one preset and one seed: `train_shakespeare` with the README's protocol (batch 16, block 256,
AdamW, lr 2e-3 with warmup and cosine decay over the time budget) for the settings' time_budget seconds
of training on the C backend, one thread, counted in the process's CPU seconds (`--budget-clock cpu`):
this machine is shared, and a wall-clock budget gave a loaded cell half the steps of a quiet one.
Measured: the whole-split validation loss (and perplexity) at the end (equal time) and after EQUAL_STEPS steps of the same run (equal steps: its learning rate follows the budget's clock,
so presets stand at different points of their decay there), the validation curve against training
time (the trainer's evaluation every EVAL_EVERY steps on its fixed windows), training tokens/s, the
decoder's ms/token at contexts 64 and 4,096 (median of DECODE_STEPS steps after a prefill of the
context from the validation text), the peak resident set while training and while decoding, and the
model's bytes (parameters, AdamW state, activations kept for backward on one training batch,
decoder states). Every preset of PRESETS at run time is a cell, so presets added later join.

--quick: two presets, two seeds, a 0.5 s budget on the first QUICK_CHARS characters of the corpus
(block 32, batch 4, contexts 16 and 2,048), to test the experiment, not to compare models.
"""
import math
import statistics
import tempfile
from pathlib import Path

import numpy as np

from ..data.shakespeare import load_text
from ..models.char_lm import PRESETS
from ..optim import AdamW
from .memory import PeakRSS, batch_saved_bytes, decoder_state_bytes, optimizer_bytes, param_bytes
from .plot import pyplot, save
from .report import markdown_table, mib, number
from .timing import median_step_s

TITLE = "Architectures: every preset at equal training time on Tiny Shakespeare"
TIME_CAP_S = dict(quick=120, full=1800)
SEEDS = (0, 1)
QUICK_PRESETS = ("transformer", "hyena")  # hyena: a context past its filters' l_max is recorded as n/a
QUICK_CHARS = 20_000
SETTINGS = dict(
    full=dict(time_budget=600.0, batch_size=16, block_size=256, eval_every=100, eval_batches=20, equal_steps=400,
              contexts=(64, 4096)),
    quick=dict(time_budget=0.5, batch_size=4, block_size=32, eval_every=5, eval_batches=2, equal_steps=3,
               contexts=(16, 2048)),
)
DECODE_STEPS = 16


def cells(quick):
    presets = QUICK_PRESETS if quick else tuple(PRESETS)
    return [dict(preset=p, seed=s) for s in SEEDS for p in presets]  # seed-major: every preset once first


def _train(cell, settings, data_dir):
    from ..train_shakespeare import train_shakespeare
    return train_shakespeare("c", arch=cell["preset"], steps=10 ** 9, seed=cell["seed"], data_dir=data_dir,
                             time_budget=settings["time_budget"], batch_size=settings["batch_size"],
                             block_size=settings["block_size"], eval_every=settings["eval_every"],
                             eval_batches=settings["eval_batches"], full_eval_steps=(settings["equal_steps"],),
                             budget_clock="cpu")


def _quick_corpus(folder):
    """A data folder holding the first QUICK_CHARS characters of Tiny Shakespeare."""
    path = Path(folder) / "tinyshakespeare" / "input.txt"
    path.parent.mkdir(parents=True)
    path.write_text(load_text()[1][:QUICK_CHARS])
    return str(folder)


def _decode(model, prompt_ids, context):
    """(ms per token, peak resident set, decode state bytes) at `context`, or the reason it cannot decode
    there (a preset whose filters cover fewer positions)."""
    prompt = np.resize(prompt_ids, context)[None, :]  # the validation text, repeated if shorter
    with PeakRSS() as peak:
        try:
            dec = model.decoder(1, context + DECODE_STEPS)
            dec.prefill(prompt)
        except ValueError as e:  # UserError included: the model refuses this length
            return dict(context=context, reason=str(e))
        wall, cpu = median_step_s(dec, np.resize(prompt_ids, DECODE_STEPS)[:, None])
    return dict(context=context, ms_per_token=1e3 * wall, cpu_ms_per_token=1e3 * cpu, peak_rss_bytes=peak.bytes,
                state_bytes=decoder_state_bytes(dec))


def measure(cell, quick):
    from ..data.shakespeare import load_shakespeare
    from ..train_shakespeare import get_batch
    settings = SETTINGS["quick" if quick else "full"]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = _quick_corpus(tmp) if quick else None
        with PeakRSS() as train_peak:
            out = _train(cell, settings, data_dir)
        _, train_ids, val_ids = load_shakespeare(data_dir)
    model = out["model"]
    x, _ = get_batch(train_ids, settings["batch_size"], settings["block_size"], np.random.default_rng(0))
    kept = batch_saved_bytes(model, x)
    return dict(params=out["params"], steps=out["steps"], train_time_s=out["train_time_s"],
                tokens_per_s=out["tokens_per_s"], val_loss=out["final_val_loss_full"],
                equal_steps=settings["equal_steps"], val_loss_at_equal_steps=out["val_loss_full_at"].get(
                    settings["equal_steps"]),
                curve=[dict(step=r["step"], train_time_s=r["train_time_s"], val_loss=r["val_loss"])
                       for r in out["history"]],
                train_peak_rss_bytes=train_peak.bytes, param_bytes=param_bytes(model),
                optimizer_bytes=optimizer_bytes(AdamW(model.params())), saved_bytes=kept,
                decode=[_decode(model, val_ids, context) for context in settings["contexts"]])


# -- report -------------------------------------------------------------------------------------------

def by_preset(records):
    """{preset: [result of each measured seed]}, in grid order."""
    out = {}
    for r in records:
        out.setdefault(r["cell"]["preset"], [])
        if r["status"] == "done":
            out[r["cell"]["preset"]].append(r["result"])
    return out


def mean_spread(values, digits=4):
    """"mean ±h" with h half the range of `values` (two seeds: half their difference); "—" if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    half = (max(values) - min(values)) / 2
    return f"{number(statistics.mean(values), digits)} ±{number(half, 2)}" if len(values) > 1 else \
        number(values[0], digits)


def _decode_cell(results, i, key):
    entries = [res["decode"][i] for res in results]
    measured = [e[key] for e in entries if key in e]
    if not measured:
        reason = next((e["reason"] for e in entries if "reason" in e), None)
        return "—" if reason is None else f"n/a ({reason})" if key == "ms_per_token" else "n/a"
    return number(statistics.mean(measured)) if key == "ms_per_token" else mib(max(measured))


def table(records):
    rows = []
    for preset, results in by_preset(records).items():
        if not results:
            reasons = {r["reason"] for r in records if r["cell"]["preset"] == preset}
            rows.append((f"`{preset}`", f"not measured: {'; '.join(sorted(reasons))}", *[""] * 13))
            continue
        first = results[0]
        losses = [res["val_loss"] for res in results]
        rows.append((
            f"`{preset}`", f"{first['params']:,}", str(len(results)),
            number(statistics.mean(r["steps"] for r in results)),
            number(statistics.mean(r["tokens_per_s"] for r in results)), mean_spread(losses),
            number(math.exp(statistics.mean(losses))), mean_spread([r["val_loss_at_equal_steps"] for r in results]),
            *[_decode_cell(results, i, "ms_per_token") for i in range(len(first["decode"]))],
            mib(max(r["train_peak_rss_bytes"] for r in results)),
            *[_decode_cell(results, i, "peak_rss_bytes") for i in range(len(first["decode"]))],
            mib(first["param_bytes"] + first["optimizer_bytes"]), mib(first["saved_bytes"]),
            _decode_cell(results, len(first["decode"]) - 1, "state_bytes")))
    example = next((res for results in by_preset(records).values() for res in results), None)
    contexts = [d["context"] for d in example["decode"]] if example else [64, 4096]
    steps = example["equal_steps"] if example else "N"
    headers = ["preset", "params", "seeds", "steps", "train tokens/s", "val loss (equal time)", "perplexity",
               f"val loss at step {steps}", *[f"decode ms/token ctx {c:,}" for c in contexts], "peak RSS train",
               *[f"peak RSS decode ctx {c:,}" for c in contexts], "params + AdamW", "saved for backward",
               f"decode state ctx {contexts[-1]:,}"]
    return "\n".join([
        "Validation loss in nats/char over the whole validation split (every character once), the mean over the "
        "seeds ± half their range; perplexity = exp(mean loss). Equal time: at the end of the training budget "
        "(CPU seconds of the process, evaluation excluded). Equal steps: the same run evaluated when it reached that step (its learning rate "
        "follows the budget's clock, so the presets are at different points of their decay; — when a seed did not "
        "reach it). Steps and tokens/s: means over the seeds. Memory in MiB: peak resident set of the cell's "
        "process while training (including the evaluations) and while decoding (measured); parameters with "
        "AdamW's two moments, the activations one training batch keeps for backward, and the decoder's states "
        "(counted).",
        "",
        markdown_table(headers, rows),
    ])


def plot(records, path):
    plt = pyplot()
    presets = by_preset(records)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    for n, (preset, results) in enumerate(presets.items()):
        style = dict(color=plt.get_cmap("tab10")(n % 10), ls="-" if n < 10 else "--", marker="o", ms=2.5)
        for i, res in enumerate(results):
            curve = res["curve"]
            ax.plot([c["train_time_s"] for c in curve], [c["val_loss"] for c in curve], **style,
                    lw=1.5 if i == 0 else 0.7, alpha=1.0 if i == 0 else 0.6, label=preset if i == 0 else None)
    ax.set_xlabel("training time (CPU s of the process, evaluation excluded)")
    ax.set_ylabel("validation loss (nats/char, the trainer's fixed windows)")
    ax.set_title("Validation loss against training time, one colour per preset (thin: the other seed)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    save(fig, path)
