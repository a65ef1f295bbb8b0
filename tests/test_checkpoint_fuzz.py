"""Damaged checkpoints: whatever the damage, loading one for generation (`load_model`) either gives a
model or raises CheckpointError "<path>: not a readable hybridref checkpoint: <what>" — never another
exception, never an allocation beyond the memory limit.

Each test runs on both formats: safetensors (written now) and the .npz of earlier versions (still
read). The examples of the issue each have a test through the command line; then a seeded fuzz of a
few hundred cases: truncations at random offsets, flipped bytes, malformed metadata (JSON of the
wrong shape, missing keys, wrong types, unknown keys, huge or negative sizes) and arrays (names,
dtypes, shapes), and for safetensors malformed headers (dtypes, shapes, offsets, lengths)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from hybridref.checkpoint import FORMAT, save_checkpoint
from hybridref.cli import main
from hybridref.errors import CheckpointError
from hybridref.generate import load_model
from hybridref.models.char_lm import CharLM
from hybridref.optim import AdamW

from helpers import read_safetensors_file, write_safetensors_file

CHARS = "\n abcdefgh"
READABLE = "not a readable hybridref checkpoint"


@pytest.fixture(autouse=True)
def memory_limit(monkeypatch):
    """A damaged size must be refused for its size, here and on any machine, before it is allocated."""
    monkeypatch.setenv("HYBRIDREF_MEMORY_LIMIT", "256M")


def write_npz(path, arrays, meta):
    """A legacy (.npz) checkpoint file of these arrays ("<group>/<name>") and this metadata (any JSON value,
    or raw bytes)."""
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    with open(path, "wb") as f:  # a file object: np.savez would add .npz to a name without it
        np.savez(f, meta=np.frombuffer(raw, np.uint8), **arrays)
    return str(path)


def write_safetensors(path, arrays, meta):
    """A safetensors checkpoint file of the same: weights under their bare names, metadata entries as the
    writer encodes them; metadata that is not an object (or raw bytes) becomes the config's text."""
    tensors = {k.removeprefix("params/"): np.ascontiguousarray(a) for k, a in arrays.items()}
    if isinstance(meta, dict):
        metadata = {k: v if k in ("format", "model") and isinstance(v, str) else json.dumps(v)
                    for k, v in meta.items()}
    else:
        text = meta.decode("utf-8", "replace") if isinstance(meta, bytes) else json.dumps(meta)
        metadata = {"format": FORMAT, "model": "CharLM", "config": text}
    return write_safetensors_file(path, tensors, metadata)


FORMATS = {"safetensors": write_safetensors, "npz": write_npz}


@pytest.fixture(scope="module", params=list(FORMATS))
def good(request, tmp_path_factory):
    """(the bytes of a valid checkpoint with weights, optimizer and train state; its arrays "<group>/<name>";
    its metadata; a writer of files in its format), in either format."""
    path = tmp_path_factory.mktemp("good") / "ck.safetensors"
    model = CharLM(len(CHARS), d_model=16, pattern="MA", n_heads=2, mlp_hidden={"A": 16, "M": 16}, d_state=4)
    save_checkpoint(path, model, CHARS, AdamW(model.params()), {"step": 0})
    tensors, metadata = read_safetensors_file(path)
    arrays = {k if "/" in k else f"params/{k}": a for k, a in tensors.items()}
    meta = {k: v if k in ("format", "model") else json.loads(v) for k, v in metadata.items()}
    if request.param == "npz":
        meta = dict(meta, format="hybridref-checkpoint-1")
        del meta["model"]
    write = FORMATS[request.param]
    raw = open(write(tmp_path_factory.mktemp("raw") / "ck", arrays, meta), "rb").read()
    return raw, arrays, meta, write


def assert_loads_or_refused(path, npb):
    try:
        load_model(path, npb)
    except CheckpointError as e:
        assert str(e).startswith(f"{path}: {READABLE}: "), str(e)


def assert_refused_by_the_cli(path, *words):
    out = CliRunner().invoke(main, ["generate", "--backend", "numpy", "--checkpoint", path])
    assert out.exit_code == 1 and out.exception is None or isinstance(out.exception, SystemExit), out.output
    assert READABLE in out.output and "Traceback" not in out.output, out.output
    for word in words:
        assert word in out.output, out.output


# -- the examples of the issue ------------------------------------------------------------------

def test_a_truncated_file_is_refused(good, tmp_path):
    """zipfile.BadZipFile before (.npz)."""
    path = tmp_path / "cut"
    path.write_bytes(good[0][:len(good[0]) // 2])
    assert_refused_by_the_cli(str(path), "zip" if good[3] is write_npz else "truncated")


def test_an_empty_file_is_refused(tmp_path):
    """"Aborted!" before (click's answer to the EOFError NumPy raised)."""
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_refused_by_the_cli(str(path), "empty")


@pytest.mark.parametrize("case,words", [
    ("a list", ["list"]),  # AttributeError: 'list' object has no attribute 'get'
    ("an array of another group", ["extra/x"]),  # KeyError: 'extra'
    ("an array outside any group", ["'x'"]),  # not enough values to unpack
    ("an unknown config key", ["'foo'"]),  # TypeError: CharLM.__init__() got an unexpected keyword argument
    ("a huge width", ["d_model 10000000", "GiB"]),  # tried to allocate 1.16 TiB
    ("a vocabulary shorter than the embedding", ["vocabulary", "3 characters"]),  # IndexError while sampling
])
def test_malformed_metadata_is_refused(case, words, good, tmp_path):
    _, arrays, meta, write = good
    changes = {
        "a list": (arrays, [1, 2]),
        "an array of another group": ({**arrays, "extra/x": np.zeros(1, np.float32)}, meta),
        "an array outside any group": ({**arrays, "x": np.zeros(1, np.float32)}, meta),
        "an unknown config key": (arrays, dict(meta, config=dict(meta["config"], foo=1))),
        "a huge width": (arrays, dict(meta, config=dict(meta["config"], d_model=10 ** 7))),
        "a vocabulary shorter than the embedding": (arrays, dict(meta, vocab="abc")),
    }
    assert_refused_by_the_cli(write(tmp_path / "bad", *changes[case]), *words)


# -- the fuzz ------------------------------------------------------------------------------------

def test_truncations_at_random_offsets(good, tmp_path, npb):
    raw = good[0]
    path = tmp_path / "cut"
    for cut in np.random.default_rng(1).integers(0, len(raw), 120):
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=READABLE):
            load_model(str(path), npb)


def test_flipped_bytes(good, tmp_path, npb):
    raw = good[0]
    rng = np.random.default_rng(2)
    path = tmp_path / "flipped"
    for _ in range(150):
        damaged = bytearray(raw)
        for at in rng.integers(0, len(raw), rng.integers(1, 5)):
            damaged[at] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(damaged))
        assert_loads_or_refused(str(path), npb)


ODD_VALUES = [None, True, -1, 0, 1.5, float("nan"), float("inf"), 10 ** 12, -10 ** 12, 2 ** 64, "", "x" * 50,
              [], [1, "a"], {}, {"a": 1}, {"M": {"d_state": 10 ** 9}}]


def mutate_meta(meta, rng):
    """A copy of meta with one random damage."""
    meta = json.loads(json.dumps(meta))
    config = meta["config"]
    target = [meta, config, config["mixers"], config["mixers"]["A"], config["mixers"]["M"],
              config["mlp_hidden"]][rng.integers(6)]
    how = rng.integers(5)
    if how == 0 and target:  # a key is missing
        del target[sorted(target)[rng.integers(len(target))]]
    elif how == 1 and target:  # a value of the wrong type or size
        target[sorted(target)[rng.integers(len(target))]] = ODD_VALUES[rng.integers(len(ODD_VALUES))]
    elif how == 2:  # an unknown key
        target["unknown_" + str(rng.integers(100))] = 1
    elif how == 3:  # a huge size
        key = ["d_model", "vocab_size", "n_heads", "d_state", "expand", "d_conv", "dt_rank"][rng.integers(7)]
        (config if key in config else config["mixers"]["M" if key.startswith(("d_", "exp")) else "A"])[key] = \
            int(10 ** rng.integers(4, 19))
    else:  # the whole metadata replaced
        return ODD_VALUES[rng.integers(len(ODD_VALUES))]
    return meta


def test_malformed_metadata(good, tmp_path, npb):
    _, arrays, meta, write = good
    rng = np.random.default_rng(3)
    for i in range(200):
        assert_loads_or_refused(write(tmp_path / f"m{i}", arrays, mutate_meta(meta, rng)), npb)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"{", b"[" * 100000 + b"]" * 100000, b"nul", b'"text"',
                                 b'{"format": "hybridref-checkpoint-1"}', b'{"format": "hybridref-checkpoint-2"}'])
def test_metadata_that_is_not_json_of_a_checkpoint(raw, good, tmp_path, npb):
    with pytest.raises(CheckpointError, match=READABLE):
        load_model(good[3](tmp_path / "m", good[1], raw), npb)


def mutate_arrays(arrays, rng, dtypes):
    """A copy of the arrays with one random damage to their names, dtypes (one of `dtypes`) or shapes."""
    arrays = dict(arrays)
    name = sorted(arrays)[rng.integers(len(arrays))]
    how = rng.integers(6)
    if how == 0:
        del arrays[name]
    elif how == 1:
        arrays[name.replace("/", "_")] = arrays.pop(name)
    elif how == 2:
        arrays[name] = arrays[name].astype(dtypes[rng.integers(len(dtypes))])
    elif how == 3:
        arrays[name] = arrays[name].reshape(-1)[:max(0, arrays[name].size - 1)]
    elif how == 4:
        arrays[name] = np.zeros(())
    else:
        arrays[name] = np.full_like(arrays[name], [np.nan, np.inf, -np.inf, 1e38][rng.integers(4)])
    return arrays


def test_malformed_arrays(good, tmp_path, npb):
    _, arrays, meta, write = good
    # the dtypes each format can hold (safetensors has no complex or string tensors)
    dtypes = [np.int64, np.complex64, np.bool_, "U3", np.float16] if write is write_npz else \
        [np.int64, np.int8, np.bool_, np.float64, np.float16]
    rng = np.random.default_rng(4)
    for i in range(120):
        assert_loads_or_refused(write(tmp_path / f"a{i}", mutate_arrays(arrays, rng, dtypes), meta), npb)


@pytest.mark.parametrize("good", ["npz"], indirect=True)
def test_an_array_whose_npy_header_claims_a_huge_shape_is_not_allocated(good, tmp_path, npb):
    """A member's .npy header claims 10^12 floats over a few bytes of data (its zip CRC correct):
    refused from the header, before anything is allocated."""
    import io
    import zipfile
    path = tmp_path / "huge.npz"
    write_npz(path, *good[1:3])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10 ** 6, 10 ** 6)})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("params/huge.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(CheckpointError, match=READABLE):
        load_model(str(path), npb)


# -- safetensors headers -----------------------------------------------------------------------

def split_safetensors(raw):
    """(header JSON, data buffer) of a safetensors file's bytes."""
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join_safetensors(header, data, length=None):
    text = json.dumps(header).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


ODD_HEADER_VALUES = [None, -1, 1.5, True, "F32", [], {}, [1, 2, 3], 10 ** 20, 2 ** 64, [-1, 4], [4, 0], [1] * 40]


def mutate_header(header, rng):
    """A copy of the header with one random damage to an entry's dtype, shape, offsets or keys, or to
    __metadata__."""
    header = json.loads(json.dumps(header))
    name = sorted(k for k in header if k != "__metadata__")[rng.integers(len(header) - 1)]
    entry = header[name]
    odd = ODD_HEADER_VALUES[rng.integers(len(ODD_HEADER_VALUES))]
    how = rng.integers(7)
    if how == 0:
        entry["dtype"] = ["F64", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "f32", 3][rng.integers(9)]
    elif how == 1 and entry["shape"]:
        i = rng.integers(len(entry["shape"]))
        entry["shape"][i] = [entry["shape"][i] + 1, max(0, entry["shape"][i] - 1), 10 ** 12, odd][rng.integers(4)]
    elif how == 1:
        entry["shape"] = odd
    elif how == 2:
        delta = int([1, -1, 4, -4, 10 ** 12][rng.integers(5)])
        entry["data_offsets"] = [max(0, o + delta) for o in entry["data_offsets"]]
    elif how == 3:
        entry["data_offsets"][rng.integers(2)] = odd
    elif how == 4:
        del entry[sorted(entry)[rng.integers(len(entry))]]
    elif how == 5:
        header[name] = odd
    else:
        header["__metadata__"][["config", "format", "model", "extra"][rng.integers(4)]] = odd
    return header


@pytest.mark.parametrize("good", ["safetensors"], indirect=True)
def test_malformed_safetensors_headers(good, tmp_path, npb):
    header, data = split_safetensors(good[0])
    rng = np.random.default_rng(5)
    path = tmp_path / "h"
    for _ in range(200):
        path.write_bytes(join_safetensors(mutate_header(header, rng), data))
        with pytest.raises(CheckpointError, match=READABLE):
            load_model(str(path), npb)


@pytest.mark.parametrize("good", ["safetensors"], indirect=True)
@pytest.mark.parametrize("length", [0, 1, -1, +1, 2 ** 63, 2 ** 64 - 1, 200 * 2 ** 20])
def test_a_damaged_header_length_is_refused(good, length, tmp_path, npb):
    """The 8-byte length: beyond the file, into the data, short of the header's end (-1, +1: relative)."""
    header, data = split_safetensors(good[0])
    n = len(json.dumps(header).encode())
    path = tmp_path / "len"
    path.write_bytes(join_safetensors(header, data, n + length if length in (-1, 1) else length))
    with pytest.raises(CheckpointError, match=READABLE):
        load_model(str(path), npb)


@pytest.mark.parametrize("good", ["safetensors"], indirect=True)
def test_a_tensor_whose_safetensors_header_claims_a_huge_shape_is_not_allocated(good, tmp_path, npb):
    """An entry claims 10^12 floats, its offsets consistent with the shape, over a file of a few KB:
    refused from the header (the tensors do not tile the data), before anything is allocated."""
    header, data = split_safetensors(good[0])
    header["huge"] = {"dtype": "F32", "shape": [10 ** 6, 10 ** 6], "data_offsets": [len(data), len(data) + 4 * 10 ** 12]}
    path = tmp_path / "huge"
    path.write_bytes(join_safetensors(header, data))
    with pytest.raises(CheckpointError, match=f"{READABLE}: its tensors take 4000000"):
        load_model(str(path), npb)


def test_a_safetensors_file_of_another_program_is_refused(tmp_path):
    """A Hugging Face weights file: no hybridref metadata."""
    path = write_safetensors_file(tmp_path / "model.safetensors", {"w": np.zeros(3, np.float32)}, {"format": "pt"})
    assert_refused_by_the_cli(path, "format is 'pt'")
