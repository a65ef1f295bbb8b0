"""The started side of an `mpiexec -n P` launch, read from the environment alone.

Importing the mpi backend starts MPI, so whatever must be known before that (is this process one
of several of a job?) lives here, importable without MPI. Starting jobs is backends/mpi/launch.py.
"""
import os


def launched_processes():
    """How many processes the mpiexec that started this one started (1 when not under mpiexec).

    MPICH's process manager (hydra, as installed by pip's mpich) tells each process in PMI_SIZE."""
    return int(os.environ.get("PMI_SIZE", "1"))


def abort_job_if_launched(exit_code, program="hybridref"):
    """When this process, one of several of an mpiexec job, leaves with an error (exit_code not 0
    or None), take the whole job down rather than leave the others blocked in a receive (or in
    starting MPI, if this one failed before), with this process's status (1 for a non-integer code,
    which Python prints and exits 1 with). Otherwise do nothing."""
    if exit_code in (0, None) or launched_processes() <= 1:
        return
    from .mpi import abort_world
    status = exit_code if isinstance(exit_code, int) else 1
    abort_world(f"{program}: exit status {status}", status)
