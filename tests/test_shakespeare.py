"""Tiny Shakespeare data, the character LM presets, and the `train shakespeare` command."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from hybridref.cli import Duration, main
from hybridref.data.shakespeare import CharVocab, load_shakespeare
from hybridref.models.char_lm import PRESETS, CharLM
from hybridref.train_shakespeare import get_batch


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    return str(tmp_path)


def test_vocab_and_split(corpus):
    vocab, train, val = load_shakespeare(corpus)
    text = open(os.path.join(corpus, "tinyshakespeare", "input.txt")).read()
    assert vocab.chars == "".join(sorted(set(text)))
    assert len(train) == int(0.9 * len(text)) and len(train) + len(val) == len(text)
    assert vocab.decode(np.concatenate([train, val])) == text
    with pytest.raises(ValueError, match="not in the vocabulary"):
        CharVocab("ab").encode("abc")


@pytest.mark.skipif(not os.environ.get("HYBRIDREF_DATA"), reason="HYBRIDREF_DATA is not set")
def test_real_corpus_has_65_characters():
    vocab, train, val = load_shakespeare()
    assert len(vocab) == 65 and len(train) == 1003854 and len(val) == 111540


def test_presets_have_about_equal_size():
    sizes = {arch: CharLM.preset(arch, 65).num_params() for arch in PRESETS}
    assert max(sizes.values()) / min(sizes.values()) < 1.02, sizes
    assert CharLM.preset("hybrid", 65).config["pattern"].count("A") == 1


def test_batches_are_shifted_windows():
    ids = np.arange(100)
    x, y = get_batch(ids, 4, 10, np.random.default_rng(0))
    assert x.shape == (4, 10) and np.array_equal(y, x + 1)


def test_duration_parsing():
    d = Duration()
    assert d.convert("10m", None, None) == 600 and d.convert("90", None, None) == 90
    assert d.convert("2.5s", None, None) == 2.5 and d.convert("0.5h", None, None) == 1800


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_train_shakespeare_smoke(corpus, tmp_path, backend):
    ck = str(tmp_path / "ck.safetensors")
    out = CliRunner().invoke(main, ["train", "shakespeare", "--backend", backend, "--data-dir", corpus,
                                    "--pattern", "MA", "--d-model", "32", "--steps", "12", "--batch-size", "4",
                                    "--block-size", "32", "--warmup", "2", "--lr", "3e-3", "--eval-every", "6",
                                    "--eval-batches", "2", "--checkpoint", ck, "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert summary["steps"] == 12 and summary["config"]["pattern"] == "MA" and summary["params"] > 0
    assert [r["step"] for r in summary["history"]] == [6, 12]
    # a repetitive corpus: 12 steps already take the loss well below ln(vocab) = 3.1
    assert summary["history"][1]["val_loss"] < summary["history"][0]["val_loss"] < np.log(summary["config"]["vocab_size"])
    assert os.path.exists(ck)
    # the whole validation split, from the checkpoint: the same number as the run's own final figure
    out = CliRunner().invoke(main, ["evaluate", "--backend", backend, "--checkpoint", ck, "--data-dir", corpus,
                                    "--block-size", "32", "--batch-size", "4", "--json"])
    assert out.exit_code == 0, out.output
    full = json.loads(out.output.strip().splitlines()[-1])
    assert full["loss"] == summary["final_val_loss_full"] and full["characters"] == (240 - 1) // 32 * 32


def test_evaluate_split_is_the_mean_over_every_window(corpus, npb):
    """Against a direct log-softmax over consecutive windows (float64 NumPy model, rtol 1e-12)."""
    vocab, _, val = load_shakespeare(corpus)
    model = CharLM(len(vocab.chars), d_model=8, pattern="MA", n_heads=2, mlp_hidden=12, d_state=4).to(npb)
    model.astype(np.float64)
    from hybridref.train_shakespeare import evaluate_split
    n = (len(val) - 1) // 16
    x = val[:n * 16].reshape(n, 16)
    y = val[1:n * 16 + 1].reshape(n, 16)
    logits = model.forward(x)
    model.clear_saved()
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, y[..., None], -1).mean()
    np.testing.assert_allclose(evaluate_split(model, val, batch_size=3, block_size=16), want, rtol=1e-12)
    with pytest.raises(ValueError, match="fewer than one window of 4096"):
        evaluate_split(model, val, batch_size=3, block_size=4096)


def test_evaluate_refuses_a_checkpoint_of_another_text(corpus, tmp_path):
    ck = str(tmp_path / "ck.safetensors")
    args = ["--pattern", "M", "--d-model", "16", "--steps", "1", "--batch-size", "2", "--block-size", "16",
            "--eval-batches", "1", "--checkpoint", ck]
    assert CliRunner().invoke(main, ["train", "shakespeare", "--data-dir", corpus, *args]).exit_code == 0
    other = tmp_path / "other" / "tinyshakespeare"
    other.mkdir(parents=True)
    (other / "input.txt").write_text("xyz " * 500)
    out = CliRunner().invoke(main, ["evaluate", "--checkpoint", ck, "--data-dir", str(other.parent)])
    assert out.exit_code == 1 and "is not the corpus's (4)" in out.output


def test_time_budget_stops_training(corpus):
    out = CliRunner().invoke(main, ["train", "shakespeare", "--backend", "c", "--data-dir", corpus, "--pattern", "M",
                                    "--d-model", "16", "--steps", "100000", "--time-budget", "1s", "--batch-size", "2",
                                    "--block-size", "16", "--eval-batches", "1", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert 1.0 <= summary["train_time_s"] < 3.0 and summary["steps"] < 100000


def test_resume_without_checkpoint_is_a_usage_error(corpus):
    out = CliRunner().invoke(main, ["train", "shakespeare", "--data-dir", corpus, "--resume"])
    assert out.exit_code == 2 and "--resume needs --checkpoint" in out.output
