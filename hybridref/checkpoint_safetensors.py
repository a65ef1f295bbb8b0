"""Reading a safetensors file without trusting it.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data
buffer, the tensors packed one after another (offsets relative to the buffer's start). Before any
tensor is read, the header is checked here against the file's size: its length, its JSON, every
entry's dtype, shape and offsets (each tensor's bytes are its shape's, the tensors tile the buffer
without gap or overlap, the buffer ends at the end of the file), and the whole buffer against the
memory limit. So a damaged header can neither make us allocate what the file does not hold nor
reach the safetensors library (which decodes the checked bytes) with something it might mishandle.
Any damage is a ValueError naming it; the caller reports it as "not a readable hybridref checkpoint".
"""
import json
import os

import numpy as np
import safetensors.numpy

from .limits import format_bytes, memory_limit

# The floating-point dtypes NumPy has (safetensors' BF16 and F8 kinds have no NumPy type); integer
# tensors are named as such so that the message says what the file holds.
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
MAX_HEADER = 100 * 2 ** 20  # the safetensors library's own limit on the header's length
MAX_DIMS = 8
ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"its header names a tensor twice ({sorted(k for k in set(keys) if keys.count(k) > 1)[:3]})")
    return dict(pairs)


def _is_count(value):
    return type(value) is int and value >= 0


def _header(f, size):
    """The header's JSON object and the data buffer's length, the header's length checked first."""
    if size < 8:
        raise ValueError(f"it holds {size} bytes, fewer than the 8 of a safetensors header length")
    n = int.from_bytes(f.read(8), "little")
    if n > min(size - 8, MAX_HEADER):
        raise ValueError(f"its header length {n} exceeds {'the file' if n > size - 8 else 'the safetensors limit'} "
                         f"({format_bytes(min(size - 8, MAX_HEADER))}); the file is truncated or not safetensors")
    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"its header is not UTF-8 JSON ({type(e).__name__}: {e}); the file is not safetensors") \
            from None
    if not isinstance(header, dict):
        raise ValueError(f"its header is a JSON {type(header).__name__}, not a JSON object")
    return header, size - 8 - n


def _check_entry(name, entry):
    """The entry's (begin, end) offsets, its dtype, shape and offsets checked against each other."""
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        raise ValueError(f"its header entry {name!r} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise ValueError(f"tensor {name!r} has dtype {dtype!r}, not one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(map(_is_count, shape)):
        raise ValueError(f"tensor {name!r} has shape {shape!r}, not a list of at most {MAX_DIMS} sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)):
        raise ValueError(f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end]")
    nbytes = int(np.prod(shape, dtype=object)) * np.dtype(DTYPES[dtype]).itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise ValueError(f"tensor {name!r} of shape {shape} ({dtype}) takes {format_bytes(nbytes)}, but its "
                         f"offsets {offsets} span {offsets[1] - offsets[0]} bytes")
    return offsets


def _check_layout(spans, data_size):
    """The tensors tile the data buffer: sorted by offset, each begins where the previous ends, and the last
    ends at the end of the file."""
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ValueError(f"tensor {name!r} begins at byte {begin} of the data, not at {end} where the one "
                             f"before it ends (a gap or an overlap)")
        end = stop
    if end != data_size:
        raise ValueError(f"its tensors take {end} bytes but the file holds {data_size} after the header "
                         f"(truncated or padded)")


def read_safetensors(path):
    """(metadata {str: str}, {name: array}) of a safetensors file, the header checked before reading."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, data_size = _header(f, size)
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("its __metadata__ is not an object of strings")
        spans = [(*_check_entry(name, entry), name) for name, entry in header.items()]
        _check_layout(spans, data_size)
        if data_size > memory_limit():
            raise ValueError(f"its tensors would take {format_bytes(data_size)}, more than the memory limit "
                             f"{format_bytes(memory_limit())}")
        f.seek(0)
        raw = f.read()
    try:
        tensors = safetensors.numpy.load(raw)
    except Exception as e:  # noqa: BLE001 -- the library's own checks of untrusted bytes: any failure means damage
        raise ValueError(f"safetensors refuses it ({type(e).__name__}: {e})") from None
    return metadata, tensors
