"""IDX file parser (the MNIST format), gzip or raw.

An IDX file is a 4-byte magic (0, 0, dtype code, number of dims), one big-endian
uint32 per dim, then the data in C order. Any item count in the header is
accepted; a file whose length disagrees with its header is refused with an
error saying so.
"""
import gzip
import struct
import zlib

import numpy as np

from ..errors import UserError
from .paths import DataNotFound

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxError(UserError):
    """A file is not a well-formed IDX file (truncated, corrupted or of another format)."""


def read_idx(path):
    """The array stored in IDX file `path` (.gz or raw), with the shape its header gives."""
    path = str(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError:
        raise DataNotFound(f"{path}: no such file (it was removed while in use?): put it back, or pass --data-dir "
                           f"where it is") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise IdxError(f"{path}: cannot decompress ({e}); the file is truncated or corrupted — "
                       f"delete it and download it again") from e
    except OSError as e:
        raise IdxError(f"{path}: cannot be read ({e.strerror or e}): check the file and its permissions") from e
    return parse_idx(raw, path)


def parse_idx(raw, name="<bytes>"):
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise IdxError(f"{name}: not an IDX file (bad magic {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise IdxError(f"{name}: IDX header truncated ({len(raw)} bytes, {ndim} dims)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise IdxError(f"{name}: header says shape {shape} ({expected} bytes) but the file has "
                       f"{len(raw)} bytes — it is truncated or corrupted")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
