"""`hybridref models` and `hybridref describe` (hybridref/describe.py): the numbers they print are the
models' own (parameters counted once, decode state bytes of init_state)."""
import json

from click.testing import CliRunner

from hybridref.cli import main
from hybridref.describe import VOCAB, state_bytes
from hybridref.models.char_lm import PRESETS, CharLM


def test_models_lists_every_preset_with_its_own_numbers():
    out = CliRunner().invoke(main, ["models", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert list(rows) == list(PRESETS)
    for name, r in rows.items():
        model = CharLM.preset(name, VOCAB).to("numpy")
        assert r["params"] == model.num_params() and r["pattern"] == PRESETS[name]["pattern"]
        # the affine fit reproduces the measured state at a third length (within the context limit)
        L = 700 if r["context_limit"] else 3000
        assert r["state_bytes_fixed"] + L * r["state_bytes_per_token"] == state_bytes(model.init_state(1, L)), name
    assert rows["transformer"]["state_bytes_per_token"] == 6 * 2 * 128 * 4  # 6 layers of k, v of width 128
    assert rows["samba"]["state_bytes_per_token"] == 0  # Mamba and windowed attention: constant
    assert rows["stripedhyena"]["state_bytes_32768"] is None  # past Hyena's l_max
    text = CliRunner().invoke(main, ["models"]).output
    assert "zamba" in text and "MMZMMMZM" in text


def test_describe_counts_a_shared_block_once():
    out = CliRunner().invoke(main, ["describe", "--arch", "zamba", "--context", "64", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    model = CharLM.preset("zamba", VOCAB)
    calls = [r for r in rows if r["kind"] == "zamba"]
    assert calls[0]["shared_params"] == 0 and calls[1]["shared_params"] > 0
    total = sum(r["mixer_params"] + r["mlp_params"] + r["norms"] for r in rows)
    assert total + model.embed.weight.data.size + model.head.weight.data.size + model.norm.weight.data.size \
        == model.num_params()
    assert calls[0]["state"] == "k (1, 4, 64, 64), v (1, 4, 64, 64)"
    text = CliRunner().invoke(main, ["describe", "--arch", "jamba"]).output
    assert "MoE 4×swiglu" in text and "attention" in text


def test_describe_refuses_an_unknown_preset():
    out = CliRunner().invoke(main, ["describe", "--arch", "nope"])
    assert out.exit_code == 2 and "nope" in out.output
