"""The panel layout of the C decoder's weight matrices (backends/c/panels.py, csrc/decode_mixer.h):

- a matrix (N,K) becomes column panels of `width` rows, each its rows transposed into a (K, width)
  block, the last only as wide as its rows rounded up to `unit`, zero past row N; a stacked matrix
  (G,N,K) is G of them one after another;
- in bfloat16 each group of 2·width/8 columns of a panel row is interleaved (column j at 2j, column
  width/8 + j at 2j + 1), the pattern the kernels' paired widening reads;
- every ISA build reports a width and unit that its GEMV and the layout agree on (the decoder's
  equality tests, test_decode*.py, run through them);
- a matrix that reaches the GEMV without the layout is a clear error, not a wrong product.
"""
import numpy as np
import pytest

from hybridref.backends.c.bfloat16 import from_bfloat16, to_bfloat16
from hybridref.backends.c.panels import to_panels
from hybridref.models.char_lm import CharLM

LAYOUTS = [(128, 32), (64, 16), (8, 2)]  # (width, unit) of the AVX-512, AVX2 and portable builds


def unpack(flat, n, k, width, unit):
    """The (N,K) matrix back from its float32 panels, checking the zero padding."""
    rows = -(-n // unit) * unit
    out, at = np.zeros((rows, k), np.float32), 0
    for p in range(0, rows, width):
        w = min(width, rows - p)
        out[p:p + w] = flat[at:at + k * w].reshape(k, w).T
        at += k * w
    assert at == flat.size
    np.testing.assert_array_equal(out[n:], 0)
    return out[:n]


@pytest.mark.parametrize("width,unit", LAYOUTS)
@pytest.mark.parametrize("n,k", [(1, 3), (31, 5), (32, 8), (128, 4), (200, 7), (300, 2)])
def test_panels_hold_the_rows_transposed(width, unit, n, k):
    w = np.random.default_rng(n * k).standard_normal((n, k)).astype(np.float32)
    np.testing.assert_array_equal(unpack(to_panels(w, width, unit), n, k, width, unit), w)


@pytest.mark.parametrize("width,unit", LAYOUTS)
def test_stacked_matrices_are_panel_matrices_one_after_another(width, unit):
    w = np.random.default_rng(1).standard_normal((3, 40, 6)).astype(np.float32)
    flat, size = to_panels(w, width, unit), to_panels(w[0], width, unit).size
    assert flat.size == 3 * size
    for g in range(3):
        np.testing.assert_array_equal(flat[g * size:(g + 1) * size], to_panels(w[g], width, unit))


@pytest.mark.parametrize("width,unit", LAYOUTS)
def test_bfloat16_panels_interleave_each_pair_of_vectors(width, unit):
    w = np.random.default_rng(2).standard_normal((150, 5)).astype(np.float32)
    flat, vw = to_panels(w, width, unit, bf16=True), width // 8
    want = to_panels(from_bfloat16(to_bfloat16(w)), width, unit)  # the rounded float32 panels
    assert flat.dtype == np.uint16 and flat.size == want.size
    pairs = want.reshape(-1, 2, vw).swapaxes(1, 2).ravel()  # column h·vw + j of a group at 2j + h
    np.testing.assert_array_equal(from_bfloat16(flat), pairs)


def test_every_build_reports_a_layout_its_unit_divides(cb):
    unit = cb.ffi.new("int *")
    width = cb.lib.hr_dec_panel_width(unit)
    assert width % unit[0] == 0 and unit[0] % 2 == 0 and (width, unit[0]) in LAYOUTS


def test_a_matrix_without_the_layout_is_refused(cb):
    model = CharLM(7, d_model=16, pattern="MA", n_heads=2).to(cb)
    dec = model.decoder(1, 4)
    slots = dec._cfg[dec._cfg[5]:dec._cfg[5] + len(dec._w)]  # the weights' types (header slot wtypes)
    slots &= ~2  # DEC_PANELS off: the GEMV must refuse the matrices, not read them as panels
    with pytest.raises(RuntimeError, match="without its panel layout"):
        dec.step(np.zeros(1, np.int64))
