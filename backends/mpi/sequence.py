"""The sequence-mixing ops of the MPI backend in `sequence` mode: process r holds positions
edges[r]:edges[r+1] of every sequence (be.seq_edges) and these ops exchange what crosses a
boundary, each calling the local backend's op on its slice.

Messages flow from earlier to later processes in a forward and back in a backward, and
sends never wait (be.isend), so a process runs ahead of the ones after it (forward) or
before it (backward) instead of stepping in lockstep with them; only mean_pool (and the
loss and gradient sums of the backend) are collective, and the selective scan with
scan="exscan" (an Exscan per pass, in place of the default pipeline over channel groups).
"""
import functools
import math

import numpy as np

TAG_HALO, TAG_DHALO, TAG_STATE, TAG_DSTATE, TAG_KV, TAG_DKV = range(1, 7)


def split_range(n, parts):
    """Edges of `parts` contiguous near-equal slices of range(n): the first n % parts get one more."""
    q, rem = divmod(n, parts)
    edges = [0]
    for r in range(parts):
        edges.append(edges[-1] + q + (r < rem))
    return edges


# ---- causal conv1d: the W-1 tokens before the slice -------------------------------------------

def _halo(be, x, W1, prefix):
    """This process's prefix: the W1 positions before its slice (the caller's prefix on rank 0).
    A slice shorter than W1 forwards part of its own prefix, so it waits for it first."""
    r, last = be.rank, be.rank == be.size - 1
    B, L, C = x.shape
    mine = prefix if r == 0 else None
    if r > 0 and L < W1:
        mine = be.recv((B, W1, C), x.dtype, r - 1, TAG_HALO)
    if not last:
        ext = x if L >= W1 else np.concatenate([np.zeros((B, W1, C), x.dtype) if mine is None else mine, x], axis=1)
        be.isend(ext[:, -W1:], r + 1, TAG_HALO)
    if r > 0 and mine is None:
        mine = be.recv((B, W1, C), x.dtype, r - 1, TAG_HALO)
    return mine


def causal_conv1d_forward(be, x, w, bias, prefix=None):
    op = "causal_conv1d_forward"
    be.sequence_edges(op, x.shape[1])
    W1 = w.shape[1] - 1
    mine = _halo(be, x, W1, prefix) if W1 > 0 else prefix
    be.kept.put((x, w), mine)
    return be.local.causal_conv1d_forward(x, w, bias, mine)


def causal_conv1d_backward(be, dy, x, w, has_bias, prefix=None):
    """The gradient of the halo a process sent goes back to it and lands on its last positions
    (and, for a slice shorter than W-1, partly on its own prefix, passed further back)."""
    op = "causal_conv1d_backward"
    be.sequence_edges(op, x.shape[1])
    r, last = be.rank, be.rank == be.size - 1
    mine = be.kept.get(op, (x, w))
    dx, dw, dbias, dmine = be.local.causal_conv1d_backward(dy, x, w, has_bias, mine)
    B, L, C = x.shape
    W1 = w.shape[1] - 1
    if W1 > 0:
        if not last and L < W1:
            _add_halo_grad(be, dx, dmine, W1)
        if r > 0:
            be.isend(dmine, r - 1, TAG_DHALO)
        if not last and L >= W1:
            _add_halo_grad(be, dx, dmine, W1)
    if prefix is None:
        return dx, dw, dbias, None
    return dx, dw, dbias, dmine if r == 0 else np.zeros_like(prefix)


def _add_halo_grad(be, dx, dmine, W1):
    """Add the gradient of the halo this process sent: the last W1 rows of concat(prefix, x)."""
    B, L, C = dx.shape
    dhalo = be.recv((B, W1, C), dx.dtype, be.rank + 1, TAG_DHALO)
    n = min(L, W1)
    dx[:, L - n:] += dhalo[:, W1 - n:]
    if W1 > n and dmine is not None:  # None: rank 0 without a caller's prefix, whose zeros need none
        dmine[:, n:] += dhalo[:, :W1 - n]


# ---- selective scan, scan="pipeline": the state crossing each boundary, over channel groups ----

def _channel_groups(be, B, Din):
    """Channel ranges scanned one after another, so that the next process starts on the first
    group while this one scans the second. 16 channels is one task of the C scan; with more
    threads than B rows a group spans more, to keep every thread busy."""
    width = 16 * max(1, math.ceil(be.threads / B))
    return [(c, min(c + width, Din)) for c in range(0, Din, width)]


def _cols(a, c0, c1):
    return np.ascontiguousarray(a[..., c0:c1])


def selective_scan_forward(be, x, delta, A, Bm, Cm, D, h0=None):
    """Per channel group: receive the state entering the slice, scan from it, send the state
    leaving it. h_last is the state at the end of this process's slice."""
    op = "selective_scan_forward"
    be.sequence_edges(op, x.shape[1])
    r, last = be.rank, be.rank == be.size - 1
    B, L, Din = x.shape
    N = A.shape[1]
    y, h_last = np.empty_like(x), np.empty((B, Din, N), x.dtype)
    h_in = None if r == 0 and h0 is None else np.empty((B, Din, N), x.dtype)
    for c0, c1 in _channel_groups(be, B, Din):
        if r > 0:
            h_in[:, c0:c1] = be.recv((B, c1 - c0, N), x.dtype, r - 1, TAG_STATE)
        elif h0 is not None:
            h_in[:, c0:c1] = h0[:, c0:c1]
        yg, hg = be.local.selective_scan_forward(_cols(x, c0, c1), _cols(delta, c0, c1), A[c0:c1], Bm, Cm,
                                                 D[c0:c1], None if h_in is None else h_in[:, c0:c1].copy())
        if not last:
            be.isend(hg, r + 1, TAG_STATE)
        y[..., c0:c1], h_last[:, c0:c1] = yg, hg
    be.kept.put((x, delta, Bm), h_in)
    return y, h_last


def selective_scan_backward(be, dy, x, delta, A, Bm, Cm, D, h0=None, dh_last=None):
    """The mirror: per channel group, receive the gradient of the state leaving the slice from
    the next process, run the local backward from it, send dh0 to the previous process."""
    op = "selective_scan_backward"
    be.sequence_edges(op, x.shape[1])
    r, last = be.rank, be.rank == be.size - 1
    B, L, Din = x.shape
    N = A.shape[1]
    h_in = be.kept.get(op, (x, delta, Bm))
    dx, ddelta = np.empty_like(x), np.empty_like(x)
    dA, dD = np.empty_like(A), np.empty_like(D)
    dBm, dCm = np.zeros_like(Bm), np.zeros_like(Cm)
    dh0 = None if h0 is None else np.zeros_like(h0)
    for c0, c1 in _channel_groups(be, B, Din):
        dh = None if last else be.recv((B, c1 - c0, N), x.dtype, r + 1, TAG_DSTATE)
        if dh_last is not None:
            dh = dh_last[:, c0:c1] + (0 if dh is None else dh)
        g = be.local.selective_scan_backward(_cols(dy, c0, c1), _cols(x, c0, c1), _cols(delta, c0, c1), A[c0:c1],
                                             Bm, Cm, D[c0:c1], None if h_in is None else h_in[:, c0:c1].copy(),
                                             None if dh is None else np.ascontiguousarray(dh))
        if r > 0:
            be.isend(g[6], r - 1, TAG_DSTATE)
        elif h0 is not None:
            dh0[:, c0:c1] = g[6]
        dx[..., c0:c1], ddelta[..., c0:c1], dA[c0:c1], dD[c0:c1] = g[0], g[1], g[2], g[5]
        dBm += g[3]
        dCm += g[4]
    return dx, ddelta, dA, dBm, dCm, dD, dh0


# ---- selective scan, scan="exscan": all processes at once, then again from the true state --------

def _affine_compose(inmem, inoutmem, datatype):
    """The MPI op of the exclusive scans below, on maps h -> a ⊙ h + b stored as one element
    [a | b] of `datatype`: inout = inout ∘ in, where `in` comes from the earlier processes and
    so is applied first."""
    dtype = np.dtype(datatype.decode()[0].tocode())
    a1, b1 = np.frombuffer(inmem, dtype).reshape(2, -1)
    a2, b2 = np.frombuffer(inoutmem, dtype).reshape(2, -1)
    b2 += a2 * b1
    a2 *= a1


@functools.cache
def _compose_op():
    from mpi4py import MPI
    return MPI.Op.Create(_affine_compose, commute=False)


def _exscan_affine(be, comm, decay, offset):
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


def _slice_decay(delta, A):
    """exp(A ⊙ Σ_t Δ_t) (B,Din,N): what the slice does to the state entering it."""
    return np.exp(A * delta.sum(axis=1, dtype=np.float64)[..., None]).astype(delta.dtype)


def selective_scan_forward_exscan(be, x, delta, A, Bm, Cm, D, h0=None):
    """Every process scans its slice from a zero state (rank 0 from h0) at once; the exclusive
    scan of the maps h -> exp(A ⊙ ΣΔ) ⊙ h + h_end gives each its true incoming state, from which
    it scans again (rank 0's first scan is already exact). Rescanning costs the same as adding
    C_t · (exp(A ⊙ Σ_{s≤t} Δ_s) ⊙ h_in) to y (an exponential per (t, d, n) either way) and is exact."""
    be.sequence_edges("selective_scan_forward", x.shape[1])
    first = be.rank == 0
    y, h_end = be.local.selective_scan_forward(x, delta, A, Bm, Cm, D, h0 if first else None)
    h_in = _exscan_affine(be, be.comm, _slice_decay(delta, A), h_end)
    if first:
        h_in = h0
    else:
        y, h_end = be.local.selective_scan_forward(x, delta, A, Bm, Cm, D, h_in)
    be.kept.put((x, delta, Bm), h_in)
    return y, h_end


def selective_scan_backward_exscan(be, dy, x, delta, A, Bm, Cm, D, h0=None, dh_last=None):
    """The mirror: every process runs its backward from the dh_last it was given (zero unless it
    is the last) at once; the exclusive scan, from the last process back, of the maps
    g -> exp(A ⊙ ΣΔ) ⊙ g + dh0 gives each the gradient its end state receives from the later
    processes, and it runs its backward again with that added (the last one's is already exact)."""
    op = "selective_scan_backward"
    be.sequence_edges(op, x.shape[1])
    h_in = be.kept.get(op, (x, delta, Bm))
    g = be.local.selective_scan_backward(dy, x, delta, A, Bm, Cm, D, h_in, dh_last)
    dh_in = np.zeros_like(x, shape=(x.shape[0], x.shape[2], A.shape[1])) if g[6] is None else g[6]
    dh_later = _exscan_affine(be, be.reverse_comm, _slice_decay(delta, A), dh_in)
    if be.rank < be.size - 1:
        dh = dh_later if dh_last is None else dh_last + dh_later
        g = be.local.selective_scan_backward(dy, x, delta, A, Bm, Cm, D, h_in, dh)
    dh0 = None if h0 is None else g[6] if be.rank == 0 else np.zeros_like(h0)
    return (*g[:6], dh0)


# ---- attention: key/value blocks passed down the line of processes ------------------------------

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


def attention_forward(be, q, k, v, window=None, q_offset=0):
    """The diagonal block, then each earlier block merged in by its log-sum-exp."""
    _check_self_attention(be, "attention_forward", q, k, q_offset)
    o, lse = be.local.attention_forward(q, k, v, window)
    here = be.seq_edges[be.rank]
    for start, kb, vb in _earlier_blocks(be, k, v, window):
        ob, lb = be.local.attention_forward(q, kb, vb, window, here - start)
        new = np.logaddexp(lse, lb)  # finite: the diagonal block gives every query a key
        o = o * _row_weight(lse, new) + ob * _row_weight(lb, new)
        lse = new
    return o, lse


def _row_weight(lse, new):
    """exp(lse - new) of (B,H,T) as a (B,T,H,1) factor of o."""
    return np.exp(lse - new).transpose(0, 2, 1)[..., None]


def attention_backward(be, do, q, k, v, o, lse, window=None, q_offset=0):
    """With the whole rows' o and lse, each block pair's gradients are exact parts: dq adds up
    here, dk and dv of an earlier block go back to its owner, which adds them in rank order."""
    _check_self_attention(be, "attention_backward", q, k, q_offset)
    dq, dk, dv = be.local.attention_backward(do, q, k, v, o, lse, window)
    edges, r = be.seq_edges, be.rank
    for start, kb, vb in _earlier_blocks(be, k, v, window):
        dqb, dkb, dvb = be.local.attention_backward(do, q, kb, vb, o, lse, window, edges[r] - start)
        dq += dqb
        be.isend(np.stack([dkb, dvb]), _owner(edges, start), TAG_DKV)
    cut = _shared_keys(edges, window, r) - edges[r]
    for src in range(r + 1, be.size):
        if _first_needed(edges, window, src) <= r:
            dkv = be.recv((2, k.shape[0], k.shape[1] - cut) + k.shape[2:], k.dtype, src, TAG_DKV)
            dk[:, cut:] += dkv[0]
            dv[:, cut:] += dkv[1]
    return dq, dk, dv


def _owner(edges, position):
    return next(p for p in range(len(edges) - 1) if edges[p] <= position < edges[p + 1])


# ---- rotary embedding: positions are global ----------------------------------------------------

def rope_forward(be, x, offset=0, base=10000.0):
    """The slice's first position is added to the offset; nothing is sent."""
    be.sequence_edges("rope_forward", x.shape[1])
    return be.local.rope_forward(x, offset + be.seq_edges[be.rank], base)


def rope_backward(be, dy, offset=0, base=10000.0):
    be.sequence_edges("rope_backward", dy.shape[1])
    return be.local.rope_backward(dy, offset + be.seq_edges[be.rank], base)


# ---- dropout: its mask is a function of the global position ------------------------------------

def dropout(be, x, p, seed, batch_offset=0, time_offset=0):
    """The slice's first position is added to time_offset, so each process draws its part of the
    one-process mask; nothing is sent."""
    be.sequence_edges("dropout", x.shape[1])
    return be.local.dropout(x, p, seed, batch_offset, time_offset + be.seq_edges[be.rank])


def attention_decode(be, q, k_cache, v_cache, length, window=None):
    raise ValueError("attention_decode: the mpi backend splits whole sequences (training, prefill-free "
                     "evaluation); decode one token at a time on its local backend (be.local)")


# ---- mean-pool: after it, each process owns a slice of the batch ---------------------------------

def mean_pool_forward(be, x):
    """Partial sums over the slice, reduce-scattered: process r gets rows be.local_batch of the
    pooled (B,D), so the head and loss run batch-parallel and each sample's gradient is
    computed once (a plain sum of gradients over processes stays exact)."""
    edges = be.sequence_edges("mean_pool_forward", x.shape[1])
    B, _, D = x.shape
    rows = _batch_rows(be, "mean_pool_forward", B)
    be.complete_sends()
    out = np.empty((rows[be.rank + 1] - rows[be.rank], D), np.float64)
    be.comm.Reduce_scatter(x.sum(axis=1, dtype=np.float64), out,
                           recvcounts=[(rows[p + 1] - rows[p]) * D for p in range(be.size)])
    return (out / edges[-1]).astype(x.dtype)


def mean_pool_backward(be, dy, seq_len):
    """Gather every row's gradient, then spread it over this process's positions (/ global T)."""
    edges = be.sequence_edges("mean_pool_backward", seq_len, global_length=True)
    n, D = dy.shape
    B = be.all_sum(n)
    rows = _batch_rows(be, "mean_pool_backward", B)
    full = np.empty((B, D), dy.dtype)
    be.comm.Allgatherv(np.ascontiguousarray(dy), [full, [(rows[p + 1] - rows[p]) * D for p in range(be.size)]])
    L = edges[be.rank + 1] - edges[be.rank]
    return np.repeat((full / seq_len)[:, None, :], L, axis=1)


def _batch_rows(be, op, B):
    if B < be.size:
        raise ValueError(f"{op}: a batch of {B} rows cannot be shared by {be.size} processes after the pool")
    return split_range(B, be.size)
