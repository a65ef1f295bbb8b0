"""The mpi backend: every check runs under `mpiexec -n P` in a subprocess (tests/mpi_check.py,
tests/mpi_fail.py) and is judged by its exit status; a plain process is the P = 1 case."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="the mpi backend needs mpi4py (pip install 'hybridref[mpi]')")

from hybridref.backends import get_backend  # noqa: E402
from hybridref.backends.mpi.launch import find_mpiexec, run_mpi  # noqa: E402
from hybridref.models.mnist_hybrid import MnistHybrid  # noqa: E402

HERE = os.path.dirname(__file__)


def run_script(procs, *args, timeout=120):
    out = run_mpi(procs, [os.path.join(HERE, args[0]), *args[1:]], timeout=timeout)
    return out, out.stdout + out.stderr


@pytest.mark.parametrize("scan", ["pipeline", "exscan"])
@pytest.mark.parametrize("procs,local,what", [
    (2, "c", ["errors", "ops", "model"]),
    (3, "c", ["ops", "model"]),
    (4, "c", ["ops", "model"]),  # more processes than this machine's 2 cores
    (3, "numpy", ["ops", "model"]),
])
def test_sequence_parallel_matches_one_process(procs, local, what, scan):
    """Outputs, loss and every gradient against the local backend in one process, within 1e-5
    (tests/mpi_check.py), for slices of unequal length, some shorter than the conv halo, with
    either way of passing the selective scan's state."""
    out, text = run_script(procs, "mpi_check.py", *what, "--local", local, "--scan", scan)
    assert out.returncode == 0 and ": OK" in out.stdout, text[-3000:]


@pytest.mark.parametrize("procs", [2, 3])
def test_every_mixer_trains_as_one_process(procs):
    """A CharLM around each registered mixer (pattern letter + "A" + letter, the spec's test_options,
    dropout), one training step in sequence mode: logits, loss and every gradient within 1e-5 of one
    process. One launch covers every mixer (tests/mpi_check.py mixers)."""
    out, text = run_script(procs, "mpi_check.py", "mixers")
    assert out.returncode == 0 and ": OK" in out.stdout, text[-3000:]


@pytest.mark.parametrize("procs", [2, 3])
def test_data_parallel_matches_one_process(procs):
    out, text = run_script(procs, "mpi_check.py", "model", "mixers", "--mode", "data")
    assert out.returncode == 0 and ": OK" in out.stdout, text[-3000:]


@pytest.mark.parametrize("mode", ["sequence", "data"])
def test_moe_trains_as_one_process(mode):
    """A CharLM with MoE MLPs, three training steps on 2 processes: the loss with its aux loss (the
    balancing statistics summed over processes), the expert load and the weights as one process."""
    out, text = run_script(2, "mpi_check.py", "moe", "--mode", mode)
    assert out.returncode == 0 and ": OK" in out.stdout, text[-3000:]


def test_sequence_ops_come_from_the_declarations():
    """Sequence mode builds every sequence-mixing op from its form (SEQUENCE_FORMS); an op without one
    is refused, naming it (the ops are built without communicating, so one process can look)."""
    from hybridref.backends.base import SEQUENCE_FORMS, SEQUENCE_MIXING_OPS
    from hybridref.backends.mpi import sequence
    be = get_backend("mpi")
    assert set(sequence.sequence_ops(be)) == set(SEQUENCE_MIXING_OPS)
    ops = sequence.sequence_ops(be, {k: v for k, v in SEQUENCE_FORMS.items() if k != "selective_scan"})
    with pytest.raises(ValueError, match="selective_scan_backward: the mpi backend .* no declared sequence form"):
        ops["selective_scan_backward"]()


@pytest.mark.parametrize("scenario,message", [("raise", "RuntimeError: mpi_fail: rank 0 gives up"),
                                              ("bad-input", "ValueError: cannot reshape array")])
def test_one_failing_process_ends_the_job(scenario, message):
    """The others are blocked in a receive or a collective: the job must still end, within seconds."""
    t0 = time.perf_counter()
    out, text = run_script(3, "mpi_fail.py", scenario, timeout=60)
    assert out.returncode != 0 and message in text, text[-3000:]
    assert "finished" not in out.stdout
    assert time.perf_counter() - t0 < 20


def test_processes_exit_when_their_launcher_dies(tmp_path):
    """Ranks blocked in a receive whose launcher proxy is killed (-9) must not spin on as orphans."""
    job = subprocess.Popen([find_mpiexec(), "-n", "2", sys.executable, os.path.join(HERE, "mpi_block.py"),
                            str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _kill_parents_and_wait(job, [tmp_path / "rank0", tmp_path / "rank1"])
    finally:
        job.kill()
        job.wait()


def _kill_parents_and_wait(job, reports):
    import signal
    deadline = time.time() + 60
    while not all(path.exists() for path in reports):
        assert time.time() < deadline and job.poll() is None, "the job did not report both processes"
        time.sleep(0.1)
    pids = [tuple(map(int, path.read_text().split())) for path in reports]  # (pid, parent pid)
    for parent in {parent for _, parent in pids}:  # ranks on one node share their launcher proxy
        try:
            os.kill(parent, signal.SIGKILL)
        except ProcessLookupError:  # already gone (and reaped): what this test wants
            pass
    deadline = time.time() + 10
    alive = [pid for pid, _ in pids]
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if os.path.exists(f"/proc/{pid}") and
                 open(f"/proc/{pid}/stat").read().split()[2] != "Z"]
    assert not alive, f"processes {alive} still running 10 s after their launcher died"


def test_plain_process_is_one_process(rng):
    """--backend mpi without mpiexec: P = 1, the local backend's ops, the same numbers."""
    be = get_backend("mpi")
    assert (be.rank, be.size, be.mode, be.scan) == (0, 1, "sequence", "pipeline") and be.local is get_backend("c")
    images = rng.integers(0, 256, (3, 28, 28)).astype(np.uint8)
    grads = []
    for backend in (be, be.local):
        model = MnistHybrid(d_model=16, pattern="MA").to(backend)
        logits = model.forward(images)
        loss, probs = backend.cross_entropy_forward(logits, np.arange(3))
        model.backward(backend.cross_entropy_backward(probs, np.arange(3)))
        backend.reduce_gradients(model.params())
        grads.append([logits, loss] + [p.grad for p in model.params()])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


def test_backend_options_are_checked():
    with pytest.raises(ValueError, match="mode must be one of"):
        get_backend("mpi", mode="pipeline")
    with pytest.raises(ValueError, match="scan must be one of"):
        get_backend("mpi", scan="sequence")
    with pytest.raises(ValueError, match="the local backend cannot itself be mpi"):
        get_backend("mpi", local="mpi")


needs_data = pytest.mark.skipif(not os.environ.get("HYBRIDREF_DATA"), reason="HYBRIDREF_DATA is not set")
TRAIN = ["train", "mnist", "--epochs", "1", "--batch-size", "50", "--subset", "200", "--threads", "1", "--json"]


def hybridref_cmd():
    return [sys.executable, "-c", "from hybridref.cli import main; main()"]


@needs_data
def test_train_mnist_under_mpiexec_matches_one_process():
    """`mpiexec -n 2 hybridref train mnist --backend mpi`: rank 0 alone reports, the same run as c."""
    mpi = subprocess.run([find_mpiexec(), "-n", "2", *hybridref_cmd(), *TRAIN, "--backend", "mpi"],
                         capture_output=True, text=True, timeout=300)
    one = subprocess.run([*hybridref_cmd(), *TRAIN, "--backend", "c"], capture_output=True, text=True, timeout=300)
    assert mpi.returncode == 0 and one.returncode == 0, mpi.stderr[-2000:] + one.stderr[-2000:]
    lines = [line for line in mpi.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and mpi.stdout.count("final test accuracy") == 1  # rank 0 only
    got, want = json.loads(lines[0]), json.loads(one.stdout.splitlines()[-1])
    assert got["config"]["processes"] == 2 and got["steps"] == want["steps"] == 4
    for key in ("train_loss", "test_loss", "test_acc"):
        assert abs(got["history"][0][key] - want["history"][0][key]) <= 1e-5 * abs(want["history"][0][key]), key


@needs_data
def test_cli_error_on_one_process_ends_the_job():
    """A click error on rank 0 only (an MPMD launch), while rank 1 starts training: the job ends with
    click's usage-error status 2, as one process would (before, every early exit was status 1)."""
    t0 = time.perf_counter()
    out = subprocess.run([find_mpiexec(), "-n", "1", *hybridref_cmd(), *TRAIN, "--backend", "mpi", "--lr", "0", ":",
                          "-n", "1", *hybridref_cmd(), *TRAIN, "--backend", "mpi"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Invalid value for '--lr'" in out.stderr, (out.returncode, out.stderr[-2000:])
    assert time.perf_counter() - t0 < 20


@pytest.mark.parametrize("scan", ["pipeline", "exscan"])
def test_bench_workload_runs(scan):
    """`hybridref bench mpi`'s job, tiny: it reports the step times of rank 0."""
    from hybridref.backends.mpi.launch import run_bench
    out = run_bench(2, timeout=120, tokens=97, d_model=16, window=8, steps=2, scan=scan)
    assert (out["processes"], out["tokens"], out["threads"], out["scan"], len(out["step_s"])) == (2, 97, 1, scan, 2)
    assert 0 < out["min_s"] <= out["median_s"]
