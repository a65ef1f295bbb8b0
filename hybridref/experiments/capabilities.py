"""Experiment `capabilities`: which mixer solves which synthetic task, at which state size.

Each registered sequence mixer as a pure 2-layer model (two blocks of norm, mixer, norm, MLP, the MLP
sized so that the block has an attention block's parameters: stacks.matched_mlp_hidden) at d_model 64
and 128, trained on each of three tasks at lengths T = 64 and 256 and scored on 1,000 freshly
generated held-out examples:

  mqar               hybridref/tasks/mqar.py: vocabulary 512, T/16 key-value pairs (4 at 64, 16 at 256)
  selective-copying  hybridref/tasks/selective_copying.py: vocabulary 16, 16 tokens to copy
  induction          hybridref/tasks/induction_heads.py: vocabulary 16

Full sizes: 2,000 steps of 16 sequences, lr 1e-3 (AdamW, weight decay 0.1, warmup 10 %, cosine to
lr/10), seeds 0 and 1, one thread per cell: 192 cells, 11 hours on one core (the committed run:
0.4-3.7 minutes a cell at T = 64, 1.6-3.6 at T = 256 and d_model 64, 5.4-16.6 at T = 256 and d_model
128). The grid runs seed-major, short length and small width first, so an interrupted run
holds whole tiers (resume it with --resume, or pick cells with --only).

A task counts as solved by a model when every seed of the grid (both) is measured and reaches SOLVED %
held-out accuracy: one seed of two is not enough. The state size is
the bytes of the model's decoder states at the task's length (counted: attention's KV cache grows with
the length, a recurrent state does not). The papers train far longer (Zoology: vocabulary 8,192 and
many epochs; Mamba: selective copying at length 4,096, 400 K steps): a task not solved here is not
solved at this budget, which does not show that the mixer cannot.

Mixers: attention, Mamba, Mamba-2, GLA, RetNet, RG-LRU, Hyena, RWKV-7 (its time mix, with a GELU MLP
in place of its channel mix, so that every block is alike). Zamba's shared block is left out: it is a
whole attention block shared between depths, not a mixer of its own.

--quick: attention and Mamba at d_model 16, lengths 16 and 32, 3 steps: it tests the experiment.
"""
from ..tasks.induction_heads import InductionHeads
from ..tasks.mqar import MQAR
from ..tasks.selective_copying import SelectiveCopying
from .architectures import mean_spread
from .plot import pyplot, save
from .report import markdown_table, number
from .stacks import MIXER_NAMES, measure_task, stack_config

TITLE = "Capabilities: each mixer as a pure 2-layer model on MQAR, selective copying and induction heads"
TIME_CAP_S = dict(quick=120, full=3600)
SOLVED = 90.0
TASKS = ("mqar", "selective-copying", "induction")
MIXERS = ("A", "M", "S", "G", "R", "L", "H", "W")
TOKENS_PER_PAIR = 16  # MQAR's pairs: T/16
SETTINGS = dict(
    full=dict(mixers=MIXERS, d_models=(64, 128), lengths=(64, 256), seeds=(0, 1), steps=2000, batch_size=16,
              lr=1e-3, test_examples=1000, mqar_vocab=512, vocab=16, n_memorize=16),
    quick=dict(mixers=("A", "M"), d_models=(16,), lengths=(16, 32), seeds=(0,), steps=3, batch_size=4, lr=1e-3,
               test_examples=8, mqar_vocab=64, vocab=8, n_memorize=4),
)


def cells(quick):
    s = SETTINGS["quick" if quick else "full"]
    return [dict(mixer=m, d_model=d, task=t, seq_len=T, seed=seed) for seed in s["seeds"] for T in s["lengths"]
            for d in s["d_models"] for t in TASKS for m in s["mixers"]]


def make_task(name, seq_len, s):
    if name == "mqar":
        return MQAR(s["mqar_vocab"], seq_len, seq_len // TOKENS_PER_PAIR, test_examples=s["test_examples"])
    if name == "selective-copying":
        return SelectiveCopying(s["vocab"], seq_len, s["n_memorize"], test_examples=s["test_examples"])
    return InductionHeads(s["vocab"], seq_len, test_examples=s["test_examples"])


def measure(cell, quick):
    s = SETTINGS["quick" if quick else "full"]
    task = make_task(cell["task"], cell["seq_len"], s)
    return measure_task(stack_config(cell["mixer"] * 2, cell["d_model"]), task, None, s, cell["seed"])


# -- report -------------------------------------------------------------------------------------------

def collect(records):
    """{(mixer, d_model): {(task, T): [held-out accuracy % of each seed]}}, {(mixer, d_model, T): state
    bytes}, {(mixer, d_model): params} of the measured cells, and the lengths."""
    scores, state, params, lengths = {}, {}, {}, []
    for r in records:
        c = r["cell"]
        lengths += [] if c["seq_len"] in lengths else [c["seq_len"]]
        model = scores.setdefault((c["mixer"], c["d_model"]), {})
        seeds = model.setdefault((c["task"], c["seq_len"]), [])
        if r["status"] == "done":
            seeds.append(100 * next(iter(r["result"]["accuracy"].values())))
            state[c["mixer"], c["d_model"], c["seq_len"]] = r["result"]["state_bytes"]
            if c["task"] == "mqar":
                params[c["mixer"], c["d_model"]] = r["result"]["params"]
    return scores, state, params, lengths


def solved(values, n_seeds):
    """Solved: all n_seeds seeds of the grid measured, each at SOLVED % or more (one seed of two is not enough)."""
    return len(values) == n_seeds and min(values) >= SOLVED


def seed_counts(counts):
    """The seeds measured at one length: one number when every task has as many, else one per task."""
    return str(counts[0]) if len(set(counts)) == 1 else ", ".join(map(str, counts))


def table(records):
    scores, state, params, lengths = collect(records)
    n_seeds = len(SETTINGS["quick" if records[0]["quick"] else "full"]["seeds"])
    columns = [(t, T) for T in lengths for t in TASKS]
    rows = []
    for (mixer, d), model in scores.items():
        accuracy = [f"{mean_spread(model.get(k, []), 3)}{' ✓' if solved(model.get(k, []), n_seeds) else ''}"
                    for k in columns]
        rows.append((MIXER_NAMES[mixer], str(d), f"{params[mixer, d]:,}" if (mixer, d) in params else "—", *accuracy,
                     *[number(state[mixer, d, T] / 1024) if (mixer, d, T) in state else "—" for T in lengths],
                     *[seed_counts([len(model.get((t, T), [])) for t in TASKS]) for T in lengths]))
    skipped = [f"{r['cell']}: {r['reason']}" for r in records if r["status"] == "skipped"]
    return "\n".join([
        f"Held-out accuracy in % on freshly generated examples (mean over the seeds ± half their range; ✓: all "
        f"{n_seeds} seeds of the grid measured and each at {SOLVED:.0f} % or more; — not measured). Parameters: of "
        "the MQAR model (the others differ by their embedding and output layer). State: the decoder's states at "
        "length T, KiB (counted). Seeds: how many were measured at that length; where the tasks differ, one "
        f"number per task ({', '.join(TASKS)}).",
        "",
        markdown_table(["mixer", "d_model", "params", *[f"{t} T={T} %" for t, T in columns],
                        *[f"state KiB T={T}" for T in lengths], *[f"seeds T={T}" for T in lengths]], rows),
        *(["", "Skipped: " + "; ".join(skipped)] if skipped else []),
    ])


def plot(records, path):
    plt = pyplot()
    scores, _, _, lengths = collect(records)
    keys, columns = list(scores), [(t, T) for T in lengths for t in TASKS]
    grid = [[sum(v) / len(v) if (v := scores[k].get(c)) else float("nan") for c in columns] for k in keys]
    fig, ax = plt.subplots(figsize=(1.6 * len(columns) + 3, 0.4 * len(keys) + 1.8))
    image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, "—" if value != value else f"{value:.0f}", ha="center", va="center",
                    color="white" if value != value or value < 60 else "black", fontsize=8)
    ax.set_xticks(range(len(columns)), [f"{t}\nT={T}" for t, T in columns], fontsize=8)
    ax.set_yticks(range(len(keys)), [f"{MIXER_NAMES[m]} d{d}" for m, d in keys])
    fig.colorbar(image, ax=ax, label="held-out accuracy, mean over the seeds (%)")
    ax.set_title("Pure 2-layer models on the synthetic tasks")
    fig.tight_layout()
    save(fig, path)
