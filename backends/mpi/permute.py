"""Backend.permute_positions in sequence mode: y[:, t] = x[:, order[t]] over the whole sequence, each
process holding positions edges[r]:edges[r+1] of x and of y (the cross scan's row- to column-major
re-ordering, hybridref/layers/scan_directions.py).

One Alltoallv: process r sends to each process q the rows of its slice that q's outputs read, in
the order of q's outputs, and places what it receives (grouped by sender, each group in output
order) at its outputs. Pure data movement, so the result is the one-process result bit for bit.
Every position crosses once, (P−1)/P of B·T·C values in all; the backward is the same call with
the inverse permutation. Collective: every process calls it at the same point of the pass.
"""
import numpy as np


def permute_positions(be, x, order):
    edges = be.sequence_edges("permute_positions", x.shape[1])
    r, P, T = be.rank, be.size, edges[-1]
    order = np.asarray(order)
    if order.shape != (T,) or not np.array_equal(np.sort(order), np.arange(T)):
        raise ValueError(f"permute_positions: order must be a permutation of the {T} positions of the whole "
                         f"sequence, got shape {order.shape}")
    owner = np.searchsorted(edges, order, side="right") - 1  # the process holding the input each output reads
    rows = np.moveaxis(x, 1, 0)  # (L, B, ...): a position's values contiguous
    width = int(np.prod(rows.shape[1:], dtype=np.int64))
    sends = [order[edges[q]:edges[q + 1]][owner[edges[q]:edges[q + 1]] == r] - edges[r] for q in range(P)]
    sendbuf = np.ascontiguousarray(rows[np.concatenate(sends)])
    source = owner[edges[r]:edges[r + 1]]  # the sender of each of this process's outputs
    recvbuf = np.empty((len(source),) + rows.shape[1:], x.dtype)
    be.complete_sends()
    be.comm.Alltoallv(_spec(sendbuf, [len(s) * width for s in sends]),
                      _spec(recvbuf, [int(np.sum(source == q)) * width for q in range(P)]))
    out = np.empty_like(recvbuf)
    out[np.argsort(source, kind="stable")] = recvbuf  # the outputs grouped by sender, each group in order
    return np.ascontiguousarray(np.moveaxis(out, 0, 1))


def _spec(buf, counts):
    from mpi4py.util.dtlib import from_numpy_dtype
    displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    return [buf, (counts, displs), from_numpy_dtype(buf.dtype)]
