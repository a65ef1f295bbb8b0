"""Mixture-of-experts ops (hybridref/layers/moe.py): the router, grouping the token rows by expert,
each expert's linear on its rows, and the weighted combination back per token.

    logits (M,E) ─ moe_route ─► experts (M,k), weights (M,k)      top-k of softmax(logits)
    x (M,D) ─ moe_dispatch ─► xs (M·k,D)                            rows grouped by expert
    xs ─ moe_expert_linear (, activation, moe_expert_linear) ─► ys  expert e on rows offsets[e]:offsets[e+1]
    ys ─ moe_combine ─► y (M,D)                                     y[m] = Σ_j weights[m,j] ys[slot_pos[m,j]]

Every op is position-wise: a backend holding part of the tokens runs it on its part. The router's
statistics (`stats`) are sums over the rows, which the layer adds over processes (be.all_sum) before
it forms the load-balancing and z losses.
"""
import numpy as np

from ..validate import check_expert_ids, check_expert_offsets, check_scalars, check_slot_pos, check_top_k


def _top_k(logits, top_k):
    """The k largest logits of each row, in descending order, ties to the lowest index. Chosen one at a
    time as the C kernel does: the first index not yet chosen, replaced by each later unchosen index
    whose logit is greater (so a row holding a nan selects as the comparisons with nan, always false,
    leave it; the C kernel and this give the same experts)."""
    M, E = logits.shape
    rows = np.arange(M)
    chosen = np.zeros((M, E), dtype=bool)
    experts = np.empty((M, top_k), dtype=np.int64)
    for j in range(top_k):
        best = np.argmin(chosen, axis=1)  # the first unchosen index
        for e in range(E):
            take = ~chosen[:, e] & (logits[:, e] > logits[rows, best])
            best = np.where(take, e, best)
        experts[:, j] = best
        chosen[rows, best] = True
    return experts


def moe_route_forward(logits, top_k, normalize):
    """Router: probs = softmax(logits), lse = log Σ_e exp(logits) (computed in float64, as the C kernel);
    experts = the top_k largest logits per row (= the largest probabilities); weights = probs at them,
    divided by their sum when `normalize` (Mixtral), as they are otherwise (Jamba).
    logits (M,E) -> experts int64 (M,k), weights (M,k), probs (M,E), lse (M,), stats float64 (2E+2,) =
    [tokens routed to each expert (E, counted over the k choices), Σ_m probs[m] (E), M, Σ_m lse[m]²]."""
    M, E = logits.shape
    top_k, normalize = check_scalars("moe_route_forward", top_k=top_k, normalize=normalize)
    check_top_k("moe_route_forward", top_k, E)
    x = logits.astype(np.float64)
    mx = x.max(axis=1, keepdims=True)
    e = np.exp(x - mx)
    s = e.sum(axis=1, keepdims=True)
    probs64, lse = e / s, (mx + np.log(s))[:, 0]
    experts = _top_k(logits, top_k)
    picked = np.take_along_axis(probs64, experts, axis=1)
    weights = picked / picked.sum(axis=1, keepdims=True) if normalize else picked
    counts = np.bincount(experts.ravel(), minlength=E).astype(np.float64)
    stats = np.concatenate([counts, probs64.sum(axis=0), [M, np.sum(lse * lse)]])
    return experts, weights.astype(logits.dtype), probs64.astype(logits.dtype), lse.astype(logits.dtype), stats


def moe_route_backward(dweights, experts, probs, lse, aux_dprobs, z_scale, normalize):
    """dlogits = probs ⊙ (g − Σ_e probs g) + z_scale lse[m] probs, the softmax's backward of
        g[m,e] = Σ_j [experts[m,j] = e] dp_j + aux_dprobs[e]
    plus the z-loss's term (∂lse/∂logits = probs), where dp_j = dweights[m,j] (weights = probs at the experts) or, normalized (w_j = p_j / S, S the sum
    of the k probabilities), dp_j = (dweights[m,j] − Σ_i dweights[m,i] w_i) / S. aux_dprobs (E,) is the
    load-balancing loss's gradient per probability (the same for every token); z_scale lse[m] probs[m] is
    the gradient of (z_scale/2) Σ_m lse[m]² (the z-loss: z_scale = 2·coef/N).
    dweights (M,k), experts int64 (M,k), probs (M,E), lse (M,), aux_dprobs (E,) -> dlogits (M,E)."""
    z_scale, normalize = check_scalars("moe_route_backward", z_scale=z_scale, normalize=normalize)
    picked = np.take_along_axis(probs, experts, axis=1)
    if normalize:
        S = picked.sum(axis=1, keepdims=True)
        dpicked = (dweights - (dweights * picked / S).sum(axis=1, keepdims=True)) / S
    else:
        dpicked = dweights
    g = np.zeros_like(probs) + aux_dprobs
    for j in range(experts.shape[1]):
        np.add.at(g, (np.arange(len(g)), experts[:, j]), dpicked[:, j])
    return probs * (g - (probs * g).sum(axis=1, keepdims=True) + z_scale * lse[:, None])


def moe_dispatch_forward(x, experts, n_experts):
    """The token rows grouped by expert (a counting sort, stable: in token order within an expert): row
    slot_pos[m,j] of xs is x[m], the rows of expert e are offsets[e]:offsets[e+1].
    x (M,D), experts int64 (M,k) in [0, n_experts) -> xs (M·k,D), slot_pos int64 (M,k), offsets int64 (E+1,)."""
    n_experts, = check_scalars("moe_dispatch_forward", n_experts=n_experts)
    check_expert_ids("moe_dispatch_forward", experts, n_experts)
    flat = experts.ravel()
    order = np.argsort(flat, kind="stable")  # (token, choice) pairs by expert, in token order within one
    slot_pos = np.empty(flat.size, dtype=np.int64)
    slot_pos[order] = np.arange(flat.size)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=n_experts))]).astype(np.int64)
    return x[order // experts.shape[1]], slot_pos.reshape(experts.shape), offsets


def moe_dispatch_backward(dxs, slot_pos):
    """dx[m] = Σ_j dxs[slot_pos[m,j]]:  dxs (M·k,D), slot_pos int64 (M,k) a permutation of 0..M·k−1 -> dx (M,D)."""
    check_slot_pos("moe_dispatch_backward", slot_pos, len(dxs))
    return dxs[slot_pos].sum(axis=1)


def moe_expert_linear_forward(xs, offsets, w, b):
    """Each expert's linear on its rows: ys[r] = xs[r] w[e]ᵀ + b[e] for offsets[e] <= r < offsets[e+1].
    xs (R,K), offsets int64 (E+1,) from 0 to R, w (E,N,K), b (E,N) or None -> ys (R,N)."""
    check_expert_offsets("moe_expert_linear_forward", offsets, len(w), len(xs))
    ys = np.empty((len(xs), w.shape[1]), dtype=xs.dtype)
    for e in range(len(w)):
        rows = slice(offsets[e], offsets[e + 1])
        ys[rows] = xs[rows] @ w[e].T + (0 if b is None else b[e])
    return ys


def moe_expert_linear_backward(dys, xs, offsets, w, has_bias):
    """dxs[r] = dys[r] w[e], dw[e] = Σ_{r of e} dys[r]ᵀ xs[r], db[e] = Σ_{r of e} dys[r] (None without bias).
    dys (R,N), xs (R,K), offsets int64 (E+1,), w (E,N,K) -> dxs (R,K), dw (E,N,K), db (E,N) or None."""
    has_bias, = check_scalars("moe_expert_linear_backward", has_bias=has_bias)
    check_expert_offsets("moe_expert_linear_backward", offsets, len(w), len(xs))
    dxs, dw = np.empty_like(xs), np.empty_like(w)
    db = np.empty(w.shape[:2], dtype=w.dtype) if has_bias else None
    for e in range(len(w)):
        rows = slice(offsets[e], offsets[e + 1])
        dxs[rows], dw[e] = dys[rows] @ w[e], dys[rows].T @ xs[rows]
        if has_bias:
            db[e] = dys[rows].sum(axis=0)
    return dxs, dw, db


def moe_combine_forward(ys, slot_pos, weights):
    """y[m] = Σ_j weights[m,j] ys[slot_pos[m,j]]: each token's k expert outputs, weighted (a gather per
    token, the scatter-add of the grouped rows back to their tokens).
    ys (M·k,D), slot_pos int64 (M,k) a permutation of 0..M·k−1, weights (M,k) -> y (M,D)."""
    check_slot_pos("moe_combine_forward", slot_pos, len(ys))
    return np.einsum("mk,mkd->md", weights, ys[slot_pos])


def moe_combine_backward(dy, ys, slot_pos, weights):
    """dys[slot_pos[m,j]] = weights[m,j] dy[m], dweights[m,j] = dy[m] · ys[slot_pos[m,j]].
    dy (M,D), ys (M·k,D), slot_pos int64 (M,k), weights (M,k) -> dys (M·k,D), dweights (M,k)."""
    check_slot_pos("moe_combine_backward", slot_pos, len(ys))
    dys = np.empty_like(ys)
    dys[slot_pos] = weights[..., None] * dy[:, None, :]
    return dys, np.einsum("md,mkd->mk", dy, ys[slot_pos])
