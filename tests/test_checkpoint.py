"""Checkpoints: round trip on any backend, atomic writes under SIGKILL, refusal of mismatches,
and --resume giving exactly the uninterrupted run."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hybridref.checkpoint import load_checkpoint, restore, save_checkpoint
from hybridref.models.char_lm import CharLM
from hybridref.optim import AdamW
from hybridref.train_shakespeare import train_shakespeare

TINY = dict(d_model=16, n_heads=2, mlp_hidden={"A": 16, "M": 16}, d_state=4)


def test_round_trip_restores_weights_and_optimizer(tmp_path, npb, cb):
    model = CharLM(7, pattern="MA", **TINY)
    opt = AdamW(model.params())
    for m in opt.m:
        m[...] = 0.5
    opt.step_count = 3
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, "abcdefg", opt, {"step": 3})
    ckpt = load_checkpoint(path)
    assert ckpt["vocab"] == "abcdefg" and ckpt["train"] == {"step": 3}
    for be in (npb, cb):
        other = CharLM(**ckpt["config"]).to(be)
        opt2 = AdamW(other.params())
        restore(ckpt, other, opt2)
        assert all(np.array_equal(a.data, b.data) for a, b in zip(model.params(), other.params()))
        assert opt2.step_count == 3 and all((m == 0.5).all() for m in opt2.m)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary file left behind


def test_mismatched_config_or_shapes_are_refused(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, CharLM(7, pattern="MA", **TINY))
    ckpt = load_checkpoint(path)
    with pytest.raises(ValueError, match=r"pattern: checkpoint 'MA', model 'AM'"):
        restore(ckpt, CharLM(7, pattern="AM", **TINY))
    ckpt["params"]["head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"'head.weight' has shape \(3, 3\), the model's is \(7, 16\)"):
        restore(ckpt, CharLM(7, pattern="MA", **TINY))


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable hybridref checkpoint"):
        load_checkpoint(bad)


def test_killed_mid_save_leaves_previous_checkpoint(tmp_path):
    """A child saves checkpoint A, then starts saving B and is SIGKILLed once B is fully written to
    its temporary file but before the rename (its fsync is made to hang): A must load intact."""
    path = tmp_path / "ck.npz"
    child = textwrap.dedent(f"""
        import os, sys, time
        import hybridref.checkpoint as ck
        from hybridref.models.char_lm import CharLM
        ck.save_checkpoint({str(path)!r}, CharLM(7, pattern="MA", seed=1, **{TINY!r}), "A")
        print("saved", flush=True)
        def hang(fd):
            print("writing", flush=True)
            time.sleep(60)
        ck.os.fsync = hang
        ck.save_checkpoint({str(path)!r}, CharLM(7, pattern="MA", seed=2, **{TINY!r}), "B")
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(path)
    assert ckpt["vocab"] == "A"
    ref = CharLM(7, pattern="MA", seed=1, **TINY)
    restore(ckpt, ref)  # loads: the file is whole
    assert np.array_equal(ckpt["params"]["head.weight"], CharLM(7, pattern="MA", seed=1, **TINY).head.weight.data)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    (folder / "input.txt").write_text("".join(rng.choice(list("abcdefgh \n"), 4000)))
    return str(tmp_path / "data")


def test_resume_equals_uninterrupted_run(tmp_path, corpus, cb):
    """With dropout on: the resumed steps draw the same masks as the uninterrupted run's."""
    kw = dict(arch="hybrid", steps=8, batch_size=2, block_size=16, warmup=3, eval_every=4, eval_batches=1,
              data_dir=corpus, model_overrides=dict(pattern="MA", dropout=0.2, **TINY))
    full = train_shakespeare(cb, **kw)
    path = str(tmp_path / "run.npz")

    def interrupt(step, *_):
        if step == 6:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_shakespeare(cb, checkpoint=path, checkpoint_every=5, on_step=interrupt, **kw)
    assert load_checkpoint(path)["train"]["step"] == 5
    resumed = train_shakespeare(cb, checkpoint=path, resume=True, **kw)
    assert resumed["steps"] == 8
    for a, b in zip(full["model"].params(), resumed["model"].params()):
        assert np.array_equal(a.data, b.data)
    assert [r["val_loss"] for r in resumed["history"]] == [r["val_loss"] for r in full["history"]]
    with pytest.raises(ValueError, match="batch_size: checkpoint 2, now 3"):
        train_shakespeare(cb, checkpoint=path, resume=True, **{**kw, "batch_size": 3})
