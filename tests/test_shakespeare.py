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
    ck = str(tmp_path / "ck.npz")
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
