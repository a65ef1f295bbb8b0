"""Halo (backends/base.py) in sequence mode: the `width` positions before a slice (its prefix) are the
last positions of the slice before it, sent forward; in the backward their gradient (dprefix) goes
back to that process, which adds it to its last positions' dx. A form declared reverse=True (each
process holding its slice flipped, Backend.time_reversed) takes its prefix from the process after it
and sends the gradient there: the same exchange with the processes in the other order.

A slice shorter than `width` forwards part of its own prefix with its positions (it waits for it
first), and in the backward passes the matching part of the gradient further back, so any width
works with any split. The prefix a forward received is kept for the backward of the same input
array (be.kept, keyed by its identity and dropped when it is freed).
"""
import numpy as np

from ..base import op_arguments
from .sequence import TAG_DHALO, TAG_HALO, ends


def build(be, name, form):
    forward, backward = f"{name}_forward", f"{name}_backward"
    local_forward, local_backward = getattr(be.local, forward), getattr(be.local, backward)

    def halo_forward(*args, **kwargs):
        arguments = op_arguments(forward, args, kwargs)
        x, prefix = next(iter(arguments.values())), arguments.pop("prefix")
        be.sequence_edges(forward, x.shape[1])
        W1 = form.width(**arguments)
        mine = receive_halo(be, x, W1, prefix, form.reverse) if W1 > 0 else prefix
        be.kept.put(name, (x,), mine)
        return local_forward(*arguments.values(), mine)

    def halo_backward(*args, **kwargs):
        arguments = op_arguments(backward, args, kwargs)
        prefix = arguments.pop("prefix")
        dy_name, x_name = list(arguments)[:2]
        x = arguments[x_name]
        be.sequence_edges(backward, x.shape[1])
        mine = be.kept.get(backward, name, (x,))
        *grads, dmine = local_backward(*arguments.values(), mine)
        W1 = form.width(**{k: v for k, v in arguments.items() if k != dy_name})
        if W1 > 0:
            send_halo_grad(be, grads[0], dmine, W1, form.reverse)
        if prefix is None:
            return (*grads, None)
        return (*grads, dmine if ends(be, form.reverse)[0] else np.zeros_like(prefix))

    halo_forward.__name__, halo_backward.__name__ = forward, backward
    return {forward: halo_forward, backward: halo_backward}


def receive_halo(be, x, W1, prefix, reverse=False):
    """This process's prefix: the W1 positions before its slice (the caller's prefix on the first
    process along the direction). A slice shorter than W1 forwards part of its own prefix, so it
    waits for it first."""
    first, last, source, dest = ends(be, reverse)
    B, L = x.shape[:2]
    shape = (B, W1) + x.shape[2:]
    mine = prefix if first else None
    if not first and L < W1:
        mine = be.recv(shape, x.dtype, source, TAG_HALO)
    if not last:
        ext = x if L >= W1 else np.concatenate([np.zeros(shape, x.dtype) if mine is None else mine, x], axis=1)
        be.isend(ext[:, -W1:], dest, TAG_HALO)
    if not first and mine is None:
        mine = be.recv(shape, x.dtype, source, TAG_HALO)
    return mine


def send_halo_grad(be, dx, dmine, W1, reverse=False):
    """Add the gradient of the halo this process sent to dx (and, for a slice shorter than W1, to
    dmine), and send dmine, the gradient of the halo it received, back. A slice shorter than W1
    must add before it sends; a longer one sends first, so the process before it starts sooner."""
    first, last, source, dest = ends(be, reverse)
    L = dx.shape[1]
    if not last and L < W1:
        _add_halo_grad(be, dx, dmine, W1, dest)
    if not first:
        be.isend(dmine, source, TAG_DHALO)
    if not last and L >= W1:
        _add_halo_grad(be, dx, dmine, W1, dest)


def _add_halo_grad(be, dx, dmine, W1, after):
    """Add the gradient of the halo this process sent to the process `after` it: the last W1 rows of
    concat(prefix, x)."""
    B, L = dx.shape[:2]
    dhalo = be.recv((B, W1) + dx.shape[2:], dx.dtype, after, TAG_DHALO)
    n = min(L, W1)
    dx[:, L - n:] += dhalo[:, W1 - n:]
    if W1 > n and dmine is not None:  # None: the first process without a caller's prefix, whose zeros need none
        dmine[:, n:] += dhalo[:, :W1 - n]
