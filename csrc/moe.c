/* Mixture-of-experts ops, dropless (every token reaches its k experts), as backends/numpy/moe.py.
 *
 *   logits (M,E) ─ route ─► experts (M,k), weights (M,k)     top-k of softmax(logits), ties to the lowest index
 *   x (M,D) ─ dispatch ─► xs (M·k,D)                          rows grouped by expert (counting sort)
 *   xs ─ expert_linear ─► ys                                  expert e's GEMM on rows offsets[e]:offsets[e+1]
 *   ys ─ combine ─► y (M,D)                                   y[m] = Σ_j weights[m,j] ys[slot_pos[m,j]]
 *
 * The grouped GEMM is one hr_linear_forward/backward (csrc/linear.c, the GEMM of csrc/gemm.c) per
 * expert on its contiguous rows: with tokens grouped, each expert's weight is read once for all its
 * tokens, and no token is padded or dropped. The combine is a gather per token (each output row has
 * one owner, so no atomics), the scatter-add of the grouped rows back to their tokens. Reductions over
 * rows (the router's statistics, the counting sort) run serially, in order: they are O(M·E) and O(M·k)
 * against the GEMMs' O(M·k·D·hidden), and the results do not depend on the thread count. */
#include <string.h>
#include "common.h"
#include "simd.h"
#include "linear.h"
#include "moe.h"

enum { MOE_ROWS_PER_THREAD = 256 };  /* below this many rows per thread, a loop over rows runs on one */

/* experts[0:k] = the k largest of x[0:E], descending, ties to the lowest index, chosen one at a time:
 * the first index not yet chosen, replaced by each later unchosen one whose value is greater (so
 * comparisons with a nan, always false, leave the choice where it is, as in the NumPy oracle);
 * chosen: E bytes of scratch. */
static void moe_top_k(const float *x, int E, int k, unsigned char *chosen, int64_t *experts) {
    memset(chosen, 0, (size_t)E);
    for (int j = 0; j < k; j++) {
        int best = 0;
        while (chosen[best]) best++;
        for (int e = best + 1; e < E; e++)
            if (!chosen[e] && x[e] > x[best]) best = e;
        chosen[best] = 1;
        experts[j] = best;
    }
}

/* logits (M,E) -> experts (M,k), weights (M,k), probs (M,E) = softmax, lse (M,), stats (2E+2) =
 * [tokens per expert (E), Σ_m probs[m] (E), M, Σ_m lse²]. The softmax of a row runs in double (E is
 * small): lse = mx + log Σ e^{x − mx}; a nan or +inf logit makes the row nan, as in NumPy. weights =
 * probs at the experts, divided by their sum when normalize (Mixtral) or not (Jamba). */
int hr_moe_route_forward(const float *logits, int64_t *experts, float *weights, float *probs, float *lse, double *stats,
                         int M, int E, int k, int normalize) {
    int status = HR_OK;
    #pragma omp parallel if (M > MOE_ROWS_PER_THREAD)
    {
        unsigned char *chosen = hr_alloc((size_t)E);
        if (!chosen) {
            #pragma omp atomic write
            status = HR_ENOMEM;
        }
        #pragma omp for schedule(static)
        for (long m = 0; m < M; m++) {
            if (!chosen) continue;
            const float *x = logits + m * E;
            float *p = probs + m * E;
            double mx = -INFINITY, s = 0.0;
            for (int e = 0; e < E; e++)
                if (x[e] > mx) mx = x[e];
            for (int e = 0; e < E; e++) s += exp((double)x[e] - mx);
            for (int e = 0; e < E; e++) p[e] = (float)(exp((double)x[e] - mx) / s);
            lse[m] = (float)(mx + log(s));
            int64_t *ex = experts + m * k;
            float *w = weights + m * k;
            moe_top_k(x, E, k, chosen, ex);
            double sum = 0.0;
            for (int j = 0; j < k; j++) sum += p[ex[j]];
            for (int j = 0; j < k; j++) w[j] = normalize ? (float)(p[ex[j]] / sum) : p[ex[j]];
        }
        free(chosen);
    }
    if (status != HR_OK) return status;
    memset(stats, 0, (2 * (size_t)E + 2) * sizeof(double));
    for (long m = 0; m < M; m++) {
        for (int j = 0; j < k; j++) stats[experts[m * k + j]] += 1.0;
        for (int e = 0; e < E; e++) stats[E + e] += probs[m * E + e];
        stats[2 * E + 1] += (double)lse[m] * lse[m];
    }
    stats[2 * E] = M;
    return HR_OK;
}

/* dlogits[m] = p ⊙ (g − Σ_e p_e g_e + z_scale lse[m]), g[e] = aux_dprobs[e] + Σ_j [experts[m,j] = e] dp_j,
 * dp_j = dweights[m,j] or, normalized (w_j = p_j / S), (dweights[m,j] − Σ_i dweights[m,i] w_i) / S; the
 * z-loss term z_scale lse[m] p is outside the softmax's backward, as ∂lse/∂logits = p. */
void hr_moe_route_backward(const float *dweights, const int64_t *experts, const float *probs, const float *lse,
                           const float *aux_dprobs, float z_scale, float *dlogits, int M, int E, int k, int normalize) {
    HR_PARALLEL_FOR(M > MOE_ROWS_PER_THREAD,
        for (long m = 0; m < M; m++) {
            const float *p = probs + m * E, *dw = dweights + m * k;
            const int64_t *ex = experts + m * k;
            float *g = dlogits + m * E;
            double S = 0.0, dot_w = 0.0, dot_g = 0.0;
            for (int j = 0; j < k; j++) S += p[ex[j]];
            for (int j = 0; j < k; j++) dot_w += (double)dw[j] * p[ex[j]] / S;
            for (int e = 0; e < E; e++) g[e] = aux_dprobs[e];
            for (int j = 0; j < k; j++) g[ex[j]] += normalize ? (float)((dw[j] - dot_w) / S) : dw[j];
            for (int e = 0; e < E; e++) dot_g += (double)p[e] * g[e];
            const double shift = dot_g - (double)z_scale * lse[m];
            for (int e = 0; e < E; e++) g[e] = p[e] * (float)(g[e] - shift);
        });
}

/* Counting sort of the M·k (token, choice) pairs by expert, stable (token order within an expert):
 * offsets (E+1) = the first grouped row of each expert, slot_pos[m,j] the grouped row of pair (m,j);
 * then xs[slot_pos[m,j]] = x[m]. x (M,D), experts (M,k) in [0, E) -> xs (M·k,D). */
int hr_moe_dispatch_forward(const float *x, const int64_t *experts, float *xs, int64_t *slot_pos, int64_t *offsets,
                            int M, int D, int k, int E) {
    const long pairs = (long)M * k;
    int64_t *cursor = hr_alloc((size_t)E * sizeof(int64_t));
    if (!cursor) return HR_ENOMEM;
    memset(offsets, 0, ((size_t)E + 1) * sizeof(int64_t));
    for (long i = 0; i < pairs; i++) offsets[experts[i] + 1]++;
    for (int e = 0; e < E; e++) offsets[e + 1] += offsets[e];
    memcpy(cursor, offsets, (size_t)E * sizeof(int64_t));
    for (long i = 0; i < pairs; i++) slot_pos[i] = cursor[experts[i]]++;
    free(cursor);
    HR_PARALLEL_FOR(pairs * D > (1L << 16),
        for (long i = 0; i < pairs; i++) memcpy(xs + slot_pos[i] * D, x + (i / k) * D, (size_t)D * sizeof(float)););
    return HR_OK;
}

/* dx[m] = Σ_j dxs[slot_pos[m,j]], j in order: dxs (M·k,D) -> dx (M,D) */
void hr_moe_dispatch_backward(const float *dxs, const int64_t *slot_pos, float *dx, int M, int D, int k) {
    HR_PARALLEL_FOR((long)M * k * D > (1L << 16),
        for (long m = 0; m < M; m++) {
            float *out = dx + m * D;
            HR_VLOOP(d, n, D, {
                hr_vec acc = hr_vzero();
                for (int j = 0; j < k; j++) acc = hr_vadd(acc, hr_vload(dxs + slot_pos[m * k + j] * D + d, n));
                hr_vstore(out + d, acc, n);
            });
        });
}

/* ys[r] = xs[r] w[e]ᵀ + b[e] for offsets[e] <= r < offsets[e+1]: one GEMM per expert on its rows.
 * xs (R,K), w (E,N,K), b (E,N) or NULL -> ys (R,N) */
int hr_moe_expert_linear_forward(const float *xs, const int64_t *offsets, const float *w, const float *b, float *ys,
                                 int E, int K, int N) {
    for (int e = 0; e < E; e++) {
        int rows = (int)(offsets[e + 1] - offsets[e]);
        if (rows == 0) continue;
        int st = hr_linear_forward(xs + offsets[e] * K, w + (size_t)e * N * K, b ? b + (size_t)e * N : NULL,
                                   ys + offsets[e] * N, rows, K, N);
        if (st != HR_OK) return st;
    }
    return HR_OK;
}

/* Per expert e on its rows: dxs = dys w[e], dw[e] = dysᵀ xs, db[e] = Σ_rows dys (db NULL: no bias);
 * an expert with no rows gets dw[e] = 0, db[e] = 0. dys (R,N), xs (R,K), w (E,N,K) -> dxs (R,K),
 * dw (E,N,K), db (E,N) */
int hr_moe_expert_linear_backward(const float *dys, const float *xs, const int64_t *offsets, const float *w,
                                  float *dxs, float *dw, float *db, int E, int K, int N) {
    for (int e = 0; e < E; e++) {
        int rows = (int)(offsets[e + 1] - offsets[e]);
        int st = hr_linear_backward(dys + offsets[e] * N, xs + offsets[e] * K, w + (size_t)e * N * K,
                                    dxs + offsets[e] * K, dw + (size_t)e * N * K, db ? db + (size_t)e * N : NULL,
                                    rows, K, N);
        if (st != HR_OK) return st;
    }
    return HR_OK;
}

/* y[m] = Σ_j weights[m,j] ys[slot_pos[m,j]], j in order: ys (M·k,D) -> y (M,D) */
void hr_moe_combine_forward(const float *ys, const int64_t *slot_pos, const float *weights, float *y, int M, int D,
                            int k) {
    HR_PARALLEL_FOR((long)M * k * D > (1L << 16),
        for (long m = 0; m < M; m++) {
            float *out = y + m * D;
            HR_VLOOP(d, n, D, {
                hr_vec acc = hr_vzero();
                for (int j = 0; j < k; j++)
                    acc = hr_vfma(hr_vset1(weights[m * k + j]), hr_vload(ys + slot_pos[m * k + j] * D + d, n), acc);
                hr_vstore(out + d, acc, n);
            });
        });
}

/* dys[slot_pos[m,j]] = weights[m,j] dy[m], dweights[m,j] = dy[m] · ys[slot_pos[m,j]]
 * (slot_pos a permutation of 0..M·k−1, so every row of dys is written once) */
void hr_moe_combine_backward(const float *dy, const float *ys, const int64_t *slot_pos, const float *weights,
                             float *dys, float *dweights, int M, int D, int k) {
    HR_PARALLEL_FOR((long)M * k * D > (1L << 16),
        for (long m = 0; m < M; m++) {
            const float *g = dy + m * D;
            for (int j = 0; j < k; j++) {
                const long r = slot_pos[m * k + j];
                const hr_vec wv = hr_vset1(weights[m * k + j]);
                hr_vec dot = hr_vzero();
                HR_VLOOP(d, n, D, {
                    hr_vec gv = hr_vload(g + d, n);
                    hr_vstore(dys + r * D + d, hr_vmul(wv, gv), n);
                    dot = hr_vfma(gv, hr_vload(ys + r * D + d, n), dot);
                });
                dweights[m * k + j] = hr_vhsum(dot);
            }
        });
}
