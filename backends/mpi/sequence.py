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
import importlib

from ..base import (SEQUENCE_FORMS, SEQUENCE_MIXING_OPS, Halo, KVPassing, Offset, Refused, SequenceMean,
                    StatePassing, form_ops)

TAG_HALO, TAG_DHALO, TAG_STATE, TAG_DSTATE, TAG_KV, TAG_DKV = range(1, 7)

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
