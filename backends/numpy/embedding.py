"""Token embedding: a row lookup, and its scatter-add gradient."""
import numpy as np

from ..validate import check_scalars


def embedding_forward(ids, table):
    """y[m] = table[ids[m]]:  ids int64 (M,), table (V,D) -> y (M,D)."""
    return table[ids]


def embedding_backward(dy, ids, vocab_size):
    """dtable[v] = Σ_{m: ids[m]=v} dy[m]:  dy (M,D), ids int64 (M,) -> dtable (V,D)."""
    check_scalars("embedding_backward", vocab_size=vocab_size)
    dtable = np.zeros((vocab_size, dy.shape[1]), dtype=dy.dtype)
    np.add.at(dtable, ids, dy)
    return dtable
