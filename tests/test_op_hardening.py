"""Hostile input at the op boundary: every backend refuses what it cannot compute (a ValueError naming the
op and the argument, never a crash, a cffi OverflowError or a write into read-only memory), and the C
kernels agree with the NumPy oracle on non-finite and extreme inputs. The op table and the random cases
are those of the fuzzer (tests/fuzz_ops.py), whose short run is part of this file."""
import math
import os

import numpy as np
import pytest

import fuzz_ops
from conftest import c_isas
from hybridref.backends.base import OP_NAMES, op_signature
from hybridref.backends.validate import SCALARS

HP = dict(step=1, lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_scale=1.0)


@pytest.fixture(params=["numpy", "c"])
def be(request, npb):
    """Each backend in turn (the C one on its best ISA build; the fuzz covers every build)."""
    if request.param == "numpy":
        return npb
    isas, problem = c_isas()
    if not isas:
        pytest.skip(f"the C backend is not available: {problem}")
    from hybridref.backends.c import CBackend
    return CBackend(isa=isas[0])


# ---- empty sizes with no answer ----------------------------------------------------------------------

_F, _W0 = np.float32, np.zeros(0, np.float32)
EMPTY = {  # op: (arguments, the size named in the message)
    "rmsnorm_forward": ((np.zeros((4, 0), _F), _W0, 1e-5), "width D"),
    "layernorm_forward": ((np.zeros((4, 0), _F), _W0, _W0, 1e-5), "width D"),
    "rmsnorm_backward": ((np.zeros((4, 0), _F), np.zeros((4, 0), _F), _W0, np.ones(4, _F)), "width D"),
    "layernorm_backward": ((np.zeros((4, 0), _F), np.zeros((4, 0), _F), _W0, np.zeros(4, _F), np.ones(4, _F)),
                           "width D"),
    "cross_entropy_forward": ((np.zeros((0, 3), _F), np.zeros(0, np.int64)), "number of rows M"),
    "cross_entropy_backward": ((np.zeros((0, 3), _F), np.zeros(0, np.int64)), "number of rows M"),
    "mean_pool_forward": ((np.zeros((2, 0, 3), _F),), "sequence length T"),
}


@pytest.mark.parametrize("op", sorted(EMPTY))
def test_empty_sizes_without_an_answer_are_refused_alike(be, op):
    """A norm over D = 0 values, a mean over T = 0 positions, a loss averaged over M = 0 rows is 0/0: the
    NumPy oracle returned nan (with a RuntimeWarning) where C refused; both refuse it now, alike."""
    args, size = EMPTY[op]
    with pytest.raises(ValueError, match=f"^{op}: {size} must be positive, got 0$"):
        getattr(be, op)(*args)


# ---- in-place ops refuse read-only arrays --------------------------------------------------------

def _read_only(kind, arr, tmp_path):
    if kind == "setflags":
        arr = arr.copy()
        arr.setflags(write=False)
        return arr
    if kind == "bytes":
        return np.frombuffer(arr.tobytes(), dtype=arr.dtype).reshape(arr.shape)
    np.save(tmp_path / "a.npy", arr)
    return np.load(tmp_path / "a.npy", mmap_mode="r")


@pytest.mark.parametrize("name", ["param", "m", "v"])
@pytest.mark.parametrize("kind", ["setflags", "bytes", "mmap"])
def test_adamw_refuses_read_only_arrays(be, tmp_path, name, kind):
    """A read-only memory map used to segfault the C kernel; setflags(write=False) and views of bytes
    were written through. Refused before anything is written (the other arrays keep their values)."""
    arrays = {n: np.full((5, 3), 0.5, np.float32) for n in ("param", "grad", "m", "v")}
    arrays[name] = _read_only(kind, arrays[name], tmp_path)
    before = {n: a.copy() for n, a in arrays.items()}
    with pytest.raises(ValueError, match=f"adamw_step: {name} is written in place, so it must be writable"):
        be.adamw_step(**arrays, **HP)
    for n, a in arrays.items():
        np.testing.assert_array_equal(a, before[n])


def test_adamw_refuses_overlapping_state(be):
    """m and v one array: each update would read the other's new values."""
    param, grad, mv = np.zeros((4, 3), np.float32), np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="adamw_step: m and v are updated in place and must not share memory"):
        be.adamw_step(param, grad, mv, mv, **HP)


# ---- cross entropy: precision on extreme logits ---------------------------------------------------

def _loss_ref(logits, targets):
    """mean_m log(1 + Σ_{c≠t} e^{x_c − x_t}) for rows whose target is their max, in float64 from the
    float32 logits, summed exactly (math.fsum)."""
    rows = [math.log1p(math.fsum(math.exp(v - r[t]) for c, v in enumerate(r) if c != t))
            for r, t in zip(logits.astype(np.float64), targets)]
    return math.fsum(rows) / len(rows)


def test_cross_entropy_all_equal_huge_logits(be):
    """log Σ e^{x − max} + max − x_t in float32 cancelled to 0 for logits all 3e38; it is log 7."""
    logits, targets = np.full((3, 7), 3e38, np.float32), np.array([0, 3, 6])
    loss, probs = be.cross_entropy_forward(logits, targets)
    assert abs(loss - math.log(7)) <= 1e-6 * math.log(7)  # log1p(6) in float64: exact to rounding
    np.testing.assert_allclose(probs, 1 / 7, rtol=1e-6)


@pytest.mark.parametrize("gap", [5.0, 10.0, 12.0, 15.0, 20.0, 40.0])
def test_cross_entropy_confident_rows(be, gap):
    """The target's logit near 200, the others `gap` or more below: the loss is ~6·e^-gap, which the
    float32 sum log Σ + max − x_t rounded to a multiple of ulp(200) = 1.5e-5 (1.7 % off at gap 12,
    0 from gap 15)."""
    rng = np.random.default_rng(int(gap))
    logits = (200 - gap - rng.uniform(0, 1, (4, 7))).astype(np.float32)
    targets = np.array([0, 2, 4, 6])
    logits[np.arange(4), targets] = 200 + rng.uniform(-1, 1, 4).astype(np.float32)
    loss, _ = be.cross_entropy_forward(logits, targets)
    # the float32 sum of the 6 other terms (each exp within 2 ulp, 6e-8 relative) is off by under
    # (6 + 2)·6e-8 relative, which log1p keeps; 1e-6 leaves twice that
    assert abs(loss - _loss_ref(logits, targets)) <= 1e-6 * _loss_ref(logits, targets)


def test_cross_entropy_non_finite_logits(be):
    """-inf: a class of probability 0 (the loss is +inf when it is the target); nan or +inf: the row is
    nan. IEEE arithmetic in both backends, row by row."""
    logits = np.zeros((5, 4), np.float32)
    logits[0, 1] = -np.inf  # a masked class: finite row
    logits[1, 2] = -np.inf  # the target masked: loss +inf
    logits[2, 0] = np.nan
    logits[3, 3] = np.inf
    targets = np.array([0, 2, 1, 1, 0])
    loss, probs = be.cross_entropy_forward(logits[:1], targets[:1])
    assert loss == pytest.approx(math.log(3)) and probs[0, 1] == 0 and probs[0, 0] == pytest.approx(1 / 3)
    assert be.cross_entropy_forward(logits[:2], targets[:2])[0] == math.inf
    for m in (2, 3):
        loss, probs = be.cross_entropy_forward(logits[m:m + 1], targets[m:m + 1])
        assert math.isnan(loss) and np.isnan(probs).all()
    loss, probs = be.cross_entropy_forward(logits, targets)
    assert math.isnan(loss)
    assert np.isfinite(probs[:2]).all() and np.isnan(probs[2:4]).all() and np.isfinite(probs[4]).all()


# ---- scalar arguments: the examples, then every op's every scalar ------------------------

SCALAR_CASES = [  # (op, the call's arguments but the bad one, bad argument, value)
    ("layernorm_forward", lambda: (np.ones((2, 3), np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)),
     "eps", None),
    ("rmsnorm_forward", lambda: (np.ones((2, 3), np.float32), np.ones(3, np.float32)), "eps", "1e-5"),
    ("rope_forward", lambda: (np.ones((1, 2, 1, 4), np.float32),), "base", "10000"),
    ("rope_forward", lambda: (np.ones((1, 2, 1, 4), np.float32),), "offset", 2**64),
    ("mean_pool_backward", lambda: (np.ones((2, 3), np.float32),), "seq_len", 2.5),
    ("adamw_step", lambda: tuple(np.ones((2, 3), np.float32) for _ in range(4)), "step", 2**40),
    ("adamw_step", lambda: tuple(np.ones((2, 3), np.float32) for _ in range(4)), "eps", None),
    ("attention_forward", lambda: tuple(np.ones((1, 2, 1, 4), np.float32) for _ in range(3)), "q_offset", 2**32),
]


@pytest.mark.parametrize("op,args,name,value", SCALAR_CASES, ids=[f"{c[0]}-{c[2]}={c[3]!r}" for c in SCALAR_CASES])
def test_scalar_argument_refused_by_name(be, op, args, name, value):
    """eps=None, a string base, a float seq_len used to be raw TypeErrors and integers past 32 bits
    cffi OverflowErrors; each is a ValueError naming the op and the argument, on both backends."""
    kwargs = {**(HP if op == "adamw_step" else {}), name: value}
    with pytest.raises(ValueError, match=f"^{op}: {name} must be "):
        getattr(be, op)(*args(), **kwargs)


def _example(op):
    return fuzz_ops.EXAMPLES[op](fuzz_ops.Draw(np.random.default_rng(0)))


@pytest.mark.parametrize("op", OP_NAMES)
def test_every_op_has_an_example(op):
    """The fuzzer and the tests below need a valid call of every op of the contract."""
    assert op in fuzz_ops.EXAMPLES, f"add a valid random call of {op} to EXAMPLES in tests/fuzz_ops.py"
    assert list(_example(op)) == op_signature(op)[0], "EXAMPLES must give every argument, in the contract's order"


@pytest.mark.parametrize("op", OP_NAMES)
def test_every_scalar_argument_has_a_spec(op):
    """Each argument that is not an array has a type and range in backends/validate.py SCALARS, which
    every backend checks: None-or-array arguments (a bias, h0) are the only exceptions."""
    if op not in fuzz_ops.EXAMPLES:
        pytest.skip(f"{op} has no example (test_every_op_has_an_example)")
    scalars = {name for name, value in _example(op).items() if not isinstance(value, np.ndarray) and value is not None}
    assert scalars <= set(SCALARS.get(op, {})), f"{op}: no spec in SCALARS for {scalars - set(SCALARS.get(op, {}))}"


@pytest.mark.parametrize("op", OP_NAMES)
def test_bad_arguments_refused(op, npb, cb):
    """Every spoiled argument of a valid call (bad scalars on every backend; a wrong dtype, a list, a
    non-contiguous view, an extra axis, a read-only output on the C one) is a ValueError that starts
    with the op's name, and names the argument where it is not a shape relation."""
    if op not in fuzz_ops.EXAMPLES:
        pytest.skip(f"{op} has no example (test_every_op_has_an_example)")
    args = _example(op)
    findings = []
    for name, bad, who, named in fuzz_ops.bad_inputs(op, args):
        for backend in ([cb] if who == "c" else [cb, npb]):
            findings += fuzz_ops._refusals(op, backend, name, bad, {**args, name: bad}, named)
    assert not findings, "\n".join(findings)


# ---- sizes past the C int range ---------------------------------------------------------------------

BIG = 2**31  # one past INT_MAX; arrays of that length with another axis of 0 cost nothing
SIZE_CASES = [
    ("mean_pool_forward", lambda: (np.zeros((BIG, 1, 0), np.float32),)),
    ("mean_pool_backward", lambda: (np.zeros((BIG, 0), np.float32), 1)),
    ("embedding_forward", lambda: (np.zeros(0, np.int64), np.zeros((0, BIG), np.float32))),
    ("embedding_backward", lambda: (np.zeros((0, BIG), np.float32), np.zeros(0, np.int64), 3)),
    ("causal_conv1d_forward", lambda: (np.zeros((BIG, 0, 2), np.float32), np.zeros((2, 3), np.float32), None)),
    ("selective_scan_forward", lambda: (np.zeros((BIG, 0, 1), np.float32), np.zeros((BIG, 0, 1), np.float32),
                                        np.zeros((1, 1), np.float32), np.zeros((BIG, 0, 1), np.float32),
                                        np.zeros((BIG, 0, 1), np.float32), np.zeros(1, np.float32))),
]


@pytest.mark.parametrize("op,args", SIZE_CASES, ids=[c[0] for c in SIZE_CASES])
def test_sizes_past_c_int_refused(cb, op, args):
    """Empty arrays with an axis past INT_MAX reached cffi's int conversion (OverflowError), or the
    allocation of an output of that size (the scan's h_last, B·Din·N floats)."""
    with pytest.raises(ValueError, match=f"^{op}: .* exceeds the C kernel's int range"):
        getattr(cb, op)(*args())


@pytest.mark.parametrize("op,name,value", [("adamw_step", "lr", 1e39), ("adamw_step", "eps", 1e-50),
                                           ("layernorm_forward", "eps", 1e-46)])
def test_c_float_arguments_within_float32(cb, op, name, value):
    """A finite Python float the kernel's C float cannot hold (it would become inf, or 0) is refused."""
    args = dict(adamw_step=lambda: tuple(np.ones((2, 3), np.float32) for _ in range(4)),
                layernorm_forward=lambda: (np.ones((2, 3), np.float32), np.ones(3, np.float32),
                                           np.zeros(3, np.float32)))[op]()
    kwargs = {**(HP if op == "adamw_step" else {}), name: value}
    with pytest.raises(ValueError, match=f"^{op}: {name} = .* outside the range of the C kernel's float"):
        getattr(cb, op)(*args, **kwargs)


# ---- attention: queries that see no key ------------------------------------------------------------

@pytest.mark.parametrize("window,q_offset,Tk", [(0, 0, 3), (1, 4, 6), (2, 9, 5)],
                         ids=["window0-Tk3", "window1-offset4", "all-keys-behind"])
def test_attention_query_without_keys(be, window, q_offset, Tk):
    """Queries past the keys their window reaches see none: o = 0, lse = -inf (the contract), and no
    gradient flows through them. NumPy's backward gave nan (exp(-inf + inf)); C's gave inf dq for such
    queries in a tile where another query sees keys."""
    rng = np.random.default_rng(1)
    B, Tq, H, Hk, P = 2, 7, 4, 2, 5
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((B, Tq, H, P), (B, Tk, Hk, P), (B, Tk, Hk, P)))
    do = rng.standard_normal(q.shape).astype(np.float32)
    i = np.arange(Tq) + q_offset
    blind = i - window > Tk - 1  # the window's first key lies past the last one
    o, lse = be.attention_forward(q, k, v, window, q_offset)
    np.testing.assert_array_equal(o[:, blind], 0)
    assert np.isneginf(lse[..., blind]).all() and np.isfinite(lse[..., ~blind]).all()
    dq, dk, dv = be.attention_backward(do, q, k, v, o, lse, window, q_offset)
    np.testing.assert_array_equal(dq[:, blind], 0)
    assert all(np.isfinite(g).all() for g in (dq, dk, dv))
    # the keys' gradients are those of the queries that see keys only
    seeing = do.copy()
    seeing[:, blind] = 0
    for got, want in zip((dk, dv), be.attention_backward(seeing, q, k, v, o, lse, window, q_offset)[1:]):
        np.testing.assert_array_equal(got, want)


# ---- non-finite inputs -----------------------------------------------------------------------------

# The ops the hostile probe named, and every other: a nan, +inf or -inf in one input element gives
# non-finite results at the same places in C (every ISA build) as in the float64 NumPy oracle, and the
# same results elsewhere (tests/fuzz_ops.py `compare`: a nan may stand for an inf where infinities of
# both signs meet in a sum, whose order decides).
@pytest.mark.parametrize("op", OP_NAMES)
def test_non_finite_inputs_propagate_alike(op, cb):
    if op not in fuzz_ops.EXAMPLES:
        pytest.skip(f"{op} has no example (test_every_op_has_an_example)")
    findings = []
    for seed in range(12):
        findings += fuzz_ops.check_case(op, "nonfinite", fuzz_ops.Draw(np.random.default_rng([7, seed])), [cb])
    assert not findings, "\n".join(findings)


def _attention_case(rng, window):
    B, T, H, Hk, P = 2, 9, 4, 2, 6
    return [rng.standard_normal(s).astype(np.float32) for s in ((B, T, H, P), (B, T, Hk, P), (B, T, Hk, P))]


@pytest.mark.parametrize("name", ["q", "k", "v"])
@pytest.mark.parametrize("window", [None, 2])
def test_attention_non_finite_reaches_every_dependent_output(be, name, window):
    """Attention leaves the comparison of a non-finite input's (batch, kv group) to this test: every
    output computed from a nan (the query's row for q; the rows of the queries that see the key for k
    and v) is nan on both backends, and other (batch, group) slices are untouched."""
    rng = np.random.default_rng(3)
    q, k, v = _attention_case(rng, window)
    clean_o, clean_lse = be.attention_forward(q, k, v, window)
    b, t, head = 1, 4, 1  # query / key position 4, kv group 0 (query heads 0, 1)
    arrays = dict(q=q, k=k, v=v)
    arrays[name] = arrays[name].copy()
    arrays[name][b, t, head if name == "q" else 0, 2] = np.nan
    o, lse = be.attention_forward(arrays["q"], arrays["k"], arrays["v"], window)
    queries = np.arange(q.shape[1])
    sees = (queries >= t) & ((queries - t <= window) if window is not None else True)
    if name == "q":
        assert np.isnan(o[b, t, head]).all() and np.isnan(lse[b, head, t])
    else:
        assert np.isnan(o[b][sees][:, :2, 2]).all()
        if name == "k":
            assert np.isnan(lse[b, :2][:, sees]).all()
    np.testing.assert_array_equal(o[0], clean_o[0])
    np.testing.assert_array_equal(o[:, :, 2:], clean_o[:, :, 2:])
    np.testing.assert_array_equal(lse[:, 2:], clean_lse[:, 2:])


# ---- extreme finite inputs -----------------------------------------------------------------------

def test_rope_and_dropout_at_the_largest_offset(be):
    """The largest offset (2**62 - 1) plus a position stays within a C long. RoPE's angles there are
    meaningless (a position of 4.6e18 has no exact float64 angle), but the rotation keeps each pair's
    norm; dropout's counters wrap modulo 2**64 alike on both backends."""
    x = np.random.default_rng(5).standard_normal((2, 3, 2, 6)).astype(np.float32)
    y = be.rope_forward(x, offset=2**62 - 1)
    pairs = lambda a: a[..., :3] ** 2 + a[..., 3:] ** 2
    np.testing.assert_allclose(pairs(y), pairs(x), rtol=1e-5, atol=1e-6)  # float32 rotation: a few ulp
    from hybridref.backends.numpy import NumpyBackend
    np.testing.assert_array_equal(be.dropout(x, 0.5, 7, 2**62 - 1, 2**62 - 1),
                                  NumpyBackend().dropout(x, 0.5, 7, 2**62 - 1, 2**62 - 1))


EXTREME = np.array([3e38, -3e38, 1e30, -1e30, 1e-30, -1e-30, 0.0, np.inf, -np.inf, np.nan], np.float32)


@pytest.mark.parametrize("op", ["gelu_forward", "silu_forward", "softplus_forward", "gelu_backward", "silu_backward",
                                "softplus_backward"])
def test_activations_at_extremes(npb, cb, op):
    """±3e38, ±1e30 and non-finite values: the limits (gelu'(±inf) = 1, 0; softplus(-inf) = 0; ...)
    and nan where there is none (silu'(±inf) is inf · 0), the same in C and NumPy, exactly where the
    result is 0, ±inf or nan and within float32 rounding elsewhere."""
    args = (np.ones_like(EXTREME), EXTREME) if op.endswith("backward") else (EXTREME,)
    with np.errstate(all="ignore"):
        want = getattr(npb, op)(*args)
    got = getattr(cb, op)(*args)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)  # nan = nan, inf = inf


def _assert_alike(got, want, rtol):
    """Non-finite at the same places (a nan for an inf where infinities of both signs meet in a sum,
    whose order decides; infinities of one sign agree), within rtol elsewhere."""
    assert fuzz_ops.compare((got,), (want,), tol=np.inf) is None, fuzz_ops.compare((got,), (want,), tol=np.inf)
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, atol=0)


def test_norms_of_rows_past_the_float32_square_range(npb, cb):
    """Rows whose float32 squares overflow (|x| past ~1.8e19) are normalised, not zeroed: y and rstd
    agree with a float64 computation in both backends (before, rstd and y were 0). A row of 1e-30 keeps
    its digits (ε dominates its variance). A row holding inf stays as before: rstd 0 in RMSNorm, nan in
    LayerNorm (its mean is inf, and inf - inf is nan)."""
    x = np.array([[1e20, -1e20, 0.0, 3e19], [3e38, -1e38, 2e37, 1.0], [1e-30, -1e-30, 2e-30, 0.0],
                  [1.0, 2.0, 3.0, 4.0], [np.inf, 1.0, 2.0, 3.0]], np.float32)
    w, b, eps = np.linspace(0.5, 2.0, 4, dtype=np.float32), np.full(4, 0.25, np.float32), 1e-5
    x64 = x[:4].astype(np.float64)
    xc64 = x64 - x64.mean(axis=1, keepdims=True)
    want = {"rmsnorm_forward": (x64, None, 0.0), "layernorm_forward": (xc64, b, np.nan)}
    for op, (centred, bias, rstd_of_inf_row) in want.items():
        rstd64 = 1 / np.sqrt((centred * centred).mean(axis=1) + eps)
        y64 = centred * rstd64[:, None] * w + (0 if bias is None else bias)
        args = (x, w, b, eps) if bias is not None else (x, w, eps)
        for be in (npb, cb):
            with np.errstate(all="ignore"):
                out = fuzz_ops.call(be, op, args_dict(op, args))
            y, rstd = out[0], out[-1]
            # float32 results of 4-term sums and one square root; the 3e38 row's rstd (~6e-39) is a
            # float32 subnormal with 2^-149 steps: about 6 digits
            np.testing.assert_allclose(rstd[:4], rstd64, rtol=1e-5, err_msg=f"{be.name} {op}")
            np.testing.assert_allclose(y[:4], y64, rtol=2e-5, atol=0, err_msg=f"{be.name} {op}")
            np.testing.assert_equal(rstd[4], rstd_of_inf_row, err_msg=f"{be.name} {op}: the row holding inf")


def test_linear_overflow_alike(npb, cb):
    """Products past the float32 range give non-finite sums in both backends, at the same places."""
    x = np.array([[1e20, -1e20, 0.0, 3e19], [1.0, 2.0, 3.0, 4.0]], np.float32)
    args = (x, np.full((2, 4), 1e30, np.float32), None)
    with np.errstate(all="ignore"):
        got = fuzz_ops.call(cb, "linear_forward", args_dict("linear_forward", args))
        want = fuzz_ops.call(npb, "linear_forward", args_dict("linear_forward", args))
    for g, w_ in zip(got, want):
        _assert_alike(g, w_, rtol=1e-5)  # float32 sums of 4 terms


def args_dict(op, args):
    return dict(zip(op_signature(op)[0], args))


# ---- a short fuzz run ------------------------------------------------------------------------------

@pytest.mark.parametrize("op", OP_NAMES)
def test_fuzz_short(op):
    """A short run of the fuzzer for each op (tests/fuzz_ops.py; `make fuzz` runs a long one on the
    sanitizer build): HYBRIDREF_FUZZ_CASES (default 12) cases, valid, non-finite and bad in turn, on
    every ISA build."""
    if op not in fuzz_ops.EXAMPLES:
        pytest.skip(f"{op} has no example (test_every_op_has_an_example)")
    isas, problem = c_isas()
    if not isas:
        pytest.skip(f"the C backend is not available: {problem}")
    findings = fuzz_ops.run(int(os.environ.get("HYBRIDREF_FUZZ_CASES", 12)), ops=[op])[op]
    assert not findings, "\n".join(findings[:20])
