"""Checks shared by the tests of `hybridref convert` per architecture (test_convert_hf_*.py): a random
transformers model at weights large enough that its logits are far from uniform, its logits and
greedy generate compared with a converted checkpoint's, and the round trip back to transformers.

Tolerance of the logits: 1e-4 relative (norm-wise), as tests/test_convert_hf.py: both sides compute
in float32 from the same float32 weights in different orders; the differences measured are ~1e-6.
"""
import math
import re

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import rel_err

from hybridref.cli import main
from hybridref.generate import load_model, stream_ids

LOGITS_TOL = 1e-4


def randomize(model, torch, special=None):
    """Weights of a transformers model drawn so that a conversion error shows: matrices N(0, 1/fan_in),
    1-d weights ("norm" in the name) U(0.5, 1.5), other 1-d tensors N(0, 0.1²); `special(name, p)`
    returning True has drawn p itself. EOS off so that generate gives the full count, as hybridref."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if special and special(name, p):
                continue
            if p.ndim >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[-1]))
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.1)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def convert_variants(root, variants, build):
    """{name: (transformers model, its folder, the converted checkpoint)}: build(**options) of each variant
    saved under `root` and converted with from_hf."""
    from hybridref.convert import from_hf
    out = {}
    for name, options in variants.items():
        model = build(**options)
        model.save_pretrained(root / name)
        ckpt = str(root / f"{name}.safetensors")
        from_hf(str(root / name), ckpt)
        out[name] = model, root / name, ckpt
    return out


def conversion_tests(tag, variants, build, vocab, T, torch, decoder_steps=True):
    """The checks every converter's test module runs on each of its variants, for the module to bind to
    these names (pytest collects them there):
        converted, test_logits_match_transformers, test_decoder_steps_match_transformers,
        test_greedy_decoding_matches_generate = conversion_tests(...)
    converted: the module's fixture, convert_variants of build under a folder named tag; then, per
    variant, logits on the NumPy backend and each C build against transformers' (ids (2, T)), the C
    decoder's logits after a prefill of 3 tokens and at each of 14 steps against transformers' forward
    over the whole sequence (None when decoder_steps is False: the module checks its steps its own way),
    and the C decoder's 16 greedy tokens against transformers' generate with its cache."""
    @pytest.fixture(scope="module", name="converted")
    def converted(tmp_path_factory):
        return convert_variants(tmp_path_factory.mktemp(tag), variants, build)

    each = pytest.mark.parametrize("variant", list(variants))

    @each
    def test_logits_match_transformers(converted, variant, npb, cb, rng):
        model, _, ckpt = converted[variant]
        print(variant, check_logits(model, ckpt, (npb, cb), ids_of(rng, vocab, (2, T)), torch))

    @each
    def test_decoder_steps_match_transformers(converted, variant, cb, rng):
        model, _, ckpt = converted[variant]
        check_decoder_steps(model, ckpt, cb, ids_of(rng, vocab, (2, 17)), 3, torch)

    @each
    def test_greedy_decoding_matches_generate(converted, variant, cb, rng):
        model, _, ckpt = converted[variant]
        check_greedy(model, ckpt, cb, ids_of(rng, vocab, 5), 16, torch)

    return (converted, test_logits_match_transformers, test_decoder_steps_match_transformers if decoder_steps else None,
            test_greedy_decoding_matches_generate)


def refusal_test(cases, variant):
    """The test that each of `cases` ({name: (edit of config.json, regex of the message)}) applied to the
    converted `variant`'s folder is refused with a message naming what is unsupported; for the module to
    bind as test_unsupported_configs_are_refused_by_name (its `converted` fixture is conversion_tests')."""
    @pytest.mark.parametrize("case", list(cases))
    def test_unsupported_configs_are_refused_by_name(converted, case, tmp_path):
        edit, message = cases[case]
        output = refused(converted[variant][1], tmp_path, edit)
        assert re.search(message, output), output

    return test_unsupported_configs_are_refused_by_name


def hf_logits(model, ids, torch):
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.numpy()


def check_logits(model, ckpt, backends, ids, torch):
    """The converted checkpoint's forward on every backend equals transformers' (LOGITS_TOL); -> errors."""
    want, errors = hf_logits(model, ids, torch), {}
    for be in backends:
        ours, _ = load_model(ckpt, be, need_vocab=False)
        errors[be.name] = rel_err(ours.forward(ids), want)
    assert max(errors.values()) < LOGITS_TOL, errors
    return errors


def edit_errors(model, ckpt, be, ids, edits, torch):
    """{name: the relative error of the converted checkpoint's logits against transformers'} with each of
    `edits` (functions of our model, a conversion mistake undone by hand) applied to a fresh load, and
    "as converted" with none: how far the tolerance sits from each mistake."""
    want, out = hf_logits(model, ids, torch), {}
    for name, edit in [("as converted", lambda m: None)] + [(e.__name__, e) for e in edits]:
        ours, _ = load_model(ckpt, be, need_vocab=False)
        edit(ours)
        out[name] = rel_err(ours.forward(ids), want)
    return out


def check_greedy(model, ckpt, cb, prompt, n, torch):
    """hybridref's C decoder (prefill + one C step per token) picks the tokens generate picks greedily
    with transformers' own cache."""
    with torch.no_grad():
        want = model.generate(torch.from_numpy(prompt[None]), do_sample=False, max_new_tokens=n)[0, len(prompt):]
    ours, _ = load_model(ckpt, cb, need_vocab=False)
    got = list(stream_ids(ours, prompt, n, temperature=0))
    assert got == want.tolist(), (got, want.tolist())


def check_decoder_steps(model, ckpt, cb, ids, prefill, torch):
    """The C decoder's logits after a prefill of ids[:, :prefill] and at each step over the rest of ids (B,T)
    equal transformers' forward over the whole of ids at those positions (LOGITS_TOL)."""
    want = hf_logits(model, ids, torch)
    ours, _ = load_model(ckpt, cb, need_vocab=False)
    dec = ours.decoder(*ids.shape)
    got = [dec.prefill(ids[:, :prefill])] + [dec.step(ids[:, t]) for t in range(prefill, ids.shape[1])]
    assert rel_err(np.stack(got, 1), want[:, prefill - 1:]) < LOGITS_TOL


def check_round_trip(model, ckpt, folder, ids, transformers, torch):
    """convert --to-hf writes a folder transformers loads as the same class, with the same tying, whose
    logits are the original's to rounding (1e-6)."""
    out = CliRunner().invoke(main, ["convert", "--checkpoint", ckpt, "--to-hf", str(folder)])
    assert out.exit_code == 0, out.output
    again = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(again) is type(model)
    assert again.config.tie_word_embeddings == model.config.tie_word_embeddings
    assert rel_err(hf_logits(again, ids, torch), hf_logits(model, ids, torch)) < 1e-6
    return again


def refused(folder, tmp_path, edit):
    """The one-line CLI error of converting a copy of `folder` whose config.json `edit(dict)` changed."""
    import json
    import shutil
    dst = tmp_path / "edited"
    shutil.copytree(folder, dst, dirs_exist_ok=True)
    config = json.loads((dst / "config.json").read_text())
    edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    out = CliRunner().invoke(main, ["convert", "--from-hf", str(dst), "--out", str(tmp_path / "x.safetensors")])
    assert out.exit_code == 1 and out.output.startswith("Error: ") and len(out.output.strip().splitlines()) == 1, \
        out.output
    return out.output


def ids_of(rng, vocab, shape):
    return np.asarray(rng.integers(0, vocab, shape), dtype=np.int64)
