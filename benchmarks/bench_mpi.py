"""Scaling of the mpi backend (sequence parallel): forward + backward of a Mamba-heavy stack
("MMMA", d_model 64, sliding-window attention 256, MLPs) on one 32,768-token sequence, over
P = 1 and 2 processes of one thread each (the peer of P processes is P = 1: the same C kernels
in one process), with each way of passing the selective scan's state (scan="pipeline", the
default, and scan="exscan"; P = 1 has no state to pass, so it runs once). Each case is one
`mpiexec -n P` job (backends/mpi/bench.py); the step time measured inside it (median of 3,
between barriers) is in extra_info and printed, the benchmark's own time includes starting the job.

Target: P = 2 >= 1.7x faster than P = 1 on a 2-core machine. Run:
    python -m pytest benchmarks/bench_mpi.py -o python_files='bench_*.py' --benchmark-only -s
Shorter: HYBRIDREF_BENCH_TOKENS=8192. More processes: HYBRIDREF_BENCH_PROCS=1,2,4,8.
"""
import os

import pytest

pytest.importorskip("mpi4py", reason="the mpi backend needs mpi4py (pip install 'hybridref[mpi]')")

from hybridref.backends.mpi.launch import run_bench  # noqa: E402

TOKENS = int(os.environ.get("HYBRIDREF_BENCH_TOKENS", "32768"))
PROCS = [int(p) for p in os.environ.get("HYBRIDREF_BENCH_PROCS", "1,2").split(",")]
_step_s = {}


CASES = [(p, "pipeline") for p in PROCS] + [(p, "exscan") for p in PROCS if p > 1]


@pytest.mark.parametrize("procs,scan", CASES)
def test_mpi_sequence_scaling(benchmark, procs, scan):
    out = benchmark.pedantic(run_bench, args=(procs,), kwargs=dict(tokens=TOKENS, steps=3, threads=1, scan=scan),
                             rounds=1, iterations=1)
    _step_s[procs, scan] = out["median_s"]
    first = _step_s.get((PROCS[0], "pipeline"))
    speedup = first / out["median_s"] if first else None
    benchmark.extra_info.update(out, speedup_vs_first=speedup)
    print(f"\nP={procs} scan={scan}: step {out['median_s']:.3f} s"
          + (f", x{speedup:.2f} vs P={PROCS[0]}" if speedup else ""))
