"""Run under `mpiexec -n 2` by tests/test_mpi.py: every process reports its pid and its
parent's, then blocks in a receive that never completes (the state of the surviving processes
when a launcher dies). The test kills the parents; the processes must exit by themselves."""
from hybridref.backends.mpi import MPIBackend
import os

be = MPIBackend(local="c", threads=1)
print(f"{os.getpid()} {os.getppid()}", flush=True)
be.comm.recv(source=(be.rank + 1) % be.size, tag=77)
