"""Hostile input at the user-facing boundaries: options, environment variables, data files,
checkpoints written and read by the commands, divergence. Every case is one line and exit status 1
(or click's 2 for an option), never a traceback, a crash, or a run that goes on regardless.

The MNIST commands here read a small synthetic data set (`fake_mnist`): what is checked happens
before or regardless of the data."""
import math
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner

from hybridref.backends.c import CBackend
from hybridref.checkpoint import load_checkpoint, save_checkpoint
from hybridref.cli import main
from hybridref.data.shakespeare import CharVocab
from hybridref.errors import TrainingDiverged, UserError
from hybridref.limits import usable_cores
from hybridref.models.char_lm import CharLM

from helpers import read_safetensors_file, write_safetensors_file

CORES = usable_cores()
VOCAB = CharVocab("abcdefgh \n")
TINY = dict(d_model=16, n_heads=2, mlp_hidden={"A": 16, "M": 16}, d_state=4)


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def one_line_error(out, status=1):
    """The output of a refused command: status 1 (2 for a click option), no traceback."""
    text = out.output
    assert out.exit_code == status, text
    assert out.exception is None or isinstance(out.exception, SystemExit), text
    assert "Traceback" not in text and [line[:6] for line in text.splitlines()].count("Error:") == 1, text
    return text


@pytest.fixture
def fake_mnist(monkeypatch):
    """train_mnist reads 320 random training and 64 test images instead of the real files."""
    rng = np.random.default_rng(0)
    data = ((rng.integers(0, 256, (320, 28, 28), dtype=np.uint8), rng.integers(0, 10, 320)),
            (rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64)))
    import hybridref.train_mnist
    monkeypatch.setattr(hybridref.train_mnist, "load_mnist", lambda data_dir=None: data)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    (folder / "input.txt").write_text("".join(rng.choice(list(VOCAB.chars), 3000)))
    return str(tmp_path / "data")


def tiny_checkpoint(path, pattern="MA", scale=1.0, **options):
    model = CharLM(len(VOCAB), pattern=pattern, **{**TINY, **options})
    for p in model.params():
        p.data *= scale
    save_checkpoint(path, model, VOCAB.chars)
    return str(path)


@pytest.fixture
def ckpt(tmp_path):
    return tiny_checkpoint(tmp_path / "ck.safetensors")


# -- threads -----------------------------------------------------------------------------------

@pytest.fixture
def thread_calls(monkeypatch):
    """The thread counts the commands give the C backend; only counts the machine can run reach it."""
    calls, original = [], CBackend.set_threads

    def record(self, n):
        calls.append(n)
        if n <= CORES:
            original(self, n)
    monkeypatch.setattr(CBackend, "set_threads", record)
    return calls


@pytest.mark.parametrize("threads", [100000, 40000, 20000, CORES + 1])
def test_threads_above_the_cores_are_refused(threads, thread_calls, ckpt):
    """--threads 100000 segfaulted, 20000 made the machine unusable, 40000 failed inside libgomp."""
    text = one_line_error(invoke("generate", "--backend", "c", "--checkpoint", ckpt, "--threads", threads), 2)
    assert f"{threads} threads" in text and f"{CORES} cores" in text
    assert threads not in thread_calls


def test_bench_threads_above_the_cores_are_refused():
    text = one_line_error(invoke("bench", "mpi", "--threads", CORES + 1), 2)
    assert f"{CORES} cores" in text


def test_omp_num_threads_above_the_cores_is_capped(thread_calls, ckpt, monkeypatch):
    """OMP_NUM_THREADS=100000 segfaulted: it is capped to the cores, with a warning saying so."""
    monkeypatch.setenv("OMP_NUM_THREADS", "100000")
    out = invoke("generate", "--backend", "c", "--checkpoint", ckpt, "--max-new-tokens", 5)
    assert out.exit_code == 0, out.output
    assert f"OMP_NUM_THREADS=100000 is more than the {CORES} cores" in out.stderr
    # the backend caps it when it is created (unless an earlier test made it), the CLI again: the cores only
    assert thread_calls in ([CORES], [CORES, CORES])


def test_omp_num_threads_above_the_cores_in_a_real_process(ckpt):
    """The whole command in its own process, where the OpenMP runtime reads the variable as it loads."""
    out = subprocess.run([sys.executable, "-c", "from hybridref.cli import main; main()", "generate", "--backend",
                          "c", "--checkpoint", ckpt, "--max-new-tokens", "5"], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, OMP_NUM_THREADS="100000"))
    assert out.returncode == 0 and f"cores this process may run on: using {CORES}" in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("value", ["abc", "0", "-3", "2.5"])
def test_omp_num_threads_that_is_not_a_count_is_refused(value, ckpt, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    text = one_line_error(invoke("generate", "--backend", "c", "--checkpoint", ckpt))
    assert f"OMP_NUM_THREADS={value!r}" in text


# -- options: non-finite numbers, negative seeds -----------------------------------------------

MNIST = ["train", "mnist", "--backend", "c", "--threads", "1", "--epochs", "1", "--batch-size", "64"]
SHAKESPEARE = ["train", "shakespeare", "--backend", "numpy", "--pattern", "M", "--d-model", "8", "--steps", "2",
               "--batch-size", "2", "--block-size", "8", "--eval-batches", "1"]


@pytest.mark.parametrize("command", ["mnist", "shakespeare"])
@pytest.mark.parametrize("option,value", [("--time-budget", "nan"), ("--time-budget", "inf"), ("--lr", "nan"),
                                          ("--lr", "inf"), ("--dropout", "nan"), ("--weight-decay", "nan"),
                                          ("--seed", "-1")])
def test_training_options_are_checked(command, option, value, fake_mnist, corpus):
    """--time-budget nan trained for ~0 s; --lr nan, --dropout nan, --seed -1 were tracebacks."""
    args = MNIST if command == "mnist" else [*SHAKESPEARE, "--data-dir", corpus]
    text = one_line_error(invoke(*args, option, value), 2)
    assert option in text


@pytest.mark.parametrize("option,value", [("--temperature", "nan"), ("--temperature", "inf"), ("--top-p", "nan"),
                                          ("--seed", "-1")])
def test_generate_options_are_checked(option, value, ckpt):
    """--temperature nan printed nothing and exited 0; --top-p nan was accepted."""
    text = one_line_error(invoke("generate", "--checkpoint", ckpt, option, value), 2)
    assert option in text


@pytest.mark.parametrize("duration", ["nan", "nans", "infm", "-inf"])
def test_durations_must_be_finite(duration, corpus):
    text = one_line_error(invoke(*SHAKESPEARE, "--data-dir", corpus, "--time-budget", duration), 2)
    assert "--time-budget" in text


@pytest.mark.parametrize("procs", ["0", "abc", "1,,2", "-1", "2,0", ""])
def test_bench_process_counts_are_checked(procs, monkeypatch):
    """--procs 0 "ran" P = 0 and printed a speedup; --procs abc was a traceback."""
    import hybridref.backends.mpi.launch as launch
    monkeypatch.setattr(launch, "run_bench", lambda p, **kw: pytest.fail(f"a job of {p} processes was started"))
    text = one_line_error(invoke("bench", "mpi", "--procs", procs), 2)
    assert "--procs" in text


def test_debug_shows_the_traceback_of_an_expected_error(ckpt, monkeypatch):
    monkeypatch.setenv("HYBRIDREF_MEMORY_LIMIT", "1M")
    args = ["generate", "--checkpoint", ckpt, "--max-new-tokens", 10 ** 9]
    assert one_line_error(invoke(*args))
    for out in (invoke("--debug", *args), invoke(*args, env={"HYBRIDREF_DEBUG": "1"})):
        assert isinstance(out.exception, UserError), out.output


# -- non-finite values in runs and checkpoints -------------------------------------------------

def test_a_checkpoint_with_nan_weights_is_refused(tmp_path, corpus):
    """It generated empty text with status 0, and `evaluate` reported `val loss nan` with status 0."""
    path = tiny_checkpoint(tmp_path / "nan.safetensors")
    tensors, metadata = read_safetensors_file(path)
    tensors["head.weight"][1, 2] = np.nan
    write_safetensors_file(path, tensors, metadata)
    for args in (["generate", "--checkpoint", path], ["evaluate", "--checkpoint", path, "--data-dir", corpus]):
        text = one_line_error(invoke(*args))
        assert "not a readable hybridref checkpoint" in text and "head.weight" in text and "non-finite" in text


def test_shakespeare_training_that_diverges_stops_and_keeps_the_last_checkpoint(tmp_path, corpus):
    ck = str(tmp_path / "run.safetensors")
    text = one_line_error(invoke(*SHAKESPEARE, "--data-dir", corpus, "--steps", "50", "--warmup", "1", "--lr", "1e30",
                                 "--checkpoint", ck, "--checkpoint-every", "1"))
    assert "training diverged at step" in text and "--lr" in text
    assert load_checkpoint(ck)["train"]["step"] >= 1  # the last checkpoint written before it loads


def test_mnist_training_that_diverges_stops(fake_mnist):
    text = one_line_error(invoke(*MNIST, "--lr", "1e30"))
    assert "training diverged at step" in text


def _nan_loss_backend():
    """A NumPy backend whose loss is NaN from the third call on while its gradients stay finite."""
    from hybridref.backends.numpy import NumpyBackend
    be, calls = NumpyBackend(), []
    finite = be.cross_entropy_forward

    def loss(logits, targets):
        calls.append(1)
        value, probs = finite(logits, targets)
        return (math.nan if len(calls) >= 3 else value), probs
    be.cross_entropy_forward = loss
    return be


def test_a_nan_loss_stops_mnist_training(fake_mnist):
    from hybridref.train_mnist import train_mnist
    with pytest.raises(TrainingDiverged, match="at step 3: the loss is nan"):
        train_mnist(_nan_loss_backend(), epochs=1, batch_size=64, d_model=8, pattern="M")


def test_a_nan_loss_stops_shakespeare_training(corpus):
    from hybridref.train_shakespeare import train_shakespeare
    with pytest.raises(TrainingDiverged, match="at step 3: the loss is nan"):
        train_shakespeare(_nan_loss_backend(), steps=5, batch_size=2, block_size=8, eval_batches=1,
                          data_dir=corpus, model_overrides=dict(pattern="M", d_model=8))


# -- checkpoints written by training -----------------------------------------------------------

@pytest.mark.parametrize("where", ["/proc/x.safetensors", "{tmp}/a-file/x.safetensors"])
def test_an_unwritable_checkpoint_is_refused_before_training(where, tmp_path, corpus):
    """--checkpoint /proc/x.safetensors failed only at the first save, after the training ran."""
    (tmp_path / "a-file").write_text("")
    path = where.format(tmp=tmp_path)
    from hybridref.train_shakespeare import train_shakespeare

    def started(*_):
        pytest.fail("training started")
    with pytest.raises(UserError, match="cannot write the checkpoint"):
        train_shakespeare("numpy", steps=2, batch_size=2, block_size=8, eval_batches=1, data_dir=corpus,
                          checkpoint=path, model_overrides=dict(pattern="M", d_model=8), on_step=started)
    text = one_line_error(invoke(*SHAKESPEARE, "--data-dir", corpus, "--checkpoint", path))
    assert path in text


# -- data files --------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"ab\n", b"abcdefgh" * 2])
def test_a_corpus_too_short_for_the_windows_is_refused(content, tmp_path):
    """An empty or too-short input.txt gave "Error: high <= 0"."""
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_bytes(content)
    text = one_line_error(invoke(*SHAKESPEARE, "--data-dir", tmp_path))
    assert str(folder / "input.txt") in text and "--block-size" in text and "high <= 0" not in text


def test_a_corpus_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_bytes(b"First Citizen:\n" * 20 + b"\xff\xfe caf\xe9\n")
    text = one_line_error(invoke(*SHAKESPEARE, "--data-dir", tmp_path))
    assert str(folder / "input.txt") in text and "UTF-8" in text


# -- generation: bounded memory, streaming -----------------------------------------------------

def test_a_kv_cache_too_large_is_refused_with_its_size(tmp_path, monkeypatch):
    """--max-new-tokens 1000000000 on an attention model tried to allocate a 60 GiB KV cache."""
    monkeypatch.setenv("HYBRIDREF_MEMORY_LIMIT", "1G")
    path = tiny_checkpoint(tmp_path / "att.safetensors", pattern="AA")
    text = one_line_error(invoke("generate", "--checkpoint", path, "--max-new-tokens", 10 ** 9))
    assert "KV cache" in text and "GiB" in text and "--max-new-tokens" in text


def test_positions_past_a_c_int_are_refused(tmp_path):
    path = tiny_checkpoint(tmp_path / "mamba.safetensors", pattern="MM")
    text = one_line_error(invoke("generate", "--checkpoint", path, "--max-new-tokens", 2 ** 31))
    assert "--max-new-tokens" in text and "2147483647" in text


@pytest.fixture
def one_thread():
    """The C backend on one thread: two spinning OpenMP threads on a loaded 2-core machine make a tiny
    decoder step take milliseconds instead of microseconds."""
    be = CBackend()
    before = be.threads  # the OpenMP setting is the whole process's
    be.set_threads(1)
    yield be
    be.set_threads(before)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_a_recurrent_model_streams_in_constant_memory(tmp_path, backend, one_thread):
    """--max-new-tokens 2**31 on a Mamba-only model printed nothing for 20 s: the text is a stream, and
    the memory it takes does not grow with the number of tokens (after a warm-up that fills NumPy's
    and Python's free lists)."""
    from hybridref.backends.numpy import NumpyBackend
    from hybridref.generate import load_model, stream
    be = one_thread if backend == "c" else NumpyBackend()
    model, vocab = load_model(tiny_checkpoint(tmp_path / "mamba.safetensors", pattern="MM"), be)
    chars = stream(model, vocab, "ab", 2 ** 31 - 3, temperature=1.0, seed=0)
    for _ in range(1000):
        next(chars)
    tracemalloc.start()
    try:
        for _ in range(1000):
            next(chars)
        after_2000 = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            next(chars)
        after_4000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after_4000 - after_2000 < 4096, (after_2000, after_4000)


def test_the_cli_streams_the_text(ckpt):
    out = invoke("generate", "--checkpoint", ckpt, "--prompt", "ab", "--max-new-tokens", 40, "--seed", 1)
    assert out.exit_code == 0 and len(out.stdout) == 2 + 40 + 1, out.output


def test_a_vocabulary_that_does_not_fit_the_model_is_refused(tmp_path):
    """A vocabulary shorter than the embedding gave IndexError while sampling."""
    path = tiny_checkpoint(tmp_path / "ck.safetensors")
    tensors, metadata = read_safetensors_file(path)
    write_safetensors_file(path, tensors, dict(metadata, vocab='"abc"'))
    text = one_line_error(invoke("generate", "--checkpoint", path))
    assert "vocabulary" in text and "3 characters" in text and "10" in text
