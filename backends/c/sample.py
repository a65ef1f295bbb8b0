"""Wrapper of csrc/sample.c: one token per row of logits (the oracle: backends/numpy/sample.py)."""
import numpy as np

from ..numpy.sample import check_positions, check_sampling
from . import checks


def sample(be, logits, positions, seed, temperature=1.0, top_k=0, top_p=1.0):
    """ids (B,) int64: row b of logits (B,V) float32 drawn with u(seed, b, positions[b]) (int64 (B,));
    -1 marks a row holding a non-finite logit."""
    op = "sample"
    seed, temperature, top_k, top_p = check_sampling(seed, temperature, top_k, top_p)
    checks.check_array(op, "logits", logits, ndim=2)
    B, V = logits.shape
    checks.check_array(op, "positions", positions, shape=(B,), dtype=np.int64)
    check_positions(positions, B)
    checks.check_c_int_sizes(op, B=B, V=V)
    if V < 1:
        raise ValueError(f"{op}: logits must have at least one column, got shape {logits.shape}")
    ids = np.empty(B, dtype=np.int64)
    scratch = np.empty(3 * V, dtype=np.float64)
    be.lib.hr_sample(be.f32(logits), be.i64(positions), be.i64(ids), B, V, seed, temperature, top_k, top_p,
                     be.ffi.cast("double *", be.ffi.from_buffer(scratch)))
    return ids
