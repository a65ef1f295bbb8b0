"""Checkpoints: weights, a JSON config, and what resuming needs (optimizer moments, step, data RNG).

Format: one `.npz` (NumPy's zip of .npy files) of arrays `params/<name>`, `adam_m/<name>`,
`adam_v/<name>` and `meta`, the UTF-8 bytes of a JSON object {format, config, vocab, train,
optimizer}. Arrays are float32 on the host and load on any backend.

Reading never runs code and never trusts the file: each member's .npy header is checked against the
member's size before its data is read (so a damaged header cannot make us allocate what the file
does not hold), the metadata is checked entry by entry, and the weights must be finite. Whatever
the damage, the error is CheckpointError "<path>: not a readable hybridref checkpoint: <what>".

Writes are atomic: the file is written under a temporary name in the same folder
(`<name>.<pid>.<random>.tmp`), flushed and fsync'ed, then renamed over the target (and the folder
fsync'ed), so a process killed at any moment leaves either the previous checkpoint or the new one,
never a torn file. The temporary file of a process that was killed is removed by the next save of
the same checkpoint (its pid names a process that no longer runs).
"""
import json
import os
import re
import tempfile
import zipfile

import numpy as np

from .errors import CheckpointError, TrainingDiverged, UserError
from .limits import format_bytes, memory_limit

FORMAT = "hybridref-checkpoint-1"
GROUPS = ("params", "adam_m", "adam_v")
META_TYPES = {"format": str, "config": dict, "vocab": (str, type(None)), "train": (dict, type(None)),
              "optimizer": dict}


def unreadable(path, what):
    return CheckpointError(f"{path}: not a readable hybridref checkpoint: {what}")


# -- writing -------------------------------------------------------------------------------------

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
    """Delete the temporary files of earlier saves of `path` whose process no longer runs (killed
    between writing and renaming); another process's save in progress is left alone."""
    folder, name = os.path.split(path)
    pattern = re.compile(re.escape(name) + r"\.(\d+)\.\w+\.tmp")
    for entry in os.listdir(folder):
        match = pattern.fullmatch(entry)
        if match and int(match.group(1)) != os.getpid() and not _is_running(int(match.group(1))):
            try:
                os.unlink(os.path.join(folder, entry))
            except FileNotFoundError:  # another process cleaned it first
                pass


def _unwritable(path, e):
    return UserError(f"cannot write the checkpoint {path}: {e.strerror or e} ({type(e).__name__}): choose a path "
                     f"in a folder this process may write (--checkpoint)")


def check_writable(path):
    """Refuse (UserError) a checkpoint path that cannot be written, before a run spends time to fill it:
    its folder is made if needed, and a temporary file is created in it and removed."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise UserError(f"cannot write the checkpoint {path}: it is a folder; give a file name (--checkpoint)")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=os.path.dirname(path))
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _unwritable(path, e) from None


def _check_finite(arrays):
    for name, arr in arrays.items():
        if not np.isfinite(arr).all():
            raise TrainingDiverged(f"the weights are no longer finite ({name}): training diverged; the checkpoint is "
                                   f"not overwritten (lower the learning rate, --lr)")


def save_checkpoint(path, model, vocab=None, optimizer=None, train=None):
    """Write `model` (its config and params), the vocabulary string, an AdamW's moments and step, and a
    JSON-serialisable `train` dict (data RNG state, history, ...) to `path`, atomically. Non-finite
    weights are refused (TrainingDiverged), as loading them would be."""
    arrays = {f"params/{name}": p.data for name, p in model.named_params()}
    _check_finite(arrays)
    meta = {"format": FORMAT, "config": model.config, "vocab": vocab, "train": train}
    if optimizer is not None:
        names = [name for name, _ in model.named_params()]
        if len(names) != len(optimizer.params):
            raise ValueError("save_checkpoint: the optimizer does not hold the model's parameters")
        arrays.update({f"adam_m/{n}": m for n, m in zip(names, optimizer.m)})
        arrays.update({f"adam_v/{n}": v for n, v in zip(names, optimizer.v)})
        meta["optimizer"] = {"step": optimizer.step_count}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = os.path.abspath(path)
    try:
        _write_atomically(path, arrays)
    except OSError as e:
        raise _unwritable(path, e) from None


def _write_atomically(path, arrays):
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
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


# -- reading -------------------------------------------------------------------------------------

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


def _read_arrays(path):
    """{name: array} of the zip's .npy members; any damage to the zip or the .npy format is a CheckpointError."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise unreadable(path, "the file is empty")
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
            return {info.filename[:-4]: _read_member(z, info) for info in infos}
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 -- zipfile and NumPy parse untrusted bytes: any failure means damage
        raise unreadable(path, f"{e} ({type(e).__name__}; the file is truncated, corrupted, or not a "
                               f"checkpoint)") from None


def _parse_meta(path, raw):
    """The metadata dict, each entry of the type this format writes."""
    if raw is None:
        raise unreadable(path, "it has no meta record")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise unreadable(path, f"its meta record is a {raw.dtype} array of shape {raw.shape}, not UTF-8 bytes")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise unreadable(path, f"its metadata is not UTF-8 JSON ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise unreadable(path, f"its metadata is a JSON {type(meta).__name__}, not a JSON object")
    if meta.get("format") != FORMAT:
        raise unreadable(path, f"its format is {meta.get('format')!r}; this version reads {FORMAT!r}")
    unknown = sorted(set(meta) - set(META_TYPES))
    if unknown:
        raise unreadable(path, f"its metadata has unknown entries {unknown}")
    if "config" not in meta:
        raise unreadable(path, "its metadata has no config")
    for key, value in meta.items():
        if not isinstance(value, META_TYPES[key]):
            raise unreadable(path, f"its metadata's {key!r} is a {type(value).__name__}")
    step = meta.get("optimizer", {}).get("step", 0)
    if type(step) is not int or step < 0:
        raise unreadable(path, f"its optimizer step {step!r} is not a count")
    return meta


def _grouped(path, arrays, with_optimizer):
    """{group: {name: array}}: every array in one of GROUPS, floating point, finite; the moments, when
    there is an optimizer, of the same names and shapes as the weights."""
    groups = {group: {} for group in GROUPS}
    for key, arr in arrays.items():
        group, _, name = key.partition("/")
        if group not in groups or not name:
            raise unreadable(path, f"it holds an array {key!r} outside the groups {', '.join(g + '/' for g in GROUPS)}")
        if arr.dtype.kind != "f":
            raise unreadable(path, f"its array {key!r} is {arr.dtype}, not floating point")
        bad = int(arr.size - np.isfinite(arr).sum())
        if bad:
            raise unreadable(path, f"{key} holds {bad} non-finite values of {arr.size}")
        groups[group][name] = arr
    for group in ("adam_m", "adam_v"):
        want = {n: a.shape for n, a in groups["params"].items()} if with_optimizer else {}
        if {n: a.shape for n, a in groups[group].items()} != want:
            raise unreadable(path, f"its {group} arrays are not the moments of its weights")
    if with_optimizer and any((v < 0).any() for v in groups["adam_v"].values()):
        raise unreadable(path, "its second moments (adam_v) hold negative values")
    return groups


def load_checkpoint(path):
    """{config, vocab, train, optimizer, params {name: array}, adam_m, adam_v} from a checkpoint file;
    CheckpointError when it is not a readable, finite hybridref checkpoint."""
    arrays = _read_arrays(path)
    meta = _parse_meta(path, arrays.pop("meta", None))
    meta.setdefault("vocab", None)
    meta.setdefault("train", None)
    return dict(meta, **_grouped(path, arrays, "optimizer" in meta))


def check_config(ckpt, model):
    """Raise CheckpointError listing every config entry where the checkpoint differs from `model`'s.
    The saved config is first normalised by the model's class (options added since it was written
    take their defaults; earlier versions' flat mixer options are moved to their mixers)."""
    config = model.config
    normalize = getattr(type(model), "normalize_config", None)
    try:
        saved = ckpt["config"] if normalize is None else normalize(ckpt["config"], strict=False)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"the checkpoint's config does not describe a {type(model).__name__}: {e}") from None
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, model {config.get(k)!r}"
             for k in sorted(set(saved) | set(config)) if saved.get(k) != config.get(k)]
    if diffs:
        raise CheckpointError("the checkpoint's config does not match the model: " + "; ".join(diffs))


def restore(ckpt, model, optimizer=None):
    """Load the checkpoint's weights (and optimizer moments) into `model`; refuse a config or shape mismatch."""
    check_config(ckpt, model)
    try:
        model.load_state_dict(ckpt["params"])
    except ValueError as e:
        raise CheckpointError(f"its weights do not fit the model its config describes: {e}") from None
    if optimizer is not None:
        if "optimizer" not in ckpt:
            raise CheckpointError("the checkpoint holds no optimizer state to resume from")
        for (name, p), m, v in zip(model.named_params(), optimizer.m, optimizer.v):
            m[...] = ckpt["adam_m"][name]
            v[...] = ckpt["adam_v"][name]
        optimizer.step_count = ckpt["optimizer"]["step"]
