"""The long causal depthwise convolution of Hyena's filters (backends/numpy/long_conv.py,
csrc/long_conv.c): the oracle against the definition and against causal_conv1d, float64 gradients, C
(direct sum and FFT) against NumPy per ISA build, both C paths against each other and a long sequence
against a float64 FFT. Splitting the op over the sequence is tests/test_sequence_forms.py (its declared
Halo); the layer is the conformance suite's (tests/test_mixer_conformance.py -k hyena)."""
import numpy as np
import pytest

from helpers import assert_same_for_thread_counts, check_grads, rel_err

EPS32 = 2.0 ** -24  # float32 unit roundoff


def _inputs(rng, B, T, C, L, with_prefix, dtype=np.float64):
    u, dy = rng.standard_normal((2, B, T, C))
    h = rng.standard_normal((L, C))
    prefix = rng.standard_normal((B, L - 1, C)) if with_prefix else None
    cast = lambda a: None if a is None else a.astype(dtype)
    return cast(u), cast(h), cast(prefix), cast(dy)


def _fft_size(T, L, with_prefix):
    """The kernel's FFT size: the power of two >= N + min(L, N) − 1, N = (L − 1 if a prefix) + T."""
    N = (L - 1 if with_prefix else 0) + T
    return max(2, 1 << (N + min(L, N) - 2).bit_length())


def _tol(T, L, with_prefix):
    """float32 C against float64. The direct sum rounds once per term: ~√(terms)·ε norm-wise. The FFT's
    error grows as ε·log2 n (each of the log2 n butterfly stages of each of the three transforms, with
    float32 twiddles, adds ~ε relative to the spectrum's norm, and the norm is preserved up to √n); for
    random inputs the errors add as a random walk, so 4·ε·log2 n bounds both paths here with margin
    (measured 1e-7 … 3e-7 at n <= 8192)."""
    return 4 * EPS32 * np.log2(_fft_size(T, L, with_prefix)) + 1e-7


def test_oracle_is_the_definition(npb, rng):
    """y[b,t,c] = Σ_j h[j,c] ũ[b, t+L−1−j, c] as an explicit loop; and the causal_conv1d of the same filter
    stored (C, W) oldest tap first, w[c, L−1−j] = h[j, c]."""
    u, h, prefix, _ = _inputs(rng, 2, 6, 3, 4, True)
    ut = np.concatenate([prefix, u], axis=1)
    want = np.zeros_like(u)
    for b, t, c in np.ndindex(*u.shape):
        want[b, t, c] = sum(h[j, c] * ut[b, t + 3 - j, c] for j in range(4))
    assert rel_err(npb.long_conv_forward(u, h, prefix), want) < 1e-15
    conv = npb.causal_conv1d_forward(u, np.ascontiguousarray(h[::-1].T), None, prefix)
    assert rel_err(npb.long_conv_forward(u, h, prefix), conv) < 1e-15


@pytest.mark.parametrize("with_prefix", [False, True])
@pytest.mark.parametrize("L", [3, 9])
def test_gradcheck(npb, rng, with_prefix, L):
    u, h, prefix, G = _inputs(rng, 2, 6, 3, L, with_prefix)

    def loss():
        return float((npb.long_conv_forward(u, h, prefix) * G).sum())

    du, dh, dprefix = npb.long_conv_backward(G, u, h, prefix)
    assert (dprefix is None) != with_prefix
    inputs = dict(u=u, h=h, **({"prefix": prefix} if with_prefix else {}))
    check_grads(loss, inputs, dict(u=du, h=dh, prefix=dprefix))


# B, T, C, L: one channel, a partial 16-channel block (C = 19, 37), a filter shorter / longer than the
# sequence, an odd batch (one transform holds a single row), T = 1 (a decode step), a long filter
SHAPES = [(1, 5, 1, 5), (3, 13, 19, 15), (2, 40, 37, 7), (3, 64, 16, 90), (2, 1, 20, 1), (1, 300, 33, 300),
          (2, 70, 5, 1000)]


@pytest.mark.parametrize("B,T,C,L", SHAPES)
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_c_matches_numpy(npb, cb, rng, B, T, C, L, method):
    for with_prefix in (False, True):
        u, h, prefix, dy = _inputs(rng, B, T, C, L, with_prefix)
        f32 = lambda a: None if a is None else a.astype(np.float32)
        tol = _tol(T, L, with_prefix)
        assert rel_err(cb.long_conv_forward(*map(f32, (u, h, prefix)), method=method),
                       npb.long_conv_forward(u, h, prefix)) < tol
        got = cb.long_conv_backward(*map(f32, (dy, u, h, prefix)), method=method)
        want = npb.long_conv_backward(dy, u, h, prefix)
        for name, g, w in zip(("du", "dh", "dprefix"), got, want):
            assert (g is None) == (w is None), name
            if w is not None:
                assert rel_err(g, w) < tol, (name, with_prefix)


def _fft_reference(u, h):
    """The causal convolution in float64 by numpy.fft (the whole filter meets the sequence: L >= T)."""
    T = u.shape[1]
    n = 2 * T
    return np.fft.irfft(np.fft.rfft(u, n, axis=1) * np.fft.rfft(h[:T], n, axis=0), n, axis=1)[:, :T]


def test_long_sequence_against_float64_fft(cb, rng):
    """T = 8192 (FFT size 16384, several cache blocks of the transform): the auto path (the FFT) against
    numpy.fft in float64, and the two C paths against each other on a shorter case."""
    u, h, _, _ = _inputs(rng, 2, 8192, 18, 8192, False)
    want = _fft_reference(u, h)
    got = cb.long_conv_forward(u.astype(np.float32), h.astype(np.float32))
    assert rel_err(got, want) < _tol(8192, 8192, False)
    u, h, prefix, dy = (a.astype(np.float32) for a in _inputs(rng, 3, 700, 21, 900, True))
    direct = [cb.long_conv_forward(u, h, prefix, method="direct"), *cb.long_conv_backward(dy, u, h, prefix,
                                                                                          method="direct")]
    fft = [cb.long_conv_forward(u, h, prefix, method="fft"), *cb.long_conv_backward(dy, u, h, prefix, method="fft")]
    for a, b in zip(direct, fft):
        assert rel_err(a, b) < 2 * _tol(700, 900, True)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_is_thread_count_independent(cb, rng, method):
    u, h, prefix, dy = (a.astype(np.float32) for a in _inputs(rng, 3, 200, 70, 150, True))
    assert_same_for_thread_counts(cb, lambda: (cb.long_conv_forward(u, h, prefix, method=method),
                                               *cb.long_conv_backward(dy, u, h, prefix, method=method)))


def test_rejects_bad_input(cb):
    u = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"long_conv_forward: h must have shape \(L, 4\)"):
        cb.long_conv_forward(u, np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match=r"long_conv_forward: h must have shape \(L, 4\) with L >= 1"):
        cb.long_conv_forward(u, np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match=r"long_conv_backward: prefix must have shape \(2, 4, 4\)"):
        cb.long_conv_backward(u, u, np.zeros((5, 4), np.float32), np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"long_conv_backward: dy must have shape \(2, 3, 4\)"):
        cb.long_conv_backward(u[:, :2].copy(), u, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="long_conv_forward: method must be one of"):
        cb.long_conv_forward(u, np.zeros((5, 4), np.float32), method="fast")
    with pytest.raises(ValueError, match="long_conv_forward: u must have dtype float32"):
        cb.long_conv_forward(u.astype(np.float64), np.zeros((5, 4), np.float32))
