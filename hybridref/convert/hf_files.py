"""The files of a Hugging Face `transformers` checkpoint folder, read and written without transformers.

    config.json                       the model's config: a JSON object (model_type, sizes, options)
    model.safetensors                 the weights, or
    model.safetensors.index.json      {"weight_map": {tensor name: shard file}} and the shards it names
    tokenizer.json                    the `tokenizers` library's tokenizer (optional; convert/tokenizer.py)

Weights are read with the `safetensors` library's NumPy API, which checks each file's header against
its size before a tensor is read. Every tensor becomes float32 (hybridref's weights): F16 and F64
are cast, BF16 (which NumPy has no type for) is widened exactly, by putting its 16 bits at the top
of a float32's; a pickled `pytorch_model.bin` is refused (reading it would run code).
"""
import json
import os

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ..errors import UserError
from ..limits import check_allocation

CONFIG, WEIGHTS, INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def read_config(folder):
    """The config.json of a checkpoint folder as a dict (UserError when missing or not a JSON object)."""
    path = os.path.join(folder, CONFIG)
    if not os.path.isdir(folder):
        raise UserError(f"{folder} is not a folder: --from-hf takes the folder save_pretrained wrote "
                        f"(config.json and model.safetensors)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{folder} holds no {CONFIG}: not a Hugging Face checkpoint folder") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not UTF-8 JSON ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} holds a JSON {type(config).__name__}, not an object")
    return config


def _shards(folder):
    """The safetensors files of the folder: model.safetensors, or the shards its index names."""
    single, index = os.path.join(folder, WEIGHTS), os.path.join(folder, INDEX)
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            files = sorted(set(weight_map.values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{index} is not a safetensors index (JSON with a weight_map of tensor -> file): "
                            f"{type(e).__name__}: {e}") from None
        bad = [name for name in files if not isinstance(name, str) or os.path.basename(name) != name]
        if bad:
            raise UserError(f"{index} names shard files outside its folder: {bad[:3]}")
        return [os.path.join(folder, name) for name in files]
    found = sorted(os.listdir(folder))
    hint = (" (pytorch_model.bin is a pickle, which hybridref does not read: load it in transformers and "
            "save_pretrained(folder, safe_serialization=True))" if any(n.endswith(".bin") for n in found) else "")
    raise UserError(f"{folder} holds neither {WEIGHTS} nor {INDEX}{hint}; it holds {found[:10]}")


def _header_entries(path):
    """The tensor entries of a safetensors header ({name: {dtype, shape, data_offsets}}) and where the
    data begins. Read only for BF16 tensors (a small JSON, read again for each), after safe_open has
    checked the file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return header, 8 + n


def _as_float32(path, name, dtype, reader):
    if dtype not in FLOAT_DTYPES:
        raise UserError(f"{path}: tensor {name!r} is {dtype}, not a floating-point weight (quantized "
                        f"checkpoints are not converted); hybridref reads {', '.join(FLOAT_DTYPES)}")
    if dtype != "BF16":
        return np.ascontiguousarray(reader.get_tensor(name), dtype=np.float32)
    entries, start = _header_entries(path)
    entry = entries[name]
    begin, end = entry["data_offsets"]
    bits = np.fromfile(path, dtype="<u2", count=(end - begin) // 2, offset=start + begin)
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


def read_weights(folder):
    """{tensor name: float32 array} of every safetensors file of the folder; the total size is checked
    against hybridref.limits.memory_limit() (as float32) before anything is read."""
    shards = _shards(folder)
    for shard in shards:
        if not os.path.isfile(shard):
            raise UserError(f"{shard} is missing: the index {INDEX} names it")
    tensors, readers = {}, []
    try:
        for shard in shards:
            readers.append((shard, safe_open(shard, framework="np")))
        count = sum(int(np.prod(r.get_slice(n).get_shape(), dtype=np.int64)) for _, r in readers for n in r.keys())
        check_allocation(f"the weights of {folder} ({count:,} parameters as float32)", 4 * count,
                         "convert on a machine with more memory")
        for shard, reader in readers:
            for name in reader.keys():
                if name in tensors:
                    raise UserError(f"{shard}: tensor {name!r} is also in another shard")
                tensors[name] = _as_float32(shard, name, reader.get_slice(name).get_dtype(), reader)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 -- the library parses untrusted bytes: any failure means a damaged file
        raise UserError(f"{folder}: a weights file is not readable safetensors ({type(e).__name__}: {e})") from None
    return tensors


def write_checkpoint(folder, config, tensors):
    """config.json and model.safetensors (float32, metadata format "pt", as transformers writes them)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, CONFIG), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
              os.path.join(folder, WEIGHTS), metadata={"format": "pt"})
