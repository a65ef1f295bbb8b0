"""The command line: info, training smoke run with --json, and clear errors."""
import json
import os

import pytest
from click.testing import CliRunner

from hybridref.cli import main


def test_info_lists_backends_and_cpu():
    out = CliRunner().invoke(main, ["info"])
    assert out.exit_code == 0, out.output
    assert "numpy" in out.output and "isa" in out.output and "threads:" in out.output


def test_unknown_backend_is_a_usage_error():
    out = CliRunner().invoke(main, ["train", "mnist", "--backend", "cuda"])
    assert out.exit_code == 2 and "unknown backend 'cuda'" in out.output


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDREF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HYBRIDREF_DATA", raising=False)
    import hybridref.data.paths as paths

    def offline(url, timeout):
        raise paths.urllib.error.URLError("offline")
    monkeypatch.setattr(paths.urllib.request, "urlopen", offline)
    out = CliRunner().invoke(main, ["train", "mnist", "--data-dir", str(tmp_path)])
    assert out.exit_code == 1 and "--data-dir" in out.output and "train-images" in out.output


@pytest.mark.skipif(not os.environ.get("HYBRIDREF_DATA"), reason="HYBRIDREF_DATA is not set")
@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_train_mnist_smoke(backend):
    """A short training run end to end (data, model, backend, evaluation, JSON summary)."""
    out = CliRunner().invoke(main, ["train", "mnist", "--backend", backend, "--epochs", "2", "--batch-size", "50",
                                    "--subset", "500", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert summary["config"]["backend"] == backend and summary["test_images"] == 500
    assert summary["steps"] == 20 and len(summary["history"]) == 2
    # 20 steps already move the loss below chance level (ln 10 = 2.30) and keep lowering it
    losses = [r["train_loss"] for r in summary["history"]]
    assert losses[1] < losses[0] < 2.25
