"""Hugging Face checkpoints in and out (hybridref convert, hybridref/convert/): tiny random `transformers`
models (MambaForCausalLM, LlamaForCausalLM with odd sizes, tied and untied), saved offline, converted,
and compared with transformers' own forward and greedy generate; the round trip back to transformers;
shards and bfloat16 weights; configs the conversion refuses, by the entry's name.

Tolerance of the logits: 1e-4 relative (norm-wise). Both sides compute in float32 from the same
float32 weights, in different orders (hybridref's GEMM and scan kernels against torch's, exp from
csrc/vmath.h against libm, RoPE angles in float64 against float32); through 3 blocks the differences
measured are ~1e-6 (the print of test_logits_match_transformers), so 1e-4 leaves room for other
CPUs while an error of the conversion (a swapped q/k row order, a wrong epsilon or RoPE base, an
untied head) moves the logits by far more (test_conversion_errors_are_seen).
"""
import json
import math
import os
import re
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import rel_err

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hybridref.cli import main  # noqa: E402
from hybridref.convert import from_hf, to_hf  # noqa: E402
from hybridref.errors import UserError  # noqa: E402
from hybridref.generate import load_model, stream_ids  # noqa: E402

V, D, LAYERS, T = 97, 48, 3, 11

VARIANTS = {
    # eps and RoPE base off their defaults, so that a converter reading the wrong entry fails
    "mamba": ("mamba", dict(tie_word_embeddings=False, layer_norm_epsilon=1e-3)),
    "mamba-tied-noconvbias": ("mamba", dict(tie_word_embeddings=True, use_conv_bias=False, time_step_rank=5)),
    "llama": ("llama", dict(tie_word_embeddings=False, rope_theta=500.0, rms_norm_eps=1e-3)),
    "llama-tied-mlpbias": ("llama", dict(tie_word_embeddings=True, mlp_bias=True, num_key_value_heads=3)),
}


def hf_model(kind, **options):
    """A random transformers model of odd sizes, weights drawn at the scale 1/√fan_in so that the logits
    are far from uniform (transformers' init of 0.02 would make greedy decoding a matter of ties)."""
    torch.manual_seed(0)
    if kind == "mamba":
        config = transformers.MambaConfig(vocab_size=V, hidden_size=D, state_size=8, num_hidden_layers=LAYERS,
                                          conv_kernel=4, expand=2, **options)
        model = transformers.MambaForCausalLM(config)
    else:
        theta, kv_heads = options.pop("rope_theta", 10000.0), options.pop("num_key_value_heads", 2)
        config = transformers.LlamaConfig(vocab_size=V, hidden_size=D, intermediate_size=80, num_hidden_layers=LAYERS,
                                          num_attention_heads=6, num_key_value_heads=kv_heads,
                                          rope_parameters=dict(rope_type="default", rope_theta=theta), **options)
        model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "A_log" not in name:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[-1]))
            elif name.endswith("norm.weight") or "layernorm" in name or name.endswith("norm_f.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias") and "dt_proj" not in name:
                p.normal_(0.0, 0.1)
    model.generation_config.eos_token_id = None  # generate the full count, as hybridref does
    model.generation_config.pad_token_id = 0
    return model.eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{variant: (transformers model, its folder, the converted checkpoint)}"""
    root, out = tmp_path_factory.mktemp("hf"), {}
    for name, (kind, options) in VARIANTS.items():
        model = hf_model(kind, **dict(options))
        folder = root / name
        model.save_pretrained(folder)
        ckpt = str(root / f"{name}.safetensors")
        from_hf(str(folder), ckpt)
        out[name] = model, folder, ckpt
    return out


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.numpy()


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_match_transformers(converted, variant, npb, cb, rng):
    model, _, ckpt = converted[variant]
    ids = rng.integers(0, V, (2, T))
    want = hf_logits(model, ids)
    for be in (npb, cb):
        ours, _ = load_model(ckpt, be, need_vocab=False)
        err = rel_err(ours.forward(ids), want)
        print(variant, be.name, f"{err:.1e}")
        assert err < 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_decoding_matches_generate(converted, variant, cb, rng):
    """hybridref's C decoder (prefill + one C step per token) picks the tokens transformers' generate
    picks greedily, with its own cache (Mamba's conv/SSM state, Llama's KV cache)."""
    model, _, ckpt = converted[variant]
    prompt = rng.integers(0, V, 5)
    with torch.no_grad():
        want = model.generate(torch.from_numpy(prompt[None]), do_sample=False, max_new_tokens=16)[0, 5:].tolist()
    ours, _ = load_model(ckpt, cb, need_vocab=False)
    assert list(stream_ids(ours, prompt, 16, temperature=0)) == want


def test_generate_command_prints_token_ids(converted):
    model, _, ckpt = converted["llama"]
    with torch.no_grad():
        want = model.generate(torch.tensor([[1, 2, 3]]), do_sample=False, max_new_tokens=6)[0].tolist()
    out = CliRunner().invoke(main, ["generate", "--checkpoint", ckpt, "--prompt-ids", "1,2,3", "--max-new-tokens",
                                    "6", "--temperature", "0", "--backend", "c"])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == ",".join(map(str, want))
    bad = CliRunner().invoke(main, ["generate", "--checkpoint", ckpt, "--prompt-ids", "1,97"])
    assert bad.exit_code == 1 and "[97] are not token ids of this model (0 to 96)" in bad.output


def test_generate_stops_after_a_stop_id(converted):
    """--stop-id ends the output after the first such token, as transformers' eos_token_id does (checked on
    the greedy continuation's 4th token, first seen there); an id beyond the vocabulary is refused."""
    model, _, ckpt = converted["llama"]
    with torch.no_grad():
        full = model.generate(torch.tensor([[1, 2, 3]]), do_sample=False, max_new_tokens=12)[0, 3:].tolist()
    stop = next(t for i, t in enumerate(full) if i >= 3 and t not in full[:i])
    with torch.no_grad():
        want = model.generate(torch.tensor([[1, 2, 3]]), do_sample=False, max_new_tokens=12,
                              eos_token_id=stop, pad_token_id=0)[0].tolist()
    args = ["generate", "--checkpoint", ckpt, "--prompt-ids", "1,2,3", "--max-new-tokens", "12", "--temperature",
            "0", "--backend", "c"]
    out = CliRunner().invoke(main, args + ["--stop-id", str(stop)])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == ",".join(map(str, want)) and want[-1] == stop and len(want) < 15
    bad = CliRunner().invoke(main, args + ["--stop-id", "97"])
    assert bad.exit_code == 1 and "stop ids [97] are not token ids of this model (0 to 96)" in bad.output


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_to_transformers(converted, variant, tmp_path, rng):
    """--to-hf writes a folder transformers loads, whose logits are the original model's (the same float32
    weights through the same code: equal to rounding), and tie_word_embeddings is kept."""
    model, _, ckpt = converted[variant]
    out = CliRunner().invoke(main, ["convert", "--checkpoint", ckpt, "--to-hf", str(tmp_path / "back")])
    assert out.exit_code == 0, out.output
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert type(again) is type(model)
    assert again.config.tie_word_embeddings == model.config.tie_word_embeddings
    ids = rng.integers(0, V, (2, T))
    assert rel_err(hf_logits(again, ids), hf_logits(model, ids)) < 1e-6


def test_shards_and_bfloat16(tmp_path, npb, rng):
    """A sharded checkpoint (model.safetensors.index.json) and bfloat16 weights: the weights converted are
    the bfloat16 values exactly (widened to float32), and the logits those of transformers in float32."""
    model = hf_model("llama", tie_word_embeddings=False)
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16", max_shard_size="40KB")
    assert os.path.exists(tmp_path / "bf16" / "model.safetensors.index.json")
    from_hf(str(tmp_path / "bf16"), str(tmp_path / "m.safetensors"))
    ours, _ = load_model(str(tmp_path / "m.safetensors"), npb, need_vocab=False)
    # loaded afresh: model.to(float32) would keep the RoPE frequencies rounded to bfloat16 by .to(bfloat16)
    model = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "bf16", dtype=torch.float32).eval()
    want_q = model.model.layers[1].self_attn.q_proj.weight.detach().numpy()
    assert np.array_equal(ours.blocks[1].mixer.qkv.weight.data[:D], want_q)
    ids = rng.integers(0, V, (1, T))
    assert rel_err(ours.forward(ids), hf_logits(model, ids)) < 1e-4


def test_conversion_errors_are_seen(converted, npb, rng, tmp_path):
    """The tolerance above tells a right conversion from a wrong one: swapping two query rows within a
    head's halves (the permutation an interleaved RoPE would need) or changing the RoPE base moves the
    logits by far more than 1e-4."""
    model, folder, ckpt = converted["llama"]
    ids = rng.integers(0, V, (1, T))
    want = hf_logits(model, ids)
    ours, _ = load_model(ckpt, npb, need_vocab=False)
    q = ours.blocks[0].mixer.qkv.weight.data
    P = D // 6
    perm = np.concatenate([np.arange(0, P, 2), np.arange(1, P, 2)])  # interleaved pairs -> halves
    q[:P] = q[:P][perm]
    assert rel_err(ours.forward(ids), want) > 1e-2
    ours, _ = load_model(ckpt, npb, need_vocab=False)
    ours.blocks[0].mixer.rope_base = 10000.0
    assert rel_err(ours.forward(ids), want) > 1e-3


def _edited(folder, tmp_path, edit=None, tensors=None):
    """A copy of a saved checkpoint folder with config.json edited (edit(dict)) and/or the weights
    replaced (tensors(dict) -> dict)."""
    from safetensors.numpy import load_file, save_file
    dst = tmp_path / "edited"
    dst.mkdir(exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    if edit:
        edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    weights = load_file(folder / "model.safetensors")
    save_file(tensors(weights) if tensors else weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


REFUSED = {
    "rope_scaling": ("llama", lambda c: c.update(rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                  "rope_theta": 1e4}),
                     r"'rope_parameters' = .*'linear'.*rope type 'linear' is not implemented"),
    "old rope_scaling": ("llama", lambda c: (c.pop("rope_parameters"), c.update(rope_scaling={"type": "dynamic"})),
                         r"'rope_scaling' = .*rope type 'dynamic' is not implemented"),
    "attention_bias": ("llama", lambda c: c.update(attention_bias=True), r"'attention_bias' = True is not supported"),
    "head_dim": ("llama", lambda c: c.update(head_dim=16), r"'head_dim' = 16 is not supported.*= 8"),
    "hidden_act": ("llama", lambda c: c.update(hidden_act="gelu"), r"'hidden_act' = 'gelu' is not supported"),
    "use_bias": ("mamba", lambda c: c.update(use_bias=True), r"'use_bias' = True is not supported"),
    "model_type": ("llama", lambda c: c.update(model_type="gpt2", architectures=["GPT2LMHeadModel"]),
                   r"model_type 'gpt2' \(architectures \['GPT2LMHeadModel'\]\) is not supported: hybridref converts "
                   r"MambaForCausalLM .*LlamaForCausalLM"),
    "architectures": ("llama", lambda c: c.update(architectures=["LlamaForSequenceClassification"]),
                      r"architectures \['LlamaForSequenceClassification'\] is not supported"),
    "a size": ("mamba", lambda c: c.update(state_size=2.5), r"'state_size' is 2.5, not a whole number"),
    "no size": ("llama", lambda c: c.pop("hidden_size"), r"config.json has no 'hidden_size'"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_unsupported_configs_are_refused_by_name(converted, case, tmp_path):
    variant, edit, message = REFUSED[case]
    folder = _edited(converted[variant][1], tmp_path, edit)
    out = CliRunner().invoke(main, ["convert", "--from-hf", str(folder), "--out", str(tmp_path / "x.safetensors")])
    assert out.exit_code == 1, out.output
    assert out.output.startswith("Error: ") and len(out.output.strip().splitlines()) == 1
    assert re.search(message, out.output), out.output
    assert not os.path.exists(tmp_path / "x.safetensors")


def test_weights_that_do_not_fit_are_refused(converted, tmp_path):
    folder = converted["mamba"][1]
    name = "backbone.layers.1.mixer.x_proj.weight"
    extra = _edited(folder, tmp_path, tensors=lambda w: {**w, "backbone.layers.0.mixer.in_proj.bias": w[name][:, 0]})
    with pytest.raises(UserError, match=r"tensors \['backbone.layers.0.mixer.in_proj.bias'\] have no place"):
        from_hf(str(extra), str(tmp_path / "x.safetensors"))
    missing = _edited(folder, tmp_path, tensors=lambda w: {k: v for k, v in w.items() if k != name})
    with pytest.raises(UserError, match=rf"no tensor '{name}'"):
        from_hf(str(missing), str(tmp_path / "x.safetensors"))
    shape = _edited(folder, tmp_path, tensors=lambda w: {**w, name: w[name][1:]})
    with pytest.raises(UserError, match=rf"tensor '{name}' has shape \(18, 96\), but config.json implies \(19, 96\)"):
        from_hf(str(shape), str(tmp_path / "x.safetensors"))
    (tmp_path / "pickle").mkdir()
    (tmp_path / "pickle" / "config.json").write_text((folder / "config.json").read_text())
    (tmp_path / "pickle" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(UserError, match=r"pytorch_model.bin is a pickle"):
        from_hf(str(tmp_path / "pickle"), str(tmp_path / "x.safetensors"))


def test_hybrid_models_are_not_exported(tmp_path):
    from hybridref.checkpoint import save_checkpoint
    from hybridref.models.char_lm import CharLM
    save_checkpoint(str(tmp_path / "h.safetensors"), CharLM(V, d_model=16, pattern="MA", n_heads=2, d_state=4))
    with pytest.raises(UserError, match=r"none of the architectures .* not MambaForCausalLM: its pattern 'MA' is not "
                                        r"Mamba blocks only; .*not LlamaForCausalLM: its pattern 'MA'"):
        to_hf(str(tmp_path / "h.safetensors"), str(tmp_path / "out"))


def test_text_prompt_through_the_tokenizer(converted, tmp_path, monkeypatch):
    """convert copies tokenizer.json beside the checkpoint; generate --prompt then encodes the text and
    prints the decoded continuation, which is the decoding of the ids --prompt-ids gives."""
    tokenizers = pytest.importorskip("tokenizers")
    model, folder, _ = converted["mamba"]
    words = {f"w{i}": i for i in range(V)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(words, unk_token="w0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.decoder = tokenizers.decoders.WordPiece()  # joins the words with spaces
    src = tmp_path / "src"
    model.save_pretrained(src)
    tok.save(str(src / "tokenizer.json"))
    ckpt = str(tmp_path / "m.safetensors")
    out = CliRunner().invoke(main, ["convert", "--from-hf", str(src), "--out", ckpt])
    assert out.exit_code == 0 and os.path.exists(tmp_path / "m.tokenizer.json"), out.output
    args = ["generate", "--checkpoint", ckpt, "--max-new-tokens", "5", "--temperature", "0"]
    ids = CliRunner().invoke(main, args + ["--prompt-ids", "4,7"]).output.strip().split(",")
    text = CliRunner().invoke(main, args + ["--prompt", "w4 w7"])
    assert text.exit_code == 0, text.output
    assert text.output.strip() == "w4 w7 " + " ".join(f"w{i}" for i in ids[2:])
    back = CliRunner().invoke(main, ["convert", "--checkpoint", ckpt, "--to-hf", str(tmp_path / "back")])
    assert back.exit_code == 0 and (tmp_path / "back" / "tokenizer.json").read_bytes() == \
        (src / "tokenizer.json").read_bytes()
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if the package were not installed
    missing = CliRunner().invoke(main, args + ["--prompt", "w4"])
    assert missing.exit_code == 1 and "needs the optional `tokenizers` package" in missing.output
    os.unlink(tmp_path / "m.tokenizer.json")
    none = CliRunner().invoke(main, args + ["--prompt", "w4"])
    assert none.exit_code == 1 and "no tokenizer beside it" in none.output and "--prompt-ids" in none.output


def test_null_entries_take_transformers_defaults():
    """transformers writes null for "the default" (num_key_value_heads: the heads; head_dim: D / heads)."""
    from hybridref.convert import hf_llama
    from hybridref.convert.hf_config import HFConfig
    config = dict(model_type="llama", vocab_size=V, hidden_size=D, intermediate_size=80, num_hidden_layers=2,
                  num_attention_heads=6, num_key_value_heads=None, head_dim=None, rms_norm_eps=None, rope_theta=None)
    ours, tied = hf_llama.config_from_hf(HFConfig(config, "x"))
    assert ours["mixers"]["A"] == dict(n_heads=6, n_kv_heads=6, window=None, rope_base=10000.0)
    assert ours["norm_eps"] == 1e-6 and tied is False
