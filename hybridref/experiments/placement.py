"""Experiment `placement`: where the attention layers of a hybrid go.

A stack of 12 blocks, 3 of them attention (r = 1/4), the rest Mamba, every block of equal parameters
(stacks.matched_mlp_hidden); the attention layers at (0-based indices)

    first 0, 1, 2    middle 4, 5, 6    last 9, 10, 11    alternating 1, 3, 5 (attention and Mamba
    alternate until the attention layers are placed)    evenly 2, 6, 10 (stacks.spread)

A cell is one placement and one measurement: Tiny Shakespeare validation loss at equal steps (seed 0),
MQAR accuracy (seeds 0, 1, 2; the setting of attention_ratio: length 64, vocabulary 256, a mixture of
2 … 16 pairs, the mean accuracy over them) and induction-head accuracy (seeds 0, 1, 2;
hybridref/tasks/induction_heads.py: vocabulary 16, length 256, 1,500 steps of 16 sequences, lr 1e-3),
each on 1,000 freshly generated held-out examples per setting. Full sizes otherwise those of
attention_ratio (d_model 64; Shakespeare 1,000 steps of 16 × 128, lr 2e-3; MQAR 3,000 steps of 16, lr
2e-3): 35 cells, about 4.5 hours on one core (in the committed run 5.5 minutes an MQAR cell, 12 an
induction cell, 3.5 a Shakespeare cell).

"evenly" is attention_ratio's Mamba stack with 3 attention layers, built and trained by the same calls
with the same settings and seeds: its cells are the same computation. Its Shakespeare cell, measured
again here, gave attention-ratio's validation loss to the last bit (1.6176650352813244), so the committed
results take its three MQAR cells from attention-ratio's results (their records keep their dates).

The notes type in a placement table (alternating / first / middle / last / uniform: 95–98 "early LM",
75–98 "ICL"); the table here puts measured numbers in its place.

--quick: two placements, one seed, 3 steps on short sequences: it tests the experiment, it measures nothing.
"""
import statistics

from ..tasks.induction_heads import InductionHeads
from . import attention_ratio
from .architectures import mean_spread
from .plot import pyplot, save
from .report import markdown_table
from .stacks import measure_shakespeare, measure_task, pattern, spread, stack_config

TITLE = "Placement: 3 attention layers of 12 (the rest Mamba) at five places"
TIME_CAP_S = dict(quick=120, full=2 * 3600)  # wall seconds: a loaded machine stretches a cell 2–3 times
LAYERS = attention_ratio.LAYERS
PLACEMENTS = dict(first=(0, 1, 2), middle=(4, 5, 6), last=(9, 10, 11), alternating=(1, 3, 5), evenly=spread(3, LAYERS))
TASKS = ("shakespeare", "mqar", "induction")
SETTINGS = dict(
    full=dict(attention_ratio.SETTINGS["full"], placements=tuple(PLACEMENTS),
              induction=dict(vocab_size=16, seq_len=256, steps=1500, batch_size=16, lr=1e-3, test_examples=1000)),
    quick=dict(attention_ratio.SETTINGS["quick"], placements=("first", "evenly"),
               induction=dict(vocab_size=8, seq_len=16, steps=3, batch_size=4, lr=1e-3, test_examples=8)),
)


def cells(quick):
    s = SETTINGS["quick" if quick else "full"]
    grid = []
    for seed in s["seeds"]:
        for task in TASKS:
            if task == "shakespeare" and seed != s["seeds"][0]:
                continue
            grid += [dict(placement=p, task=task, seed=seed) for p in s["placements"]]
    return grid


def measure(cell, quick):
    s = SETTINGS["quick" if quick else "full"]
    cfg = stack_config(pattern("M", PLACEMENTS[cell["placement"]], LAYERS), s["d_model"])
    if cell["task"] == "shakespeare":
        out = measure_shakespeare(cfg, s["shakespeare"], quick, seed=cell["seed"])
    elif cell["task"] == "mqar":
        tests, mixture = attention_ratio.mqar_tasks(s["mqar"])
        out = measure_task(cfg, mixture, tests, s["mqar"], cell["seed"])
    else:
        i = s["induction"]
        task = InductionHeads(i["vocab_size"], i["seq_len"], test_examples=i["test_examples"])
        out = measure_task(cfg, task, None, i, cell["seed"])
    return dict(out, pattern=cfg["pattern"])


# -- report -------------------------------------------------------------------------------------------

def score(result, task):
    """The cell's number: validation loss (nats/char), or held-out accuracy in % (MQAR: the mean over pairs)."""
    return result["val_loss"] if task == "shakespeare" else attention_ratio.recall(result)


def collect(records):
    """{placement: {task: [result of each measured seed]}} in the order of PLACEMENTS, and the placements' patterns."""
    out, patterns = {}, {}
    for r in records:
        results = out.setdefault(r["cell"]["placement"], {t: [] for t in TASKS})
        if r["status"] == "done":
            results[r["cell"]["task"]].append(r["result"])
            patterns[r["cell"]["placement"]] = r["result"]["pattern"]
    return {p: out[p] for p in PLACEMENTS if p in out}, patterns  # in PLACEMENTS' order, however they ran


def scores(results, task):
    """The score of each seed's result of `task` (results: a placement's {task: [result]})."""
    return [score(r, task) for r in results[task]]


def table(records):
    measured, patterns = collect(records)
    rows = [(p, f"`{patterns.get(p, '—')}`", mean_spread(scores(res, "shakespeare"), 4),
             mean_spread(scores(res, "mqar"), 3), attention_ratio.per_seed(res["mqar"]),
             mean_spread(scores(res, "induction"), 3), attention_ratio.per_seed(res["induction"]))
            for p, res in measured.items()]
    skipped = [f"{r['cell']}: {r['reason']}" for r in records if r["status"] == "skipped"]
    return "\n".join([
        "Validation loss: Tiny Shakespeare, nats/char over the whole validation split at equal steps, seed 0. "
        "MQAR and induction heads: held-out accuracy in % (MQAR: the mean over its numbers of pairs), the mean "
        "over the seeds ± half their range, and each seed's (\"seed: accuracy\": a stack learns the task or "
        "stays near chance, by seed).",
        "",
        markdown_table(["placement", "pattern", "val loss", "MQAR %", "MQAR by seed", "induction heads %",
                        "induction by seed"], rows),
        *(["", "Skipped: " + "; ".join(skipped)] if skipped else []),
    ])


def plot(records, path):
    plt = pyplot()
    measured, _ = collect(records)
    names = list(measured)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    titles = dict(shakespeare="Tiny Shakespeare validation loss (nats/char)", mqar="MQAR held-out accuracy (%)",
                  induction="Induction heads held-out accuracy (%)")
    for ax, task in zip(axes, TASKS):  # the mean (a bar would start at 0 and hide the losses' differences)
        for i, v in enumerate(scores(measured[p], task) for p in names):
            if v:
                ax.plot([i] * len(v), v, "k.", ms=6)
                ax.plot([i - 0.25, i + 0.25], [statistics.mean(v)] * 2, color="steelblue", lw=3)
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_title(titles[task])
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("3 attention layers of 12 (the rest Mamba) at five places; dots: the seeds, bars: their mean", fontsize=10)
    fig.tight_layout()
    save(fig, path)
