"""Checkpoints: round trip on any backend, atomic writes under SIGKILL, refusal of mismatches,
and --resume giving exactly the uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hybridref.checkpoint import check_writable, load_checkpoint, restore, save_checkpoint
from hybridref.errors import CheckpointError, TrainingDiverged, UserError
from hybridref.models.char_lm import CharLM
from hybridref.models.mnist_hybrid import MnistHybrid
from hybridref.optim import AdamW
from hybridref.train_mnist import train_mnist
from hybridref.train_shakespeare import train_shakespeare

TINY = dict(d_model=16, n_heads=2, mlp_hidden={"A": 16, "M": 16}, d_state=4)


def test_round_trip_restores_weights_and_optimizer(tmp_path, npb, cb):
    model = CharLM(7, pattern="MA", **TINY)
    opt = AdamW(model.params())
    for m in opt.m:
        m[...] = 0.5
    opt.step_count = 3
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, "abcdefg", opt, {"step": 3})
    ckpt = load_checkpoint(path)
    assert ckpt["vocab"] == "abcdefg" and ckpt["train"] == {"step": 3}
    for be in (npb, cb):
        other = CharLM(**ckpt["config"]).to(be)
        opt2 = AdamW(other.params())
        restore(ckpt, other, opt2)
        assert all(np.array_equal(a.data, b.data) for a, b in zip(model.params(), other.params()))
        assert opt2.step_count == 3 and all((m == 0.5).all() for m in opt2.m)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not the temporary's 0600


def test_mismatched_config_or_shapes_are_refused(tmp_path):
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, CharLM(7, pattern="MA", **TINY))
    ckpt = load_checkpoint(path)
    with pytest.raises(ValueError, match=r"pattern: checkpoint 'MA', model 'AM'"):
        restore(ckpt, CharLM(7, pattern="AM", **TINY))
    ckpt["params"]["head.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"'head.weight' has shape \(3, 3\), the model's is \(7, 16\)"):
        restore(ckpt, CharLM(7, pattern="MA", **TINY))


def test_a_torch_user_loads_the_weights_with_safetensors_torch(tmp_path):
    """The weights under the names Module gives them, the optimizer's moments under adam_m/ and adam_v/,
    what the model is in the metadata."""
    torch = pytest.importorskip("torch")
    from safetensors import safe_open
    from safetensors.torch import load_file
    model = CharLM(7, pattern="MA", **TINY)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model, "abcdefg", AdamW(model.params()), {"step": 0})
    tensors = load_file(str(path))
    weights = {k: v for k, v in tensors.items() if "/" not in k}
    assert list(weights) == sorted(name for name, _ in model.named_params())  # safetensors sorts the names
    for name, p in model.named_params():
        assert weights[name].dtype == torch.float32 and torch.equal(weights[name], torch.from_numpy(p.data))
    assert sorted(k for k in tensors if "/" in k) == sorted(f"{m}/{n}" for m in ("adam_m", "adam_v") for n in weights)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "hybridref-checkpoint-2" and meta["model"] == "CharLM"
    assert json.loads(meta["config"]) == model.config and json.loads(meta["vocab"]) == "abcdefg"


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    """The rename fails (a full disk, a permission changed): a clear error, the previous file intact."""
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, CharLM(7, pattern="MA", seed=1, **TINY), "A")

    def fail(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UserError, match="cannot write the checkpoint .*No space left on device"):
        save_checkpoint(path, CharLM(7, pattern="MA", seed=2, **TINY), "B")
    monkeypatch.undo()
    assert load_checkpoint(path)["vocab"] == "A" and [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]


def test_a_checkpoint_of_another_model_class_is_refused(tmp_path):
    path = tmp_path / "mnist.safetensors"
    save_checkpoint(path, MnistHybrid(d_model=16, pattern="MA"))
    with pytest.raises(CheckpointError, match="the checkpoint holds a MnistHybrid, not a CharLM"):
        restore(load_checkpoint(path), CharLM(7, pattern="MA", **TINY))
    ckpt = load_checkpoint(path)
    ckpt["params"]["extra.weight"] = ckpt["params"].pop("head.weight")
    with pytest.raises(CheckpointError, match=r"missing \['head.weight'\], unexpected \['extra.weight'\]"):
        restore(ckpt, MnistHybrid(d_model=16, pattern="MA"))


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable hybridref checkpoint"):
        load_checkpoint(bad)


def kill_a_save_while_writing(path, save_a_first):
    """A child process saves checkpoint A (seed 1) first if `save_a_first`, then starts saving B (seed 2)
    and is SIGKILLed once B is fully written to its temporary file, before the rename (its fsync is made
    to hang). -> the child's pid."""
    first = f"ck.save_checkpoint({str(path)!r}, CharLM(7, pattern='MA', seed=1, **{TINY!r}), 'A')" \
        if save_a_first else ""
    child = textwrap.dedent(f"""
        import time
        import hybridref.checkpoint as ck
        from hybridref.models.char_lm import CharLM
        {first}
        def hang(fd):
            print("writing", flush=True)
            time.sleep(60)
        ck.os.fsync = hang
        ck.save_checkpoint({str(path)!r}, CharLM(7, pattern="MA", seed=2, **{TINY!r}), "B")
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def test_killed_mid_save_leaves_previous_checkpoint(tmp_path):
    """A child saves checkpoint A, then starts saving B and is SIGKILLed once B is fully written to
    its temporary file but before the rename (its fsync is made to hang): A must load intact."""
    path = tmp_path / "ck.safetensors"
    kill_a_save_while_writing(path, save_a_first=True)
    ckpt = load_checkpoint(path)
    assert ckpt["vocab"] == "A"
    ref = CharLM(7, pattern="MA", seed=1, **TINY)
    restore(ckpt, ref)  # loads: the file is whole
    assert np.array_equal(ckpt["params"]["head.weight"], CharLM(7, pattern="MA", seed=1, **TINY).head.weight.data)


def test_the_next_save_removes_the_temporary_file_of_a_killed_save(tmp_path):
    """A kill during a save left its temporary file behind for ever: the next save of the same
    checkpoint removes it; the temporary file of a save still running, or of another checkpoint, stays."""
    path = tmp_path / "ck.safetensors"
    pid = kill_a_save_while_writing(path, save_a_first=False)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f"ck.safetensors.{pid}.") and left[0].endswith(".tmp"), left
    running = tmp_path / f"ck.safetensors.{os.getppid()}.abc.tmp"  # a live process's (this one's parent)
    other = tmp_path / f"other.safetensors.{pid}.abc.tmp"
    running.write_bytes(b"")
    other.write_bytes(b"")
    save_checkpoint(path, CharLM(7, pattern="MA", **TINY), "A")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ck.safetensors", running.name, other.name])


def test_a_checkpoint_that_cannot_be_written_is_a_clear_error(tmp_path):
    """Writing to an unwritable place gave a raw FileNotFoundError on the temporary file."""
    (tmp_path / "a-file").write_text("")
    model = CharLM(7, pattern="MA", **TINY)
    for path in ("/proc/x.safetensors", str(tmp_path / "a-file" / "x.safetensors")):
        with pytest.raises(UserError, match=f"cannot write the checkpoint {path}: .*--checkpoint"):
            save_checkpoint(path, model)
        with pytest.raises(UserError, match=f"cannot write the checkpoint {path}"):
            check_writable(path)
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_a_npz_path_is_refused_before_anything_is_written(tmp_path):
    """The writer writes safetensors only: a .npz name would hold another format than it says."""
    for path in (tmp_path / "ck.npz", tmp_path / "CK.NPZ"):
        with pytest.raises(UserError, match=r"written as safetensors, not \.npz; name the file \.safetensors"):
            check_writable(path)
        with pytest.raises(UserError, match=r"not \.npz"):
            save_checkpoint(path, CharLM(7, pattern="MA", **TINY))
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_are_neither_saved_nor_loaded(tmp_path):
    model = CharLM(7, pattern="MA", **TINY)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, model)
    model.head.weight.data[0, 0] = np.inf
    with pytest.raises(TrainingDiverged, match=r"no longer finite \(head.weight\)"):
        save_checkpoint(path, model)
    assert np.isfinite(load_checkpoint(path)["params"]["head.weight"]).all()  # the previous file is intact


def test_resume_equals_uninterrupted_run(tmp_path, corpus, cb):
    """With dropout on: the resumed steps draw the same masks as the uninterrupted run's."""
    kw = dict(arch="hybrid", steps=8, batch_size=2, block_size=16, warmup=3, eval_every=4, eval_batches=1,
              data_dir=corpus, model_overrides=dict(pattern="MA", dropout=0.2, **TINY))
    full = train_shakespeare(cb, **kw)
    path = str(tmp_path / "run.safetensors")

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


MNIST_RUN = dict(epochs=2, batch_size=32, subset=256, d_model=16, pattern="MA", dropout=0.1, warmup=0.2)


@pytest.mark.parametrize("stop", [11, 9], ids=["mid-epoch", "epoch-start"])
def test_mnist_resume_equals_uninterrupted_run(tmp_path, cb, stop):
    """8 steps an epoch, with dropout and random shifts: a run stopped at step `stop` resumes from its last
    checkpoint (step 10, in epoch 2; or step 8, the end of epoch 1) and ends as the uninterrupted run did."""
    full = train_mnist(cb, **MNIST_RUN)
    path = str(tmp_path / "mnist.safetensors")
    steps = []

    def interrupt(*_):
        steps.append(1)
        if len(steps) == stop:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_mnist(cb, checkpoint=path, checkpoint_every=5 if stop == 11 else None, on_step=interrupt, **MNIST_RUN)
    ckpt = load_checkpoint(path)
    assert ckpt["model"] == "MnistHybrid" and ckpt["train"]["step"] == stop - 1
    resumed = train_mnist(cb, checkpoint=path, resume=True, **MNIST_RUN)
    assert resumed["steps"] == 16
    for (name, a), b in zip(full["model"].named_params(), resumed["model"].params()):
        assert np.array_equal(a.data, b.data), name
    untimed = [[{k: v for k, v in r.items() if k != "train_time_s"} for r in run["history"]] for run in (full, resumed)]
    assert untimed[0] == untimed[1]
    with pytest.raises(ValueError, match="lr: checkpoint 0.003, now 0.001"):
        train_mnist(cb, checkpoint=path, resume=True, **{**MNIST_RUN, "lr": 1e-3})


FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "char_lm_before_mixer_options.npz")


def test_a_checkpoint_written_before_per_mixer_options_still_loads(npb, cb):
    """tests/fixtures/char_lm_before_mixer_options.npz was saved by the code before mixer options moved
    into per-mixer configs (flat n_heads, d_state, ... for every mixer, whatever the pattern), with the
    logits it computed beside it: the loaded model is the same model."""
    ckpt = load_checkpoint(FIXTURE)
    assert "n_heads" in ckpt["config"] and "mixers" not in ckpt["config"]
    model = CharLM.from_config(ckpt["config"])
    restore(ckpt, model)
    assert model.config["mixers"]["A"]["n_heads"] == 2 and model.config["mixers"]["M"]["d_state"] == 2
    ids = np.array([[0, 1, 2, 3, 4, 0, 1]])
    want = np.load(FIXTURE.replace(".npz", ".logits.npy"))
    for be in (npb, cb):
        # the same float32 weights and ops; the saved logits came from the NumPy backend: C differs
        # by its summation order only (~1e-7 relative)
        assert np.abs(model.to(be).forward(ids) - want).max() <= 1e-5 * np.abs(want).max(), be.name
        model.clear_saved()


def test_options_missing_from_a_config_take_their_defaults():
    """A config written before an option existed (here: dropout, and attention's window) loads with
    the defaults; a config naming an option no mixer has is refused."""
    ckpt = load_checkpoint(FIXTURE)
    old = {k: v for k, v in ckpt["config"].items() if k not in ("dropout", "window")}
    model = CharLM.from_config(old)
    restore(dict(ckpt, config=old), model)
    assert model.config["dropout"] == 0.0 and model.config["mixers"]["A"]["window"] is None
    new = CharLM.from_config(model.config)
    assert new.config == model.config
    with pytest.raises(ValueError, match=r"mixer A \(attention\) has no option 'heads'"):
        CharLM.from_config(dict(model.config, mixers={"A": {"heads": 2}, "M": {}}))
