"""hybridref convert for BambaForCausalLM (hybridref/convert/hf_bamba.py): tiny random transformers models
(Mamba-2 layers of 2 groups with chunk_size 4, attention at layers 1 and 3 with 4 query / 2 key-value
heads and RoPE on half of each head, SwiGLU MLPs), tied and untied, with and without conv and MLP
biases; logits on the NumPy and C backends, the C decoder's logits at every step and its greedy tokens
equal to transformers' (tolerance: tests/hf_check.py); the round trip back; the configs refused by name."""
import pytest

from hf_check import (LOGITS_TOL, check_round_trip, conversion_tests, hf_logits, ids_of, randomize, refusal_test)
from helpers import rel_err

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hybridref.generate import load_model  # noqa: E402

V, D, T = 97, 48, 11

VARIANTS = {
    "untied": dict(tie_word_embeddings=False, rms_norm_eps=1e-3, attn_layer_indices=[1, 3],
                   rope_parameters=dict(rope_type="default", rope_theta=500.0)),
    "tied-biases": dict(tie_word_embeddings=True, mamba_conv_bias=False, mlp_bias=True, attn_layer_indices=[2]),
}


def hf_model(**options):
    config = transformers.BambaConfig(vocab_size=V, hidden_size=D, intermediate_size=80, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=2, mamba_n_heads=8,
                                      mamba_n_groups=2, mamba_d_state=6, mamba_d_conv=3, mamba_expand=2,
                                      mamba_chunk_size=4, **options)
    return randomize(transformers.BambaForCausalLM(config), torch)


(converted, test_logits_match_transformers, test_decoder_steps_match_transformers,
 test_greedy_decoding_matches_generate) = conversion_tests("hf_bamba", VARIANTS, hf_model, V, T, torch)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_to_transformers(converted, variant, tmp_path, rng):
    model, _, ckpt = converted[variant]
    check_round_trip(model, ckpt, tmp_path / "back", ids_of(rng, V, (2, T)), transformers, torch)


def test_partial_rotary_matters(converted, npb, rng):
    """RoPE over the whole head in place of its first half moves the logits by far more than the tolerance."""
    model, _, ckpt = converted["untied"]
    ids = ids_of(rng, V, (1, T))
    ours, _ = load_model(ckpt, npb, need_vocab=False)
    ours.blocks[1].mixer.rope_dims = D // 4
    assert rel_err(ours.forward(ids), hf_logits(model, ids, torch)) > 10 * LOGITS_TOL


REFUSED = {
    "attention_bias": (lambda c: c.update(attention_bias=True), r"'attention_bias' = True is not supported"),
    "mamba_proj_bias": (lambda c: c.update(mamba_proj_bias=True), r"'mamba_proj_bias' = True is not supported"),
    "hidden_act": (lambda c: c.update(hidden_act="gelu"), r"'hidden_act' = 'gelu' is not supported"),
    "time_step_limit": (lambda c: c.update(time_step_limit=[0.0, 0.1]), r"'time_step_limit' = \[0.0, 0.1\]"),
    "attn_layer_indices": (lambda c: c.update(attn_layer_indices=[1, 4]),
                           r"'attn_layer_indices' = \[1, 4\] is not supported .*from 0 to 3"),
    "mamba_n_heads": (lambda c: c.update(mamba_n_heads=5, mamba_d_head=12), r"'mamba_n_heads' = 5 is not supported"),
    "mamba_n_groups": (lambda c: c.update(mamba_n_groups=3), r"'mamba_n_groups' = 3 is not supported"),
    "rope type": (lambda c: c["rope_parameters"].update(rope_type="yarn", factor=2.0),
                  r"rope type 'yarn' is not implemented"),
}


test_unsupported_configs_are_refused_by_name = refusal_test(REFUSED, "untied")
