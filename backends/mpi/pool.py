"""SequenceMean (backends/base.py) in sequence mode: mean-pool over a split sequence.

The forward reduce-scatters the slices' partial sums: afterwards process r owns rows
be.local_batch of the pooled (B,D), so the head and the loss run batch-parallel and each sample's
gradient is computed once (a plain sum of gradients over processes stays exact). The backward
gathers every row's gradient and spreads it over this process's positions (/ the global T).
"""
import numpy as np

from .sequence import split_range


def build(be, name, form):
    forward, backward = f"{name}_forward", f"{name}_backward"

    def pool_forward(x):
        edges = be.sequence_edges(forward, x.shape[1])
        B, _, D = x.shape
        rows = _batch_rows(be, forward, B)
        be.complete_sends()
        out = np.empty((rows[be.rank + 1] - rows[be.rank], D), np.float64)
        be.comm.Reduce_scatter(x.sum(axis=1, dtype=np.float64), out,
                               recvcounts=[(rows[p + 1] - rows[p]) * D for p in range(be.size)])
        return (out / edges[-1]).astype(x.dtype)

    def pool_backward(dy, seq_len):
        edges = be.sequence_edges(backward, seq_len, global_length=True)
        n, D = dy.shape
        B = be.all_sum(n)
        rows = _batch_rows(be, backward, B)
        full = np.empty((B, D), dy.dtype)
        be.comm.Allgatherv(np.ascontiguousarray(dy), [full, [(rows[p + 1] - rows[p]) * D for p in range(be.size)]])
        L = edges[be.rank + 1] - edges[be.rank]
        return np.repeat((full / seq_len)[:, None, :], L, axis=1)

    pool_forward.__name__, pool_backward.__name__ = forward, backward
    return {forward: pool_forward, backward: pool_backward}


def _batch_rows(be, op, B):
    if B < be.size:
        raise ValueError(f"{op}: a batch of {B} rows cannot be shared by {be.size} processes after the pool")
    return split_range(B, be.size)
