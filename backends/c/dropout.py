"""Wrapper of csrc/dropout.c (dropout with a counter-based mask; the op is its own backward)."""
from ..numpy.dropout import check_dropout_args
from . import checks
from .checks import empty_f32 as empty


def dropout(be, x, p, seed, batch_offset=0, time_offset=0):
    check_dropout_args("dropout", x, p, seed, batch_offset, time_offset)
    checks.check_array("dropout", "x", x)
    y = empty(x.shape)
    D = x[0, 0].size if x.size else 0
    be.lib.hr_dropout(be.f32(x), be.f32(y), x.shape[0], x.shape[1], D, float(p), int(seed), int(batch_offset),
                      int(time_offset))
    return y
