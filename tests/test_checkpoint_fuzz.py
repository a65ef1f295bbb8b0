"""Damaged checkpoints: whatever the damage, loading one for generation (`load_model`) either gives a
model or raises CheckpointError "<path>: not a readable hybridref checkpoint: <what>" — never another
exception, never an allocation beyond the memory limit.

The examples of the issue each have a test through the command line; then a seeded fuzz of a few
hundred cases: truncations at random offsets, flipped bytes, and malformed metadata (JSON of the
wrong shape, missing keys, wrong types, unknown keys, huge or negative sizes) and arrays (names,
dtypes, shapes)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from hybridref.checkpoint import save_checkpoint
from hybridref.cli import main
from hybridref.errors import CheckpointError
from hybridref.generate import load_model
from hybridref.models.char_lm import CharLM
from hybridref.optim import AdamW

CHARS = "\n abcdefgh"
READABLE = "not a readable hybridref checkpoint"


@pytest.fixture(autouse=True)
def memory_limit(monkeypatch):
    """A damaged size must be refused for its size, here and on any machine, before it is allocated."""
    monkeypatch.setenv("HYBRIDREF_MEMORY_LIMIT", "256M")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """The bytes of a valid checkpoint (weights, optimizer, train state) and its arrays and metadata."""
    path = tmp_path_factory.mktemp("good") / "ck.npz"
    model = CharLM(len(CHARS), d_model=16, pattern="MA", n_heads=2, mlp_hidden={"A": 16, "M": 16}, d_state=4)
    save_checkpoint(path, model, CHARS, AdamW(model.params()), {"step": 0})
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    return path.read_bytes(), arrays, meta


def write(path, arrays, meta):
    """A checkpoint file of these arrays and this metadata (any JSON value, or raw bytes)."""
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    np.savez(path, meta=np.frombuffer(raw, np.uint8), **arrays)
    return str(path)


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
    """zipfile.BadZipFile before."""
    path = tmp_path / "cut.npz"
    path.write_bytes(good[0][:len(good[0]) // 2])
    assert_refused_by_the_cli(str(path), "zip")


def test_an_empty_file_is_refused(tmp_path):
    """"Aborted!" before (click's answer to the EOFError NumPy raised)."""
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_refused_by_the_cli(str(path), "empty")


@pytest.mark.parametrize("case,words", [
    ("a list", ["a JSON object"]),  # AttributeError: 'list' object has no attribute 'get'
    ("an array of another group", ["extra/x"]),  # KeyError: 'extra'
    ("an array outside any group", ["'x'"]),  # not enough values to unpack
    ("an unknown config key", ["'foo'"]),  # TypeError: CharLM.__init__() got an unexpected keyword argument
    ("a huge width", ["d_model 10000000", "GiB"]),  # tried to allocate 1.16 TiB
    ("a vocabulary shorter than the embedding", ["vocabulary", "3 characters"]),  # IndexError while sampling
])
def test_malformed_metadata_is_refused(case, words, good, tmp_path):
    _, arrays, meta = good
    changes = {
        "a list": (arrays, [1, 2]),
        "an array of another group": ({**arrays, "extra/x": np.zeros(1, np.float32)}, meta),
        "an array outside any group": ({**arrays, "x": np.zeros(1, np.float32)}, meta),
        "an unknown config key": (arrays, dict(meta, config=dict(meta["config"], foo=1))),
        "a huge width": (arrays, dict(meta, config=dict(meta["config"], d_model=10 ** 7))),
        "a vocabulary shorter than the embedding": (arrays, dict(meta, vocab="abc")),
    }
    assert_refused_by_the_cli(write(tmp_path / "bad.npz", *changes[case]), *words)


# -- the fuzz ------------------------------------------------------------------------------------

def test_truncations_at_random_offsets(good, tmp_path, npb):
    raw = good[0]
    path = tmp_path / "cut.npz"
    for cut in np.random.default_rng(1).integers(0, len(raw), 120):
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=READABLE):
            load_model(str(path), npb)


def test_flipped_bytes(good, tmp_path, npb):
    raw = good[0]
    rng = np.random.default_rng(2)
    path = tmp_path / "flipped.npz"
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
    _, arrays, meta = good
    rng = np.random.default_rng(3)
    for i in range(200):
        assert_loads_or_refused(write(tmp_path / f"m{i}.npz", arrays, mutate_meta(meta, rng)), npb)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"{", b"[" * 100000 + b"]" * 100000, b"nul", b'"text"',
                                 b'{"format": "hybridref-checkpoint-1"}'])
def test_metadata_that_is_not_json_of_a_checkpoint(raw, good, tmp_path, npb):
    with pytest.raises(CheckpointError, match=READABLE):
        load_model(write(tmp_path / "m.npz", good[1], raw), npb)


def mutate_arrays(arrays, rng):
    """A copy of the arrays with one random damage to their names, dtypes or shapes."""
    arrays = dict(arrays)
    name = sorted(arrays)[rng.integers(len(arrays))]
    how = rng.integers(6)
    if how == 0:
        del arrays[name]
    elif how == 1:
        arrays[name.replace("/", "_")] = arrays.pop(name)
    elif how == 2:
        arrays[name] = arrays[name].astype([np.int64, np.complex64, np.bool_, "U3", np.float16][rng.integers(5)])
    elif how == 3:
        arrays[name] = arrays[name].reshape(-1)[:max(0, arrays[name].size - 1)]
    elif how == 4:
        arrays[name] = np.zeros(())
    else:
        arrays[name] = np.full_like(arrays[name], [np.nan, np.inf, -np.inf, 1e38][rng.integers(4)])
    return arrays


def test_malformed_arrays(good, tmp_path, npb):
    _, arrays, meta = good
    rng = np.random.default_rng(4)
    for i in range(120):
        assert_loads_or_refused(write(tmp_path / f"a{i}.npz", mutate_arrays(arrays, rng), meta), npb)


def test_an_array_whose_header_claims_a_huge_shape_is_not_allocated(good, tmp_path, npb):
    """A member's .npy header claims 10^12 floats over a few bytes of data (its zip CRC correct):
    refused from the header, before anything is allocated."""
    import io
    import zipfile
    path = tmp_path / "huge.npz"
    write(path, *good[1:])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10 ** 6, 10 ** 6)})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("params/huge.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(CheckpointError, match=READABLE):
        load_model(str(path), npb)
