"""Writing a file atomically: under a temporary name in the same folder (`<name>.<pid>.<random>.tmp`),
flushed and fsync'ed, renamed over the target, the folder fsync'ed. A process killed at any moment
leaves either the previous file or the new one, never a torn file; the temporary file of a killed
process is removed by the next write of the same file (its pid names a process that no longer runs).
"""
import os
import re
import tempfile


def _temporary_prefix(path):
    return os.path.basename(path) + f".{os.getpid()}."


def _is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path):
    """Delete the temporary files of earlier writes of `path` whose process no longer runs (killed
    between writing and renaming); another process's write in progress is left alone."""
    folder, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.(\d+)\.\w+\.tmp")
    for entry in os.listdir(folder):
        match = pattern.fullmatch(entry)
        if match and int(match.group(1)) != os.getpid() and not _is_running(int(match.group(1))):
            try:
                os.unlink(os.path.join(folder, entry))
            except FileNotFoundError:  # another process cleaned it first
                pass


def probe_writable(path):
    """Make the folder of the absolute `path` if needed and create and remove a temporary file in it
    (OSError when it cannot be written)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=os.path.dirname(path))
    os.close(fd)
    os.unlink(probe)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, data):
    """Replace the file at the absolute `path` by the bytes `data`, atomically (OSError when it cannot)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's file is private (0600); the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself reaches the disk
    finally:
        os.close(dfd)
