"""The MPI backend: one model spread over the processes of `mpiexec -n P`, through mpi4py.

It wraps a local backend (`c`, or `numpy` for debugging). In `sequence` mode each process
holds one contiguous slice of every sequence: position-wise ops run locally on it and each
sequence-mixing op exchanges what crosses a slice boundary as its declared form says
(SEQUENCE_FORMS in backends/base.py; one mechanism per form, backends/mpi/sequence.py). In
`data` mode each process holds a slice of the batch and every op runs locally. Either way,
parameters are replicated and their gradients summed (`reduce_gradients`), so training is
the one-process computation. Started without mpiexec it is P = 1: the local backend's ops.

Every process returns its own slice of each output; for a replicated input (weights, the h0
or prefix before the sequence) it returns its partial gradient, and the sum over processes
is the gradient. See docs/ARCHITECTURE.md, "The MPI backend".
"""
import atexit
import math
import os
import sys
import threading
import time
import traceback
import weakref

import numpy as np

from hybridref.errors import UserError

from ..base import OP_NAMES, Backend
from . import permute, sequence
from .sequence import split_range

try:
    from mpi4py import MPI
except ImportError as e:  # reported by `hybridref info`; the tests skip on it
    raise ImportError(f"the mpi backend needs mpi4py and an MPI library (pip install 'hybridref[mpi]'): {e}") from e

MODES = ("sequence", "data")
SCANS = ("pipeline", "exscan")  # how sequence mode passes a scan's state: state_passing.py
EXIT_WAIT = 10.0  # seconds a process that ended waits for the others to end too ($HYBRIDREF_MPI_EXIT_WAIT)
_EXIT_TAG = 31017
ABORT_GRACE = 0.5  # seconds the launcher gets to forward a process's last output before an abort
_guarded = False  # the job guards below are installed once per process


def abort_world(message, exit_code=1):
    """Print `message` and take every process of the job down, when there are several; mpiexec then
    exits with `exit_code` (hydra passes MPI_Abort's code on), so a job ends with the status its failing
    process would have had alone.

    The launcher forwards each process's output from a pipe and stops reading it when the job is
    aborted, so this waits ABORT_GRACE seconds first: without it the message (and the error line
    the command printed before) was lost about one abort in three."""
    comm = MPI.COMM_WORLD
    sys.stderr.write(message if message.endswith("\n") else message + "\n")
    sys.stderr.flush()
    if comm.Get_size() > 1:
        sys.stdout.flush()
        time.sleep(ABORT_GRACE)
        comm.Abort(exit_code)


def _excepthook(kind, value, tb):
    """An uncaught exception on one process would leave the others blocked in a receive: abort them."""
    comm = MPI.COMM_WORLD
    abort_world(f"[rank {comm.Get_rank()}/{comm.Get_size()}] " + "".join(traceback.format_exception(kind, value, tb)))


def _exit_when_orphaned(parent, period=0.5):
    """Exit when the launcher's proxy that started this process is gone.

    A process blocked in a receive spins in MPI's progress engine; if the launcher dies
    or fails to deliver an abort (seen once under heavy load), it would spin forever as an
    orphan. mpi4py releases the GIL in blocking calls, so this daemon thread still runs."""
    while True:
        time.sleep(period)
        if os.getppid() != parent:
            try:  # stderr may be a pipe to the dead launcher
                sys.stderr.write(f"[rank {MPI.COMM_WORLD.Get_rank()}] the mpiexec that started this process "
                                 f"is gone: exiting\n")
                sys.stderr.flush()
            finally:
                os._exit(1)


def _finish_together(comm, wait):
    """At exit: wait for every other process to reach its exit too, then let MPI finalize.

    MPI_Finalize waits for every process, so a process that ends (sys.exit with any status, or the
    end of its script) while another is blocked waiting for its messages would leave both waiting
    for ever. Each process announces its end to the others; one whose peers have not all announced
    theirs within `wait` seconds takes them to be blocked (or so late that they would block it in
    MPI_Finalize) and ends the whole job. Python does not tell an exit hook the exit status, so a
    normal end and sys.exit(0) are told apart only by the others arriving."""
    rank, size = comm.Get_rank(), comm.Get_size()
    peers = [r for r in range(size) if r != rank]
    token = np.zeros(1, np.int8)
    sends = [comm.Isend(token, dest=r, tag=_EXIT_TAG) for r in peers]
    inbox = {r: np.empty(1, np.int8) for r in peers}
    waiting = {r: comm.Irecv(inbox[r], source=r, tag=_EXIT_TAG) for r in peers}
    deadline = time.monotonic() + wait
    while waiting:
        waiting = {r: req for r, req in waiting.items() if not req.Test()}
        if waiting and time.monotonic() > deadline:
            abort_world(f"[rank {rank}/{size}] this process ended, but rank(s) {sorted(waiting)} did not end within "
                        f"{wait:g} s: they are blocked waiting for it (or still working); ending the whole job "
                        f"(HYBRIDREF_MPI_EXIT_WAIT sets the wait)")
        time.sleep(0.01)
    MPI.Request.Waitall(sends)


def _guard_the_job(exit_wait):
    """Make any way one process of the job ends early end the whole job within seconds: an uncaught
    exception (the excepthook aborts), a lost launcher (a watchdog thread exits), an exit while the
    others still run (the exit hook waits for them, then aborts); a process killed by a signal is
    mpiexec's own to clean up. Collective over COMM_WORLD (its duplicate for the exit messages)."""
    global _guarded
    if _guarded:
        return
    _guarded = True
    sys.excepthook = _excepthook
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    atexit.register(_finish_together, MPI.COMM_WORLD.Dup(), exit_wait)


def _choice(value, argument, variable, allowed, default):
    """A backend option: the argument, else $variable, else the default; UserError unless in `allowed`."""
    if value is None:
        value = os.environ.get(variable)
        if value is not None and value not in allowed:
            raise UserError(f"{variable}={value!r}: the mpi backend's {argument} must be one of {', '.join(allowed)}; "
                            f"set one of them or unset it (default {default})")
    if value is not None and value not in allowed:
        raise UserError(f"mpi backend: {argument} must be one of {allowed}, got {value!r}")
    return value or default


def _exit_wait():
    text = os.environ.get("HYBRIDREF_MPI_EXIT_WAIT")
    if text is None:
        return EXIT_WAIT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UserError(f"HYBRIDREF_MPI_EXIT_WAIT={text!r} is not a number of seconds: give a positive number, or "
                        f"unset it (default {EXIT_WAIT:g})")
    return seconds


def _local_backend(local):
    """The backend each process computes its share on: the argument, else $HYBRIDREF_MPI_LOCAL, else c."""
    from .. import get_backend
    source = "local" if local is not None else "HYBRIDREF_MPI_LOCAL"
    name = local if local is not None else os.environ.get("HYBRIDREF_MPI_LOCAL", "c")
    if name == "mpi":
        raise UserError(("mpi backend: the local backend cannot itself be mpi" if local is not None else
                         "HYBRIDREF_MPI_LOCAL='mpi': the mpi backend's local backend, which computes each process's "
                         "share, cannot itself be mpi") + "; use c (the default) or numpy")
    try:
        return get_backend(name)
    except (ValueError, ImportError) as e:
        raise UserError(f"{source}={name!r}: the mpi backend's local backend does not load ({e}); use c or "
                        f"numpy") from None


class _KeptForBackward:
    """State a forward computed for the backward of the same input arrays (the boundary state
    arriving from the previous process), keyed by the op family's name and the arrays' identity
    and dropped with them, so a forward that is never differentiated (evaluation) leaves nothing."""

    def __init__(self):
        self._values = {}

    def put(self, name, arrays, value):
        key = (name, *map(id, arrays))
        if key not in self._values:
            weakref.finalize(arrays[0], self._values.pop, key, None)
        self._values[key] = value

    def get(self, op, name, arrays):
        try:
            return self._values[(name, *map(id, arrays))]
        except KeyError:
            raise ValueError(f"{op}: the mpi backend has no forward of these arrays on this process; "
                             f"call the backward with the arrays given to the forward") from None


class _TimeReversed:
    """MPIBackend.time_reversed() in sequence mode: the backend's ops for sequences each process has
    flipped, the scans' states and the convs' halos passed from later to earlier processes
    (sequence.time_reversed_forms); everything else is the backend's own (messages, kept state)."""

    def __init__(self, be):
        self._be = be
        vars(self).update(sequence.sequence_ops(be, sequence.time_reversed_forms()))

    def time_reversed(self):
        return self._be

    def __getattr__(self, name):
        return getattr(self._be, name)


class MPIBackend(Backend):
    name = "mpi"

    def __init__(self, local=None, mode=None, comm=None, threads=None, scan=None):
        mode = _choice(mode, "mode", "HYBRIDREF_MPI_MODE", MODES, "sequence")
        scan = _choice(scan, "scan", "HYBRIDREF_MPI_SCAN", SCANS, "pipeline")
        exit_wait = _exit_wait()
        self.local = _local_backend(local)
        self.mode, self.scan = mode, scan
        self.comm = comm or MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._sends = []  # (request, buffer) of nonblocking sends not known to be complete
        self.check_same("mpi backend settings ($HYBRIDREF_MPI_*, --mpi-mode)",
                        dict(mode=mode, scan=scan, local=self.local.name))
        if threads is not None:
            self.set_threads(threads)
        for op in OP_NAMES:
            setattr(self, op, getattr(self.local, op))
        if self.size > 1:
            _guard_the_job(exit_wait)
            self.cross_entropy_forward = self._cross_entropy_forward
            self.cross_entropy_backward = self._cross_entropy_backward
            if mode == "sequence" and scan == "exscan":
                # the exclusive scans that run from the last process to the first
                self.reverse_comm = self.comm.Split(0, self.size - 1 - self.rank)
            ops = sequence.sequence_ops(self) if mode == "sequence" else sequence.batch_ops(self)
            for op, fn in ops.items():
                setattr(self, op, fn)
        self._split_sequences = self.size > 1 and mode == "sequence"
        self._time_reversed = _TimeReversed(self) if self._split_sequences else self
        self.seq_edges = None  # the current split of the sequence, set by shard_tokens (and prepend_positions)
        self.token_edges = None  # the split of the last input through shard_tokens
        self.batch_edges = None  # the current split of the batch, set by local_batch
        self.kept = _KeptForBackward()

    # ---- configuration ----------------------------------------------------------------------
    def set_threads(self, n):
        if not hasattr(self.local, "set_threads"):
            raise ValueError(f"mpi backend: the local backend {self.local.name!r} does not take a thread count")
        self.local.set_threads(n)

    @property
    def threads(self):
        return getattr(self.local, "threads", 1)

    def describe(self):
        procs = f"{self.size} process" + ("es" if self.size > 1 else "")
        scan = f", {self.scan} scan" if self.mode == "sequence" else ""
        return f"mpi ({self.mode} parallel over {procs}{scan}; local {self.local.describe()})"

    # ---- distribution hooks (see Backend) ---------------------------------------------------
    def shard_tokens(self, x):
        if self.mode == "data":
            return self.local_batch(x)
        T = x.shape[1]
        if T < self.size:
            raise UserError(f"mpi backend: a sequence of {T} tokens cannot be split over {self.size} processes: run "
                            f"at most {T} (mpiexec -n {T}), or split the batch instead (--mpi-mode data)")
        self.seq_edges = self.token_edges = split_range(T, self.size)
        return np.ascontiguousarray(x[:, self.seq_edges[self.rank]:self.seq_edges[self.rank + 1]])

    def local_positions(self, table):
        if self.size == 1 or self.mode == "data":
            return table
        edges = self.sequence_edges("local_positions", table.shape[0], global_length=True)
        return table[edges[self.rank]:edges[self.rank + 1]]

    def prepend_positions(self, n):
        if not self._split_sequences:
            return True
        edges = self.token_edges  # the split of the last input through shard_tokens: calling again changes nothing
        if edges is None:
            raise ValueError("prepend_positions: the mpi backend has no sequence split yet; pass the model input "
                             "through be.shard_tokens first")
        self.seq_edges = [0] + [e + n for e in edges[1:]]  # rank 0's slice grows by n: every later one moves
        return self.rank == 0

    def local_batch(self, a):
        if self.size == 1:
            return a
        if len(a) < self.size:
            raise UserError(f"mpi backend: a batch of {len(a)} cannot be split over {self.size} processes: use a "
                            f"batch of at least {self.size} (--batch-size), or fewer processes")
        edges = self.batch_edges = split_range(len(a), self.size)
        return a[edges[self.rank]:edges[self.rank + 1]]

    def all_sum(self, value):
        if self.size == 1:
            return value
        self.complete_sends()
        return self.comm.allreduce(value, op=MPI.SUM)

    def check_same(self, what, settings):
        """UserError on every process when the processes' `settings` (a dict of plain values) differ,
        naming each entry that differs with every process's value: processes that compute one model
        from different settings would train different weights, or block in messages of other sizes."""
        if self.size == 1:
            return
        self.complete_sends()
        every = self.comm.allgather(settings)
        diffs = [f"{k}: " + ", ".join(f"rank {r} {s.get(k)!r}" for r, s in enumerate(every))
                 for k in sorted(set().union(*every)) if len({repr(s.get(k)) for s in every}) > 1]
        if diffs:
            raise UserError(f"the {self.size} processes of this job were given different {what}: {'; '.join(diffs)}; "
                            f"give every process the same")

    def reduce_gradients(self, params):
        if self.size == 1 or not params:
            return
        self.complete_sends()
        flat = np.concatenate([p.grad.ravel() for p in params])
        self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        at = 0
        for p in params:
            p.grad[...] = flat[at:at + p.grad.size].reshape(p.grad.shape)
            at += p.grad.size

    def time_reversed(self):
        return self._time_reversed

    def sequence_length(self, length):
        if not self._split_sequences:
            return length
        return self.sequence_edges("sequence_length", length)[-1]

    def permute_positions(self, x, order):
        if not self._split_sequences:
            return self.local.permute_positions(x, order)
        return permute.permute_positions(self, x, order)

    # ---- the loss: a mean over the global batch -----------------------------------------------
    def _cross_entropy_forward(self, logits, targets):
        loss, probs = self.local.cross_entropy_forward(logits, targets)
        totals = self.all_sum(np.array([loss * len(targets), len(targets)], dtype=np.float64))
        return float(totals[0] / totals[1]), probs

    def _cross_entropy_backward(self, probs, targets):
        rows = len(targets)
        return self.local.cross_entropy_backward(probs, targets) * np.float32(rows / self.all_sum(rows))

    # ---- helpers of the sequence-parallel ops --------------------------------------------------
    def sequence_edges(self, op, length, global_length=False):
        """The current split of the sequence; checks that `length` is this process's slice of it
        (or, with global_length, the whole sequence)."""
        edges = self.seq_edges
        if edges is None:
            raise ValueError(f"{op}: the mpi backend has no sequence split yet; pass the model input "
                             f"through be.shard_tokens first")
        want = edges[-1] if global_length else edges[self.rank + 1] - edges[self.rank]
        if length != want:
            raise ValueError(f"{op}: got {length} positions, but this process (rank {self.rank}) holds "
                             f"{want} of the current split {edges} ({'whole sequence' if global_length else 'its slice'})")
        return edges

    def isend(self, buf, dest, tag):
        """Start sending `buf` (kept alive until complete_sends): a process never waits for a later one."""
        self._sends = [(req, b) for req, b in self._sends if not req.Test()]
        buf = np.ascontiguousarray(buf)
        self._sends.append((self.comm.Isend(buf, dest=dest, tag=tag), buf))

    def recv(self, shape, dtype, source, tag):
        buf = np.empty(shape, dtype)
        self.comm.Recv(buf, source=source, tag=tag)
        return buf

    def complete_sends(self):
        if self._sends:
            MPI.Request.Waitall([req for req, _ in self._sends])
            self._sends.clear()
