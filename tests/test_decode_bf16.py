"""The C decoder's bfloat16 weight matrices (`model.decoder(..., weights="bf16")`, backends/c/bfloat16.py):

- the rounding is round-to-nearest-even, as torch's float32 -> bfloat16 conversion;
- a bf16 decoder is the float32 decoder of the model whose matrices were rounded to bfloat16, bit for
  bit: the kernels widen a bfloat16 weight exactly and then run the float32 GEMV in the same order;
- its logits lie within bfloat16 rounding of the float32 decoder's, on every mixer kind the C decoder
  steps and every ISA build, and its greedy tokens are the float32 decoder's wherever the float32
  logits' top-2 margin exceeds that error;
- B streams read the same bfloat16 matrices, each stream's logits those it has alone;
- an unknown `weights` option, or bf16 on the numpy decoder, is a clear error.
"""
import numpy as np
import pytest
import torch
from test_mixer_conformance import CONFIGS, IDS, V, tiny_lm

from helpers import rel_err
from hybridref.backends import get_backend
from hybridref.backends.c.bfloat16 import from_bfloat16, to_bfloat16
from hybridref.models.char_lm import CharLM

U = 2.0 ** -8  # bfloat16's unit roundoff: round to nearest with 8 significant bits


def rounded(model, be):
    """model with the matrices a bf16 decoder stores rounded to bfloat16 in place (their float32 values).
    Only those: a weight the decoder does not read (Hyena's filter network, whose filter is a state) stays."""
    for w in model.to(be).decoder(1, 1, weights="bf16").matrices:
        w[...] = from_bfloat16(to_bfloat16(w))
    return model


def steps(model, ids, weights):
    """Logits (B, T, V) of feeding ids (B,T) one token at a time from position 0 (no prefill, which runs
    the model's float32 weights)."""
    dec = model.decoder(ids.shape[0], ids.shape[1], weights=weights)
    return np.stack([dec.step(ids[:, t]) for t in range(ids.shape[1])], axis=1)


def test_rounding_is_to_nearest_even_as_torch():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 10000), rng.normal(0, 1e-30, 100), rng.normal(0, 1e30, 100)]).astype(np.float32)
    ties = np.float32([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 2 - 2 ** -9])  # 1 | 1+2^-6 | -1 | 2 (carry)
    x = np.concatenate([x, ties, np.float32([0.0, -0.0, np.inf, -np.inf, 3.4e38])])
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(to_bfloat16(x), want)
    np.testing.assert_array_equal(from_bfloat16(to_bfloat16(ties)), np.float32([1, 1 + 2 ** -6, -1, 2]))
    finite = np.isfinite(from_bfloat16(to_bfloat16(x)))
    assert np.all(np.abs(from_bfloat16(to_bfloat16(x))[finite] - x[finite]) <= U * np.abs(x[finite]))
    assert np.isnan(from_bfloat16(to_bfloat16(np.float32([np.nan]))))[0]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_bf16_decoder_is_the_f32_decoder_of_the_rounded_model(cb, config):
    letter = config[0]
    model = tiny_lm(f"{letter}A{letter}", config=config)
    if not model.blocks[0].mixer.causal:
        pytest.skip("a non-causal mixer does not decode")
    ids = np.random.default_rng(4).integers(0, V, (2, 9))
    got = steps(model.to(cb), ids, "bf16")
    want = steps(rounded(tiny_lm(f"{letter}A{letter}", config=config), cb), ids, "f32")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mlp", [dict(mlp_kind="swiglu"), dict(mlp_kind="gated_gelu"),
                                 dict(moe=dict(n_experts=3, top_k=2, aux_loss_coef=0.0))], ids=["swiglu", "geglu", "moe"])
def test_bf16_mlps_and_experts_are_the_rounded_model(cb, mlp):
    """The block MLP kinds other than GELU and a mixture of experts (router and stacked experts in bfloat16)."""
    def make():
        return CharLM(11, d_model=20, pattern="MA", n_heads=2, d_state=4, mlp_hidden=9, seed=3, **mlp)
    ids = np.random.default_rng(4).integers(0, 11, (3, 7))
    np.testing.assert_array_equal(steps(make().to(cb), ids, "bf16"), steps(rounded(make(), cb), ids, "f32"))


# The logits' norm-wise relative error against the float32 decoder. Each weight moves by at most 2^-8 of
# itself, so each product's output by at most 2^-8 of Σ|w||x| (first order), and a token passes ~10
# products (qkv, out, x_proj, dt_proj, MLP fc and proj, head, ...) in these three-block models: 8·U bounds
# that sum with room for the sums' partial cancellation; the errors observed at these sizes are 0.5-1.6 U.
LOGIT_BOUND = 8 * U


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_bf16_logits_within_bfloat16_rounding_of_f32(cb, config):
    letter = config[0]
    model = tiny_lm(f"{letter}A{letter}", config=config).to(cb)
    if not model.blocks[0].mixer.causal:
        pytest.skip("a non-causal mixer does not decode")
    ids = np.random.default_rng(4).integers(0, V, (2, 9))
    f32, bf16 = steps(model, ids, "f32"), steps(model, ids, "bf16")
    assert 0 < rel_err(bf16, f32) < LOGIT_BOUND


def test_greedy_tokens_agree_where_the_margin_exceeds_the_error(cb):
    """A 6-block hybrid (Mamba and attention, d_model 128): the float32 decoder's greedy tokens are fed to
    both; at each step where the float32 logits' top-2 margin exceeds twice the largest logit difference
    seen over the run, the argmax must agree (and most steps have that margin)."""
    model = CharLM.preset("hybrid", 65).to(cb)
    T = 48
    f32, bf16 = model.decoder(2, T), model.decoder(2, T, weights="bf16")
    ids, rows = np.zeros(2, np.int64), []
    for _ in range(T):
        a, b = f32.step(ids), bf16.step(ids)
        rows.append((a, b))
        ids = a.argmax(axis=1)
    err = max(np.abs(a - b).max() for a, b in rows)
    checked = 0
    for a, b in rows:
        top = np.sort(a, axis=1)
        wide = top[:, -1] - top[:, -2] > 2 * err
        np.testing.assert_array_equal(b.argmax(axis=1)[wide], a.argmax(axis=1)[wide])
        checked += wide.sum()
    assert checked >= T  # at least half of the 2·T decisions were checked


def test_streams_read_the_same_matrices_and_decode_as_alone(cb):
    """A product's rows are summed in the same order at every batch size, so at 4 and at 17 streams (rows
    in groups of three and alone, csrc/decode.c) each stream's logits equal its own decode alone, bit for
    bit."""
    model = CharLM.preset("hybrid", 65).to(cb)
    for B in (4, 17):
        ids = np.random.default_rng(B).integers(0, 65, (B, 5))
        together = steps(model, ids, "bf16")
        for b in (0, B - 1):
            np.testing.assert_array_equal(together[b], steps(model, ids[b:b + 1], "bf16")[0])


def test_bad_weights_option_is_a_clear_error(npb, cb):
    model = CharLM(5, d_model=16, pattern="MA", n_heads=2)
    with pytest.raises(ValueError, match="weights must be one of 'f32', 'bf16'.*got 'fp8'"):
        model.to(cb).decoder(1, 4, weights="fp8")
    with pytest.raises(ValueError, match="weights='bf16'.*an option of the C backend's decoder"):
        model.to(npb).decoder(1, 4, weights="bf16")


def test_cli_generate_weights_option(tmp_path):
    """`hybridref generate --weights bf16` streams the text of generate(..., weights="bf16") on the C backend;
    bf16 on the numpy backend and an unknown element type are usage errors naming --weights."""
    from click.testing import CliRunner

    from hybridref.checkpoint import save_checkpoint
    from hybridref.cli import main
    from hybridref.data.shakespeare import CharVocab
    from hybridref.generate import generate, load_model

    vocab, path = CharVocab("ROMEO:abcdefgh \n"), str(tmp_path / "ck.safetensors")
    save_checkpoint(path, CharLM(len(vocab.chars), d_model=16, pattern="MA", n_heads=2, d_state=4), vocab.chars)
    args = ["generate", "--checkpoint", path, "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed", "3"]
    out = CliRunner().invoke(main, args + ["--weights", "bf16"])
    assert out.exit_code == 0, out.output
    want = generate(*load_model(path, get_backend("c")), "ROMEO:", 20, temperature=0.8, seed=3, weights="bf16")
    assert out.output == want + "\n"
    bad = CliRunner().invoke(main, args + ["--weights", "bf16", "--backend", "numpy"])
    assert bad.exit_code == 2 and "--weights bf16 is an option of the C backend's decoder" in bad.output
    bad = CliRunner().invoke(main, args + ["--weights", "fp8"])
    assert bad.exit_code == 2 and "--weights" in bad.output
