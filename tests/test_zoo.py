"""The hybrid zoo (hybridref/models/zoo.py): each preset trains on both backends through the CLI,
decodes (prefill + steps) as its parallel forward on the NumPy and the C decoder, and runs under
mpiexec as one process (tests/mpi_zoo.py). Sizes: tests/test_shakespeare.py; the whole models against
PyTorch: tests/test_zoo_torch.py."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from hybridref.cli import main
from hybridref.models.char_lm import PRESETS, CharLM
from hybridref.models.zoo import PAPER_SHAPES, ZOO_PRESETS

from helpers import decode_all, rel_err
from test_shakespeare import corpus  # noqa: F401  (the fixture: a tiny corpus folder)

V = 11
ZOO = sorted(ZOO_PRESETS) + ["griffin"]
# small sizes for the tests: the presets' patterns and options, narrower (d_model 32) and with Hyena's
# filter over 64 positions (its MLP runs over all l_max positions on every forward)
SMALL = {"H": dict(l_max=64, filter_order=16)}


def tiny_zoo(name, d_model=32, vocab=V, mixers=None, **kw):
    """The preset `name` at d_model 32, mixer options merged with SMALL and then `mixers`."""
    preset, mixers = PRESETS[name], mixers or {}
    mixers = {c: {**preset.get("mixers", {}).get(c, {}), **SMALL.get(c, {}), **mixers.get(c, {})}
              for c in set(preset["pattern"])}
    return CharLM.preset(name, vocab, d_model=d_model, mixers=mixers, **kw)


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("name", sorted(ZOO_PRESETS))
def test_zoo_trains_from_the_cli(corpus, backend, name):
    out = CliRunner().invoke(main, ["train", "shakespeare", "--arch", name, "--backend", backend, "--data-dir",
                                    corpus, "--d-model", "32", "--steps", "4", "--batch-size", "2",
                                    "--block-size", "32", "--warmup", "2", "--eval-every", "4",
                                    "--eval-batches", "1", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert summary["steps"] == 4 and summary["config"]["pattern"] == PRESETS[name]["pattern"]
    # 4 steps on a repetitive corpus: the loss is already below ln(vocab)
    assert summary["final_val_loss"] < np.log(summary["config"]["vocab_size"])


@pytest.mark.parametrize("name", ZOO)
def test_zoo_decode_equals_parallel_forward(npb, cb, rng, name):
    """Prefill + one-token steps against the parallel forward, on the NumPy and the C decoder. The
    17 positions pass the windows of the small models (Samba's 128 and Griffin's are larger: the
    window itself is tested in test_decode), float32: measured ~1e-6, the issue's bound is 1e-4."""
    model = tiny_zoo(name).to(npb)
    ids = rng.integers(0, V, (2, 17))
    full = model.prefill(ids, model.init_state(2, 17))
    for be in (npb, cb):
        model.to(be)
        for prompt in (1, 5):
            assert rel_err(decode_all(model, ids, prompt), full[:, prompt - 1:]) < 1e-4, (be.name, prompt)


@pytest.mark.parametrize("name", sorted(PAPER_SHAPES))
def test_paper_shapes_are_valid_configs(name, monkeypatch):
    """The documented paper-scale configs normalize (every option known, sizes in range) and keep the
    preset's mixers and, at least, its pattern's letters (normalizing checks the weights' size against
    the memory limit: a 7B model needs more than half of a small machine)."""
    monkeypatch.setenv("HYBRIDREF_MEMORY_LIMIT", "1T")
    cfg = CharLM.normalize_config(dict(vocab_size=32000, **PAPER_SHAPES[name]))
    assert set(cfg["pattern"]) == set(PRESETS[name]["pattern"])


# -- Zamba's shared block ---------------------------------------------------------------------------
def test_zamba_shares_one_set_of_weights(tmp_path):
    """Every "Z" block holds the same shared module; the model's parameters, the optimizer's list and a
    checkpoint hold each shared weight once (so AdamW updates and decays it once), the per-call
    output linears each."""
    from hybridref.checkpoint import load_checkpoint, restore, save_checkpoint
    from hybridref.optim import AdamW
    model = tiny_zoo("zamba")
    calls = [b.mixer for b in model.blocks if b.mixer.mixer_name == "zamba"]
    assert len(calls) == 2 and calls[0].shared is calls[1].shared
    assert calls[0].call_out.weight is not calls[1].call_out.weight
    names = [n for n, _ in model.named_params()]
    assert len(names) == len(set(id(p) for p in model.params()))
    assert sum(".shared." in n for n in names) == len(list(calls[0].shared.named_params()))
    assert len(AdamW(model.params()).params) == len(names)
    path = tmp_path / "z.safetensors"
    save_checkpoint(path, model, "abcdefghijk")
    ck = load_checkpoint(path)
    assert sorted(ck["params"]) == sorted(names)
    other = CharLM.from_config(ck["config"])
    restore(ck, other)
    calls2 = [b.mixer for b in other.blocks if b.mixer.mixer_name == "zamba"]
    assert calls2[0].shared is calls2[1].shared
    assert np.array_equal(calls2[1].shared.attn.qkv.weight.data, calls[0].shared.attn.qkv.weight.data)


def test_zamba_gradients_accumulate_over_calls(npb, rng):
    """float64 finite differences of the whole model's loss (helpers.check_lm_grads): the shared
    weights' gradients are the sums over both calls, the embedding's includes the shared block's reads."""
    from helpers import check_lm_grads
    model = tiny_zoo("zamba", d_model=8, mixers={"Z": dict(n_heads=2, ffn_hidden=6), "M": dict(d_state=2)}).to(npb)
    model.astype(np.float64)
    ids = rng.integers(0, V, (2, 5))
    check_lm_grads(model, npb, ids, rng.integers(0, V, 10), rng, per_param=4)


# -- distributed ------------------------------------------------------------------------------------
@pytest.mark.parametrize("procs,mode", [(2, "sequence"), (3, "sequence"), (2, "data"), (3, "data")])
def test_zoo_trains_under_mpiexec_as_one_process(procs, mode):
    """tests/mpi_zoo.py: one training step of every zoo preset (small) under mpiexec, logits, loss and
    every gradient against one process within 1e-5."""
    pytest.importorskip("mpi4py")
    from hybridref.backends.mpi.launch import run_mpi
    out = run_mpi(procs, [os.path.join(os.path.dirname(__file__), "mpi_zoo.py"), "--mode", mode], timeout=300)
    assert out.returncode == 0 and ": OK" in out.stdout, (out.stdout + out.stderr)[-3000:]
