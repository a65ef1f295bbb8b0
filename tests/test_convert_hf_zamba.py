"""ZambaForCausalLM in and out (hybridref/convert/hf_zamba.py): tiny random transformers Zamba models (multi-head
Mamba layers, hybrid layers sharing one attention + MLP block, the exact GELU), saved offline, converted, and
compared with transformers' forward and greedy generate (its hybrid cache); the C decoder's steps; the round
trip back; the configs refused by name; Zamba2 refused with what is missing.

Tolerance of the logits: 1e-4 relative (norm-wise), as tests/hf_check.py and for its reasons (float32 on both
sides, other orders of summation; the print of test_logits_match_transformers gives the measured errors). A
wrong mapping (the softmax scale's √2 left out, in_proj's interleaved rows read as [x; z], the tanh GELU for
the exact one) moves them by more (test_conversion_errors_are_seen).
"""
import re

import numpy as np
import pytest

from hf_check import (LOGITS_TOL, check_decoder_steps, check_round_trip, conversion_tests, edit_errors, ids_of,
                      randomize, refused)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hybridref.generate import load_model  # noqa: E402

V, D, T = 97, 32, 11

VARIANTS = {
    # "MXMXM": two Mamba heads, the shared block called twice, GQA (4 heads over 2D, 2 kv heads), tied, the exact
    # GELU; eps off its default, so that a converter reading the wrong entry fails
    "zamba": dict(num_hidden_layers=5, layers_block_type=["mamba", "hybrid", "mamba", "hybrid", "hybrid"],
                  n_mamba_heads=2, num_key_value_heads=2, rms_norm_eps=1e-3),
    # transformers' default layer types (attn_layer_period 2, offset 1: "MMXMXM"), one Mamba head, the tanh GELU,
    # untied, no conv bias, an explicit dt rank, four Mamba heads
    "zamba-default-types": dict(num_hidden_layers=6, attn_layer_period=2, attn_layer_offset=1, n_mamba_heads=4,
                                hidden_act="gelu_pytorch_tanh", tie_word_embeddings=False, mamba_conv_bias=False,
                                mamba_dt_rank=5),
    "zamba-one-head": dict(num_hidden_layers=3, layers_block_type=["hybrid", "mamba", "hybrid"], n_mamba_heads=1),
}


def zamba_model(**options):
    options = {**dict(num_key_value_heads=4), **options}
    config = transformers.ZambaConfig(vocab_size=V, hidden_size=D, intermediate_size=40, num_attention_heads=4,
                                      mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, **options)
    # A_log and dt_proj_bias keep their init (S4D-real A, softplus⁻¹ of a time step)
    model = randomize(transformers.ZambaForCausalLM(config), torch, lambda name, p: "A_log" in name
                      or "dt_proj_bias" in name)
    share_blocks(model)
    return model


(converted, test_logits_match_transformers, _,
 test_greedy_decoding_matches_generate) = conversion_tests("hf_zamba", VARIANTS, zamba_model, V, T, torch,
                                                          decoder_steps=False)


def share_blocks(model):
    """Untied embeddings leave transformers' hybrid layers with a shared_transf each (it ties them only with
    tie_word_embeddings): give them the first one's weights, which is what a Zamba is."""
    hybrid = [layer for layer in model.model.layers if hasattr(layer, "shared_transf")]
    with torch.no_grad():
        for layer in hybrid[1:]:
            layer.shared_transf.load_state_dict(hybrid[0].shared_transf.state_dict())


def test_layer_types(converted):
    """The hybrid layers are "X" (the shared block's call fused with the Mamba after it), the others "M"."""
    patterns = {name: load_model(ckpt, None, need_vocab=False)[0].config["pattern"]
                for name, (_, _, ckpt) in converted.items()}
    assert patterns == {"zamba": "MXMXX", "zamba-default-types": "MMXMXM", "zamba-one-head": "XMX"}


def test_decoder_steps_match_the_forward(converted, cb, rng):
    """The C decoder's logits after a prefill and at each step equal transformers' forward, two streams."""
    model, _, ckpt = converted["zamba"]
    check_decoder_steps(model, ckpt, cb, ids_of(rng, V, (2, T)), 4, torch)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_to_transformers(converted, variant, tmp_path, rng):
    """--to-hf writes a ZambaForCausalLM folder with the original's layer types, Mamba heads, GELU and logits."""
    model, _, ckpt = converted[variant]
    again = check_round_trip(model, ckpt, tmp_path / "back", ids_of(rng, V, (2, T)), transformers, torch)
    for entry in ("layers_block_type", "n_mamba_heads", "hidden_act", "rms_norm_eps"):
        assert getattr(again.config, entry) == getattr(model.config, entry), entry


def test_conversion_errors_are_seen(converted, npb, rng):
    """The tolerance tells a right conversion from a wrong one."""
    model, _, ckpt = converted["zamba"]

    def unscaled_q(m):  # Zamba's softmax scale 1/√(P/2) taken as 1/√P
        m.blocks[1].mixer.call.shared.attn.qkv.weight.data[:2 * D] /= np.sqrt(2)

    def in_proj_as_stored(m):  # transformers' interleaved [x₀, z₀, x₁, …] rows read as [x; z]
        w = m.blocks[0].mixer.in_proj.weight.data
        w[...] = np.concatenate([w[0::2], w[1::2]])

    def tanh_gelu(m):
        m.blocks[1].mixer.call.shared.mlp.act = "gelu"

    errors = edit_errors(model, ckpt, npb, ids_of(rng, V, (2, T)), (unscaled_q, in_proj_as_stored, tanh_gelu), torch)
    assert errors["as converted"] < LOGITS_TOL
    assert errors["unscaled_q"] > 1e-3 and errors["in_proj_as_stored"] > 1e-3, errors
    # the two GELUs differ by at most ~5e-4 (near |x| = 2), so less, but still past the tolerance (measured 2.1e-4)
    assert errors["tanh_gelu"] > LOGITS_TOL, errors


@pytest.mark.parametrize("entry, value, reason", [
    ("hidden_act", "relu", r"'hidden_act' = 'relu' is not supported .*exact \(gelu\) or tanh"),
    ("hidden_mamba_act", "gelu", r"'hidden_mamba_act' = 'gelu'"),
    ("mamba_proj_bias", True, r"'mamba_proj_bias' = True"),
    ("attention_head_dim", 8, r"'attention_head_dim' = 8 .*2 · hidden_size / num_attention_heads = 16"),
    ("attention_hidden_size", 32, r"'attention_hidden_size' = 32"),
    ("layers_block_type", ["hybrid"], r"'layers_block_type' = \['hybrid'\] .*5 entries"),
])
def test_unsupported_configs_are_refused(converted, tmp_path, entry, value, reason):
    _, folder, _ = converted["zamba"]
    message = refused(folder, tmp_path, lambda c: c.update({entry: value}))
    assert re.search(reason, message), message


def test_unshared_blocks_are_refused(converted, tmp_path):
    """Untied, a checkpoint whose hybrid layers hold different shared blocks is no Zamba: refused by name."""
    from safetensors.numpy import load_file, save_file
    _, folder, _ = converted["zamba-default-types"]
    weights = load_file(folder / "model.safetensors")
    weights["model.layers.4.shared_transf.pre_ff_layernorm.weight"] += 1
    bad = tmp_path / "unshared"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    message = refused(bad, tmp_path, lambda c: None)
    assert re.search(r"tensor 'model.layers.4.shared_transf.pre_ff_layernorm.weight' differs from the first hybrid "
                     r"layer's 'model.layers.2.shared_transf.pre_ff_layernorm.weight'", message), message


def test_zamba2_is_refused_with_what_is_missing(converted, tmp_path):
    _, folder, _ = converted["zamba"]
    message = refused(folder, tmp_path, lambda c: c.update(model_type="zamba2"))
    assert re.search(r"model_type 'zamba2' is not converted: Zamba2 has Mamba-2 layers.*num_mem_blocks alternating "
                     r"shared blocks.*LoRA per call", message), message
