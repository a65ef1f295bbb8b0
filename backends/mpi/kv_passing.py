"""KVPassing (backends/base.py) in sequence mode: causal attention over a split sequence.

Process r computes its diagonal block (q_offset 0), then each earlier block as it arrives from
r−1, with q_offset = its query start minus the block's key start, merging the partial results by
their log-sum-exp. It forwards each block to r+1 before using it, so a process holds at most two
blocks whatever P is; with a window only the last `window` keys of a slice are sent, and only as
far as a query can see them. The backward sends the same blocks down the line: given the whole
rows' o and lse, each block pair's dq, dk, dv are exact parts, so dq adds up locally and dk, dv of
an earlier block go back to its owner, which adds them in rank order.
"""
import numpy as np

from ..base import op_arguments
from .sequence import TAG_DKV, TAG_KV


def build(be, name, form):
    forward, backward = f"{name}_forward", f"{name}_backward"
    local_forward, local_backward = getattr(be.local, forward), getattr(be.local, backward)

    def kv_forward(*args, **kwargs):
        """The diagonal block, then each earlier block merged in by its log-sum-exp."""
        q, k, v, window, q_offset = op_arguments(forward, args, kwargs).values()
        _check_self_attention(be, forward, q, k, q_offset)
        o, lse = local_forward(q, k, v, window)
        here = be.seq_edges[be.rank]
        for start, kb, vb in _earlier_blocks(be, k, v, window):
            ob, lb = local_forward(q, kb, vb, window, here - start)
            new = np.logaddexp(lse, lb)  # finite: the diagonal block gives every query a key
            o = o * _row_weight(lse, new) + ob * _row_weight(lb, new)
            lse = new
        return o, lse

    def kv_backward(*args, **kwargs):
        do, q, k, v, o, lse, window, q_offset = op_arguments(backward, args, kwargs).values()
        _check_self_attention(be, backward, q, k, q_offset)
        dq, dk, dv = local_backward(do, q, k, v, o, lse, window)
        edges, r = be.seq_edges, be.rank
        for start, kb, vb in _earlier_blocks(be, k, v, window):
            dqb, dkb, dvb = local_backward(do, q, kb, vb, o, lse, window, edges[r] - start)
            dq += dqb
            be.isend(np.stack([dkb, dvb]), _owner(edges, start), TAG_DKV)
        cut = _shared_keys(edges, window, r) - edges[r]
        for src in range(r + 1, be.size):
            if _first_needed(edges, window, src) <= r:
                dkv = be.recv((2, k.shape[0], k.shape[1] - cut) + k.shape[2:], k.dtype, src, TAG_DKV)
                dk[:, cut:] += dkv[0]
                dv[:, cut:] += dkv[1]
        return dq, dk, dv

    kv_forward.__name__, kv_backward.__name__ = forward, backward
    return {forward: kv_forward, backward: kv_backward}


def _first_needed(edges, window, r):
    """The first process whose keys a query of process r can see."""
    if window is None:
        return 0
    o = r
    while o > 0 and edges[o] - 1 >= edges[r] - window:
        o -= 1
    return o


def _shared_keys(edges, window, o):
    """The first position of process o's keys that a later process can see: all of them, or
    with a window only the last `window` (the next process's first query reaches furthest back)."""
    return edges[o] if window is None else min(edges[o + 1], max(edges[o], edges[o + 1] - window))


def _earlier_blocks(be, k, v, window):
    """Yield (start, k, v) for the keys of each earlier process that this one's queries can see
    (start: the block's first position), nearest first. A block travels down the line
    r -> r+1 -> ..., each process forwarding it before using it and receiving the next one while it
    computes, so a process holds at most two blocks whatever P is."""
    edges, r, P = be.seq_edges, be.rank, be.size
    first = [_first_needed(edges, window, p) for p in range(P)]
    owner = r
    if r + 1 < P and r >= first[r + 1]:
        cut = _shared_keys(edges, window, r) - edges[r]
        be.isend(np.stack([k[:, cut:], v[:, cut:]]), r + 1, TAG_KV)
    while owner - 1 >= first[r]:
        owner -= 1
        start = _shared_keys(edges, window, owner)
        held = be.recv((2, k.shape[0], edges[owner + 1] - start) + k.shape[2:], k.dtype, r - 1, TAG_KV)
        if r + 1 < P and owner >= first[r + 1]:
            be.isend(held, r + 1, TAG_KV)
        yield start, held[0], held[1]


def _check_self_attention(be, op, q, k, q_offset):
    be.sequence_edges(op, q.shape[1])
    if q_offset != 0 or k.shape[1] != q.shape[1]:
        raise ValueError(f"{op}: the mpi backend splits self-attention (q and k of one slice, q_offset 0), "
                         f"got q {q.shape}, k {k.shape}, q_offset {q_offset!r}")


def _row_weight(lse, new):
    """exp(lse - new) of (B,H,T) as a (B,T,H,1) factor of o."""
    return np.exp(lse - new).transpose(0, 2, 1)[..., None]


def _owner(edges, position):
    return next(p for p in range(len(edges) - 1) if edges[p] <= position < edges[p + 1])
