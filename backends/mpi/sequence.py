"""Sequence mode of the MPI backend: process r holds positions edges[r]:edges[r+1] of every sequence
(be.seq_edges), and each sequence-mixing op runs as its declared form (SEQUENCE_FORMS in
backends/base.py) says, through the one mechanism of that form:

    StatePassing  state_passing.py  the state leaving a slice is the next slice's h0 (a pipeline over
                                    channel groups, or an Exscan of the slices' affine maps)
    Halo          halo.py           the last `width` positions of a slice are the next one's prefix
    KVPassing     kv_passing.py     keys and values passed down the line to the queries that see them
    Offset        offsets.py        the slice's first position (data mode: batch row) added to an offset
    SequenceMean  pool.py           partial sums reduce-scattered: afterwards each process owns batch rows
    Refused       (here)            a ValueError saying why and what to do instead

An op of SEQUENCE_MIXING_OPS without a form is refused the same way: run on a slice, it would
silently compute something else than on the whole sequence.

Messages flow from earlier to later processes in a forward and back in a backward (the other way
for a StatePassing op declared reverse=True), and sends never wait (be.isend), so a process runs
ahead of the ones after it instead of stepping in lockstep with them; only SequenceMean (and the
loss and gradient sums of the backend) are collective, and StatePassing with scan="exscan".
"""
import dataclasses
import importlib

from ..base import (SEQUENCE_FORMS, SEQUENCE_MIXING_OPS, Halo, KVPassing, Offset, Refused, SequenceMean,
                    StatePassing, form_ops)

TAG_HALO, TAG_DHALO, TAG_STATE, TAG_DSTATE, TAG_KV, TAG_DKV, TAG_SINK, TAG_DSINK = range(1, 9)

MECHANISMS = {StatePassing: "state_passing", Halo: "halo", KVPassing: "kv_passing", Offset: "offsets",
              SequenceMean: "pool"}


def split_range(n, parts):
    """Edges of `parts` contiguous near-equal slices of range(n): the first n % parts get one more."""
    q, rem = divmod(n, parts)
    edges = [0]
    for r in range(parts):
        edges.append(edges[-1] + q + (r < rem))
    return edges


def sequence_ops(be, forms=SEQUENCE_FORMS):
    """{op: function} for every op of SEQUENCE_MIXING_OPS, built from its declared form."""
    ops = {}
    for name, form in forms.items():
        if isinstance(form, Refused):
            ops.update({op: refuse(op, form.reason) for op in form_ops(name)})
        else:
            ops.update(mechanism(form).build(be, name, form))
    for op in SEQUENCE_MIXING_OPS:
        if op not in ops:
            ops[op] = refuse(op, "it has no declared sequence form (SEQUENCE_FORMS, backends/base.py); "
                                 "declare one, or run with mode='data'")
    return ops


def ends(be, reverse):
    """(first, last, source, destination) of this process along an op's direction: the processes in
    rank order, or from the last to the first when `reverse`."""
    r, P = be.rank, be.size
    if reverse:
        return r == P - 1, r == 0, r + 1, r - 1
    return r == 0, r == P - 1, r - 1, r + 1


def time_reversed_forms(forms=SEQUENCE_FORMS):
    """The declarations for sequences each process has flipped (Backend.time_reversed): a flipped slice
    is the slice of the flipped sequence that the processes hold in reverse order, so a state or a halo
    crosses the boundaries the other way (reverse flipped) and the local op is unchanged. The other
    forms have no use in a backward-in-time scan and are refused there."""
    out = {}
    for name, form in forms.items():
        if isinstance(form, (StatePassing, Halo)):
            out[name] = dataclasses.replace(form, reverse=not form.reverse)
        elif isinstance(form, Refused):
            out[name] = form
        else:
            out[name] = Refused(f"the backend's time reversal (for backward-in-time scans) passes only scan "
                                f"states and conv halos the other way, not a {type(form).__name__}; call it "
                                f"on the backend itself")
    return out


def batch_ops(be):
    """Data mode: {op: function} for the ops that depend on the absolute batch row (Offset with `batch`)."""
    from . import offsets
    ops = {}
    for name, form in SEQUENCE_FORMS.items():
        if isinstance(form, Offset) and form.batch is not None:
            ops.update(offsets.build_batch(be, name, form))
    return ops


def mechanism(form):
    try:
        return importlib.import_module(f"{__package__}.{MECHANISMS[type(form)]}")
    except KeyError:
        raise TypeError(f"the mpi backend has no mechanism for the form {type(form).__name__}") from None


def refuse(op, reason):
    def refused(*args, **kwargs):
        raise ValueError(f"{op}: the mpi backend splits each sequence over processes (sequence mode) and "
                         f"cannot run this op on a slice: {reason}")
    refused.__name__ = op
    return refused
