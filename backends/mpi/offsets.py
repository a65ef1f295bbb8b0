"""Offset (backends/base.py): an op that depends on the absolute position (RoPE) or on the absolute
position and batch row (dropout's hashed mask) through offset arguments. A process holding
positions start.. of each sequence (sequence mode) adds start to the `time` argument, one holding
rows start.. of the batch (data mode) adds start to the `batch` argument; nothing is sent, and
each process computes exactly its part of the one-process result."""
from ..base import form_ops, op_arguments


def build(be, name, form):
    """Sequence mode: the slice's first position added to the argument `form.time`."""
    def start(op, x):
        return be.sequence_edges(op, x.shape[1])[be.rank]
    return {op: _shifted(op, getattr(be.local, op), form.time, start) for op in form_ops(name)}


def build_batch(be, name, form):
    """Data mode: the first batch row of this process added to the argument `form.batch`."""
    def start(op, x):
        edges = be.batch_edges
        if edges is None or edges[be.rank + 1] - edges[be.rank] != x.shape[0]:
            raise ValueError(f"{op}: got {x.shape[0]} batch rows, but this process (rank {be.rank}) holds the "
                             f"rows of the split {edges}; pass the model input through be.shard_tokens first")
        return edges[be.rank]
    return {op: _shifted(op, getattr(be.local, op), form.batch, start) for op in form_ops(name)}


def _shifted(op, local, arg, start):
    def shifted(*args, **kwargs):
        arguments = op_arguments(op, args, kwargs)
        arguments[arg] += start(op, next(iter(arguments.values())))
        return local(*arguments.values())
    shifted.__name__ = op
    return shifted
