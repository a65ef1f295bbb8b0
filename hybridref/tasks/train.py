"""Train a character-LM-style model (hybridref/models/char_lm.py, the task's vocabulary) on a task and
score it on held-out examples.

    loss     = mean over the scored positions (mask) of cross-entropy(logits[b, t], targets[b, t])
    accuracy = fraction of the held-out scored positions where argmax logits[b, t] == targets[b, t]

Each step draws a fresh batch from the task's training stream (base.train_rng(seed)); AdamW (β = 0.9,
0.99, weight decay 0.1 on matrices, global-norm clipping at 1), linear warmup then cosine decay to
lr/10 over `steps`, or over the time budget (seconds on `budget_clock`, hybridref/clock.py) when one
is given; training stops at whichever ends first.
"""
import numpy as np

from ..backends import get_backend
from ..clock import budget_clock as clock_named
from ..models.char_lm import CharLM
from ..optim import AdamW, check_loss, cosine_lr
from .base import train_rng


def build_model(task, pattern, d_model, seed=0, backend="c", **config):
    """CharLM over the task's vocabulary: `pattern` of mixer letters, `config` CharLM's other options."""
    return CharLM(task.vocab_size, d_model=d_model, pattern=pattern, seed=seed, **config).to(get_backend(backend))


def scored_loss(be, logits, targets, mask):
    """(mean cross-entropy over the scored positions, dlogits (B,T,V): zero at the others)."""
    rows = np.ascontiguousarray(logits[mask])
    wanted = targets[mask]
    loss, probs = be.cross_entropy_forward(rows, wanted)
    dlogits = np.zeros_like(logits)
    dlogits[mask] = be.cross_entropy_backward(probs, wanted)
    return loss, dlogits


def accuracy(model, examples, batch_size=64):
    """Fraction of the scored positions of `examples` (inputs, targets, mask) the model predicts."""
    inputs, targets, mask = examples
    model.set_dropout_seed(None)
    correct = 0
    for i in range(0, len(inputs), batch_size):
        logits = model.forward(inputs[i:i + batch_size])
        model.clear_saved()
        m = mask[i:i + batch_size]
        correct += int((logits[m].argmax(axis=-1) == targets[i:i + batch_size][m]).sum())
    return correct / int(mask.sum())


def train_task(model, task, steps, batch_size=32, lr=1e-3, weight_decay=0.1, warmup=None, seed=0,
               time_budget=None, budget_clock="cpu", test_tasks=None, eval_batch_size=64):
    """Train `model` on `task` and score it; -> dict(steps, train_time_s, tokens_per_s, train_loss (the
    mean of the last 10 % of steps), accuracy {name: held-out accuracy} of task or each of test_tasks
    ({name: task}), test_positions {name: scored positions}, test_seed)."""
    be, clock = model.be, clock_named(budget_clock)
    opt = AdamW(model.params(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay, clip_norm=1.0)
    warmup = max(1, steps // 10) if warmup is None else warmup
    rng, losses, step, train_time = train_rng(seed), [], 0, 0.0
    while step < steps and not (time_budget and train_time >= time_budget):
        inputs, targets, mask = task.sample(batch_size, rng)
        t0 = clock()
        model.zero_grad()
        model.set_dropout_seed((seed, step))
        logits = model.forward(inputs)
        loss, dlogits = scored_loss(be, logits, targets, mask)
        check_loss(loss, step + 1)
        model.backward(dlogits)
        opt.step(be, lr=cosine_lr(step, steps, lr, warmup, final_div=10,
                                  progress=train_time / time_budget if time_budget else None))
        train_time += clock() - t0
        step += 1
        losses.append(loss)
    tests = test_tasks or {task.name: task}
    held_out = {name: t.test_set(seed) for name, t in tests.items()}
    return dict(steps=step, train_time_s=train_time,
                tokens_per_s=step * batch_size * task.seq_len / max(train_time, 1e-9),
                train_loss=float(np.mean(losses[-max(1, len(losses) // 10):])) if losses else None,
                accuracy={name: accuracy(model, ex, eval_batch_size) for name, ex in held_out.items()},
                test_positions={name: int(ex[2].sum()) for name, ex in held_out.items()}, test_seed=seed)
