"""Wrapper of csrc/embedding.c (token embedding lookup and its gradient)."""
from . import checks
from .checks import empty_f32 as empty


def embedding_forward(be, ids, table):
    op = "embedding_forward"
    checks.check_array(op, "table", table, ndim=2)
    V, D = table.shape
    checks.check_indices(op, "ids", ids, V)
    checks.check_c_int_sizes(op, **{"number of ids M": ids.shape[0], "width D": D})
    y = empty((ids.shape[0], D))
    be.lib.hr_embedding_forward(be.i64(ids), be.f32(table), be.f32(y), ids.shape[0], D)
    return y


def embedding_backward(be, dy, ids, vocab_size):
    op = "embedding_backward"
    vocab_size, = checks.check_scalars(op, vocab_size=vocab_size)
    checks.check_array(op, "dy", dy, ndim=2)
    M, D = dy.shape
    checks.check_indices(op, "ids", ids, vocab_size)
    if ids.shape[0] != M:
        raise ValueError(f"{op}: ids must have shape ({M},) to match dy {dy.shape}, got {ids.shape}")
    checks.check_c_int_sizes(op, **{"rows M": M, "width D": D})
    dtable = empty((vocab_size, D))
    be.lib.hr_embedding_backward(be.f32(dy), be.i64(ids), be.f32(dtable), M, vocab_size, D)
    return dtable
