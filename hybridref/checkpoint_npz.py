"""The reader of the checkpoints of earlier versions (format "hybridref-checkpoint-1"), kept so that they
still load; nothing writes this format any more (hybridref/checkpoint.py writes safetensors).

Format: one `.npz` (NumPy's zip of .npy files) of arrays `params/<name>`, `adam_m/<name>`,
`adam_v/<name>` and `meta`, the UTF-8 bytes of a JSON object {format, config, vocab, train,
optimizer}. Only train shakespeare wrote it, so it always holds a CharLM.

Reading never runs code (no pickle) and never trusts the file: each member's .npy header is checked
against the member's size before its data is read, so a damaged header cannot make us allocate what
the file does not hold. Any damage to the zip or the .npy format is a ValueError, which the caller
reports as "not a readable hybridref checkpoint".
"""
import json
import zipfile

import numpy as np

from .limits import format_bytes, memory_limit

FORMAT_NPZ = "hybridref-checkpoint-1"
ZIP_MAGIC = b"PK"


def _read_member(z, info):
    """The array of one .npy member, its header checked against the member's size before the data is read."""
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"{info.filename}: .npy version {version} is not one NumPy writes for these arrays")
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject or dtype.kind not in "fu":
            raise ValueError(f"{info.filename}: dtype {dtype} is not a number type a checkpoint holds")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        header = f.tell()
        if header + nbytes != info.file_size:
            raise ValueError(f"{info.filename}: its header gives shape {shape} ({format_bytes(nbytes)}) but the "
                             f"member holds {format_bytes(info.file_size - header)}")
        data = bytearray(f.read(nbytes))  # zipfile checks the member's CRC as it reaches its end
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _meta(raw):
    """The metadata JSON value of the `meta` member (its type is checked by the caller)."""
    if raw is None:
        raise ValueError("it has no meta record")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"its meta record is a {raw.dtype} array of shape {raw.shape}, not UTF-8 bytes")
    try:
        return json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"its metadata is not UTF-8 JSON ({type(e).__name__}: {e})") from None


def read_npz(path):
    """(metadata JSON value, {"<group>/<name>": array}) of a legacy checkpoint; ValueError naming the damage."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = [info.filename for info in infos]
            if len(set(names)) != len(names) or not all(n.endswith(".npy") for n in names):
                raise ValueError(f"its members {names[:8]} are not distinct .npy files")
            total = sum(info.file_size for info in infos)
            if total > memory_limit():
                raise ValueError(f"its arrays would take {format_bytes(total)}, more than the memory limit "
                                 f"{format_bytes(memory_limit())}")
            arrays = {info.filename[:-4]: _read_member(z, info) for info in infos}
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 -- zipfile and NumPy parse untrusted bytes: any failure means damage
        raise ValueError(f"{e} ({type(e).__name__}; the file is truncated, corrupted, or not a checkpoint)") from None
    return _meta(arrays.pop("meta", None)), arrays
