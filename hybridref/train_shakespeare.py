"""Training of the character LM on Tiny Shakespeare (`hybridref train shakespeare`, examples/).

Batches are random windows of the training split (nanoGPT's get_batch), drawn from one seeded
generator whose state is checkpointed, so a resumed run sees the same batches as an uninterrupted
one. AdamW (β = 0.9, 0.99), global-norm clipping at 1, linear warmup then cosine decay to lr/10.
The schedule runs over `steps`, or, with a time budget, over the training time: then the learning
rate depends on the budget's clock and a run is no longer bit-reproducible.
"""
import math

import numpy as np

from .backends import get_backend
from .clock import budget_clock as clock_named
from .checkpoint import (check_writable, diverged, load_checkpoint, restore, restore_generator, save_checkpoint,
                         training_state)
from .data.shakespeare import load_shakespeare
from .errors import TrainingDiverged, UserError
from .models.char_lm import CharLM
from .layers.moe import moe_report
from .optim import AdamW, check_loss, cosine_lr


def get_batch(ids, batch_size, block_size, rng):
    """x, y (B,T) int64: random windows of `ids` and the same windows shifted by one."""
    starts = rng.integers(0, len(ids) - block_size - 1, batch_size)
    idx = starts[:, None] + np.arange(block_size)[None, :]
    return ids[idx], ids[idx + 1]


def evaluate(model, ids, batch_size, block_size, batches, seed=1234):
    """Mean cross-entropy (nats/char) on `batches` fixed random windows of `ids` (the same at every call)."""
    rng = np.random.default_rng(seed)
    model.set_dropout_seed(None)
    total = 0.0
    for _ in range(batches):
        x, y = get_batch(ids, batch_size, block_size, rng)
        logits = model.forward(x)
        model.clear_saved()
        loss, _ = model.be.cross_entropy_forward(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        total += loss
    return total / batches


def evaluate_split(model, ids, batch_size, block_size):
    """Mean cross-entropy (nats/char) over all of `ids`, read as consecutive non-overlapping windows of
    block_size characters (each predicting its next characters, as in training); the last
    < block_size + 1 characters, which fill no window, are left out."""
    n = (len(ids) - 1) // block_size
    if n == 0:
        raise UserError(f"the split holds {len(ids)} characters, fewer than one window of {block_size} + 1: "
                        f"use a smaller --block-size")
    model.set_dropout_seed(None)
    total = 0.0
    for first in range(0, n, batch_size):
        idx = (np.arange(first, min(first + batch_size, n)) * block_size)[:, None] + np.arange(block_size)
        logits = model.forward(ids[idx])
        model.clear_saved()
        loss, _ = model.be.cross_entropy_forward(logits.reshape(-1, logits.shape[-1]), ids[idx + 1].reshape(-1))
        total += loss * idx.size
    return total / (n * block_size)


def _build_model(arch, vocab_size, seed, overrides, backend):
    """The preset with the user's overrides (--pattern, --d-model, --dropout), on `backend`."""
    try:
        return CharLM.preset(arch, vocab_size, seed=seed, **(overrides or {})).to(backend)
    except UserError:
        raise
    except ValueError as e:  # the layers refuse a pattern or a width they cannot build
        raise UserError(f"the model options (--arch, --pattern, --d-model, --dropout) do not describe a model: "
                        f"{e}") from None


def train_shakespeare(backend, arch="hybrid", steps=5000, batch_size=16, block_size=256, lr=2e-3,
                      weight_decay=0.1, warmup=100, eval_every=250, eval_batches=20, time_budget=None, seed=0,
                      data_dir=None, checkpoint=None, checkpoint_every=None, resume=False, model_overrides=None,
                      on_step=None, on_eval=None, full_eval_steps=(), budget_clock="wall"):
    """Train from scratch (or resume from `checkpoint`); returns a summary dict (with the model).

    time_budget: seconds of training (evaluation excluded) on the clock `budget_clock` ("wall" or
    "cpu": hybridref/clock.py); the run stops after the step that crosses it.
    on_step(step, steps, loss, lr, elapsed) and on_eval(record) report progress.
    full_eval_steps: steps after which the whole validation split is evaluated too (evaluate_split,
    outside the training time), returned as val_loss_full_at {step: loss}.
    A non-finite loss or gradient norm stops the run (TrainingDiverged), the last checkpoint written
    staying as it was; an unwritable `checkpoint` is refused before training starts."""
    backend = get_backend(backend)
    if backend.size > 1:
        raise UserError(f"train shakespeare runs in one process; the {backend.name} backend here spans "
                        f"{backend.size} (its training loop does not split its targets over processes): run it "
                        f"without mpiexec")
    if checkpoint:
        check_writable(checkpoint)
    vocab, train_ids, val_ids = load_shakespeare(data_dir, min_split=block_size + 2)
    model = _build_model(arch, len(vocab), seed, model_overrides, backend)
    be = model.be
    opt = AdamW(model.params(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay, clip_norm=1.0)
    rng = np.random.default_rng(seed + 1)
    run = dict(arch=arch, steps=steps, batch_size=batch_size, block_size=block_size, lr=lr,
               weight_decay=weight_decay, warmup=warmup, time_budget=time_budget, seed=seed)
    if budget_clock != "wall":  # only then: the checkpoints of runs before the option still resume
        run["budget_clock"] = budget_clock
    clock = clock_named(budget_clock)
    step, train_time, history, loss_sum, loss_n = 0, 0.0, [], 0.0, 0
    if resume:
        ckpt = load_checkpoint(checkpoint)
        restore(ckpt, model, opt)
        t = training_state(checkpoint, ckpt, run, dict(rng=dict, step=int, train_time_s=(int, float),
                                                        loss_sum=(int, float), loss_n=int), ("step",),
                           "train shakespeare")
        restore_generator(checkpoint, rng, t["rng"])
        step, train_time, history = t["step"], t["train_time_s"], t["history"]
        loss_sum, loss_n = t["loss_sum"], t["loss_n"]
    saved = {}  # the step of the last checkpoint written
    full_at = {}

    def save():
        save_checkpoint(checkpoint, model, vocab.chars, opt, dict(
            run=run, rng=rng.bit_generator.state, step=step, train_time_s=train_time, history=history,
            loss_sum=loss_sum, loss_n=loss_n))
        saved["step"] = step

    def schedule():
        """warmup steps, then cosine from lr to lr/10 over the remaining steps or the time budget"""
        return cosine_lr(step, steps, lr, warmup, final_div=10,
                         progress=train_time / time_budget if time_budget else None)

    def record():
        moe = moe_report(model)  # the last training step's MoE aux loss and expert load, before evaluate's forwards
        val = evaluate(model, val_ids, batch_size, block_size, eval_batches)
        r = dict(step=step, train_loss=loss_sum / max(loss_n, 1), val_loss=val, train_time_s=train_time, **moe)
        history.append(r)
        if on_eval:
            on_eval(r)

    def train_step():
        """One optimizer step; -> (loss, learning rate)."""
        x, y = get_batch(train_ids, batch_size, block_size, rng)
        model.zero_grad()
        model.set_dropout_seed((seed, step))
        logits = model.forward(x)
        V = logits.shape[-1]
        loss, probs = be.cross_entropy_forward(logits.reshape(-1, V), y.reshape(-1))
        loss += model.aux_loss()  # MoE balancing/z losses (0 when dense); their gradient is in the MoE backward
        check_loss(loss, step + 1)
        model.backward(be.cross_entropy_backward(probs, y.reshape(-1)).reshape(logits.shape))
        cur_lr = schedule()
        opt.step(be, lr=cur_lr)
        return loss, cur_lr

    try:
        while step < steps and not (time_budget and train_time >= time_budget):
            t0 = clock()
            loss, cur_lr = train_step()
            step += 1
            train_time += clock() - t0
            loss_sum, loss_n = loss_sum + loss, loss_n + 1
            if on_step:
                on_step(step, steps, loss, cur_lr, train_time)
            if step in full_eval_steps:
                full_at[step] = evaluate_split(model, val_ids, batch_size, block_size)
            if step % eval_every == 0:
                record()
                loss_sum, loss_n = 0.0, 0
            if checkpoint and checkpoint_every and step % checkpoint_every == 0:
                save()
        if checkpoint:
            save()
    except TrainingDiverged as e:
        raise diverged(e, checkpoint, saved.get("step")) from None
    if not history or history[-1]["step"] != step:
        record()
    final = history[-1]
    return dict(model=model, vocab=vocab, params=model.num_params(), steps=step, train_time_s=train_time,
                tokens_per_s=step * batch_size * block_size / max(train_time, 1e-9),
                final_train_loss=final["train_loss"], final_val_loss=final["val_loss"],
                val_perplexity=math.exp(final["val_loss"]),
                final_val_loss_full=evaluate_split(model, val_ids, batch_size, block_size), history=history,
                val_loss_full_at=full_at,
                config=dict(model.config, **run, backend=be.name))
