"""Experiment `capabilities`: which mixer solves which synthetic task, at which state size.

Each registered sequence mixer as a pure 2-layer model (two blocks of norm, mixer, norm, MLP, the MLP
sized so that the block has an attention block's parameters: stacks.matched_mlp_hidden) at d_model 64
and 128, trained on each of three tasks and scored on 1,000 freshly generated held-out examples:

  mqar               hybridref/tasks/mqar.py: vocabulary 512, length 128, 8 key-value pairs
  selective-copying  hybridref/tasks/selective_copying.py: vocabulary 16, length 256, 16 tokens to copy
  induction          hybridref/tasks/induction_heads.py: vocabulary 16, length 256

Full sizes: 2,000 steps of 16 sequences, lr 1e-3 (AdamW, weight decay 0.1, warmup 10 %, cosine to
lr/10), seeds 0 and 1, one thread per cell: 96 cells, about 9 hours on one core. A task counts as solved by a model when every seed reaches
SOLVED % held-out accuracy. The state size is the bytes of the model's decoder states at the task's
length (counted: attention's KV cache grows with the length, a recurrent state does not). The paper
settings are larger (Zoology: vocabulary 8,192; Mamba: selective copying at length 4,096 and 400 K
steps): a task not solved here is not solved at this budget, which is not a proof that the mixer cannot.

Mixers: attention, Mamba, Mamba-2, GLA, RetNet, RG-LRU, Hyena, RWKV-7 (its time mix, with a GELU MLP
in place of its channel mix, so that every block is alike). Zamba's shared block is left out: it is a
whole attention block shared between depths, not a mixer of its own.

--quick: attention and Mamba at d_model 16, 3 steps on short sequences: it tests the experiment.
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
SETTINGS = dict(
    full=dict(mixers=MIXERS, d_models=(64, 128), seeds=(0, 1), steps=2000, batch_size=16, lr=1e-3,
              test_examples=1000, mqar=dict(vocab_size=512, seq_len=128, num_pairs=8),
              copying=dict(vocab_size=16, seq_len=256, n_memorize=16), induction=dict(vocab_size=16, seq_len=256)),
    quick=dict(mixers=("A", "M"), d_models=(16,), seeds=(0,), steps=3, batch_size=4, lr=1e-3, test_examples=8,
               mqar=dict(vocab_size=64, seq_len=32, num_pairs=4), copying=dict(vocab_size=8, seq_len=16, n_memorize=4),
               induction=dict(vocab_size=8, seq_len=16)),
)


def cells(quick):
    s = SETTINGS["quick" if quick else "full"]
    return [dict(mixer=m, d_model=d, task=t, seed=seed) for seed in s["seeds"] for t in TASKS for d in s["d_models"]
            for m in s["mixers"]]


def make_task(name, s):
    if name == "mqar":
        return MQAR(**s["mqar"], test_examples=s["test_examples"])
    if name == "selective-copying":
        return SelectiveCopying(**s["copying"], test_examples=s["test_examples"])
    return InductionHeads(**s["induction"], test_examples=s["test_examples"])


def measure(cell, quick):
    s = SETTINGS["quick" if quick else "full"]
    task = make_task(cell["task"], s)
    cfg = stack_config(cell["mixer"] * 2, cell["d_model"])
    return measure_task(cfg, task, None, s, cell["seed"])


# -- report -------------------------------------------------------------------------------------------

def collect(records):
    """{(mixer, d_model): {task: [held-out accuracy % of each seed]}}, and {(mixer, d_model, task): result}
    of a measured cell (parameters, state bytes)."""
    scores, example = {}, {}
    for r in records:
        c = r["cell"]
        tasks = scores.setdefault((c["mixer"], c["d_model"]), {t: [] for t in TASKS})
        if r["status"] == "done":
            tasks[c["task"]].append(100 * next(iter(r["result"]["accuracy"].values())))
            example[c["mixer"], c["d_model"], c["task"]] = r["result"]
    return scores, example


def solved(values):
    return bool(values) and min(values) >= SOLVED


def table(records):
    scores, example = collect(records)
    rows = []
    for (mixer, d), tasks in scores.items():
        first = next((example[mixer, d, t] for t in TASKS if (mixer, d, t) in example), None)
        rows.append((MIXER_NAMES[mixer], str(d), f"{first['params']:,}" if first else "—",
                     *[f"{mean_spread(tasks[t], 3)}{' ✓' if solved(tasks[t]) else ''}" for t in TASKS],
                     *[number(example[mixer, d, t]["state_bytes"] / 1024) if (mixer, d, t) in example else "—"
                       for t in TASKS],
                     str(max(len(v) for v in tasks.values()))))
    skipped = [f"{r['cell']}: {r['reason']}" for r in records if r["status"] == "skipped"]
    return "\n".join([
        f"Held-out accuracy in % on freshly generated examples (mean over the seeds ± half their range; ✓: every "
        f"seed at {SOLVED:.0f} % or more). Parameters: of the MQAR model (the others differ by their embedding and "
        "output layer). State: the decoder's states at the task's length, KiB (counted).",
        "",
        markdown_table(["mixer", "d_model", "params", *[f"{t} %" for t in TASKS],
                        *[f"state KiB, {t}" for t in TASKS], "seeds"], rows),
        *(["", "Skipped: " + "; ".join(skipped)] if skipped else []),
    ])


def plot(records, path):
    plt = pyplot()
    scores, _ = collect(records)
    keys = list(scores)
    grid = [[sum(scores[k][t]) / len(scores[k][t]) if scores[k][t] else float("nan") for t in TASKS] for k in keys]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(keys) + 1.5))
    image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, "—" if value != value else f"{value:.0f}", ha="center", va="center",
                    color="white" if value != value or value < 60 else "black", fontsize=8)
    ax.set_xticks(range(len(TASKS)), TASKS)
    ax.set_yticks(range(len(keys)), [f"{MIXER_NAMES[m]} d{d}" for m, d in keys])
    fig.colorbar(image, ax=ax, label="held-out accuracy, mean over the seeds (%)")
    ax.set_title("Pure 2-layer models on the synthetic tasks")
    fig.tight_layout()
    save(fig, path)
