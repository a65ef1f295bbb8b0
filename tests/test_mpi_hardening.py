"""Jobs of several processes that must not hang or silently disagree: a time budget ends every
process at the same step, any way one process ends early ends the whole job within seconds, and
options that must agree are checked at the start. Each job runs under `mpiexec` in a subprocess,
from a driver script written for the test; the MNIST ones read random images (no data files)."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("mpi4py", reason="the mpi backend needs mpi4py (pip install 'hybridref[mpi]')")

from hybridref.backends.mpi.launch import find_mpiexec  # noqa: E402
from hybridref.errors import UserError  # noqa: E402

FAKE_MNIST = """
import numpy as np
import hybridref.train_mnist
_rng = np.random.default_rng(0)
_data = ((_rng.integers(0, 256, (640, 28, 28), dtype=np.uint8), _rng.integers(0, 10, 640)),
         (_rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), _rng.integers(0, 10, 64)))
hybridref.train_mnist.load_mnist = lambda data_dir=None: _data
"""


def run_job(tmp_path, script, procs=2, timeout=90, env=None):
    """`mpiexec -n procs python script`; (CompletedProcess, seconds it took)."""
    path = tmp_path / "driver.py"
    path.write_text(script)
    t0 = time.perf_counter()
    out = subprocess.run([find_mpiexec(), "-n", str(procs), sys.executable, str(path)], capture_output=True,
                         text=True, timeout=timeout, env=dict(os.environ, **(env or {})))
    return out, time.perf_counter() - t0


def reports(tmp_path, procs=2):
    """What each process wrote to rank<r>.json (its own file: the launcher may merge lines of the ranks'
    stdout)."""
    paths = [tmp_path / f"rank{r}.json" for r in range(procs)]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def test_mnist_time_budget_ends_every_process_at_the_same_step(tmp_path):
    """Each process left the epoch loop on its own clock: one returned, the other blocked for ever
    (every time when one process starts 0.4 s late)."""
    out, _ = run_job(tmp_path, FAKE_MNIST + textwrap.dedent("""
        import json, time
        from hybridref.backends.mpi import MPIBackend
        from hybridref.train_mnist import train_mnist
        be = MPIBackend(local="c", threads=1)
        if be.rank == 1:
            time.sleep(0.4)
        out = train_mnist(be, epochs=50, batch_size=64, d_model=16, pattern="MA", time_budget=0.3, shift=0)
        with open(f"{folder}/rank{{be.rank}}.json", "w") as f:
            json.dump(dict(steps=out["steps"], epochs=len(out["history"])), f)
    """).format(folder=tmp_path), timeout=120)
    got = reports(tmp_path)
    assert out.returncode == 0 and len(got) == 2, out.stderr[-3000:]
    assert got[0]["steps"] == got[1]["steps"] and got[0]["epochs"] == got[1]["epochs"] < 50


def test_shakespeare_training_over_several_processes_is_refused(tmp_path):
    """Its loop does not split its targets over processes (it failed deep in the loss with a shape
    error): a clear error, and the job ends."""
    corpus = tmp_path / "data" / "tinyshakespeare"
    corpus.mkdir(parents=True)
    (corpus / "input.txt").write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    out, took = run_job(tmp_path, textwrap.dedent(f"""
        from hybridref.backends.mpi import MPIBackend
        from hybridref.train_shakespeare import train_shakespeare
        train_shakespeare(MPIBackend(local="c", threads=1), steps=3, batch_size=2, block_size=16, eval_batches=1,
                          data_dir={str(tmp_path / "data")!r}, model_overrides=dict(pattern="MA", d_model=16))
    """))
    assert out.returncode != 0 and "train shakespeare runs in one process" in out.stderr, out.stderr[-3000:]
    assert took < 30


BLOCKED = """
    import os, signal, sys, time
    from hybridref.backends.mpi import MPIBackend
    be = MPIBackend(local="c", threads=1)
    be.comm.Barrier()
    if be.rank == 0:
        {ending}
    be.comm.recv(source=0, tag=5)  # never sent
    print("rank 1 received", flush=True)
"""


@pytest.mark.parametrize("ending", ["sys.exit(0)", "sys.exit(3)", "raise SystemExit('giving up')",
                                    "os.kill(os.getpid(), signal.SIGKILL)", "os.kill(os.getpid(), signal.SIGTERM)"])
def test_one_process_ending_early_ends_the_job(ending, tmp_path):
    """A process that ended with sys.exit(0) or sys.exit(3) in a driver script left the others waiting
    for ever."""
    out, took = run_job(tmp_path, textwrap.dedent(BLOCKED).format(ending=ending), env={"HYBRIDREF_MPI_EXIT_WAIT": "2"}, timeout=60)
    assert out.returncode != 0 and "rank 1 received" not in out.stdout, out.stderr[-3000:]
    assert took < 20, took
    if "exit" in ending.lower():
        assert "rank 0" in out.stderr and "HYBRIDREF_MPI_EXIT_WAIT" in out.stderr, out.stderr[-3000:]


def test_processes_ending_a_little_apart_end_normally(tmp_path):
    """The wait for the others at the end: a process finishing its own work later is not taken for stuck."""
    out, _ = run_job(tmp_path, textwrap.dedent("""
        import time
        from hybridref.backends.mpi import MPIBackend
        be = MPIBackend(local="c", threads=1)
        total = be.all_sum(be.rank + 1)
        time.sleep(1.0 * be.rank)
        print(f"rank {be.rank} done {total}", flush=True)
    """), procs=3, env={"HYBRIDREF_MPI_EXIT_WAIT": "5"})
    assert out.returncode == 0 and out.stdout.count("done 6") == 3, out.stderr[-3000:]


def cli(*args):
    return [sys.executable, "-c", "from hybridref.cli import main; main()", *args]


TRAIN = ["train", "mnist", "--backend", "mpi", "--threads", "1", "--epochs", "1", "--subset", "128"]


@pytest.mark.parametrize("option,first,second", [("--seed", "0", "1"), ("--batch-size", "64", "32"),
                                                 ("--time-budget", "5", "6"), ("--subset", "128", "64"),
                                                 ("--mpi-mode", "data", "sequence")])
def test_options_that_differ_between_processes_abort_the_job(option, first, second):
    """Different --seed trained silently to different weights; different --batch-size failed as
    "MPI: Message truncated"."""
    t0 = time.perf_counter()
    out = subprocess.run([find_mpiexec(), "-n", "1", *cli(*TRAIN, option, first), ":",
                          "-n", "1", *cli(*TRAIN, option, second)], capture_output=True, text=True, timeout=90)
    name = {"--mpi-mode": "mode"}.get(option, option.lstrip("-").replace("-", "_"))
    value = {"mode": str, "time_budget": float}.get(name, int)
    assert out.returncode == 1, out.stderr[-3000:]  # a UserError's status, as in one process
    assert f"{name}: rank 0 {value(first)!r}, rank 1 {value(second)!r}" in out.stderr, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and time.perf_counter() - t0 < 60


def test_mpi_as_its_own_local_backend_is_a_clear_error(monkeypatch):
    """HYBRIDREF_MPI_LOCAL=mpi was a RecursionError."""
    from hybridref.backends.mpi import MPIBackend
    monkeypatch.setenv("HYBRIDREF_MPI_LOCAL", "mpi")
    with pytest.raises(UserError, match="HYBRIDREF_MPI_LOCAL='mpi'"):
        MPIBackend()
    out = subprocess.run(cli("train", "mnist", "--backend", "mpi", "--epochs", "1"), capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, HYBRIDREF_MPI_LOCAL="mpi"))
    assert out.returncode == 1 and "HYBRIDREF_MPI_LOCAL" in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("variable,value", [("HYBRIDREF_MPI_MODE", "pipeline"), ("HYBRIDREF_MPI_SCAN", "tree"),
                                            ("HYBRIDREF_MPI_EXIT_WAIT", "soon")])
def test_mpi_environment_variables_are_checked(variable, value, monkeypatch):
    from hybridref.backends.mpi import MPIBackend
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserError, match=f"{variable}={value!r}"):
        MPIBackend()
