"""KVPassing (backends/base.py) in sequence mode: causal attention over a split sequence.

Process r computes its diagonal block (q_offset 0), then each earlier block as it arrives from
r−1, with q_offset = its query start minus the block's key start, merging the partial results by
their log-sum-exp. It forwards each block to r+1 before using it, so a process holds at most two
blocks whatever P is; with a window only the last `window` keys of a slice are sent, and only as
far as a query can see them. The backward sends the same blocks down the line: given the whole
rows' o and lse, each block pair's dq, dk, dv are exact parts, so dq adds up locally and dk, dv of
an earlier block go back to its owner, which adds them in rank order.

Sinks (the first `sinks` positions of the sequence, visible to every later query whatever the window:
Hymba's meta tokens) are process 0's: with a window it sends their keys and values to every later
process, which attends over them as one more block, and their dk, dv come back to process 0, which adds
them in rank order; the blocks passed down the line then start after them. Without a window every key
is seen anyway and the sinks change nothing.
"""
import numpy as np

from ..base import op_arguments
from ..validate import check_scalars
from .sequence import TAG_DKV, TAG_DSINK, TAG_KV, TAG_SINK


def build(be, name, form):
    forward, backward = f"{name}_forward", f"{name}_backward"
    local_forward, local_backward = getattr(be.local, forward), getattr(be.local, backward)

    def kv_forward(*args, **kwargs):
        """The diagonal block, then each earlier block (and process 0's sinks) merged in by its log-sum-exp."""
        q, k, v, window, q_offset, sinks = op_arguments(forward, args, kwargs).values()
        _check_self_attention(be, forward, q, k, q_offset, window, sinks)
        here = be.seq_edges[be.rank]
        o, lse = local_forward(q, k, v, window, 0, _block_sinks(sinks, here))
        for start, kb, vb, _ in _blocks(be, k, v, window, sinks):
            ob, lb = local_forward(q, kb, vb, window, here - start, _block_sinks(sinks, start))
            new = np.logaddexp(lse, lb)  # finite: the diagonal block gives every query a key
            o = o * _row_weight(lse, new) + ob * _row_weight(lb, new)
            lse = new
        return o, lse

    def kv_backward(*args, **kwargs):
        do, q, k, v, o, lse, window, q_offset, sinks = op_arguments(backward, args, kwargs).values()
        _check_self_attention(be, backward, q, k, q_offset, window, sinks)
        edges, r = be.seq_edges, be.rank
        dq, dk, dv = local_backward(do, q, k, v, o, lse, window, 0, _block_sinks(sinks, edges[r]))
        for start, kb, vb, tag in _blocks(be, k, v, window, sinks):
            dqb, dkb, dvb = local_backward(do, q, kb, vb, o, lse, window, edges[r] - start, _block_sinks(sinks, start))
            dq += dqb
            be.isend(np.stack([dkb, dvb]), _owner(edges, start), tag)
        if r == 0 and _sinks_sent(window, sinks):
            for src in range(1, be.size):  # in rank order: the same sum on every run
                dkv = be.recv((2, k.shape[0], sinks) + k.shape[2:], k.dtype, src, TAG_DSINK)
                dk[:, :sinks] += dkv[0]
                dv[:, :sinks] += dkv[1]
        cut = _shared_keys(edges, window, r, sinks) - edges[r]
        for src in range(r + 1, be.size):
            if _first_needed(edges, window, src) <= r:
                dkv = be.recv((2, k.shape[0], k.shape[1] - cut) + k.shape[2:], k.dtype, src, TAG_DKV)
                dk[:, cut:] += dkv[0]
                dv[:, cut:] += dkv[1]
        return dq, dk, dv

    kv_forward.__name__, kv_backward.__name__ = forward, backward
    return {forward: kv_forward, backward: kv_backward}


def _block_sinks(sinks, start):
    """The sinks among a key block starting at position `start`: its first sinks − start keys."""
    return max(0, sinks - start)


def _sinks_sent(window, sinks):
    """Whether process 0 sends its sinks to every later process (only a window hides them)."""
    return window is not None and sinks > 0


def _first_needed(edges, window, r):
    """The first process whose keys a query of process r can see."""
    if window is None:
        return 0
    o = r
    while o > 0 and edges[o] - 1 >= edges[r] - window:
        o -= 1
    return o


def _shared_keys(edges, window, o, sinks):
    """The first position of process o's keys that a later process can see through its window: all of
    them, or with a window only the last `window` (the next process's first query reaches furthest
    back) and none of the sinks, which travel apart (_blocks)."""
    return edges[o] if window is None else min(edges[o + 1], max(edges[o], edges[o + 1] - window, sinks))


def _blocks(be, k, v, window, sinks):
    """Yield (start, k, v, tag) for the keys of each earlier process that this one's queries can see
    (start: the block's first position; tag: the one its dk, dv go back with), nearest first, then
    process 0's sinks when a window would hide them. A block travels down the line r -> r+1 -> ...,
    each process forwarding it before using it and receiving the next one while it computes, so a
    process holds at most two blocks whatever P is; the sinks go from process 0 to each process."""
    edges, r, P = be.seq_edges, be.rank, be.size
    first = [_first_needed(edges, window, p) for p in range(P)]
    owner = r
    if r == 0 and _sinks_sent(window, sinks):
        for dest in range(1, P):
            be.isend(np.stack([k[:, :sinks], v[:, :sinks]]), dest, TAG_SINK)
    if r + 1 < P and r >= first[r + 1]:
        cut = _shared_keys(edges, window, r, sinks) - edges[r]
        be.isend(np.stack([k[:, cut:], v[:, cut:]]), r + 1, TAG_KV)
    while owner - 1 >= first[r]:
        owner -= 1
        start = _shared_keys(edges, window, owner, sinks)
        held = be.recv((2, k.shape[0], edges[owner + 1] - start) + k.shape[2:], k.dtype, r - 1, TAG_KV)
        if r + 1 < P and owner >= first[r + 1]:
            be.isend(held, r + 1, TAG_KV)
        yield start, held[0], held[1], TAG_DKV
    if r > 0 and _sinks_sent(window, sinks):
        held = be.recv((2, k.shape[0], sinks) + k.shape[2:], k.dtype, 0, TAG_SINK)
        yield 0, held[0], held[1], TAG_DSINK


def _check_self_attention(be, op, q, k, q_offset, window, sinks):
    edges = be.sequence_edges(op, q.shape[1])
    if q_offset != 0 or k.shape[1] != q.shape[1]:
        raise ValueError(f"{op}: the mpi backend splits self-attention (q and k of one slice, q_offset 0), "
                         f"got q {q.shape}, k {k.shape}, q_offset {q_offset!r}")
    check_scalars(op, window=window, sinks=sinks)
    if _sinks_sent(window, sinks) and be.size > 1 and sinks >= edges[1]:
        raise ValueError(f"{op}: the mpi backend keeps the sinks on process 0, which holds positions 0..{edges[1] - 1}"
                         f" of the sequence, but sinks={sinks!r} (with window {window}): each later process "
                         f"needs at least one position after the sinks; run fewer processes or a longer sequence")


def _row_weight(lse, new):
    """exp(lse - new) of (B,H,T) as a (B,T,H,1) factor of o."""
    return np.exp(lse - new).transpose(0, 2, 1)[..., None]


def _owner(edges, position):
    return next(p for p in range(len(edges) - 1) if edges[p] <= position < edges[p + 1])
