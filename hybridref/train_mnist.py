"""Training and evaluation of the MNIST hybrid (used by `hybridref train mnist` and examples/).

On a backend spread over processes (mpiexec), every process runs this loop on its share: the
settings and the data must be the same everywhere (checked at the start), and a time budget is
read on rank 0's clock alone, so that every process leaves the loops at the same step."""
import inspect
import zlib

import numpy as np

from .backends import get_backend
from .clock import budget_clock as clock_named
from .checkpoint import (check_writable, diverged, load_checkpoint, restore, restore_generator, save_checkpoint,
                         training_state, unreadable)
from .data.mnist import load_mnist
from .errors import TrainingDiverged, UserError
from .layers.registry import check_pattern, mixer_spec
from .models.char_lm import check_mixer_option
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
    """(mean loss, accuracy, confusion) of `model` on a labelled set; confusion[i, j] counts the images of
    digit i classified as j."""
    be = model.be
    model.set_dropout_seed(None)
    total_loss, confusion = 0.0, np.zeros((10, 10), np.int64)
    for i in range(0, len(images), batch_size):
        logits = model.forward(images[i:i + batch_size])
        model.clear_saved()
        y = be.local_batch(labels[i:i + batch_size])
        loss, _ = be.cross_entropy_forward(logits, y)  # the mean over the whole batch
        total_loss += loss * len(labels[i:i + batch_size])
        np.add.at(confusion, (y, logits.argmax(axis=1)), 1)
    confusion = be.all_sum(confusion)  # each process counts its share of the batch
    return total_loss / len(images), int(np.trace(confusion)) / len(images), confusion


def _check_config(config, stored):
    """Refuse (ValueError) a config read from a checkpoint that MnistHybrid does not take, or whose sizes need
    more parameters than the checkpoint's `stored` ones: checked before the constructor allocates."""
    options = inspect.signature(MnistHybrid).parameters
    unknown = sorted(set(config) - {n for n, p in options.items() if p.kind is not p.VAR_KEYWORD})
    if unknown:
        raise ValueError(f"MnistHybrid has no option {unknown}")
    cfg = {n: config.get(n, p.default) for n, p in options.items() if p.kind is not p.VAR_KEYWORD}
    d, ratio, pattern, patch = cfg["d_model"], cfg["mlp_ratio"], cfg["pattern"], cfg["patch"]
    if not all(type(v) is int and v >= 0 for v in (d, ratio)) or patch not in (1, 2, 4, 7, 14):
        raise ValueError(f"d_model {d!r}, mlp_ratio {ratio!r}, patch {patch!r} are not sizes (patch divides 28)")
    check_pattern(pattern)
    for letter, mixer in (cfg["mixers"] or {}).items():
        defaults = mixer_spec(letter).options
        for name, value in dict(mixer).items():
            if name not in defaults:
                raise ValueError(f"mixer {letter} has no option {name!r}")
            check_mixer_option(letter, name, value, defaults[name])
    least = d * (patch * patch + 1 + (28 // patch) ** 2 + 11) + len(pattern) * 2 * ratio * d * d
    if least > stored:
        raise ValueError(f"d_model {d}, mlp_ratio {ratio} and {len(pattern)} blocks need at least {least:,} "
                         f"parameters; the checkpoint holds {stored:,}")


def load_mnist_model(path, ckpt, backend):
    """The MNIST hybrid of a loaded checkpoint `ckpt` (read from `path`), on `backend`; CheckpointError
    when its config or weights do not describe one."""
    try:
        _check_config(ckpt["config"], sum(a.size for a in ckpt["params"].values()))
        model = MnistHybrid(**ckpt["config"])
        restore(ckpt, model)
    except UserError as e:  # CheckpointError (restore) and the layers' checks
        raise unreadable(path, str(e)) from None
    except (ValueError, TypeError, ArithmeticError) as e:  # the layers check their options with several types
        raise unreadable(path, f"its config does not describe an MNIST hybrid: {e}") from None
    return model.to(backend)


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
                time_budget=None, subset=None, checkpoint=None, checkpoint_every=None, resume=False,
                on_step=None, on_epoch=None, budget_clock="wall"):
    """Train from scratch (or resume from `checkpoint`); returns a summary dict. on_step(i, n) and
    on_epoch(record) report progress.

    time_budget (seconds of training, evaluation excluded, on the clock `budget_clock`: "wall" or
    "cpu", hybridref/clock.py) ends training early, after the step that crosses it; the schedule is
    still laid out for `epochs`. warmup is the fraction of the steps spent warming the learning rate
    up. subset=N keeps the first N training and test images (quick runs). `checkpoint` is written at
    the end of every epoch and every `checkpoint_every` steps (by rank 0 under mpiexec); a run resumed
    from it computes what the uninterrupted run would have. A non-finite loss stops the run, the last checkpoint intact.
    """
    be = get_backend(backend)
    same_everywhere(be, "settings", dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup, patch=patch,
        d_model=d_model, pattern=pattern, directions=directions, shift=shift, dropout=dropout, seed=seed,
        time_budget=time_budget, budget_clock=budget_clock,
        subset=subset, checkpoint_every=checkpoint_every, resume=resume))
    if checkpoint:
        check_writable(checkpoint)
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
    run = dict(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup, shift=shift,
               seed=seed, time_budget=time_budget, subset=subset)
    if budget_clock != "wall":  # only then: the checkpoints of runs before the option still resume
        run["budget_clock"] = budget_clock
    clock = clock_named(budget_clock)
    history, train_time, step, out_of_time, first_epoch, resumed = [], 0.0, 0, False, 1, None
    if resume:
        ckpt = load_checkpoint(checkpoint)
        restore(ckpt, model, opt)
        resumed = training_state(checkpoint, ckpt, run, dict(
            epoch=int, epoch_step=int, epoch_rng=dict, rng=dict, step=int, train_time_s=(int, float),
            loss_sum=(int, float), correct=int, seen=int), ("epoch", "steps"), "train mnist")
        restore_generator(checkpoint, rng, resumed["epoch_rng"])
        first_epoch, step, train_time, history = resumed["epoch"], resumed["step"], resumed["train_time_s"], \
            resumed["history"]
    saved = {}  # the step of the last checkpoint written

    def save(epoch, epoch_step, epoch_rng, loss_sum, correct, seen):
        """Checkpoint the run as it stands before step `epoch_step` of `epoch`, whose order of images
        `epoch_rng` (the generator's state before that epoch's permutation) draws again."""
        correct = be.all_sum(correct)  # each process counts its share
        if be.rank == 0:
            save_checkpoint(checkpoint, model, None, opt, dict(
                run=run, epoch=epoch, epoch_step=epoch_step, epoch_rng=epoch_rng, rng=rng.bit_generator.state,
                step=step, train_time_s=train_time, loss_sum=loss_sum, correct=correct, seen=seen, history=history))
        saved["step"] = step

    try:
        for epoch in range(first_epoch, epochs + 1):
            if time_budget and budget_spent(be, train_time, time_budget):  # a resumed run whose budget is spent
                break
            epoch_rng = rng.bit_generator.state
            order = rng.permutation(len(train_x))
            first, loss_sum, correct, seen = 0, 0.0, 0, 0
            if resumed:
                if resumed["epoch_step"]:  # mid-epoch: the generator as it was after that step's shifts
                    restore_generator(checkpoint, rng, resumed["rng"])
                first, loss_sum, seen = resumed["epoch_step"], resumed["loss_sum"], resumed["seen"]
                correct = resumed["correct"] if be.rank == 0 else 0
                resumed = None
            t0 = clock()
            for i in range(first, steps_per_epoch):
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
                out_of_time = bool(time_budget) and budget_spent(be, train_time + clock() - t0,
                                                                 time_budget)
                if out_of_time:
                    break
                if checkpoint and checkpoint_every and step % checkpoint_every == 0:
                    train_time += clock() - t0
                    t0 = clock()
                    save(epoch, i + 1, epoch_rng, loss_sum, correct, seen)
            train_time += clock() - t0
            correct = be.all_sum(correct)
            moe = moe_report(model)  # the last training step's MoE aux loss and expert load, before evaluate
            test_loss, test_acc, _ = evaluate(model, test_x, test_y)
            record = dict(epoch=epoch, steps=step, train_loss=loss_sum / seen, train_acc=correct / seen,
                          test_loss=test_loss, test_acc=test_acc, train_time_s=train_time, **moe)
            history.append(record)
            if on_epoch:
                on_epoch(record)
            if checkpoint:
                save(epoch + 1, 0, rng.bit_generator.state, 0.0, 0, 0)
            if out_of_time or (time_budget and budget_spent(be, train_time, time_budget)):
                break
    except TrainingDiverged as e:
        raise diverged(e, checkpoint, saved.get("step")) from None
    return dict(model=model, history=history, params=model.num_params(), train_images=len(train_x),
                test_images=len(test_x), final_test_acc=history[-1]["test_acc"], train_time_s=train_time,
                steps=step, config=dict(model.config, epochs=epochs, batch_size=batch_size, lr=lr,
                                        weight_decay=weight_decay, shift=shift, backend=be.name,
                                        processes=be.size))
