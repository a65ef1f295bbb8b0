"""Checkpoints: weights, a JSON config, and what resuming needs (optimizer moments, step, data RNG).

Format: one `.npz` (NumPy's zip of .npy files) read with allow_pickle=False, so loading never runs
code: arrays `params/<name>`, `adam_m/<name>`, `adam_v/<name>`, and `meta`, the UTF-8 bytes of a
JSON object {config, vocab, train}. Arrays are float32 on the host and load on any backend.

Writes are atomic: the file is written under a temporary name in the same folder, flushed and
fsync'ed, then renamed over the target (and the folder fsync'ed), so a process killed at any moment
leaves either the previous checkpoint or the new one, never a torn file.
"""
import json
import os
import tempfile

import numpy as np

FORMAT = "hybridref-checkpoint-1"


def save_checkpoint(path, model, vocab=None, optimizer=None, train=None):
    """Write `model` (its config and params), the vocabulary string, an AdamW's moments and step, and a
    JSON-serialisable `train` dict (data RNG state, history, ...) to `path`, atomically."""
    arrays = {f"params/{name}": p.data for name, p in model.named_params()}
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
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
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


def load_checkpoint(path):
    """{config, vocab, train, optimizer, params {name: array}, adam_m, adam_v} from a checkpoint file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable hybridref checkpoint ({e})") from None
    if "meta" not in files:
        raise ValueError(f"{path}: not a hybridref checkpoint (no meta record)")
    meta = json.loads(files.pop("meta").tobytes().decode())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}, this version reads {FORMAT!r}")
    out = dict(meta, params={}, adam_m={}, adam_v={})
    for key, arr in files.items():
        group, name = key.split("/", 1)
        out[group][name] = arr
    return out


def check_config(ckpt, model):
    """Raise ValueError listing every config entry where the checkpoint differs from `model`'s.
    The saved config is first normalised by the model's class (options added since it was written
    take their defaults; earlier versions' flat mixer options are moved to their mixers)."""
    config = model.config
    normalize = getattr(type(model), "normalize_config", None)
    try:
        saved = ckpt["config"] if normalize is None else normalize(ckpt["config"], strict=False)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"the checkpoint's config does not describe a {type(model).__name__}: {e}") from None
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, model {config.get(k)!r}"
             for k in sorted(set(saved) | set(config)) if saved.get(k) != config.get(k)]
    if diffs:
        raise ValueError("the checkpoint's config does not match the model: " + "; ".join(diffs))


def restore(ckpt, model, optimizer=None):
    """Load the checkpoint's weights (and optimizer moments) into `model`; refuse a config or shape mismatch."""
    check_config(ckpt, model)
    model.load_state_dict(ckpt["params"])
    if optimizer is not None:
        if "optimizer" not in ckpt:
            raise ValueError("the checkpoint holds no optimizer state to resume from")
        for (name, p), m, v in zip(model.named_params(), optimizer.m, optimizer.v):
            m[...] = ckpt["adam_m"][name]
            v[...] = ckpt["adam_v"][name]
        optimizer.step_count = ckpt["optimizer"]["step"]
