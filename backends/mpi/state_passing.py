"""StatePassing (backends/base.py) in sequence mode: the state leaving one process's slice is the h0
of the next one's, and in the backward dh0 of a slice is the dh_last of the one before it.

"Before" and "after" follow the op's direction: with reverse=False the state goes from process r
to r+1 in the forward (process 0 takes the caller's h0), with reverse=True from r+1 to r (the last
process takes h0), and the gradient the other way. Every process returns its own slice's outputs
and h_last, and, for the inputs without a sequence axis (weights) and h0, its partial gradient:
the sum over processes is the gradient.

Two ways to pass the state, chosen by the backend's `scan`:

pipeline (the default): the declared channel axis splits the op into independent channel groups,
    which go one after another: a process scans group g from the true incoming state as soon as the
    process before it has sent that group's end state, while that one goes on with group g+1. Every
    step is computed once, from the exact state. A form without channels passes the whole state:
    the processes then take turns.
exscan (forms that declare a decay): every process scans its slice at once from a zero state (the
    first from h0), which gives its end state h_end; the slice maps an incoming state h to
    decay ⊙ h + h_end. One Exscan over the processes with a non-commutative op composing these maps
    hands each its true incoming state, from which it scans again (the first need not). The
    backward is the mirror over the reversed order, with the maps g -> decay ⊙ g + dh0.
"""
import functools
import math

import numpy as np

from ..base import op_arguments
from .sequence import TAG_DSTATE, TAG_STATE, ends


def build(be, name, form):
    forward, backward = f"{name}_forward", f"{name}_backward"
    return dict(zip((forward, backward), make_ops(be, name, form, getattr(be.local, forward),
                                                  getattr(be.local, backward))))


def make_ops(be, name, form, forward, backward):
    """The sequence-mode (forward, backward) of the ops `name`_forward/_backward of this form, given
    their one-process functions (the local backend's ops, or any functions with their contract,
    called with every argument positionally in the contract's order)."""
    plan = _Plan(name, form)
    if be.scan == "exscan" and form.decay is not None:
        return (functools.partial(_forward_exscan, be, plan, forward),
                functools.partial(_backward_exscan, be, plan, backward))
    return (functools.partial(_forward_pipeline, be, plan, forward),
            functools.partial(_backward_pipeline, be, plan, backward))


class _Plan:
    """What the mechanism reads off a declaration, once."""

    def __init__(self, name, form):
        self.name, self.form = name, form
        self.forward, self.backward = f"{name}_forward", f"{name}_backward"
        axis = lambda axes, letter: axes.split().index(letter) if letter in axes.split() else None
        ch = form.channels
        self.inputs = {n: axis(a, ch) if ch else None for n, a in form.inputs.items()}  # name -> channel axis
        self.douts = {"d" + n: axis(a, ch) if ch else None for n, a in form.outputs.items()}
        self.out_ch = list(self.douts.values())
        self.state_ch = axis(form.state, ch) if ch else None
        self.per_position = [n for n, a in form.inputs.items() if "T" in a.split()]
        self.t_axis = axis(form.inputs[self.per_position[0]], "T")

    def bind(self, be, op, args, kwargs):
        """({argument: value} of the call, the state's shape, its dtype), after checking that the
        per-position inputs are this process's slice."""
        arguments = op_arguments(op, args, kwargs)
        x = arguments[self.per_position[0]]
        be.sequence_edges(op, x.shape[self.t_axis])
        return arguments, self.form.state_shape(arguments), x.dtype

    def decay(self, arguments):
        return self.form.decay(**{name: arguments[name] for name in self.inputs})

    def kept_key(self, arguments):
        return [arguments[n] for n in self.per_position]

    def groups(self, be, arguments):
        """Channel ranges passed one after another (None: the whole state at once). `group` channels
        (16: one task of the C scan), wider when a process has more threads than batch rows."""
        if self.state_ch is None:
            return [None]
        sizes = self.form.sizes(arguments)
        width = self.form.group * max(1, math.ceil(be.threads / sizes.get("B", 1)))
        C = sizes[self.form.channels]
        return [None] if width >= C else [(c, min(c + width, C)) for c in range(0, C, width)]


def _index(axis, group):
    return (slice(None),) * axis + (slice(*group),)


def _group_args(arguments, channel_axes, group, **state):
    """The positional arguments of the local op on channels `group`: each array with a channel axis
    cut to the group (contiguous), the others whole, the state arguments replaced."""
    values = dict(arguments)
    for name, axis in channel_axes.items():
        if axis is not None:
            values[name] = np.ascontiguousarray(arguments[name][_index(axis, group)])
    values.update(state)
    return values.values()


# ---- pipeline over channel groups ------------------------------------------------------------------

def _forward_pipeline(be, plan, local, *args, **kwargs):
    """Per channel group: receive the state entering the slice, scan from it, send the state
    leaving it. h_last is the state at the end of this process's slice."""
    arguments, shape, dtype = plan.bind(be, plan.forward, args, kwargs)
    h0 = arguments["h0"]
    first, last, source, dest = ends(be, plan.form.reverse)
    groups = plan.groups(be, arguments)
    if groups == [None]:  # the whole state at once
        h_in = h0 if first else be.recv(shape, dtype, source, TAG_STATE)
        *outs, h_last = local(*{**arguments, "h0": h_in}.values())
        if not last:
            be.isend(h_last, dest, TAG_STATE)
        be.kept.put(plan.name, plan.kept_key(arguments), h_in)
        return (*outs, h_last)
    sc = plan.state_ch
    outs, h_last = None, np.empty(shape, dtype)
    h_in = None if first and h0 is None else np.empty(shape, dtype)
    for group in groups:
        at = _index(sc, group)
        if not first:
            h_in[at] = be.recv(shape[:sc] + (group[1] - group[0],) + shape[sc + 1:], dtype, source, TAG_STATE)
        elif h0 is not None:
            h_in[at] = h0[at]
        *ys, hg = local(*_group_args(arguments, plan.inputs, group, h0=None if h_in is None else h_in[at].copy()))
        if not last:
            be.isend(hg, dest, TAG_STATE)
        if outs is None:
            outs = [np.empty(_whole(y.shape, ax, shape[sc]), y.dtype) for y, ax in zip(ys, plan.out_ch)]
        for out, y, ax in zip(outs, ys, plan.out_ch):
            out[_index(ax, group)] = y
        h_last[at] = hg
    be.kept.put(plan.name, plan.kept_key(arguments), h_in)
    return (*outs, h_last)


def _whole(shape, axis, size):
    return shape[:axis] + (size,) + shape[axis + 1:]


def _backward_pipeline(be, plan, local, *args, **kwargs):
    """The mirror: per channel group, receive the gradient of the state leaving the slice from the
    process after, run the local backward from it, send dh0 to the process before. Gradients of
    inputs without the channel axis add up over the groups."""
    arguments, shape, dtype = plan.bind(be, plan.backward, args, kwargs)
    h0, dh_last = arguments["h0"], arguments["dh_last"]
    first, last, source, dest = ends(be, plan.form.reverse)
    h_in = be.kept.get(plan.backward, plan.name, plan.kept_key(arguments))
    groups = plan.groups(be, arguments)
    if groups == [None]:
        dh = None if last else be.recv(shape, dtype, dest, TAG_DSTATE)
        if dh_last is not None:
            dh = dh_last + (0 if dh is None else dh)
        *grads, dh_in = local(*{**arguments, "h0": h_in, "dh_last": dh}.values())
        if not first:
            be.isend(dh_in, source, TAG_DSTATE)
        return (*grads, None if h0 is None else dh_in if first else np.zeros_like(h0))
    sc = plan.state_ch
    cut = {**plan.douts, **plan.inputs}
    grads = [np.zeros_like(arguments[n]) if ax is None else np.empty_like(arguments[n]) for n, ax in plan.inputs.items()]
    dh0 = None if h0 is None else np.zeros_like(h0)
    for group in groups:
        at = _index(sc, group)
        dh = None if last else be.recv(shape[:sc] + (group[1] - group[0],) + shape[sc + 1:], dtype, dest, TAG_DSTATE)
        if dh_last is not None:
            dh = dh_last[at] + (0 if dh is None else dh)
        *gs, dh_in = local(*_group_args(arguments, cut, group, h0=None if h_in is None else h_in[at].copy(),
                                        dh_last=None if dh is None else np.ascontiguousarray(dh)))
        if not first:
            be.isend(dh_in, source, TAG_DSTATE)
        elif h0 is not None:
            dh0[at] = dh_in
        for i, (g, ax) in enumerate(zip(gs, plan.inputs.values())):
            if g is None:
                grads[i] = None
            elif ax is None:
                grads[i] += g
            else:
                grads[i][_index(ax, group)] = g
    return (*grads, dh0)


# ---- exclusive scan of the slices' affine maps -----------------------------------------------------

def _forward_exscan(be, plan, local, *args, **kwargs):
    """Every process scans its slice from a zero state (the first from h0) at once; the exclusive
    scan of the maps h -> decay ⊙ h + h_end gives each its true incoming state, from which it scans
    again. (For Mamba-1 rescanning costs the same as correcting the outputs, an exponential per
    position, channel and state either way, and is exact by construction.)"""
    arguments, _, _ = plan.bind(be, plan.forward, args, kwargs)
    h0 = arguments["h0"]
    first = ends(be, plan.form.reverse)[0]
    *outs, h_end = local(*{**arguments, "h0": h0 if first else None}.values())
    h_in = exscan_affine(be, be.reverse_comm if plan.form.reverse else be.comm, plan.decay(arguments), h_end)
    if first:
        h_in = h0
    else:
        *outs, h_end = local(*{**arguments, "h0": h_in}.values())
    be.kept.put(plan.name, plan.kept_key(arguments), h_in)
    return (*outs, h_end)


def _backward_exscan(be, plan, local, *args, **kwargs):
    """The mirror: every process runs its backward from the dh_last it was given (zero unless it is
    the last) at once; the exclusive scan, from the last process back, of the maps
    g -> decay ⊙ g + dh0 gives each the gradient its end state receives from the later processes,
    and it runs its backward again with that added (the last one's is already exact)."""
    arguments, shape, dtype = plan.bind(be, plan.backward, args, kwargs)
    h0, dh_last = arguments["h0"], arguments["dh_last"]
    first, last, _, _ = ends(be, plan.form.reverse)
    h_in = be.kept.get(plan.backward, plan.name, plan.kept_key(arguments))
    g = local(*{**arguments, "h0": h_in}.values())
    dh_in = np.zeros(shape, dtype) if g[-1] is None else g[-1]
    dh_later = exscan_affine(be, be.comm if plan.form.reverse else be.reverse_comm, plan.decay(arguments), dh_in)
    if not last:
        dh = dh_later if dh_last is None else dh_last + dh_later
        g = local(*{**arguments, "h0": h_in, "dh_last": dh}.values())
    dh0 = None if h0 is None else g[-1] if first else np.zeros_like(h0)
    return (*g[:-1], dh0)


def _affine_compose(inmem, inoutmem, datatype):
    """The MPI op of the exclusive scans, on maps h -> a ⊙ h + b stored as one element [a | b] of
    `datatype`: inout = inout ∘ in, where `in` comes from the earlier processes and so is applied first."""
    dtype = np.dtype(datatype.decode()[0].tocode())
    a1, b1 = np.frombuffer(inmem, dtype).reshape(2, -1)
    a2, b2 = np.frombuffer(inoutmem, dtype).reshape(2, -1)
    b2 += a2 * b1
    a2 *= a1


@functools.cache
def _compose_op():
    from mpi4py import MPI
    return MPI.Op.Create(_affine_compose, commute=False)


def exscan_affine(be, comm, decay, offset):
    """Exclusive scan over the processes of `comm` (in its rank order) of the maps
    h -> decay ⊙ h + offset: the composition of the earlier processes' maps applied to a zero
    state (zeros on the first process). One Exscan of 2·decay.size floats, log P steps."""
    from mpi4py.util.dtlib import from_numpy_dtype
    be.complete_sends()
    pair = np.concatenate([decay.ravel(), offset.ravel()])
    out = np.zeros_like(pair)
    kind = from_numpy_dtype(pair.dtype).Create_contiguous(pair.size).Commit()  # one element: never split
    try:
        comm.Exscan([pair, 1, kind], [out, 1, kind], op=_compose_op())
    finally:
        kind.Free()
    return out[decay.size:].reshape(offset.shape)
