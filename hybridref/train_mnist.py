"""Training and evaluation of the MNIST hybrid (used by `hybridref train mnist` and examples/).

On a backend spread over processes (mpiexec), every process runs this loop on its share: the
settings and the data must be the same everywhere (checked at the start), and a time budget is
read on rank 0's clock alone, so that every process leaves the loops at the same step."""
import time
import zlib

import numpy as np

from .backends import get_backend
from .data.mnist import load_mnist
from .models.mnist_hybrid import MnistHybrid
from .layers.moe import moe_report
from .optim import AdamW, check_loss, cosine_lr


def random_shift(images, max_shift, rng):
    """Translate each image by up to ±max_shift pixels in x and y, filling with background (0)."""
    B = len(images)
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy, dx = rng.integers(0, 2 * max_shift + 1, (2, B))
    rows = dy[:, None] + np.arange(28)[None, :]
    cols = dx[:, None] + np.arange(28)[None, :]
    return padded[np.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]


def evaluate(model, images, labels, batch_size=250):
    """(mean loss, accuracy) of `model` on a labelled set."""
    be = model.be
    model.set_dropout_seed(None)
    total_loss, correct = 0.0, 0
    for i in range(0, len(images), batch_size):
        logits = model.forward(images[i:i + batch_size])
        model.clear_saved()
        y = be.local_batch(labels[i:i + batch_size])
        loss, _ = be.cross_entropy_forward(logits, y)  # the mean over the whole batch
        total_loss += loss * len(labels[i:i + batch_size])
        correct += int((logits.argmax(axis=1) == y).sum())
    return total_loss / len(images), be.all_sum(correct) / len(images)


def same_everywhere(be, what, settings):
    """Processes that run one model must run it with the same settings; on several, a difference ends
    the run naming it (UserError on every process). One process has nothing to compare."""
    if be.size > 1:
        be.check_same(what, settings)


def data_fingerprint(*arrays):
    """(sizes, CRC-32 of the contents) of the data arrays, to compare between processes."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).view(np.uint8), crc)
    return [len(a) for a in arrays], crc


def budget_spent(be, elapsed, budget):
    """Whether `budget` seconds are spent by rank 0's clock: the same answer on every process. (Each
    process's clock reads differently; deciding on its own, one would leave the loop while another
    waits for it in the next step.)"""
    return bool(be.all_sum(int(be.rank == 0 and elapsed > budget)))


def train_mnist(backend, epochs=10, batch_size=64, lr=3e-3, weight_decay=0.05, warmup=0.05,
                patch=7, d_model=64, pattern="MMMAMMMA", directions=1, shift=2, dropout=0.0, seed=0,
                data_dir=None,
                time_budget=None, subset=None, on_step=None, on_epoch=None):
    """Train from scratch; returns a summary dict. on_step(i, n) and on_epoch(record) report progress.

    time_budget (seconds of training, evaluation excluded) ends training early, after the step
    that crosses it; the schedule is still laid out for `epochs`. warmup is the fraction of
    the steps spent warming the learning rate up. subset=N keeps the first N
    training and test images (quick runs).
    """
    be = get_backend(backend)
    same_everywhere(be, "settings", dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup, patch=patch,
        d_model=d_model, pattern=pattern, directions=directions, shift=shift, dropout=dropout, seed=seed,
        time_budget=time_budget,
        subset=subset))
    (train_x, train_y), (test_x, test_y) = load_mnist(data_dir)
    if subset:
        train_x, train_y, test_x, test_y = train_x[:subset], train_y[:subset], test_x[:subset], test_y[:subset]
    same_everywhere(be, "MNIST data (image counts and CRC-32; check --data-dir and $HYBRIDREF_DATA)",
                    dict(data=data_fingerprint(train_x, train_y, test_x, test_y)))
    model = MnistHybrid(patch=patch, d_model=d_model, pattern=pattern, dropout=dropout, seed=seed,
                        directions=directions).to(be)  # the Mamba layers' scans (scan_directions.py)
    opt = AdamW(model.params(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay, clip_norm=1.0)
    rng = np.random.default_rng(seed + 1)
    steps_per_epoch = max(1, len(train_x) // batch_size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = max(1, round(warmup * total_steps))
    history, train_time, step, out_of_time = [], 0.0, 0, False
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train_x))
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            images = random_shift(train_x[idx], shift, rng) if shift else train_x[idx]
            model.zero_grad()
            model.set_dropout_seed((seed, step))
            logits = model.forward(images)
            y = be.local_batch(train_y[idx])
            loss, probs = be.cross_entropy_forward(logits, y)
            loss += model.aux_loss()  # MoE balancing/z losses (0 when dense); their gradient is in the MoE backward
            check_loss(loss, step + 1)
            model.backward(be.cross_entropy_backward(probs, y))
            be.reduce_gradients(model.params())
            opt.step(be, lr=cosine_lr(step, total_steps, lr, warmup_steps))
            step += 1
            loss_sum += loss * len(idx)
            correct += int((logits.argmax(axis=1) == y).sum())
            seen += len(idx)
            if on_step:
                on_step(i + 1, steps_per_epoch)
            out_of_time = bool(time_budget) and budget_spent(be, train_time + time.perf_counter() - t0, time_budget)
            if out_of_time:
                break
        train_time += time.perf_counter() - t0
        correct = be.all_sum(correct)
        moe = moe_report(model)  # the last training step's MoE aux loss and expert load, before evaluate
        test_loss, test_acc = evaluate(model, test_x, test_y)
        record = dict(epoch=epoch, steps=step, train_loss=loss_sum / seen, train_acc=correct / seen,
                      test_loss=test_loss, test_acc=test_acc, train_time_s=train_time, **moe)
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if out_of_time or (time_budget and budget_spent(be, train_time, time_budget)):
            break
    return dict(model=model, history=history, params=model.num_params(), train_images=len(train_x),
                test_images=len(test_x), final_test_acc=history[-1]["test_acc"], train_time_s=train_time,
                steps=step, config=dict(model.config, epochs=epochs, batch_size=batch_size, lr=lr,
                                        weight_decay=weight_decay, shift=shift, backend=be.name,
                                        processes=be.size))
