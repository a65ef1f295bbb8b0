"""--plot of `train mnist` and `train shakespeare`: the picture is written (a PNG matplotlib reads back),
and a missing matplotlib, or a path it cannot write, is refused before training."""
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from hybridref.cli import main

pytest.importorskip("matplotlib", reason="the plots need the `plots` extra (matplotlib)")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


SHAKESPEARE = ["train", "shakespeare", "--backend", "numpy", "--pattern", "MA", "--d-model", 16, "--steps", 6,
               "--batch-size", 2, "--block-size", 16, "--eval-every", 2, "--eval-batches", 1, "--warmup", 2]
MNIST = ["train", "mnist", "--backend", "c", "--threads", 1, "--epochs", 2, "--subset", 128, "--batch-size", 64]


def read_png(path):
    import matplotlib.pyplot as plt
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return plt.imread(str(path))


def test_shakespeare_plot(tmp_path, corpus):
    path = tmp_path / "curves.png"
    out = invoke(*SHAKESPEARE, "--data-dir", corpus, "--plot", path)
    assert out.exit_code == 0, out.output
    height, width, _ = read_png(path).shape
    assert width > 400 and height > 200
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("curves")] == ["curves.png"]  # no temporary


def test_mnist_plot(tmp_path):
    path = tmp_path / "mnist.svg"
    out = invoke(*MNIST, "--plot", path)
    assert out.exit_code == 0, out.output
    assert path.read_text().lstrip().startswith("<?xml") and "<svg" in path.read_text()


def test_a_missing_matplotlib_is_refused_before_training(tmp_path, corpus, monkeypatch):
    """A None entry in sys.modules makes `import matplotlib` raise ImportError, as without the package."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for args in (SHAKESPEARE + ["--data-dir", corpus], MNIST):
        out = invoke(*args, "--plot", tmp_path / "c.png", "--checkpoint", tmp_path / "ck.safetensors")
        assert out.exit_code == 1, out.output
        assert "--plot needs matplotlib: pip install 'hybridref[plots]'" in out.output and "Traceback" not in out.output
        assert "step" not in out.output and "epoch" not in out.output  # refused before the first step
    assert list(tmp_path.iterdir()) == [tmp_path / "data"]


@pytest.mark.parametrize("name,words", [("curves.txt", "ending in one of"), ("a-file/c.png", "cannot write there")])
def test_a_plot_path_that_cannot_be_written_is_refused_before_training(tmp_path, corpus, name, words):
    (tmp_path / "a-file").write_text("")
    out = invoke(*SHAKESPEARE, "--data-dir", corpus, "--plot", tmp_path / name)
    assert out.exit_code == 1 and words in out.output and "step" not in out.output, out.output
