"""Where data files come from: --data-dir, then $HYBRIDREF_DATA, then a download cache.

Downloads go to $HYBRIDREF_CACHE (default ~/.cache/hybridref), are checked
against the official SHA-256 before they are kept, and are written atomically
(temporary file, then rename), so an interrupted download never leaves a
half file that looks complete.
"""
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import UserError


class DataNotFound(UserError, FileNotFoundError):
    """A data file is neither where it was looked for nor downloadable; the message says where to put it."""


def cache_dir():
    return Path(os.environ.get("HYBRIDREF_CACHE", Path.home() / ".cache" / "hybridref"))


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(urls, dest, sha256):
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        tmp = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
                while True:
                    block = r.read(1 << 20)
                    if not block:
                        break
                    f.write(block)
                f.flush()
                os.fsync(f.fileno())
        except (urllib.error.URLError, OSError) as e:
            errors.append(f"{url}: {e}")
            tmp.unlink(missing_ok=True)
            continue
        got = sha256_of(tmp)
        if got != sha256:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: checksum mismatch (sha256 {got}, expected {sha256})")
            continue
        os.replace(tmp, dest)
        return dest
    raise DataNotFound(f"could not download {dest.name}:\n  " + "\n  ".join(errors))


def resolve(subdir, filename, urls, sha256, data_dir=None):
    """Path of `subdir/filename`: found under data_dir or $HYBRIDREF_DATA, else downloaded to the cache."""
    searched = []
    for root in (data_dir, os.environ.get("HYBRIDREF_DATA")):
        if root:
            candidate = Path(root) / subdir / filename
            if candidate.is_file():
                return candidate
            searched.append(str(candidate))
    cached = cache_dir() / subdir / filename
    if cached.is_file():
        if sha256_of(cached) == sha256:
            return cached
        cached.unlink()  # a corrupted cache entry is replaced, never used
    try:
        return _download(urls, cached, sha256)
    except DataNotFound as e:
        where = ", ".join(searched) or "(no --data-dir or HYBRIDREF_DATA given)"
        raise DataNotFound(f"{filename} is not in {where} and {e}\n"
                           f"Fix: pass --data-dir DIR (or set HYBRIDREF_DATA=DIR) where DIR/{subdir}/{filename} "
                           f"exists, or connect to the internet.") from None
