"""Wrapper of csrc/moe.c (mixture-of-experts routing, grouping by expert, grouped GEMM, combine)."""
import numpy as np

from ..validate import check_expert_ids, check_expert_offsets, check_slot_pos, check_top_k
from . import checks
from .checks import empty_f32 as empty


def moe_route_forward(be, logits, top_k, normalize):
    op = "moe_route_forward"
    top_k, normalize = checks.check_scalars(op, top_k=top_k, normalize=normalize)
    checks.check_array(op, "logits", logits, ndim=2)
    M, E = logits.shape
    check_top_k(op, top_k, E)
    checks.check_c_int_sizes(op, **{"rows M": M, "experts E": E, "M·k": M * top_k})
    experts, weights = np.empty((M, top_k), np.int64), empty((M, top_k))
    probs, lse, stats = empty((M, E)), empty((M,)), np.empty(2 * E + 2, np.float64)
    status = be.lib.hr_moe_route_forward(be.f32(logits), be.i64(experts), be.f32(weights), be.f32(probs), be.f32(lse),
                                         be.ffi.cast("double *", be.ffi.from_buffer(stats)), M, E, top_k, normalize)
    be.raise_status(op, status)
    return experts, weights, probs, lse, stats


def moe_route_backward(be, dweights, experts, probs, lse, aux_dprobs, z_scale, normalize):
    op = "moe_route_backward"
    z_scale, normalize = checks.check_scalars(op, z_scale=z_scale, normalize=normalize)
    checks.check_c_floats(op, z_scale=z_scale)
    checks.check_array(op, "probs", probs, ndim=2)
    M, E = probs.shape
    checks.check_array(op, "experts", experts, shape=(M, None), dtype=np.int64)
    k = experts.shape[1]
    check_top_k(op, k, E)
    check_expert_ids(op, experts, E)
    checks.check_array(op, "dweights", dweights, shape=(M, k))
    checks.check_array(op, "lse", lse, shape=(M,))
    checks.check_array(op, "aux_dprobs", aux_dprobs, shape=(E,))
    checks.check_c_int_sizes(op, **{"rows M": M, "experts E": E})
    dlogits = empty((M, E))
    be.lib.hr_moe_route_backward(be.f32(dweights), be.i64(experts), be.f32(probs), be.f32(lse), be.f32(aux_dprobs),
                                 z_scale, be.f32(dlogits), M, E, k, normalize)
    return dlogits


def moe_dispatch_forward(be, x, experts, n_experts):
    op = "moe_dispatch_forward"
    n_experts, = checks.check_scalars(op, n_experts=n_experts)
    checks.check_array(op, "x", x, ndim=2)
    M, D = x.shape
    checks.check_array(op, "experts", experts, shape=(M, None), dtype=np.int64)
    k = experts.shape[1]
    check_expert_ids(op, experts, n_experts)
    checks.check_c_int_sizes(op, **{"rows M": M, "width D": D, "M·k": M * k})
    xs, slot_pos, offsets = empty((M * k, D)), np.empty((M, k), np.int64), np.empty(n_experts + 1, np.int64)
    status = be.lib.hr_moe_dispatch_forward(be.f32(x), be.i64(experts), be.f32(xs), be.i64(slot_pos),
                                            be.i64(offsets), M, D, k, n_experts)
    be.raise_status(op, status)
    return xs, slot_pos, offsets


def _check_slot_pos(op, slot_pos, rows):
    checks.check_array(op, "slot_pos", slot_pos, ndim=2, dtype=np.int64)
    check_slot_pos(op, slot_pos, rows)
    return slot_pos.shape


def moe_dispatch_backward(be, dxs, slot_pos):
    op = "moe_dispatch_backward"
    checks.check_array(op, "dxs", dxs, ndim=2)
    M, k = _check_slot_pos(op, slot_pos, dxs.shape[0])
    D = dxs.shape[1]
    checks.check_c_int_sizes(op, **{"rows M": M, "width D": D, "M·k": M * k})
    dx = empty((M, D))
    be.lib.hr_moe_dispatch_backward(be.f32(dxs), be.i64(slot_pos), be.f32(dx), M, D, k)
    return dx


def _expert_linear_shapes(op, xs, offsets, w):
    checks.check_array(op, "xs", xs, ndim=2)
    checks.check_array(op, "w", w, ndim=3)
    E, N, K = w.shape
    checks.check_array(op, "xs", xs, shape=(None, K))
    checks.check_array(op, "offsets", offsets, ndim=1, dtype=np.int64)
    check_expert_offsets(op, offsets, E, xs.shape[0])
    checks.check_c_int_sizes(op, **{"rows R": xs.shape[0], "experts E": E, "N": N, "K": K})
    return E, N, K


def moe_expert_linear_forward(be, xs, offsets, w, b):
    op = "moe_expert_linear_forward"
    E, N, K = _expert_linear_shapes(op, xs, offsets, w)
    if b is not None:
        checks.check_array(op, "b", b, shape=(E, N))
    ys = empty((xs.shape[0], N))
    status = be.lib.hr_moe_expert_linear_forward(be.f32(xs), be.i64(offsets), be.f32(w), be.f32_or_null(b),
                                                 be.f32(ys), E, K, N)
    be.raise_status(op, status)
    return ys


def moe_expert_linear_backward(be, dys, xs, offsets, w, has_bias):
    op = "moe_expert_linear_backward"
    has_bias, = checks.check_scalars(op, has_bias=has_bias)
    E, N, K = _expert_linear_shapes(op, xs, offsets, w)
    checks.check_array(op, "dys", dys, shape=(xs.shape[0], N))
    dxs, dw = empty(xs.shape), empty((E, N, K))
    db = empty((E, N)) if has_bias else None
    status = be.lib.hr_moe_expert_linear_backward(be.f32(dys), be.f32(xs), be.i64(offsets), be.f32(w), be.f32(dxs),
                                                  be.f32(dw), be.f32_or_null(db), E, K, N)
    be.raise_status(op, status)
    return dxs, dw, db


def moe_combine_forward(be, ys, slot_pos, weights):
    op = "moe_combine_forward"
    checks.check_array(op, "ys", ys, ndim=2)
    M, k = _check_slot_pos(op, slot_pos, ys.shape[0])
    D = ys.shape[1]
    checks.check_array(op, "weights", weights, shape=(M, k))
    checks.check_c_int_sizes(op, **{"rows M": M, "width D": D, "M·k": M * k})
    y = empty((M, D))
    be.lib.hr_moe_combine_forward(be.f32(ys), be.i64(slot_pos), be.f32(weights), be.f32(y), M, D, k)
    return y


def moe_combine_backward(be, dy, ys, slot_pos, weights):
    op = "moe_combine_backward"
    checks.check_array(op, "ys", ys, ndim=2)
    M, k = _check_slot_pos(op, slot_pos, ys.shape[0])
    D = ys.shape[1]
    checks.check_array(op, "weights", weights, shape=(M, k))
    checks.check_array(op, "dy", dy, shape=(M, D))
    checks.check_c_int_sizes(op, **{"rows M": M, "width D": D, "M·k": M * k})
    dys, dweights = empty(ys.shape), empty((M, k))
    be.lib.hr_moe_combine_backward(be.f32(dy), be.f32(ys), be.i64(slot_pos), be.f32(weights), be.f32(dys),
                                   be.f32(dweights), M, D, k)
    return dys, dweights
