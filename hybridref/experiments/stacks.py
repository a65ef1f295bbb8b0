"""What the experiments attention_ratio, placement, capabilities and long_range share: stacks of mixer
letters at equal parameters per block, where a stack's attention layers go, and the measurement of one
model on Tiny Shakespeare or on a task of hybridref/tasks.

Equal parameters: every recurrent block gets the MLP width that gives it the parameters of an
attention block with its default 4·D MLP (matched_mlp_hidden), so a stack's size does not depend on
how many of its layers are attention (to within one MLP unit, 2·D + 1 parameters, per block).
"""
import tempfile

import numpy as np

from ..models.char_lm import CharLM
from ..optim import AdamW
from .architectures import _quick_corpus
from .memory import PeakRSS, batch_saved_bytes, decoder_state_bytes, optimizer_bytes, param_bytes

MIXER_NAMES = dict(A="attention", M="mamba", S="mamba2", G="gla", R="retnet", L="rglru", H="hyena", W="rwkv7")


def spread(count, layers):
    """Indices of `count` layers spread evenly over `layers`: the middle of each of `count` equal groups,
    ⌊(k + ½)·layers/count⌋ (3 of 12: 2, 6, 10; 1 of 12: 6)."""
    return tuple(int((k + 0.5) * layers / count) for k in range(count))


def pattern(recurrent, attention_at, layers):
    """The pattern of `layers` letters: attention (A) at the indices `attention_at`, `recurrent` elsewhere."""
    return "".join("A" if i in attention_at else recurrent for i in range(layers))


def _block_params(letter, d_model, mixers, mlp_hidden):
    """Parameters of one block of `letter` (the difference between a model of two and of one)."""
    def count(n):
        return CharLM(2, d_model=d_model, pattern=letter * n, mixers=mixers, mlp_hidden=mlp_hidden).num_params()
    return count(2) - count(1)


def matched_mlp_hidden(letter, d_model, mixers=None):
    """The MLP width h that gives a block of `letter` the parameters of an attention block (4·D MLP, the
    attention defaults): each MLP unit adds 2·D + 1 parameters to a block with an MLP of one unit (which
    holds the MLP's norm and output bias), so h = 1 + round((attention block − that block) / (2·D + 1)),
    or 0 (no MLP) when the mixer alone is as large as an attention block."""
    mixers = {letter: mixers or {}}
    target = _block_params("A", d_model, None, None)
    one_unit = _block_params(letter, d_model, mixers, 1)
    return max(0, 1 + round((target - one_unit) / (2 * d_model + 1)))


def stack_config(pattern_, d_model, mixers=None):
    """CharLM options of a stack `pattern_` at equal parameters per block: {pattern, d_model, mixers,
    mlp_hidden} (attention blocks keep their 4·D MLP; `mixers` {letter: options})."""
    mixers = mixers or {}
    hidden = {c: matched_mlp_hidden(c, d_model, mixers.get(c)) for c in set(pattern_) if c != "A"}
    return dict(pattern=pattern_, d_model=d_model, mixers=mixers, mlp_hidden=hidden)


def measure_shakespeare(config, settings, quick, seed=0):
    """Train a CharLM of `config` on Tiny Shakespeare for settings["steps"] steps (batch, block, lr of
    `settings`; the quick corpus when `quick`); -> its whole-split validation loss, cost and memory,
    and the bytes of its decoder's states at settings["decode_context"] (counted)."""
    from ..data.shakespeare import load_shakespeare
    from ..train_shakespeare import get_batch, train_shakespeare
    steps = settings["steps"]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = _quick_corpus(tmp) if quick else None
        with PeakRSS() as peak:
            out = train_shakespeare("c", arch="transformer", steps=steps, seed=seed, data_dir=data_dir,
                                    batch_size=settings["batch_size"], block_size=settings["block_size"],
                                    lr=settings["lr"], warmup=max(1, steps // 10), eval_every=steps,
                                    eval_batches=settings["eval_batches"], model_overrides=config,
                                    budget_clock="cpu")
        _, train_ids, _ = load_shakespeare(data_dir)
    model = out["model"]
    x, _ = get_batch(train_ids, settings["batch_size"], settings["block_size"], np.random.default_rng(0))
    kept = batch_saved_bytes(model, x)
    return dict(params=out["params"], steps=out["steps"], train_cpu_s=out["train_time_s"],
                cpu_s_per_step=out["train_time_s"] / out["steps"], tokens_per_s=out["tokens_per_s"],
                val_loss=out["final_val_loss_full"], train_peak_rss_bytes=peak.bytes, param_bytes=param_bytes(model),
                optimizer_bytes=optimizer_bytes(AdamW(model.params())), saved_bytes=kept,
                decode_context=settings["decode_context"],
                decode_state_bytes=decoder_state_bytes(model.decoder(1, settings["decode_context"])))


def measure_task(config, task, test_tasks, settings, seed):
    """Train a CharLM of `config` over `task`'s vocabulary on `task` (steps, batch, lr and optional
    warmup steps and CPU-time budget from `settings`), score it on the held-out examples of `test_tasks` ({name: task});
    -> the trainer's summary, the parameters and the decoder's state bytes at the task's length."""
    from ..tasks.train import build_model, train_task
    config = dict(config)
    model = build_model(task, config.pop("pattern"), config.pop("d_model"), seed=seed, **config)
    out = train_task(model, task, settings["steps"], batch_size=settings["batch_size"], lr=settings["lr"], seed=seed,
                     warmup=settings.get("warmup"), time_budget=settings.get("time_budget"), test_tasks=test_tasks)
    return dict(out, params=model.num_params(), state_bytes=decoder_state_bytes(model.decoder(1, task.seq_len)))
