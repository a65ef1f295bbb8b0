"""Bounds on what user input may make hybridref start or allocate: threads, memory, C int sizes.

Sizes that come from outside (an option, a checkpoint's config, --max-new-tokens) are checked here
before anything is allocated, so a typo or a damaged file gets a message giving the size instead of
a MemoryError, a machine swapping for minutes, or a crash in C.
"""
import os

from .errors import UserError

C_INT_MAX = 2 ** 31 - 1  # the kernels' sizes and the decoder's position are C ints
OVERSUBSCRIPTION = 4  # threads (or processes) per core the library accepts; the CLI accepts 1
_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


class ThreadCapWarning(UserWarning):
    """$OMP_NUM_THREADS asked for more threads than the cores: the C backend uses the cores instead."""


def environment_threads(warn):
    """The thread count $OMP_NUM_THREADS asks for, capped to the cores (warn(message) says so), or None when
    unset. Capped rather than refused: the variable is often set for a whole shell or cluster node, for
    other programs too. The C backend applies it when it is created, before any kernel runs: the OpenMP
    runtime reads the variable when it loads and would otherwise start that many threads in the first
    parallel region (OMP_NUM_THREADS=100000 crashed it)."""
    text = os.environ.get("OMP_NUM_THREADS")
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise UserError(f"OMP_NUM_THREADS={text!r} is not a thread count: set it to a whole number from 1 to "
                        f"{usable_cores()}, or unset it (all cores)")
    count, cores = int(text), usable_cores()
    if count > cores:
        warn(f"OMP_NUM_THREADS={count} is more than the {cores} cores this process may run on: using {cores}")
    return min(count, cores)


def usable_cores():
    """The cores this process may run on (its CPU affinity, which mpiexec or a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def _parse_bytes(text):
    """'2G', '512M', '100000' -> bytes; None if it is not such a size."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    number = text[:len(text) - len(unit)]
    if not number.isdigit():
        return None
    return int(number) * _UNITS[unit]


def memory_limit():
    """The most memory (bytes) one allocation driven by user input may take: $HYBRIDREF_MEMORY_LIMIT
    (bytes, or with a K/M/G/T suffix), else half of this machine's memory (leaving the rest to the
    activations, the optimizer and the other programs that run)."""
    text = os.environ.get("HYBRIDREF_MEMORY_LIMIT")
    if text is None:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    limit = _parse_bytes(text)
    if not limit:
        raise UserError(f"HYBRIDREF_MEMORY_LIMIT={text!r} is not a positive size: give bytes or a size such as "
                        f"512M or 8G, or unset it (default: half of this machine's memory)")
    return limit


def check_allocation(what, nbytes, fix):
    """Refuse (UserError) an allocation of `nbytes` for `what` above memory_limit(); `fix` says what to
    change."""
    limit = memory_limit()
    if nbytes > limit:
        source = "HYBRIDREF_MEMORY_LIMIT" if "HYBRIDREF_MEMORY_LIMIT" in os.environ else \
            "half of this machine's memory; HYBRIDREF_MEMORY_LIMIT sets it"
        raise UserError(f"{what} would take {format_bytes(nbytes)}, more than the limit of {format_bytes(limit)} "
                        f"({source}): {fix}")
