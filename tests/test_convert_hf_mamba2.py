"""hybridref convert for Mamba2ForCausalLM (hybridref/convert/hf_mamba2.py): tiny random transformers
models (n_groups 2 of 4 heads each, odd width, chunk_size 4 so that transformers' own chunked scan
crosses chunk boundaries), tied and untied, with and without conv biases, an epsilon off its default;
logits on the NumPy and C backends, the C decoder's logits at every step and its greedy tokens equal to
transformers' own (tolerance: tests/hf_check.py); the round trip back; the configs refused by name."""
import pytest

from hf_check import (check_round_trip, conversion_tests, ids_of, randomize, refusal_test)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hybridref.generate import load_model  # noqa: E402

V, D, LAYERS, T = 97, 40, 3, 11

VARIANTS = {
    "untied": dict(tie_word_embeddings=False, layer_norm_epsilon=1e-3),
    "tied-noconvbias": dict(tie_word_embeddings=True, use_conv_bias=False),
}


def hf_model(**options):
    config = transformers.Mamba2Config(vocab_size=V, hidden_size=D, num_hidden_layers=LAYERS, expand=2, num_heads=8,
                                       head_dim=10, n_groups=2, state_size=6, conv_kernel=4, chunk_size=4, **options)
    return randomize(transformers.Mamba2ForCausalLM(config), torch)


(converted, test_logits_match_transformers, test_decoder_steps_match_transformers,
 test_greedy_decoding_matches_generate) = conversion_tests("hf_mamba2", VARIANTS, hf_model, V, T, torch)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_to_transformers(converted, variant, tmp_path, rng):
    model, _, ckpt = converted[variant]
    check_round_trip(model, ckpt, tmp_path / "back", ids_of(rng, V, (2, T)), transformers, torch)


def test_the_gated_norm_epsilon_is_converted(converted, npb, rng):
    """The gated norm's epsilon is layer_norm_epsilon (1e-3 here): hybridref's default 1e-5 in its place
    moves the logits by more than the tolerance, so the test above would see it missing."""
    model, _, ckpt = converted["untied"]
    ours, _ = load_model(ckpt, npb, need_vocab=False)
    assert ours.blocks[0].mixer.norm.eps == 1e-3
    for block in ours.blocks:
        block.mixer.norm.eps = 1e-5
    ids = ids_of(rng, V, (1, T))
    with torch.no_grad():
        want = model(torch.from_numpy(ids)).logits.numpy()
    from helpers import rel_err
    assert rel_err(ours.forward(ids), want) > 1e-3


REFUSED = {
    "use_bias": (lambda c: c.update(use_bias=True), r"'use_bias' = True is not supported"),
    "hidden_act": (lambda c: c.update(hidden_act="gelu"), r"'hidden_act' = 'gelu' is not supported"),
    "time_step_limit": (lambda c: c.update(time_step_limit=[0.0, 0.1]),
                        r"'time_step_limit' = \[0.0, 0.1\] is not supported .*Δ is not clamped"),
    "num_heads": (lambda c: c.update(num_heads=4), r"'num_heads' = 4 is not supported .*= expand · hidden_size = 80"),
    "n_groups": (lambda c: c.update(n_groups=3), r"'n_groups' = 3 is not supported .*\(a divisor of num_heads 8\)"),
}


test_unsupported_configs_are_refused_by_name = refusal_test(REFUSED, "untied")


def test_default_time_step_limit_is_accepted_as_saved(converted, tmp_path):
    """transformers 5 writes time_step_limit (0, ∞) as [0.0, {"__float__": "Infinity"}], earlier versions
    as [0.0, Infinity]: both are the default and convert; a finite limit does not."""
    import json
    saved = json.loads((converted["untied"][1] / "config.json").read_text())["time_step_limit"]
    assert saved == [0.0, {"__float__": "Infinity"}]
    from hybridref.convert.hf_config import HFConfig
    from hybridref.convert.hf_mamba2 import check_dt_limit
    check_dt_limit(HFConfig(dict(time_step_limit=[0.0, float("inf")]), "x"))
    with pytest.raises(Exception, match="time_step_limit"):
        check_dt_limit(HFConfig(dict(time_step_limit=[0.0, {"__float__": "1e3"}]), "x"))
