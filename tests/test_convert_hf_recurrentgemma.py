"""hybridref convert for RecurrentGemmaForCausalLM (hybridref/convert/hf_recurrentgemma.py): tiny random
transformers models (Griffin's pattern recurrent, recurrent, attention cycled over 4 layers, multi-query
attention with a window of 5 keys passed within the 11-token test sequences and the 21-token decoding,
lru_width unlike hidden_size, a soft cap close to the logits' size so that the cap matters), tied and
untied; logits on the NumPy and C backends, the C decoder's logits at every step and its greedy tokens
equal to transformers' (tolerance: tests/hf_check.py); the round trip back; the configs refused by name."""
import pytest

from hf_check import (LOGITS_TOL, check_round_trip, conversion_tests, hf_logits, ids_of, randomize, refusal_test)
from helpers import rel_err

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hybridref.convert.hf_recurrentgemma import embed_scale  # noqa: E402
from hybridref.generate import load_model  # noqa: E402

V, D, T = 97, 48, 11

VARIANTS = {
    "tied": dict(tie_word_embeddings=True, num_key_value_heads=1, logits_soft_cap=5.0, rms_norm_eps=1e-3),
    "untied-gqa": dict(tie_word_embeddings=False, num_key_value_heads=2, logits_soft_cap=30.0,
                       block_types=["attention", "recurrent"]),
}


def hf_model(**options):
    config = transformers.RecurrentGemmaConfig(vocab_size=V, hidden_size=D, intermediate_size=72, num_hidden_layers=4,
                                               num_attention_heads=4, lru_width=40, attention_window_size=5,
                                               conv1d_width=3, **options)
    model = transformers.RecurrentGemmaForCausalLM(config)
    # Λ keeps transformers' init (decays in [0.9, 0.999]): drawn as the other 1-d weights, it forgets at once
    return randomize(model, torch, special=lambda name, p: "recurrent_param" in name)


(converted, test_logits_match_transformers, test_decoder_steps_match_transformers,
 test_greedy_decoding_matches_generate) = conversion_tests("hf_recurrentgemma", VARIANTS, hf_model, V, T, torch)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_to_transformers(converted, variant, tmp_path, rng):
    model, _, ckpt = converted[variant]
    check_round_trip(model, ckpt, tmp_path / "back", ids_of(rng, V, (2, T)), transformers, torch)


def test_embedding_scale_is_transformers_bfloat16():
    """transformers scales the embeddings by √D held as a bfloat16; embed_scale rounds alike."""
    for d in list(range(1, 3000)) + [2560, 4096, 12288]:
        assert embed_scale(d) == torch.tensor(d ** 0.5, dtype=torch.bfloat16).float().item(), d


def test_each_deviation_matters(converted, npb, rng):
    """Each thing the conversion maps (the embedding scale, Gemma's 1 + w, the gates' transposes, the
    window, the partial rotary, the soft cap) moves the logits by more than the tolerance when undone."""
    model, _, ckpt = converted["tied"]
    ids = ids_of(rng, V, (1, T))
    want = hf_logits(model, ids, torch)
    edits = {
        "embed scale": lambda m: m.embed.weight.data.__imul__(1 / embed_scale(D)),
        "norm 1 + w": lambda m: m.blocks[0].norm1.weight.data.__isub__(1),
        "gate transpose": lambda m: m.blocks[0].mixer.input_gate.weight.data.__setitem__(
            slice(None), m.blocks[0].mixer.input_gate.weight.data.transpose(0, 2, 1).copy()),
        "window": lambda m: setattr(m.blocks[2].mixer, "window", 5),
        "partial rotary": lambda m: setattr(m.blocks[2].mixer, "rope_dims", D // 4),
        "soft cap": lambda m: setattr(m.head, "cap", 1e9),
    }
    for name, edit in edits.items():
        ours, _ = load_model(ckpt, npb, need_vocab=False)
        assert rel_err(ours.forward(ids), want) < LOGITS_TOL
        edit(ours)
        assert rel_err(ours.forward(ids), want) > 10 * LOGITS_TOL, name


REFUSED = {
    "attention_bias": (lambda c: c.update(attention_bias=True), r"'attention_bias' = True is not supported"),
    "hidden_activation": (lambda c: c.update(hidden_activation="gelu"),
                          r"'hidden_activation' = 'gelu' is not supported .*tanh approximation"),
    "rope type": (lambda c: c["rope_parameters"].update(rope_type="linear", factor=2.0),
                  r"'rope_parameters' = .*rope type 'linear' is not implemented"),
    "partial rotary": (lambda c: c["rope_parameters"].update(partial_rotary_factor=0.25),
                       r"'rope_parameters' = .*int\(head_dim 12 · factor\) is an even count"),
    "block_types": (lambda c: c.update(block_types=["recurrent", "mlp"]),
                    r"'block_types' = .*'mlp'.* is not supported"),
    "intermediate_size": (lambda c: c.update(intermediate_size=73), r"'intermediate_size' = 73 is not supported"),
    "heads": (lambda c: c.update(num_attention_heads=5), r"'num_attention_heads' = 5 is not supported"),
    "head_dim": (lambda c: c.update(head_dim=16), r"'head_dim' = 16 is not supported"),
    "lru_width": (lambda c: c.update(lru_width=42),
                  r"'lru_width' = 42 is not supported .*multiple of num_attention_heads 4"),
}


test_unsupported_configs_are_refused_by_name = refusal_test(REFUSED, "tied")
