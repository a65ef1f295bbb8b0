"""Experiment `mqar-grid` (module mqar_grid): Zoology's MQAR grid, the number of key-value pairs
against the sequence length, for every mixer as a pure 2-layer model.

Arora et al. 2023 ("Zoology", figure 2) train one model per sequence length T and model width and score
it on several numbers of key-value pairs. Here, for each mixer, d_model (64, 128) and T (64, 128, 256,
512): one 2-layer model (stacks.stack_config: the MLP sized so that a block has an attention block's
parameters) trained on a mixture of every number of pairs P ∈ {4, 8, 16, 32, 64} with 4·P ≤ T (a batch
draws one P), then scored on 1,000 freshly generated held-out examples of each P. Vocabulary 1,024 at
every T (MQAR needs V > T; Zoology uses 8,192, whose embedding and output layers would be most of a
2-layer model's parameters at d_model 64). MQAR as hybridref/tasks/mqar.py (Zoology's generator).

Full sizes: 2,000 steps of 16 sequences, lr 1e-3, seed 0 (AdamW, weight decay 0.1, warmup 10 %, cosine
to lr/10), one thread per cell: 8 mixers × 2 widths × 4 lengths = 64 cells, shortest length and
narrowest width first. The committed run (two cells side by side on this 2-core machine) took 40-62 s a
cell at T = 64, d_model 64, 95-139 s at 64, 128; 78-138 / 183-280 s at T = 128; 150-239 / 365-583 s at
256; 319-592 / 768-1,334 s at 512: 5.6 hours of one core for the 64 cells. Zoology trains for many
epochs of 100,000 examples; a cell here sees 32,000 sequences, so a miss means "not learned at this
budget", not "cannot".

Mixers: attention, Mamba, Mamba-2, GLA, RetNet, RG-LRU, Hyena, RWKV-7 (as in capabilities.py).

--quick: attention and Mamba at d_model 16, T 16 and 32 (2 and 4 pairs), 3 steps: it tests the
experiment, it measures nothing.
"""
import statistics

from .architectures import mean_spread
from .attention_ratio import mqar_tasks
from .capabilities import MIXERS
from .plot import pyplot, save
from .report import markdown_table
from .stacks import MIXER_NAMES, measure_task, stack_config

TITLE = "MQAR grid (Zoology): pairs against sequence length, every mixer as a pure 2-layer model"
TIME_CAP_S = dict(quick=120, full=3600)
SETTINGS = dict(
    full=dict(mixers=MIXERS, d_models=(64, 128), lengths=(64, 128, 256, 512), pairs=(4, 8, 16, 32, 64), seeds=(0,),
              vocab_size=1024, steps=2000, batch_size=16, lr=1e-3, test_examples=1000),
    quick=dict(mixers=("A", "M"), d_models=(16,), lengths=(16, 32), pairs=(2, 4, 8), seeds=(0,), vocab_size=64,
               steps=3, batch_size=4, lr=1e-3, test_examples=8),
)


def cells(quick):
    s = SETTINGS["quick" if quick else "full"]
    return [dict(mixer=m, d_model=d, seq_len=T, seed=seed) for seed in s["seeds"] for T in s["lengths"]
            for d in s["d_models"] for m in s["mixers"]]


def grid_tasks(seq_len, s):
    """{P: MQAR task} for every number of pairs P of the settings with 4·P <= seq_len, and their mixture."""
    return mqar_tasks(dict(s, seq_len=seq_len, pairs=[p for p in s["pairs"] if 4 * p <= seq_len]))


def measure(cell, quick):
    s = SETTINGS["quick" if quick else "full"]
    tests, mixture = grid_tasks(cell["seq_len"], s)
    return measure_task(stack_config(cell["mixer"] * 2, cell["d_model"]), mixture, tests, s, cell["seed"])


# -- report -------------------------------------------------------------------------------------------

def collect(records):
    """{(mixer, d_model): {(T, P): [held-out accuracy % of each seed]}}, the (T, P) columns in grid order,
    and {(mixer, d_model): parameters at the shortest length} of the measured cells."""
    scores, columns, params = {}, [], {}
    for r in records:
        c = r["cell"]
        model = scores.setdefault((c["mixer"], c["d_model"]), {})
        if r["status"] != "done":
            continue
        for p, accuracy in r["result"]["accuracy"].items():
            columns += [] if (c["seq_len"], p) in columns else [(c["seq_len"], p)]
            model.setdefault((c["seq_len"], p), []).append(100 * accuracy)
        params.setdefault((c["mixer"], c["d_model"]), r["result"]["params"])
    return scores, columns, params


def table(records):
    scores, columns, params = collect(records)
    rows = [(MIXER_NAMES[m], str(d), f"{params[m, d]:,}" if (m, d) in params else "—",
             *[mean_spread(model.get(k, []), 3) for k in columns]) for (m, d), model in scores.items()]
    skipped = [f"{r['cell']}: {r['reason']}" for r in records if r["status"] == "skipped"]
    seeds = sorted({r["cell"]["seed"] for r in records if r["status"] == "done"})
    return "\n".join([
        "Held-out MQAR accuracy in % on freshly generated examples, column T/P: sequence length T, P key-value "
        f"pairs (one model per mixer, width and T, trained on every P of its T); seeds {seeds}, the mean ± half "
        "their range where more than one; — not measured. Parameters: of the model at the shortest length "
        "(the vocabulary is the same at every T).",
        "",
        markdown_table(["mixer", "d_model", "params", *[f"T{T}/P{p} %" for T, p in columns]], rows),
        *(["", "Skipped: " + "; ".join(skipped)] if skipped else []),
    ])


def plot(records, path):
    """One panel per width: accuracy against the number of pairs, a line per mixer and length."""
    plt = pyplot()
    scores, columns, _ = collect(records)
    widths = sorted({d for _, d in scores})
    lengths = list(dict.fromkeys(T for T, _ in columns))
    fig, axes = plt.subplots(1, max(1, len(widths)), figsize=(7 * max(1, len(widths)), 5), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, d in zip(axes[0], widths):
        for n, m in enumerate(dict.fromkeys(m for m, _ in scores)):
            for i, T in enumerate(lengths):
                points = [(int(p), statistics.mean(v)) for (t, p), v in scores.get((m, d), {}).items() if t == T and v]
                if points:
                    ax.plot(*zip(*sorted(points)), styles[i % len(styles)], marker="o", color=plt.get_cmap("tab10")(n),
                            label=f"{MIXER_NAMES[m]} T={T}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("key-value pairs")
        ax.set_ylabel("held-out MQAR accuracy (%)")
        ax.set_title(f"d_model {d}")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle("MQAR: pairs against length (line style: T), pure 2-layer models", fontsize=10)
    fig.tight_layout()
    save(fig, path)

