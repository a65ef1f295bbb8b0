"""Run under `mpiexec -n 2` by tests/test_mpi.py: every process writes "pid parent-pid" to
DIR/rank<r> (its own file: the launcher may merge lines of the ranks' stdout), then blocks in
a receive that never completes (the state of the surviving processes when a launcher dies).
The test kills the parents; the processes must exit by themselves."""
import os
import sys

from hybridref.backends.mpi import MPIBackend

be = MPIBackend(local="c", threads=1)
path = os.path.join(sys.argv[1], f"rank{be.rank}")
with open(path + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {os.getppid()}")
os.replace(path + ".tmp", path)  # the test sees the whole line or nothing
be.comm.recv(source=(be.rank + 1) % be.size, tag=77)
