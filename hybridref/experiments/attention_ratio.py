"""Experiment `attention-ratio` (module attention_ratio): what a fraction r of attention layers buys.

A stack of LAYERS = 12 blocks, r·12 of them attention (r = 0, 1/12, 1/6, 1/4, 1/2, 1; spread evenly:
stacks.spread), the rest one recurrent mixer (Mamba, Mamba-2 or GLA), every block of equal parameters
(stacks.matched_mlp_hidden). Pure attention (r = 1) is one model, shared by the three lines. A cell is
one model and one measurement:

  shakespeare (seed 0)   Tiny Shakespeare, equal steps: whole-split validation loss (nats/char),
                         training cost (CPU s/step, tokens/s, peak resident set, activations kept for
                         backward) and the decoder's state bytes at context 4,096 (counted)
  mqar (seeds 0, 1, 2)   MQAR (hybridref/tasks/mqar.py) at length 64, vocabulary 256, trained on a
                         mixture of 2, 4, 8 and 16 key-value pairs (a batch draws one), accuracy on
                         1,000 held-out examples of each (fresh seeds: the held-out stream)
  few-shot (seeds 0, 1, 2; the Mamba line and pure attention only)
                         4-way in-context classification (hybridref/tasks/few_shot.py: 32 classes of
                         8 exemplar tokens, labels drawn afresh per example, queries never shown in
                         the context), length 64, trained on a mixture of 1, 2 and 4 shots, accuracy
                         on 1,000 held-out examples of each (chance 25 %)

Full sizes: d_model 64 (≈ 596 K parameters), 4 attention heads of 16, Mamba d_state 16 expand 2,
Mamba-2 d_state 64 headdim 64, GLA 4 heads; Shakespeare 1,000 steps of 16 × 128 characters, lr 2e-3;
MQAR and few-shot 3,000 steps of 16 sequences, lr 2e-3; AdamW (weight decay 0.1), warmup 10 %, cosine
to lr/10. One thread per cell: an MQAR or few-shot cell took 4–9 minutes (Mamba-2 the slowest), a
Shakespeare cell about as long, so the 82 cells need about 8 hours. Zoology's MQAR uses vocabulary
8,192 and trains far longer; its grid also varies the length (64 … 512): experiment mqar-grid.

Why these MQAR sizes (measured, seed 0, one thread): the first sizes (length 256, vocabulary 1,024, 4 …
64 pairs, 1,500 steps at lr 1e-3) left every model tried at chance (r = 0, 1/12, 1/6 with Mamba:
training loss 6.24 = ln 512, the values' marginal; 0.14–0.18 % held-out accuracy, ~14 minutes a cell),
so the grid would have measured nothing. At length 64 and vocabulary 256, pure attention reaches 38.6 /
21.0 / 10.8 / 6.2 % at 2 / 4 / 8 / 16 pairs after 3,000 steps at lr 2e-3 (pure Mamba 1.1 / 1.0 / 0.9 /
0.9 %, chance 0.8 %); 6,000 steps gave 42.0 / 24.6 / 13.1 / 7.9 % for twice the time, and lr 5e-3 gave
less (31.8 / 16.2 / 8.0 / 4.5 %). So no model here solves MQAR at this budget: the experiment compares
how far each stack gets.

The notes' formulas beside the measurements: recall = 100·(1 − e^(−10r)) % ("r = 0.125 (Jamba): recall
71 %", "r = 0: 0 %"), the mean MQAR accuracy over the numbers of pairs here; few-shot = min(5r, 1), here
the mean few-shot accuracy over the numbers of shots (the notes give no task or chance level: their
formula says 0 at r = 0, where a model that ignores the context scores chance, 25 %). The few-shot
cells run on the Mamba line only (the notes' formula is about Jamba-style Mamba hybrids): 18 cells.
Pilots of the few-shot sizes (seed 0, 3,000 steps, one thread; each the call
`stacks.measure_task(stack_config(PATTERN, 64), mixture, tests, dict(steps=3000, batch_size=16, lr=LR), 0)`
with `tests, mixture = few_shot_tasks(SETTINGS["full"]["few_shot"])`): the Mamba stack with 2 attention
layers of 12 reached 65.7 / 66.9 / 67.1 % at 1 / 2 / 4 shots; pure attention (12 layers) stayed at chance at lr 2e-3
and at lr 5e-4 (training loss ln 4 = 1.386, a uniform guess over the labels), as did 2-layer models
(attention-attention and Mamba-attention, lr 2e-3).

--quick: d_model 16, r ∈ {0, 1/4, 1}, Mamba only, one seed, 3 steps on short sequences (vocabulary 64,
length 32, 2 and 4 pairs; few-shot with 4 classes of 4 exemplars, 2 ways, 1 and 2 shots): it tests the
experiment, it measures nothing.
"""
import math
import statistics

from ..tasks.base import Mixture
from ..tasks.few_shot import FewShot
from ..tasks.mqar import MQAR
from .architectures import mean_spread
from .plot import pyplot, save
from .report import markdown_table, mib, number
from .stacks import MIXER_NAMES, measure_shakespeare, measure_task, pattern, spread, stack_config

TITLE = "Attention ratio: r of 12 layers attention, the rest Mamba, Mamba-2 or GLA, at equal parameters"
TIME_CAP_S = dict(quick=120, full=2 * 3600)  # wall seconds: a loaded machine stretches a cell 2–3 times
LAYERS = 12
SETTINGS = dict(
    full=dict(attention_layers=(0, 1, 2, 3, 6, 12), recurrent=("M", "S", "G"), seeds=(0, 1, 2), d_model=64,
              shakespeare=dict(steps=1000, batch_size=16, block_size=128, lr=2e-3, eval_batches=10,
                               decode_context=4096),
              mqar=dict(vocab_size=256, seq_len=64, pairs=(2, 4, 8, 16), steps=3000, batch_size=16, lr=2e-3,
                        test_examples=1000),
              few_shot=dict(recurrent=("M",), num_classes=32, exemplars=8, ways=4, shots=(1, 2, 4), seq_len=64,
                            steps=3000, batch_size=16, lr=2e-3, test_examples=1000)),
    quick=dict(attention_layers=(0, 3, 12), recurrent=("M",), seeds=(0,), d_model=16,
               shakespeare=dict(steps=3, batch_size=2, block_size=16, lr=2e-3, eval_batches=1, decode_context=64),
               mqar=dict(vocab_size=64, seq_len=32, pairs=(2, 4), steps=3, batch_size=4, lr=1e-3, test_examples=8),
               few_shot=dict(recurrent=("M",), num_classes=4, exemplars=4, ways=2, shots=(1, 2), seq_len=16, steps=3,
                             batch_size=4, lr=1e-3, test_examples=8)),
)


def notes_recall(r):
    """The notes' formula, in %: 100·(1 − e^(−10r))."""
    return 100 * (1 - math.exp(-10 * r))


def notes_few_shot(r):
    """The notes' formula min(5r, 1), in %."""
    return 100 * min(5 * r, 1)


def models(settings):
    """(recurrent letter or None for pure attention, attention layers) of every model of the grid."""
    out = [(c, n) for c in settings["recurrent"] for n in settings["attention_layers"] if n < LAYERS]
    return out + [(None, LAYERS)] if LAYERS in settings["attention_layers"] else out


def cells(quick):
    s = SETTINGS["quick" if quick else "full"]
    grid = []
    for seed in s["seeds"]:  # seed-major: every model's first measurements before any second seed
        for recurrent, n in models(s):
            if seed == s["seeds"][0]:
                grid.append(dict(recurrent=recurrent, attention_layers=n, task="shakespeare", seed=seed))
            grid.append(dict(recurrent=recurrent, attention_layers=n, task="mqar", seed=seed))
        grid += [dict(recurrent=recurrent, attention_layers=n, task="few-shot", seed=seed) for recurrent, n in models(s)
                 if recurrent in s["few_shot"]["recurrent"] + (None,)]
    return grid


def mqar_tasks(m):
    """{pairs: MQAR task} of the settings `m`, and the training mixture of them."""
    tasks = {str(p): MQAR(m["vocab_size"], m["seq_len"], p, test_examples=m["test_examples"]) for p in m["pairs"]}
    return tasks, Mixture(tasks.values())


def few_shot_tasks(f):
    """{shots: few-shot task} of the settings `f`, and the training mixture of them."""
    tasks = {str(k): FewShot(f["num_classes"], f["exemplars"], f["ways"], k, f["seq_len"], f["test_examples"])
             for k in f["shots"]}
    return tasks, Mixture(tasks.values())


def config(cell, settings):
    layers = spread(cell["attention_layers"], LAYERS)
    return stack_config(pattern(cell["recurrent"] or "A", layers, LAYERS), settings["d_model"])


def measure(cell, quick):
    s = SETTINGS["quick" if quick else "full"]
    cfg = config(cell, s)
    if cell["task"] == "shakespeare":
        out = measure_shakespeare(cfg, s["shakespeare"], quick, seed=cell["seed"])
    else:
        key, make = ("mqar", mqar_tasks) if cell["task"] == "mqar" else ("few_shot", few_shot_tasks)
        tests, mixture = make(s[key])
        out = measure_task(cfg, mixture, tests, s[key], cell["seed"])
    return dict(out, pattern=cfg["pattern"], mlp_hidden=cfg["mlp_hidden"])


# -- report -------------------------------------------------------------------------------------------

def line_name(recurrent):
    return "attention only" if recurrent is None else MIXER_NAMES[recurrent]


def collect(records, task):
    """{(recurrent, attention layers): [result of each measured seed]} of `task`, in grid order."""
    out = {}
    for r in records:
        if r["cell"]["task"] == task:
            key = (r["cell"]["recurrent"], r["cell"]["attention_layers"])
            out.setdefault(key, [])
            if r["status"] == "done":
                out[key].append(r["result"])
    return out


def recall(result):
    """The mean accuracy over the numbers of pairs (MQAR) or of shots (few-shot), in %."""
    return 100 * statistics.mean(result["accuracy"].values())


def per_seed(results):
    """The mean accuracy of each seed's result in %, "seed: accuracy" ("0: 82.4, 1: 80.2, 2: 3.2"): at this
    budget a stack either learns the task or stays near chance, and a mean ± half range hides which."""
    ordered = sorted(results, key=lambda r: r["test_seed"])
    return ", ".join(f"{r['test_seed']}: {recall(r):.1f}" for r in ordered) or "—"


def table(records):
    lm, mq = collect(records, "shakespeare"), collect(records, "mqar")
    pairs = next((list(res[0]["accuracy"]) for res in mq.values() if res), [])
    rows = []
    for key in dict.fromkeys([*lm, *mq]):
        recurrent, n = key
        lms, mqs = lm.get(key, []), mq.get(key, [])
        first = (lms or mqs or [None])[0]
        rows.append((line_name(recurrent), f"{n}/{LAYERS}", f"`{first['pattern']}`" if first else "—",
                     f"{first['params']:,}" if lms else "—",
                     number(lms[0]["cpu_s_per_step"]) if lms else "—",
                     number(lms[0]["tokens_per_s"]) if lms else "—",
                     mib(lms[0]["train_peak_rss_bytes"]) if lms else "—",
                     mib(lms[0]["decode_state_bytes"]) if lms else "—",
                     number(lms[0]["val_loss"], 4) if lms else "—",
                     *[mean_spread([100 * res["accuracy"][p] for res in mqs], 3) for p in pairs],
                     mean_spread([recall(res) for res in mqs], 3), per_seed(mqs),
                     number(notes_recall(n / LAYERS), 3)))
    example = next((res[0] for res in lm.values() if res), None)
    steps = example["steps"] if example else "N"
    context = f"{example['decode_context']:,}" if example else "N"  # "N": no Shakespeare cell measured yet
    skipped = [f"{r['cell']}: {r['reason']}" for r in records if r["status"] == "skipped"]
    return "\n".join([
        f"Shakespeare: seed 0, validation loss in nats/char over the whole validation split after {steps} steps "
        "(equal steps); CPU s/step and tokens/s of training (one thread); peak resident set while training; "
        f"decoder state at context {context} (counted, MiB). MQAR: held-out accuracy in % per number of "
        "key-value pairs, mean over the seeds ± half their range; recall: the mean over the numbers of pairs; "
        "the notes' formula 100·(1 − e^(−10r)) beside it. Parameters: of the Shakespeare model (the MQAR models "
        "differ by their embedding and output layer only).",
        "",
        markdown_table(["recurrent mixer", "attention layers", "pattern", "params", "CPU s/step", "tokens/s",
                        "peak RSS train", f"decode state ctx {context}", "val loss",
                        *[f"MQAR {p} pairs %" for p in pairs], "recall %", "recall of each seed %",
                        "notes' formula %"], rows),
        *few_shot_table(collect(records, "few-shot")),
        *(["", "Skipped: " + "; ".join(skipped)] if skipped else []),
    ])


def few_shot_table(fs):
    """The lines of the few-shot table (none before a few-shot cell is measured)."""
    shots = next((list(res[0]["accuracy"]) for res in fs.values() if res), [])
    if not shots:
        return []
    rows = [(line_name(recurrent), f"{n}/{LAYERS}", f"`{res[0]['pattern']}`",
             *[mean_spread([100 * r["accuracy"][k] for r in res], 3) for k in shots],
             mean_spread([recall(r) for r in res], 3), per_seed(res), number(notes_few_shot(n / LAYERS), 3))
            for (recurrent, n), res in fs.items() if res]
    return ["", "Few-shot: held-out accuracy in % of 4-way in-context classification per number of shots (chance "
            "25 %), mean over the seeds ± half their range; the notes' formula min(5r, 1) in % beside their mean.", "",
            markdown_table(["recurrent mixer", "attention layers", "pattern", *[f"{k}-shot %" for k in shots],
                            "few-shot %", "few-shot of each seed %", "notes' formula %"], rows)]


def plot(records, path):
    plt = pyplot()
    lm, mq, fs = collect(records, "shakespeare"), collect(records, "mqar"), collect(records, "few-shot")
    fig, (ax_recall, ax_few, ax_loss) = plt.subplots(1, 3, figsize=(19, 5))
    rs = [i / 100 for i in range(101)]
    ax_recall.plot(rs, [notes_recall(r) for r in rs], color="grey", ls="--",
                   label="the notes' formula 100(1 − e^(−10r))")
    ax_few.plot(rs, [notes_few_shot(r) for r in rs], color="grey", ls="--", label="the notes' formula min(5r, 1)")
    ax_few.axhline(25, color="grey", ls=":", label="chance (4 ways)")
    for n, recurrent in enumerate(dict.fromkeys(k[0] for k in [*lm, *mq, *fs] if k[0] is not None)):
        color = plt.get_cmap("tab10")(n)
        for ax, results, value in ((ax_recall, mq, recall), (ax_few, fs, recall),
                                   (ax_loss, lm, lambda res: res["val_loss"])):
            points = sorted((k[1] / LAYERS, [value(res) for res in v]) for k, v in results.items()
                            if k[0] == recurrent and v)
            if points and results.get((None, LAYERS)):  # pure attention, shared by the lines
                points.append((1.0, [value(res) for res in results[(None, LAYERS)]]))
            if not points:
                continue
            xs = [x for x, _ in points]
            mids = [statistics.mean(v) for _, v in points]
            below = [m - min(v) for m, (_, v) in zip(mids, points)]
            above = [max(v) - m for m, (_, v) in zip(mids, points)]
            ax.errorbar(xs, mids, yerr=[below, above], color=color, marker="o", capsize=3, label=line_name(recurrent))
    ax_recall.set_xlabel("r: fraction of the 12 layers that are attention")
    ax_recall.set_ylabel("MQAR recall: held-out accuracy, mean over the numbers of pairs (%)")
    ax_recall.set_title("Recall against r (bars: range over the seeds)")
    ax_few.set_xlabel("r: fraction of the 12 layers that are attention")
    ax_few.set_ylabel("few-shot: held-out accuracy, mean over the numbers of shots (%)")
    ax_few.set_title("Few-shot in-context classification against r")
    ax_loss.set_xlabel("r: fraction of the 12 layers that are attention")
    ax_loss.set_ylabel("Tiny Shakespeare validation loss (nats/char), equal steps, seed 0")
    ax_loss.set_title("Language modelling against r")
    for ax in (ax_recall, ax_few, ax_loss):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel of no measured cell yet has no legend
            ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
