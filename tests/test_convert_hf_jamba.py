"""JambaForCausalLM in and out (hybridref/convert/hf_jamba.py): tiny random transformers Jamba models (Mamba
with dt/B/C norms, attention without RoPE, MoE every other layer), saved offline, converted, and compared
with transformers' forward and greedy generate (its hybrid Mamba/attention cache); the round trip back;
the per-expert layout of older checkpoints; the configs refused by name.

Tolerance of the logits: 1e-4 relative (norm-wise), as tests/test_convert_hf.py and for its reasons (float32
on both sides, other orders of summation; measured ~1e-6, the print of test_logits_match_transformers).
A wrong mapping (two experts swapped, Mixtral's renormalized routing, RoPE on the attention, an expert's
gate and up halves swapped) moves them by far more (test_conversion_errors_are_seen).
"""
import numpy as np
import pytest

from hf_check import (check_logits, check_round_trip, conversion_tests, edit_errors, hf_logits, ids_of, randomize,
                      refusal_test)
from helpers import rel_err

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hybridref.convert import from_hf, hf_jamba, to_hf  # noqa: E402
from hybridref.convert.hf_config import HFConfig  # noqa: E402
from hybridref.errors import UserError  # noqa: E402
from hybridref.models.zoo import PAPER_SHAPES  # noqa: E402

V, D, T = 97, 48, 11

VARIANTS = {
    # 6 layers "MAMMAM" with MoE (4 experts, top-2) at 1, 3, 5 (an attention layer's among them); eps off its
    # default, so that a converter reading the wrong entry fails
    "jamba": dict(num_hidden_layers=6, attn_layer_period=3, attn_layer_offset=1, num_experts=4,
                  num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1, rms_norm_eps=1e-3,
                  tie_word_embeddings=False),
    # "MMAMM", dense MLPs (num_experts 1), tied, no conv bias, an explicit dt rank, top-1 MoE left out
    "jamba-dense-tied": dict(num_hidden_layers=5, attn_layer_period=4, attn_layer_offset=2, num_experts=1,
                             tie_word_embeddings=True, mamba_conv_bias=False, mamba_dt_rank=5),
    # MoE top-1 at 0, 3 of "MMMMA" (the attention layer last), 3 kv heads
    "jamba-top1": dict(num_hidden_layers=5, attn_layer_period=5, attn_layer_offset=4, num_experts=3,
                       num_experts_per_tok=1, expert_layer_period=3, expert_layer_offset=0, num_key_value_heads=3),
}


def jamba_model(**options):
    options = {**dict(num_key_value_heads=2), **options}
    config = transformers.JambaConfig(vocab_size=V, hidden_size=D, intermediate_size=40, num_attention_heads=6,
                                      mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, **options)
    # A_log and dt_proj.bias keep their init (S4D-real A, softplus⁻¹ of a time step)
    return randomize(transformers.JambaForCausalLM(config), torch, lambda name, p: "A_log" in name or "dt_proj" in name
                     and name.endswith("bias"))


(converted, test_logits_match_transformers, _,
 test_greedy_decoding_matches_generate) = conversion_tests("hf_jamba", VARIANTS, jamba_model, V, T, torch,
                                                          decoder_steps=False)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_to_transformers(converted, variant, tmp_path, rng):
    """--to-hf writes a JambaForCausalLM folder with the original's layer kinds, experts and logits."""
    model, _, ckpt = converted[variant]
    again = check_round_trip(model, ckpt, tmp_path / "back", ids_of(rng, V, (2, T)), transformers, torch)
    assert again.config.layers_block_type == model.config.layers_block_type
    assert again.config.layers_num_experts == model.config.layers_num_experts


def test_per_expert_checkpoint(converted, tmp_path, npb, rng):
    """A checkpoint in the layout of transformers 4 (ai21labs/Jamba-v0.1: experts.j.{gate,up,down}_proj.weight)
    converts to the same model."""
    model, folder, _ = converted["jamba"]

    def per_expert(weights):
        out = {}
        for name, w in weights.items():
            if name.endswith("experts.gate_up_proj"):
                for j, gate_up in enumerate(w):
                    gate, up = np.split(gate_up, 2)
                    out[name.replace("gate_up_proj", f"{j}.gate_proj.weight")] = gate
                    out[name.replace("gate_up_proj", f"{j}.up_proj.weight")] = up
            elif name.endswith("experts.down_proj"):
                out.update({name.replace("down_proj", f"{j}.down_proj.weight"): down for j, down in enumerate(w)})
            else:
                out[name] = w
        return out

    from safetensors.numpy import load_file, save_file
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((folder / "config.json").read_text())
    save_file(per_expert(load_file(folder / "model.safetensors")), old / "model.safetensors", metadata={"format": "pt"})
    from_hf(str(old), str(tmp_path / "m.safetensors"))
    check_logits(model, str(tmp_path / "m.safetensors"), (npb,), ids_of(rng, V, (1, T)), torch)


def test_conversion_errors_are_seen(converted, npb, rng):
    """The tolerance tells a right conversion from a wrong one."""
    model, _, ckpt = converted["jamba"]

    def swap_experts(m):
        w = m.blocks[3].mlp.experts.fc.weight.data
        w[[0, 1]] = w[[1, 0]]

    def swap_gate_up(m):
        w = m.blocks[1].mlp.experts.fc.weight.data
        w[0] = np.concatenate(np.split(w[0], 2)[::-1])

    def renormalize(m):
        for block in m.blocks:
            if hasattr(block.mlp, "router"):
                block.mlp.normalize = True

    def rope(m):
        m.blocks[1].mixer.rope_base = 10000.0

    errors = edit_errors(model, ckpt, npb, ids_of(rng, V, (2, T)), (swap_experts, swap_gate_up, renormalize, rope),
                         torch)
    assert errors.pop("as converted") < 1e-4
    for edit, error in errors.items():
        assert error > 1e-3, edit


def test_default_config_is_the_zoo_paper_shape():
    """JambaConfig's defaults (Jamba-v0.1) convert to the zoo's PAPER_SHAPES["jamba"] config."""
    ours, tied = hf_jamba.config_from_hf(HFConfig(transformers.JambaConfig().to_dict(), "x"))
    paper = PAPER_SHAPES["jamba"]
    assert ours["pattern"] == paper["pattern"] and ours["d_model"] == paper["d_model"] and tied is False
    assert {k: ours["moe"][k] for k in paper["moe"]} == paper["moe"]
    for letter, options in paper["mixers"].items():
        assert {k: ours["mixers"][letter][k] for k in options} == options
    assert (ours["mlp_kind"], ours["mlp_bias"], ours["norm_eps"]) == (paper["mlp_kind"], paper["mlp_bias"], 1e-6)
    assert set(ours["mlp_hidden"].values()) == {paper["mlp_hidden"]}


def test_null_and_auto_entries_take_transformers_defaults():
    """null is "the default" (num_key_value_heads: the heads), mamba_dt_rank "auto" is ceil(hidden_size / 16),
    and num_experts 1 is dense MLPs everywhere (no moe option)."""
    config = dict(model_type="jamba", vocab_size=V, hidden_size=D, intermediate_size=40, num_hidden_layers=3,
                  num_attention_heads=6, num_key_value_heads=None, mamba_dt_rank="auto", rms_norm_eps=None,
                  num_experts=1, attn_layer_period=None, attn_layer_offset=None)
    ours, tied = hf_jamba.config_from_hf(HFConfig(config, "x"))
    assert ours["pattern"] == "MMM" and ours["moe"] is None and tied is False  # attention at 4 of 8: none of 3
    assert ours["mixers"]["M"]["dt_rank"] == 3 and ours["mixers"]["M"]["bcdt_rms"] == ours["norm_eps"] == 1e-6


REFUSED = {
    "hidden_act": (lambda c: c.update(hidden_act="gelu"), r"'hidden_act' = 'gelu' is not supported"),
    "mamba_proj_bias": (lambda c: c.update(mamba_proj_bias=True), r"'mamba_proj_bias' = True is not supported"),
    "head_dim": (lambda c: c.update(head_dim=16), r"'head_dim' = 16 is not supported.*= 8"),
    "attn_layer_offset": (lambda c: c.update(attn_layer_offset=3), r"'attn_layer_offset' = 3 is not supported.*"
                                                                   r"below attn_layer_period = 3"),
    "num_experts_per_tok": (lambda c: c.update(num_experts_per_tok=5), r"'num_experts_per_tok' = 5 .*at most "
                                                                       r"num_experts = 4"),
    "architectures": (lambda c: c.update(architectures=["JambaForSequenceClassification"]),
                      r"architectures \['JambaForSequenceClassification'\] is not supported"),
}


test_unsupported_configs_are_refused_by_name = refusal_test(REFUSED, "jamba")


def exported(model, tmp_path, npb, rng):
    """transformers' JambaForCausalLM of `model` (a CharLM) written by --to-hf, checked to give hybridref's
    logits. Weights are first moved off the init (0.02-scale matrices, unit norms: logits near uniform)."""
    from hybridref.checkpoint import save_checkpoint
    for name, p in model.named_params():
        if "A_log" not in name:
            p.data[...] = p.data + rng.normal(0.0, 0.3, p.data.shape) if p.data.ndim == 1 else p.data * 10
    save_checkpoint(str(tmp_path / "m.safetensors"), model)
    assert to_hf(str(tmp_path / "m.safetensors"), str(tmp_path / "m"))["architecture"] == "JambaForCausalLM"
    # the eager experts: torch's grouped GEMM, transformers' default on CPU, refuses rows of 42 floats (168 bytes)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m", experts_implementation="eager").eval()
    ids = ids_of(rng, V, (2, T))
    want = hf_logits(theirs, ids, torch)
    assert want.std(axis=-1).mean() > 1.0  # far from uniform
    assert rel_err(model.to(npb).forward(ids), want) < 1e-4
    return theirs


def test_zoo_preset_exports(tmp_path, npb, rng):
    """The zoo's jamba preset ("MMMMAMMM", MoE on odd layers, dt/B/C norms at the model's eps) is a
    JambaForCausalLM: transformers' logits of the exported folder are hybridref's own. The samba preset
    (RoPE, a window, MLP biases) is refused with Jamba's reason."""
    from hybridref.checkpoint import save_checkpoint
    from hybridref.models.char_lm import CharLM
    config = exported(CharLM.preset("jamba", V, seed=3), tmp_path, npb, rng).config
    assert (config.attn_layer_period, config.attn_layer_offset, config.num_experts) == (5, 4, 4)
    save_checkpoint(str(tmp_path / "s.safetensors"), CharLM.preset("samba", V))
    with pytest.raises(UserError, match=r"not JambaForCausalLM: its blocks are not all SwiGLU MLPs .* without biases"):
        to_hf(str(tmp_path / "s.safetensors"), str(tmp_path / "s"))


def test_stack_without_attention_is_not_exported(tmp_path):
    """Mamba blocks with SwiGLU MLPs and dt/B/C norms but no attention would be a Jamba config with its
    attention offset past the last layer, which transformers' JambaModel cannot run with its cache (its mask
    asks an attention layer for the sequence length): refused with that reason."""
    from hybridref.checkpoint import save_checkpoint
    from hybridref.models.char_lm import CharLM
    model = CharLM(V, d_model=32, pattern="MMM", mlp_kind="swiglu", mlp_bias=False, mlp_hidden=24, norm_eps=1e-5,
                   mixers={"M": dict(d_state=4, bcdt_rms=1e-5)})
    save_checkpoint(str(tmp_path / "m.safetensors"), model)
    with pytest.raises(UserError, match=r"not JambaForCausalLM: its pattern 'MMM' has no attention block"):
        to_hf(str(tmp_path / "m.safetensors"), str(tmp_path / "m"))
