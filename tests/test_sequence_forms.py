"""The sequence forms (SEQUENCE_FORMS, backends/base.py), generically: for every declared StatePassing
and Halo op, a sequence cut in two whose second piece continues the first through the boundary
state the form declares gives the whole sequence's outputs and gradients, forward and backward, on
the NumPy backend (float64, within 1e-12) and on every C build (float32, within 1e-5; norm-wise
relative errors). This is what the MPI backend relies on to split any such op over processes
(tests/mpi_check.py runs the same cases there).

Nothing here is written per op: a new op needs its declaration, with an `example`, and nothing else.

    StatePassing: piece 1 from h0 gives h_mid, piece 2 from h_mid gives h_last (reverse=True: piece 2
                  first, from h0); the backward runs the other way, dh_last -> dh_mid -> dh0.
    Halo:         piece 2's prefix is the last `width` positions of concat(prefix, piece 1); its
                  dprefix is added to those positions' gradient.

Per-position outputs and gradients are concatenated along the sequence axis, gradients of the
per-sequence inputs (weights) are summed over the pieces. No declared op runs backward in time yet,
so each StatePassing op is also run time-reversed (its inputs and outputs flipped, declared
reverse=not reverse): that exercises the other direction of the same check and of the MPI backend.
"""
import dataclasses

import numpy as np
import pytest

from helpers import rel_err

from hybridref.backends.base import (SEQUENCE_FORMS, Halo, StatePassing, check_sequence_forms, op_arguments,
                                     op_signature)

STATE_PASSING = [name for name, form in SEQUENCE_FORMS.items() if isinstance(form, StatePassing)]
HALO = [name for name, form in SEQUENCE_FORMS.items() if isinstance(form, Halo)]
TOL = {np.float64: 1e-12, np.float32: 1e-5}
T = 13
CUTS = (1, 6, 12)  # a piece of one position, halves, and a piece shorter than the conv's halo


def test_declarations_match_the_contract():
    check_sequence_forms()
    assert STATE_PASSING and HALO


def test_a_declaration_that_does_not_match_is_named():
    wrong = dataclasses.replace(SEQUENCE_FORMS["selective_scan"], inputs=dict(x="B T C", dt="B T C", A="C N"))
    with pytest.raises(ValueError, match=r"SEQUENCE_FORMS\['selective_scan'\]: a StatePassing op with inputs"):
        check_sequence_forms({"selective_scan": wrong})
    with pytest.raises(ValueError, match=r"SEQUENCE_FORMS\['conv'\]: .* needs ops conv_forward and conv_backward"):
        check_sequence_forms({"conv": SEQUENCE_FORMS["causal_conv1d"]})


@pytest.mark.parametrize("name", STATE_PASSING + HALO)
def test_every_form_has_an_example(name):
    assert SEQUENCE_FORMS[name].example is not None, (
        f"SEQUENCE_FORMS[{name!r}] declares no example(rng, dtype, T) -> its arguments; the generic tests "
        f"(tests/test_sequence_forms.py, tests/mpi_check.py) need one")


def example(name, rng, dtype, T):
    """{argument: value} of the forward of a declared op, from its declaration's example."""
    form = SEQUENCE_FORMS[name]
    if form.example is None:
        pytest.fail(f"SEQUENCE_FORMS[{name!r}] declares no example(rng, dtype, T)")
    return dict(form.example(rng, dtype, T))


# ---- helpers shared with tests/mpi_check.py ----------------------------------------------------

def call(fn, op, arguments):
    """fn, an implementation of `op`, called with those of `arguments` that are op's (by name)."""
    params = op_signature(op)[0]
    return fn(*op_arguments(op, (), {k: v for k, v in arguments.items() if k in params}).values())


def t_axes(layouts, prefix=""):
    """{prefix + name: its sequence axis, or None for a per-sequence array} of a {name: axes} declaration."""
    return {prefix + n: axes.split().index("T") if "T" in axes.split() else None for n, axes in layouts.items()}


def cut(a, axis, lo, hi):
    return a if axis is None else np.ascontiguousarray(np.moveaxis(np.moveaxis(a, axis, 0)[lo:hi], 0, axis))


def flip(a, axis):
    return a if axis is None or a is None else np.ascontiguousarray(np.flip(a, axis))


def time_reversed(name, form, forward, backward):
    """(form, forward, backward) of the op run backward in time: every per-position input and output
    flipped along its sequence axis, the direction declared the other way."""
    fop, bop = f"{name}_forward", f"{name}_backward"
    tin, tout, tdout = t_axes(form.inputs), t_axes(form.outputs), t_axes(form.outputs, "d")

    def fwd(*args):
        arguments = op_arguments(fop, args)
        *outs, h = forward(*{k: flip(v, tin.get(k)) for k, v in arguments.items()}.values())
        return (*[flip(o, ax) for o, ax in zip(outs, tout.values())], h)

    def bwd(*args):
        arguments = op_arguments(bop, args)
        *grads, dh0 = backward(*{k: flip(v, {**tin, **tdout}.get(k)) for k, v in arguments.items()}.values())
        return (*[flip(g, ax) for g, ax in zip(grads, tin.values())], dh0)

    return dataclasses.replace(form, reverse=not form.reverse), fwd, bwd


def state_passing_case(form, rng, dtype, args, with_state):
    """(h0, {d<output>: gradient}, dh_last) for these arguments; h0 and dh_last None when not with_state."""
    r = lambda shape: rng.standard_normal(shape).astype(dtype)
    sizes = form.sizes(args)
    douts = {"d" + n: r(tuple(sizes[a] for a in axes.split())) for n, axes in form.outputs.items()}
    shape = form.state_shape(args)
    return (r(shape) if with_state else None), douts, (r(shape) if with_state else None)


def halo_case(name, form, rng, dtype, args, with_prefix):
    """(the backward's arguments but dy and prefix, a prefix or None) for these forward arguments."""
    x = args[op_signature(f"{name}_forward")[0][0]]
    W1 = form.width(**args)
    prefix = rng.standard_normal((x.shape[0], W1) + x.shape[2:]).astype(dtype) if with_prefix else None
    return (dict(form.backward_args(**args)) if form.backward_args else dict(args)), prefix


def assert_close(what, got, want, tol):
    assert (got is None) == (want is None), f"{what}: got {got is None and 'None'}, want {want is None and 'None'}"
    if want is not None:
        err = rel_err(got, want)
        assert err < tol, f"{what}: relative error {err:.2e} >= {tol:.0e}"


# ---- the checks ---------------------------------------------------------------------------------

def check_state_passing(name, form, forward, backward, rng, dtype, args, with_state, cut_at):
    tol = TOL[dtype]
    fop, bop = f"{name}_forward", f"{name}_backward"
    h0, douts, dh_last = state_passing_case(form, rng, dtype, args, with_state)
    *outs, h_last = call(forward, fop, {**args, "h0": h0})
    *grads, dh0 = call(backward, bop, {**douts, **args, "h0": h0, "dh_last": dh_last})

    tin, tdout = t_axes(form.inputs), t_axes(form.outputs, "d")
    length = next(args[n].shape[ax] for n, ax in tin.items() if ax is not None)
    pieces = [(0, cut_at), (cut_at, length)]
    ins = [{**args, **{n: cut(args[n], ax, *p) for n, ax in tin.items()}} for p in pieces]
    dos = [{n: cut(douts[n], ax, *p) for n, ax in tdout.items()} for p in pieces]
    order = [1, 0] if form.reverse else [0, 1]  # the piece the state enters first
    h, h_in, got = h0, {}, {}
    for p in order:
        h_in[p] = h
        *got[p], h = call(forward, fop, {**ins[p], "h0": h})
    for i, (out, ax) in enumerate(zip(form.outputs, tdout.values())):
        assert_close(f"output {out}", np.concatenate([got[0][i], got[1][i]], axis=ax), outs[i], tol)
    assert_close("h_last", h, h_last, tol)

    dh, g = dh_last, {}
    for p in reversed(order):
        *g[p], dh = call(backward, bop, {**dos[p], **ins[p], "h0": h_in[p], "dh_last": dh})
    for i, (n, ax) in enumerate(tin.items()):
        both = g[0][i] + g[1][i] if ax is None else np.concatenate([g[0][i], g[1][i]], axis=ax)
        assert_close("d" + n, both, grads[i], tol)
    assert_close("dh0", dh, dh0, tol)


def check_halo(name, form, forward, backward, rng, dtype, args, with_prefix, cut_at):
    tol = TOL[dtype]
    fop, bop = f"{name}_forward", f"{name}_backward"
    x_name, dy_name = op_signature(fop)[0][0], op_signature(bop)[0][0]
    bargs, prefix = halo_case(name, form, rng, dtype, args, with_prefix)
    y = call(forward, fop, {**args, "prefix": prefix})
    dy = rng.standard_normal(y.shape).astype(dtype)
    *grads, dprefix = call(backward, bop, {dy_name: dy, **bargs, "prefix": prefix})

    W1 = form.width(**args)
    x = args[x_name]
    x1, x2 = x[:, :cut_at].copy(), x[:, cut_at:].copy()
    ext = np.concatenate([np.zeros((x.shape[0], W1) + x.shape[2:], dtype) if prefix is None else prefix, x1], axis=1)
    prefix2 = np.ascontiguousarray(ext[:, ext.shape[1] - W1:])
    y1 = call(forward, fop, {**args, x_name: x1, "prefix": prefix})
    y2 = call(forward, fop, {**args, x_name: x2, "prefix": prefix2})
    assert_close("y", np.concatenate([y1, y2], axis=1), y, tol)

    *g1, dp1 = call(backward, bop, {**bargs, dy_name: dy[:, :cut_at].copy(), x_name: x1, "prefix": prefix})
    *g2, dp2 = call(backward, bop, {**bargs, dy_name: dy[:, cut_at:].copy(), x_name: x2, "prefix": prefix2})
    dext = np.concatenate([np.zeros_like(ext[:, :W1]) if dp1 is None else dp1, g1[0]], axis=1)
    dext[:, dext.shape[1] - W1:] += dp2
    assert_close("dx", np.concatenate([dext[:, W1:], g2[0]], axis=1), grads[0], tol)
    for i in range(1, len(grads)):
        assert_close(f"gradient {i} of {len(grads)}", None if grads[i] is None else g1[i] + g2[i], grads[i], tol)
    assert_close("dprefix", None if prefix is None else dext[:, :W1], dprefix, tol)


# ---- on the backends -----------------------------------------------------------------------------

def run_state_passing(be, name, direction, dtype, rng, with_state, cut_at):
    form = SEQUENCE_FORMS[name]
    forward, backward = getattr(be, f"{name}_forward"), getattr(be, f"{name}_backward")
    if direction == "time-reversed":
        form, forward, backward = time_reversed(name, form, forward, backward)
    check_state_passing(name, form, forward, backward, rng, dtype, example(name, rng, dtype, T), with_state, cut_at)


def run_halo(be, name, dtype, rng, with_prefix, cut_at):
    form = SEQUENCE_FORMS[name]
    check_halo(name, form, getattr(be, f"{name}_forward"), getattr(be, f"{name}_backward"), rng, dtype,
               example(name, rng, dtype, T), with_prefix, cut_at)


@pytest.mark.parametrize("cut_at", CUTS)
@pytest.mark.parametrize("with_state", [False, True], ids=["no-h0", "h0"])
@pytest.mark.parametrize("direction", ["declared", "time-reversed"])
@pytest.mark.parametrize("name", STATE_PASSING)
def test_state_passing_numpy(npb, rng, name, direction, with_state, cut_at):
    run_state_passing(npb, name, direction, np.float64, rng, with_state, cut_at)


@pytest.mark.parametrize("cut_at", CUTS)
@pytest.mark.parametrize("with_state", [False, True], ids=["no-h0", "h0"])
@pytest.mark.parametrize("direction", ["declared", "time-reversed"])
@pytest.mark.parametrize("name", STATE_PASSING)
def test_state_passing_c(cb, rng, name, direction, with_state, cut_at):
    run_state_passing(cb, name, direction, np.float32, rng, with_state, cut_at)


@pytest.mark.parametrize("cut_at", CUTS)
@pytest.mark.parametrize("with_prefix", [False, True], ids=["no-prefix", "prefix"])
@pytest.mark.parametrize("name", HALO)
def test_halo_numpy(npb, rng, name, with_prefix, cut_at):
    run_halo(npb, name, np.float64, rng, with_prefix, cut_at)


@pytest.mark.parametrize("cut_at", CUTS)
@pytest.mark.parametrize("with_prefix", [False, True], ids=["no-prefix", "prefix"])
@pytest.mark.parametrize("name", HALO)
def test_halo_c(cb, rng, name, with_prefix, cut_at):
    run_halo(cb, name, np.float32, rng, with_prefix, cut_at)
