"""MNIST checkpoints through the command line: `train mnist --checkpoint/--resume` and `evaluate` of an
MNIST checkpoint (test-set accuracy, the confusion matrix in --json), on the real test set (a tiny
model, so that the 10,000 images take a second or two)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from hybridref.checkpoint import load_checkpoint, save_checkpoint
from hybridref.cli import main
from hybridref.data.mnist import load_mnist
from hybridref.models.char_lm import CharLM
from hybridref.models.mnist_hybrid import MnistHybrid

from helpers import read_safetensors_file, write_safetensors_file


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory):
    """An MNIST hybrid with random weights (d_model 16, MA), saved: its predictions are spread over the digits."""
    path = tmp_path_factory.mktemp("mnist") / "mnist.safetensors"
    save_checkpoint(path, MnistHybrid(d_model=16, pattern="MA", seed=3))
    return str(path)


def test_evaluate_gives_the_accuracy_and_confusion_matrix_of_an_mnist_checkpoint(mnist_checkpoint):
    out = invoke("evaluate", "--backend", "c", "--threads", 1, "--checkpoint", mnist_checkpoint, "--batch-size", 500,
                 "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout.splitlines()[-1])
    _, (images, labels) = load_mnist()
    predicted = MnistHybrid(d_model=16, pattern="MA", seed=3).to("numpy").forward(images).argmax(axis=1)
    want = np.zeros((10, 10), np.int64)
    np.add.at(want, (labels, predicted), 1)
    assert result["images"] == 10000 and result["split"] == "test"
    assert np.array_equal(result["confusion"], want)  # row: the true digit, column: the prediction
    assert result["accuracy"] == np.trace(want) / 10000 and 0 < result["loss"]
    assert f"test accuracy {result['accuracy']:.4f}" in out.stdout


def test_evaluate_refuses_a_split_the_model_has_not(mnist_checkpoint, tmp_path):
    out = invoke("evaluate", "--backend", "numpy", "--checkpoint", mnist_checkpoint, "--split", "val")
    assert out.exit_code == 2 and "MNIST has the sets test and train" in out.output, out.output
    lm = str(tmp_path / "lm.safetensors")
    save_checkpoint(lm, CharLM(7, d_model=16, pattern="MA", n_heads=2, d_state=4), "abcdefg")
    out = invoke("evaluate", "--backend", "numpy", "--checkpoint", lm, "--split", "test")
    assert out.exit_code == 2 and "Tiny Shakespeare has the splits val and train" in out.output, out.output


@pytest.mark.parametrize("damage,words", [
    ({"d_model": 10 ** 6}, ["d_model 1000000", "the checkpoint holds"]),  # not allocated: refused by its size
    ({"mixers": {"M": {"d_state": 10 ** 9}, "A": {}}}, ["d_state", "more than 4096"]),
    ({"width": 3}, ["MnistHybrid has no option ['width']"]),
    ({"pattern": "MQ"}, ["unknown mixer letters ['Q']"]),
])
def test_evaluate_refuses_an_mnist_config_that_does_not_fit_its_weights(mnist_checkpoint, tmp_path, damage, words):
    tensors, metadata = read_safetensors_file(mnist_checkpoint)
    config = dict(json.loads(metadata["config"]), **damage)
    path = write_safetensors_file(tmp_path / "bad.safetensors", tensors, dict(metadata, config=json.dumps(config)))
    out = invoke("evaluate", "--backend", "numpy", "--checkpoint", path)
    assert out.exit_code == 1 and "not a readable hybridref checkpoint" in out.output, out.output
    for word in words:
        assert word in out.output, out.output


def test_train_mnist_writes_and_resumes_its_checkpoint(tmp_path):
    """--checkpoint at the end of every epoch; --resume of the finished run trains no further."""
    path = tmp_path / "run.safetensors"
    args = ["train", "mnist", "--backend", "c", "--threads", 1, "--epochs", 1, "--subset", 128, "--batch-size", 64,
            "--checkpoint", path, "--json"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    ckpt = load_checkpoint(path)
    assert ckpt["model"] == "MnistHybrid" and ckpt["optimizer"]["step"] == 2 and ckpt["train"]["epoch"] == 2
    again = invoke(*args, "--resume")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.splitlines()[-1])["history"] == json.loads(first.stdout.splitlines()[-1])["history"]
    out = invoke("train", "mnist", "--resume")
    assert out.exit_code == 2 and "--resume needs --checkpoint PATH" in out.output
    out = invoke(*args[:-3], "--checkpoint", tmp_path / "old.npz")
    assert out.exit_code == 1 and "not .npz" in out.output, out.output
