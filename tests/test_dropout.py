"""Dropout: the counter-based mask (definition, statistics, slicing), C vs NumPy bit for bit, the
layer's gradient, evaluation is the identity, bad input, determinism."""
import numpy as np
import pytest

from helpers import assert_same_for_thread_counts, check_model_grads
from hybridref.backends.numpy.dropout import dropout_keep, splitmix64
from hybridref.models.char_lm import CharLM


def test_splitmix64_matches_the_published_sequence():
    """SplitMix64 seeded with 0 starts e220a8397b1dcdaf, 6e789e6aa1b965f4, 06c45d188009454f
    (the reference sequence of Vigna's splitmix64.c): state k·golden, output mix(state)."""
    out = splitmix64(np.arange(3, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    assert [f"{v:016x}" for v in out] == ["e220a8397b1dcdaf", "6e789e6aa1b965f4", "06c45d188009454f"]


def test_dropout_scales_kept_elements_and_zeroes_the_rest(npb, rng):
    x = rng.standard_normal((3, 5, 7))
    y = npb.dropout(x, 0.25, 99)
    keep = dropout_keep(x.shape, 0.25, 99)
    np.testing.assert_array_equal(y[keep], x[keep] * (1 / 0.75))
    assert np.all(y[~keep] == 0)


def test_dropout_keeps_a_fraction_one_minus_p(npb):
    """1.5 M elements: the kept fraction's standard deviation is √(p(1−p)/n) ≈ 3.5e-4; allow 5σ."""
    for p in (0.1, 0.5):
        keep = dropout_keep((8, 375, 500), p, seed=7)
        assert abs(keep.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / keep.size)
        # neighbouring elements are independent: P(keep both) = (1−p)²
        both = (keep[..., 1:] & keep[..., :-1]).mean()
        assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / keep.size) * 2


def test_dropout_masks_differ_between_seeds_and_rows(npb):
    a, b = dropout_keep((2, 64, 32), 0.5, seed=1), dropout_keep((2, 64, 32), 0.5, seed=2)
    assert 0.4 < (a != b).mean() < 0.6 and 0.4 < (a[0] != a[1]).mean() < 0.6


def test_dropout_of_a_slice_is_the_slice_of_the_mask(npb, rng):
    """A process holding rows 2..4 and positions 5..11 draws exactly that part of the whole mask
    (what the MPI backend relies on)."""
    x = rng.standard_normal((5, 12, 6))
    whole = npb.dropout(x, 0.3, 1234)
    np.testing.assert_array_equal(npb.dropout(x[2:4, 5:], 0.3, 1234, batch_offset=2, time_offset=5),
                                  whole[2:4, 5:])


def test_dropout_p_zero_is_the_identity(npb, cb, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(npb.dropout(x, 0.0, 5), x)
    np.testing.assert_array_equal(cb.dropout(x, 0.0, 5), x)


@pytest.mark.parametrize("shape,p,seed,offsets", [((3, 37, 19), 0.2, 12345, (0, 0)), ((1, 1, 1), 0.5, 2**64 - 1, (0, 0)),
                                                  ((4, 13, 3, 5), 0.1, 7, (9, 4093)), ((2, 129, 130), 0.9, 0, (1, 1))])
def test_dropout_c_equals_numpy_bit_for_bit(npb, cb, rng, shape, p, seed, offsets):
    """The same integer hash and the same float32 multiply: identical outputs, not merely close."""
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(cb.dropout(x, p, seed, *offsets), npb.dropout(x, p, seed, *offsets))


def test_dropout_layer_gradient_in_a_model(npb, rng):
    """Finite differences (float64) through a small language model with dropout on: the backward
    applies the forward's masks (a wrong mask misses by O(1), far above the tolerance)."""
    model = CharLM(11, d_model=8, pattern="MA", n_heads=2, mlp_hidden=12, d_state=4, dropout=0.3).to(npb).astype(np.float64)
    ids, targets = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, 12)
    model.set_dropout_seed((0, 3))

    def loss():
        out = npb.cross_entropy_forward(model.forward(ids).reshape(12, 11), targets)[0]
        model.clear_saved()
        return out

    model.zero_grad()
    logits = model.forward(ids)
    _, probs = npb.cross_entropy_forward(logits.reshape(12, 11), targets)
    model.backward(npb.cross_entropy_backward(probs, targets).reshape(2, 6, 11))
    check_model_grads(model, loss, {n: p.grad.copy() for n, p in model.named_params()}, rng)
    model.set_dropout_seed(None)
    assert not np.array_equal(logits, model.forward(ids))  # the masks were on


def test_dropout_is_off_without_a_seed_and_masks_change_with_the_step(npb, rng):
    model = CharLM(11, d_model=8, pattern="MA", n_heads=2, mlp_hidden=12, d_state=4, dropout=0.3).to(npb)
    plain = CharLM(11, d_model=8, pattern="MA", n_heads=2, mlp_hidden=12, d_state=4).to(npb)
    ids = rng.integers(0, 11, (2, 6))
    np.testing.assert_array_equal(model.forward(ids), plain.forward(ids))  # same init, dropout off
    model.set_dropout_seed((0, 1))
    first = model.forward(ids)
    model.set_dropout_seed((0, 2))
    assert not np.array_equal(first, model.forward(ids))
    model.set_dropout_seed((0, 1))
    np.testing.assert_array_equal(first, model.forward(ids))
    seeds = [m.seed for m in model.modules() if type(m).__name__ == "Dropout"]
    assert len(seeds) == 5 and len(set(seeds)) == 5  # embedding + 2 per block, each its own mask


def test_dropout_rejects_bad_input(npb, cb):
    x = np.zeros((2, 3, 4), np.float32)
    for be in (npb, cb):
        with pytest.raises(ValueError, match=r"dropout: p must be a finite number in \[0, 1\) \(the probability of zeroing"):
            be.dropout(x, 1.0, 0)
        with pytest.raises(ValueError, match="dropout: seed must be an int in"):
            be.dropout(x, 0.1, -1)
        with pytest.raises(ValueError, match=r"dropout: time_offset must be an int in \[0, "):
            be.dropout(x, 0.1, 0, time_offset=-3)
        with pytest.raises(ValueError, match=r"dropout: x must be an array of shape \(B, T, ...\)"):
            be.dropout(np.zeros(4, np.float32), 0.1, 0)
    with pytest.raises(ValueError, match="dropout: x must have dtype float32"):
        cb.dropout(x.astype(np.float64), 0.1, 0)
    with pytest.raises(ValueError, match="dropout: x must be C-contiguous"):
        cb.dropout(np.zeros((2, 4, 3), np.float32).transpose(0, 2, 1), 0.1, 0)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        CharLM(11, dropout=1.5)


def test_dropout_is_deterministic_across_thread_counts(cb, rng):
    x = rng.standard_normal((4, 301, 130)).astype(np.float32)
    assert_same_for_thread_counts(cb, lambda: (cb.dropout(x, 0.2, 3, 1, 2),))
