"""Starting `mpiexec -n P` jobs from Python: the tests, `hybridref bench mpi` and benchmarks/bench_mpi.py."""
import json
import os
import shutil
import subprocess
import sys


def find_mpiexec():
    """The mpiexec beside this Python (pip's mpich puts one in the environment's bin/), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if not found:
        raise RuntimeError("no mpiexec beside this Python or on PATH (pip install mpich)")
    return found


def run_mpi(procs, args, timeout=None, env=None):
    """Run `mpiexec -n procs python args...`; returns the CompletedProcess (stdout, stderr as text)."""
    return subprocess.run([find_mpiexec(), "-n", str(procs), sys.executable, *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def run_bench(procs, timeout=1800, **options):
    """One `hybridref bench mpi` measurement over `procs` processes; returns rank 0's summary dict."""
    args = ["-m", "hybridref.backends.mpi.bench"]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    out = run_mpi(procs, args, timeout=timeout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"mpiexec -n {procs} bench failed (status {out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])
