"""hybridref convert for FalconH1ForCausalLM (hybridref/convert/hf_falcon_h1.py): tiny random transformers
models (3 layers; attention of 4 query / 2 key-value heads with RoPE beside a Mamba-2 branch of 8 heads in
2 groups with chunk_size 4; SwiGLU MLPs) with every μP multiplier away from 1: untied, tied with different
embedding and lm_head multipliers (converted untied) and with equal ones, with and without the gated
RMSNorm (mamba_rms_norm), conv and MLP biases, and with a head_dim and a mamba_d_ssm of their own. Logits on the NumPy and C backends, the C decoder's logits
at every step and its greedy tokens equal to transformers' (tolerance: tests/hf_check.py); the round trip
back (every multiplier 1); the configs refused by name."""
import json
import re
import shutil

import pytest

from click.testing import CliRunner
from hf_check import (LOGITS_TOL, conversion_tests, hf_logits, ids_of, randomize, refusal_test)
from helpers import rel_err

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hybridref.cli import main  # noqa: E402
from hybridref.convert import from_hf  # noqa: E402
from hybridref.generate import load_model  # noqa: E402

V, D, T = 97, 48, 11

MULTIPLIERS = dict(embedding_multiplier=1.7, lm_head_multiplier=0.6, attention_in_multiplier=1.3, key_multiplier=0.8,
                   attention_out_multiplier=0.9, ssm_in_multiplier=1.2, ssm_out_multiplier=0.7,
                   ssm_multipliers=[0.9, 1.1, 0.8, 1.25, 1.5], mlp_multipliers=[1.4, 0.75])

VARIANTS = {
    "untied": dict(tie_word_embeddings=False, rms_norm_eps=1e-3,
                   rope_parameters=dict(rope_type="default", rope_theta=500.0), **MULTIPLIERS),
    "tied-gate-norm-biases": dict(tie_word_embeddings=True, mamba_rms_norm=True, mamba_norm_before_gate=False,
                                  mamba_conv_bias=False, mlp_bias=True, **MULTIPLIERS),
    "tied-same-multipliers": dict(tie_word_embeddings=True, **{**MULTIPLIERS, "lm_head_multiplier": 1.7}),
    # as Falcon-H1's checkpoints: heads not hidden_size / heads wide, mamba_d_ssm not mamba_expand · hidden_size
    "head-dim-d-ssm": dict(head_dim=16, mamba_d_ssm=72, mamba_n_heads=6, **MULTIPLIERS),
}


def hf_model(**options):
    sizes = dict(num_attention_heads=4, num_key_value_heads=2, mamba_d_ssm=2 * D, mamba_n_heads=8, mamba_n_groups=2,
                 mamba_d_state=6, mamba_d_conv=3, mamba_expand=2, mamba_chunk_size=4)
    config = transformers.FalconH1Config(vocab_size=V, hidden_size=D, intermediate_size=80, num_hidden_layers=3,
                                         **{**sizes, **options})
    return randomize(transformers.FalconH1ForCausalLM(config), torch)


(converted, test_logits_match_transformers, test_decoder_steps_match_transformers,
 test_greedy_decoding_matches_generate) = conversion_tests("hf_falcon_h1", VARIANTS, hf_model, V, T, torch)


# The round trip's logits against the original's: the export is the folded weights with every multiplier 1,
# each folded weight rounded once to float32 (2^-24 relative) where transformers scales activations, so not
# hf_check's 1e-6 of exact copies; measured 0.9-1.7e-6.
ROUND_TRIP_TOL = 1e-5


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_to_transformers(converted, variant, tmp_path, rng):
    """Back to transformers with every multiplier 1 (the weights carry them), tied exactly when the converted
    head is the embedding (tied embeddings with different multipliers come back untied); converting that
    folder again gives the same checkpoint, bit for bit."""
    model, _, ckpt = converted[variant]
    out = CliRunner().invoke(main, ["convert", "--checkpoint", ckpt, "--to-hf", str(tmp_path / "back")])
    assert out.exit_code == 0, out.output
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert type(again) is type(model)
    assert again.config.tie_word_embeddings == (variant == "tied-same-multipliers")
    assert (again.config.head_dim, again.config.mamba_d_ssm) == (getattr(model.config, "head_dim", D // 4),
                                                                 model.config.mamba_d_ssm)
    assert again.config.key_multiplier == 1.0 and again.config.ssm_multipliers == [1.0] * 5
    ids = ids_of(rng, V, (2, T))
    assert rel_err(hf_logits(again, ids, torch), hf_logits(model, ids, torch)) < ROUND_TRIP_TOL
    from_hf(str(tmp_path / "back"), str(tmp_path / "again.safetensors"))
    first, second = (load_model(path, None, need_vocab=False)[0].state_dict() for path in
                     (ckpt, str(tmp_path / "again.safetensors")))
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)


def test_tied_with_different_multipliers_is_untied(converted):
    ours, _ = load_model(converted["tied-gate-norm-biases"][2], None, need_vocab=False)
    assert rel_err(ours.head.weight.data, ours.embed.weight.data * (0.6 / 1.7)) < 1e-6
    same, _ = load_model(converted["tied-same-multipliers"][2], None, need_vocab=False)
    assert (same.head.weight.data == same.embed.weight.data).all()


def test_multipliers_matter(converted, npb, rng, tmp_path):
    """The same weights converted with the multipliers left out of config.json give logits far from
    transformers': the folds are what makes them equal."""
    model, folder, _ = converted["untied"]
    shutil.copytree(folder, tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    for name in MULTIPLIERS:
        config.pop(name)
    (tmp_path / "plain" / "config.json").write_text(json.dumps(config))
    from_hf(str(tmp_path / "plain"), str(tmp_path / "plain.safetensors"))
    ours, _ = load_model(str(tmp_path / "plain.safetensors"), npb, need_vocab=False)
    ids = ids_of(rng, V, (1, T))
    assert rel_err(ours.forward(ids), hf_logits(model, ids, torch)) > 100 * LOGITS_TOL


REFUSED = {
    "attention_bias": (lambda c: c.update(attention_bias=True), r"'attention_bias' = True is not supported"),
    "mamba_proj_bias": (lambda c: c.update(mamba_proj_bias=True), r"'mamba_proj_bias' = True is not supported"),
    "projectors_bias": (lambda c: c.update(projectors_bias=True), r"'projectors_bias' = True is not supported"),
    "norm before gate": (lambda c: c.update(mamba_rms_norm=True, mamba_norm_before_gate=True),
                         r"'mamba_norm_before_gate' = True is not supported"),
    "mamba_d_ssm": (lambda c: c.update(mamba_d_ssm=100), r"'mamba_n_heads' = 8 is not supported .*Mamba-2 width 100"),
    "hidden_act": (lambda c: c.update(hidden_act="gelu"), r"'hidden_act' = 'gelu' is not supported"),
    "time_step_limit": (lambda c: c.update(time_step_limit=[0.0, 0.1]), r"'time_step_limit' = \[0.0, 0.1\]"),
    "ssm_multipliers": (lambda c: c.update(ssm_multipliers=[1.0, 1.0]), r"'ssm_multipliers' = \[1.0, 1.0\] is not"),
    "key_multiplier": (lambda c: c.update(key_multiplier=0), r"'key_multiplier' is 0, not a positive number"),
    "rope type": (lambda c: c["rope_parameters"].update(rope_type="yarn", factor=2.0),
                  r"rope type 'yarn' is not implemented"),
}


test_unsupported_configs_are_refused_by_name = refusal_test(REFUSED, "untied")


def test_other_architectures_refuse_the_wider_options(tmp_path):
    """The attention option head_dim and the Mamba-2 option d_inner (which Falcon-H1's conversion sets) are
    refused by the exports that write neither: Llama's and Mamba-2's."""
    from hybridref.checkpoint import save_checkpoint
    from hybridref.convert import to_hf
    from hybridref.errors import UserError
    from hybridref.models.char_lm import CharLM
    cases = {"A": (dict(n_heads=2, head_dim=4), "its attention heads are 4 wide, not d_model / n_heads = 8"),
             "S": (dict(d_state=4, headdim=4, d_inner=20), "its Mamba-2 mixers' d_inner is not expand · d_model")}
    for letter, (options, message) in cases.items():
        path = str(tmp_path / f"{letter}.safetensors")
        save_checkpoint(path, CharLM(V, d_model=16, pattern=letter * 2, mixers={letter: options},
                                     mlp_kind="swiglu", mlp_hidden=0 if letter == "S" else 24))
        with pytest.raises(UserError, match=re.escape(message)):
            to_hf(path, str(tmp_path / letter))
