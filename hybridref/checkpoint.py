"""Checkpoints: weights, a JSON config, and what resuming needs (optimizer moments, step, data RNG).

Format: one safetensors file (https://huggingface.co/docs/safetensors), which any tool of the field
reads (`safetensors.torch.load_file`, `safetensors.numpy.load_file`):
- tensors: the weights under their dotted names (`blocks.0.mixer.in_proj.weight`, the names
  Module.named_params gives), float32; when the optimizer is saved, its moments under
  `adam_m/<name>` and `adam_v/<name>` (a `/` never occurs in a weight's name, so a user who wants
  the weights alone keeps the names without one);
- metadata (safetensors' string → string header): `format` ("hybridref-checkpoint-2"), `model`
  (the model class: CharLM or MnistHybrid), and, JSON-encoded, `config` (the model's config),
  `vocab` (a character LM's characters, or null), `train` (the training loop's state: run settings,
  step, data RNG, history; or null) and, with the optimizer, `optimizer` ({"step": n}).
Arrays load on any backend. The `.npz` checkpoints of earlier versions (format 1,
hybridref/checkpoint_npz.py) still load: the reader tells the formats apart by their first bytes,
not by the file's name. Writing a path ending in `.npz` is refused, so that no file named `.npz`
holds safetensors (or the reverse): the writer writes safetensors only.

Reading never runs code and never trusts the file: the safetensors header is checked against the
file's size before any tensor is read (hybridref/checkpoint_safetensors.py; the legacy reader
checks each .npy header likewise), the metadata is checked entry by entry, and the weights must be
finite. Whatever the damage, the error is CheckpointError "<path>: not a readable hybridref
checkpoint: <what>".

Writes are atomic: the file is written under a temporary name in the same folder
(`<name>.<pid>.<random>.tmp`), flushed and fsync'ed, then renamed over the target (and the folder
fsync'ed), so a process killed at any moment leaves either the previous checkpoint or the new one,
never a torn file. The temporary file of a process that was killed is removed by the next save of
the same checkpoint (its pid names a process that no longer runs).
"""
import json
import os

import numpy as np
import safetensors.numpy

from .atomic_write import probe_writable, write_atomically
from .checkpoint_npz import FORMAT_NPZ, ZIP_MAGIC, read_npz
from .checkpoint_safetensors import read_safetensors
from .errors import CheckpointError, TrainingDiverged, UserError

FORMAT = "hybridref-checkpoint-2"
MODEL_KINDS = ("CharLM", "MnistHybrid")  # the model classes a checkpoint may hold (metadata `model`)
MOMENTS = ("adam_m", "adam_v")  # the prefixes of the optimizer's tensors: adam_m/<weight name>
JSON_ENTRIES = {"config": dict, "vocab": (str, type(None)), "train": (dict, type(None)), "optimizer": dict}


def unreadable(path, what):
    return CheckpointError(f"{path}: not a readable hybridref checkpoint: {what}")


# -- writing -------------------------------------------------------------------------------------

def _unwritable(path, e):
    return UserError(f"cannot write the checkpoint {path}: {e.strerror or e} ({type(e).__name__}): choose a path "
                     f"in a folder this process may write (--checkpoint)")


def _refuse_npz(path):
    if path.lower().endswith(".npz"):
        raise UserError(f"cannot write the checkpoint {path}: checkpoints are written as safetensors, not .npz; name "
                        f"the file .safetensors (a .npz checkpoint of an earlier version still loads)")


def check_writable(path):
    """Refuse (UserError) a checkpoint path that cannot be written, before a run spends time to fill it:
    a .npz name, a folder, or a folder where a temporary file cannot be created (made if needed)."""
    path = os.path.abspath(path)
    _refuse_npz(path)
    if os.path.isdir(path):
        raise UserError(f"cannot write the checkpoint {path}: it is a folder; give a file name (--checkpoint)")
    try:
        probe_writable(path)
    except OSError as e:
        raise _unwritable(path, e) from None


def _check_finite(arrays):
    for name, arr in arrays.items():
        if not np.isfinite(arr).all():
            raise TrainingDiverged(f"the weights are no longer finite ({name}): training diverged; the checkpoint is "
                                   f"not overwritten (lower the learning rate, --lr)")


def save_checkpoint(path, model, vocab=None, optimizer=None, train=None):
    """Write `model` (its class, config and params), the vocabulary string, an AdamW's moments and step, and
    a JSON-serialisable `train` dict (data RNG state, history, ...) to `path`, atomically. Non-finite
    weights are refused (TrainingDiverged), as loading them would be; so is a .npz path (UserError)."""
    path = os.path.abspath(path)
    _refuse_npz(path)
    if type(model).__name__ not in MODEL_KINDS:
        raise ValueError(f"save_checkpoint: a {type(model).__name__} is not one of the models a checkpoint holds "
                         f"({', '.join(MODEL_KINDS)})")
    tensors = {name: p.data for name, p in model.named_params()}
    _check_finite(tensors)
    metadata = {"format": FORMAT, "model": type(model).__name__, "config": json.dumps(model.config),
                "vocab": json.dumps(vocab), "train": json.dumps(train)}
    if optimizer is not None:
        names = list(tensors)
        if len(names) != len(optimizer.params):
            raise ValueError("save_checkpoint: the optimizer does not hold the model's parameters")
        for prefix, moments in zip(MOMENTS, (optimizer.m, optimizer.v)):
            tensors.update({f"{prefix}/{n}": m for n, m in zip(names, moments)})
        metadata["optimizer"] = json.dumps({"step": optimizer.step_count})
    data = safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata)
    try:
        write_atomically(path, data)
    except OSError as e:
        raise _unwritable(path, e) from None


# -- reading -------------------------------------------------------------------------------------

def _decode_metadata(metadata):
    """safetensors' {str: str} metadata -> the metadata dict, the JSON entries decoded."""
    meta = dict(metadata)
    for key in JSON_ENTRIES.keys() & meta.keys():
        try:
            meta[key] = json.loads(meta[key])
        except (ValueError, RecursionError) as e:
            raise ValueError(f"its metadata's {key!r} is not JSON ({type(e).__name__}: {e})") from None
    return meta


def _read(path):
    """(metadata, {"<group>/<name>": array}) of either format, told apart by the first bytes."""
    if os.path.getsize(path) == 0:
        raise ValueError("the file is empty")
    with open(path, "rb") as f:
        legacy = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    if legacy:
        meta, arrays = read_npz(path)
        return _check_meta(meta, FORMAT_NPZ), arrays
    metadata, tensors = read_safetensors(path)
    arrays = {key if "/" in key else f"params/{key}": arr for key, arr in tensors.items()}
    return _check_meta(_decode_metadata(metadata), FORMAT), arrays


def _check_meta(meta, form):
    """The metadata dict, each entry of the type format `form` writes; a legacy one gets its model, CharLM."""
    if not isinstance(meta, dict):
        raise ValueError(f"its metadata is a JSON {type(meta).__name__}, not a JSON object")
    if meta.get("format") != form:
        raise ValueError(f"its format is {meta.get('format')!r}, not {form!r}: it is not a hybridref checkpoint "
                         f"this version reads")
    types = dict(JSON_ENTRIES, format=str, **({"model": str} if form == FORMAT else {}))
    unknown = sorted(set(meta) - set(types))
    if unknown:
        raise ValueError(f"its metadata has unknown entries {unknown}")
    for key in ("config", "model") if form == FORMAT else ("config",):
        if key not in meta:
            raise ValueError(f"its metadata has no {key}")
    for key, value in meta.items():
        if not isinstance(value, types[key]):
            raise ValueError(f"its metadata's {key!r} is a {type(value).__name__}")
    meta.setdefault("model", "CharLM")  # only train shakespeare wrote the legacy format
    if meta["model"] not in MODEL_KINDS:
        raise ValueError(f"its model {meta['model']!r} is not one of {', '.join(MODEL_KINDS)}")
    step = meta.get("optimizer", {}).get("step", 0)
    if type(step) is not int or step < 0:
        raise ValueError(f"its optimizer step {step!r} is not a count")
    meta.setdefault("vocab", None)
    meta.setdefault("train", None)
    return meta


def _grouped(arrays, with_optimizer):
    """{group: {name: array}}: every array a weight or a moment, floating point, finite; the moments, when
    there is an optimizer, of the same names and shapes as the weights."""
    groups = {group: {} for group in ("params",) + MOMENTS}
    for key, arr in arrays.items():
        group, _, name = key.partition("/")
        if group not in groups or not name:
            raise ValueError(f"it holds an array {key!r} that is neither a weight nor an optimizer moment "
                             f"({', '.join(m + '/' for m in MOMENTS)})")
        if arr.dtype.kind != "f":
            raise ValueError(f"its array {key!r} is {arr.dtype}, not floating point")
        bad = int(arr.size - np.isfinite(arr).sum())
        if bad:
            raise ValueError(f"{key} holds {bad} non-finite values of {arr.size}")
        groups[group][name] = arr
    for group in MOMENTS:
        want = {n: a.shape for n, a in groups["params"].items()} if with_optimizer else {}
        have = {n: a.shape for n, a in groups[group].items()}
        diffs = [f"{n!r}: {have.get(n, 'none')} for a weight of {want.get(n, 'none')}"
                 for n in sorted(want.keys() | have.keys()) if have.get(n) != want.get(n)]
        if diffs:
            raise ValueError(f"its {group} arrays are not the moments of its weights (" + "; ".join(diffs[:4]) +
                             ("; ..." if len(diffs) > 4 else "") + ")")
    if with_optimizer and any((v < 0).any() for v in groups["adam_v"].values()):
        raise ValueError("its second moments (adam_v) hold negative values")
    return groups


def load_checkpoint(path):
    """{format, model, config, vocab, train, optimizer, params {name: array}, adam_m, adam_v} from a
    checkpoint file of either format; CheckpointError when it is not a readable, finite hybridref checkpoint."""
    try:
        meta, arrays = _read(path)
        return dict(meta, **_grouped(arrays, "optimizer" in meta))
    except UserError:
        raise
    except ValueError as e:
        raise unreadable(path, str(e)) from None
    except OSError as e:
        raise unreadable(path, f"{e.strerror or e} ({type(e).__name__})") from None


def check_config(ckpt, model):
    """Raise CheckpointError when the checkpoint holds another model class, or listing every config entry
    where it differs from `model`'s.
    The saved config is first normalised by the model's class (options added since it was written
    take their defaults; earlier versions' flat mixer options are moved to their mixers)."""
    if ckpt["model"] != type(model).__name__:
        raise CheckpointError(f"the checkpoint holds a {ckpt['model']}, not a {type(model).__name__}")
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


def training_state(path, ckpt, run, kinds, record, trainer):
    """The checkpoint's training state for --resume: a dict with an entry of each of `kinds` ({name: type}),
    a `history` of records (dicts) with int entries `record`, and a `run` entry equal to `run` (the
    settings of the run resuming; the differences are named)."""
    t = ckpt["train"]
    kinds = dict(kinds, run=dict, history=list)
    if not isinstance(t, dict) or any(not isinstance(t.get(k), kind) or isinstance(t.get(k), bool)
                                      for k, kind in kinds.items()) or not all(
            isinstance(r, dict) and all(type(r.get(k)) is int for k in record) for r in t["history"]):
        raise unreadable(path, f"its training state is not one {trainer} wrote, so the run cannot resume from it "
                               f"(entries {sorted(kinds)})")
    if t["run"] != run:
        diffs = [f"{k}: checkpoint {t['run'].get(k)!r}, now {run[k]!r}" for k in run if t["run"].get(k) != run[k]]
        raise CheckpointError("--resume with other training settings than the checkpoint's: " + "; ".join(diffs) +
                              ": give the checkpoint's settings")
    return t


def restore_generator(path, rng, state):
    """Set the NumPy generator `rng` to a state read from a checkpoint."""
    try:
        rng.bit_generator.state = state
    except (ValueError, TypeError, KeyError) as e:
        raise unreadable(path, f"its data generator state does not restore ({e})") from None


def diverged(error, checkpoint, saved_step):
    """The TrainingDiverged `error` of a run writing `checkpoint`, saying which checkpoint is left to resume
    from (saved_step: the step of the last one this run wrote, None if none)."""
    if not checkpoint:
        return error
    if saved_step is None:
        return TrainingDiverged(f"{error}; {checkpoint} is as it was before this run")
    return TrainingDiverged(f"{error}; the last checkpoint, {checkpoint} at step {saved_step}, is intact")
