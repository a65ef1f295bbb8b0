/* WKV-7: RWKV-7's generalized delta rule (backends/numpy/wkv7.py is the oracle).
 *
 * Per batch b and head h a K×V state h, in fla's layout (h[k][v] = RWKV-LM's S[v][k]):
 *     h_t = (diag(w_t) + b_tᵀ a_t) h_{t-1} + k_tᵀ v_t,    y_t = r_t h_t
 * i.e. row by row, with sa = Σ_l a_l h_{t-1}[l] (a V-vector):
 *     h_t[j] = w_j h_{t-1}[j] + b_j sa + k_j v_t,          y_t = Σ_j r_j h_t[j]
 * A task is one (b, h). The V values of a row are the vector axis, so the step is broadcast-FMAs of the
 * K scalars of r, w, k, a, b into whole rows: no horizontal sum in the forward. Rows are kept padded to
 * VP = V rounded up to 16 floats with zeros, which the recurrence keeps at zero (v's padding loads as 0).
 *
 * Backward: g_t = ∂L/∂h_t runs backwards, g_t = r_tᵀ dy_t + M_{t+1}ᵀ g_{t+1} with M_t = diag(w_t) + b_tᵀ a_t,
 * M_tᵀ g = w ⊙ g + aᵀ (b g) (row l: w_l g[l] + a_l gb, gb = Σ_j b_j g[j]). It needs h_{t-1} and h_t at
 * every step; the forward keeps none of them, and the (T, K, V) states are never stored for long
 * sequences: a task keeps them all while (T+1)·K·VP floats fit WKV_STATES_BUDGET, else it keeps the
 * state entering every ~√T-th step (a checkpoint) and recomputes one segment's states at a time.
 * Every gradient but dh0 is per position and dh0 per task, so there is nothing to reduce across tasks:
 * the results do not depend on the thread count. */
#include <string.h>

#include "common.h"
#include "simd.h"
#include "wkv7.h"

enum { WKV_STATES_BUDGET = 1 << 18 }; /* floats of states a backward task keeps before checkpointing (1 MB) */

static inline int wkv_thread(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int wkv_pad16(int n) { return (n + 15) & ~15; }

/* K rows of V floats (zeros when src is NULL) -> K rows of VP floats, zero-padded; and back. */
static void wkv_load_state(float *dst, const float *src, int K, int V, int VP) {
    for (int j = 0; j < K; j++)
        for (int c = 0; c < VP; c += HR_VW)
            hr_vstore(dst + (size_t)j * VP + c, src && c < V ? hr_vload(src + (size_t)j * V + c, V - c) : hr_vzero(),
                      HR_VW);
}

static void wkv_store_state(float *dst, const float *src, int K, int V, int VP) {
    for (int j = 0; j < K; j++)
        for (int c = 0; c < V; c += HR_VW) hr_vstore(dst + (size_t)j * V + c, hr_vload(src + (size_t)j * VP + c, HR_VW), V - c);
}

/* One step: hp -> h (may be the same buffer); y (V floats) = r h unless y is NULL.
 * r, w, k, a, b: K floats of this step; v: V floats. Column blocks of HR_VW values are independent
 * (sa, the update and y never mix values), so each block runs its two passes over the K rows alone. */
static void wkv_step(const float *hp, float *h, const float *r, const float *w, const float *k, const float *v,
                     const float *a, const float *b, float *y, int K, int V, int VP) {
    for (int c = 0; c < VP; c += HR_VW) {
        hr_vec sa = hr_vzero(), yv = hr_vzero();
        for (int l = 0; l < K; l++) sa = hr_vfma(hr_vset1(a[l]), hr_vload(hp + (size_t)l * VP + c, HR_VW), sa);
        hr_vec vt = c < V ? hr_vload(v + c, V - c) : hr_vzero();
        for (int j = 0; j < K; j++) {
            hr_vec x = hr_vmul(hr_vset1(w[j]), hr_vload(hp + (size_t)j * VP + c, HR_VW));
            x = hr_vfma(hr_vset1(b[j]), sa, hr_vfma(hr_vset1(k[j]), vt, x));
            hr_vstore(h + (size_t)j * VP + c, x, HR_VW);
            yv = hr_vfma(hr_vset1(r[j]), x, yv);
        }
        if (y && c < V) hr_vstore(y + c, yv, V - c);
    }
}

/* y_t = r_t h_t, h_t = (diag(w_t) + b_tᵀ a_t) h_{t-1} + k_tᵀ v_t, h_{-1} = h0 (zeros if NULL)
 * r, w, k, a, b (B,T,H,K), v (B,T,H,V), h0 (B,H,K,V) or NULL -> y (B,T,H,V), h_last (B,H,K,V)
 * (h_last may be h0 itself: a task reads its h0 before it writes its h_last). */
int hr_wkv7_forward(const float *r, const float *w, const float *k, const float *v, const float *a, const float *b,
                    const float *h0, float *y, float *h_last, int B, int T, int H, int K, int V) {
    int VP = wkv_pad16(V), nthreads = hr_num_threads();
    size_t per_thread = (size_t)K * VP;
    float *scratch = hr_alloc(per_thread * nthreads * sizeof(float));
    if (!scratch) return HR_ENOMEM;
    #pragma omp parallel num_threads(nthreads)
    {
        float *h = scratch + per_thread * wkv_thread();
        #pragma omp for schedule(static)
        for (long task = 0; task < (long)B * H; task++) {
            long bb = task / H;
            int hh = (int)(task % H);
            wkv_load_state(h, h0 ? h0 + (size_t)task * K * V : NULL, K, V, VP);
            for (int t = 0; t < T; t++) {
                size_t row = ((size_t)bb * T + t) * H + hh, ik = row * K, iv = row * V;
                wkv_step(h, h, r + ik, w + ik, k + ik, v + iv, a + ik, b + ik, y + iv, K, V, VP);
            }
            wkv_store_state(h_last + (size_t)task * K * V, h, K, V, VP);
        }
    }
    free(scratch);
    return HR_OK;
}

/* Σ x ⊙ y over two rows of VP floats (their padding is zero). */
static inline float wkv_dot(const float *x, const float *y, int VP) {
    hr_vec s = hr_vzero();
    for (int c = 0; c < VP; c += HR_VW) s = hr_vfma(hr_vload(x + c, HR_VW), hr_vload(y + c, HR_VW), s);
    return hr_vhsum(s);
}

/* The reverse step at t, from hp = h_{t-1} and hc = h_t; g holds ∂L/∂h_t from the later steps (and
 * dh_last) and leaves holding ∂L/∂h_{t-1}. vec: 5 rows of VP floats of scratch (dy, v, sa, gb, dv).
 * Writes dr, dw, dk, da, db (K floats) and dv (V floats) of this step. */
static void wkv_reverse_step(float *g, const float *hp, const float *hc, const float *r, const float *w,
                             const float *k, const float *v, const float *a, const float *b, const float *dy,
                             float *dr, float *dw, float *dk, float *dv, float *da, float *db, float *vec, int K,
                             int V, int VP) {
    float *dyp = vec, *vp = dyp + VP, *sa = vp + VP, *gb = sa + VP, *dvp = gb + VP;
    for (int c = 0; c < VP; c += HR_VW) {
        hr_vec dyc = c < V ? hr_vload(dy + c, V - c) : hr_vzero(), vc = c < V ? hr_vload(v + c, V - c) : hr_vzero();
        hr_vec s = hr_vzero();
        for (int l = 0; l < K; l++) s = hr_vfma(hr_vset1(a[l]), hr_vload(hp + (size_t)l * VP + c, HR_VW), s);
        hr_vstore(dyp + c, dyc, HR_VW);
        hr_vstore(vp + c, vc, HR_VW);
        hr_vstore(sa + c, s, HR_VW);
        hr_vstore(gb + c, hr_vzero(), HR_VW);
        hr_vstore(dvp + c, hr_vzero(), HR_VW);
    }
    /* g += r_tᵀ dy_t; then the row j terms: dr_j = h_t[j]·dy, dk_j = g[j]·v, dw_j = h_{t-1}[j]·g[j],
     * db_j = g[j]·sa, and the sums over rows dv = Σ_j k_j g[j], gb = Σ_j b_j g[j] */
    for (int j = 0; j < K; j++) {
        float *gj = g + (size_t)j * VP;
        const float *hpj = hp + (size_t)j * VP;
        hr_vec rj = hr_vset1(r[j]), kj = hr_vset1(k[j]), bj = hr_vset1(b[j]);
        hr_vec sr = hr_vzero(), sk = hr_vzero(), sw = hr_vzero(), sb = hr_vzero();
        for (int c = 0; c < VP; c += HR_VW) {
            hr_vec dyc = hr_vload(dyp + c, HR_VW), gc = hr_vfma(rj, dyc, hr_vload(gj + c, HR_VW));
            hr_vstore(gj + c, gc, HR_VW);
            sr = hr_vfma(hr_vload(hc + (size_t)j * VP + c, HR_VW), dyc, sr);
            sk = hr_vfma(gc, hr_vload(vp + c, HR_VW), sk);
            sw = hr_vfma(gc, hr_vload(hpj + c, HR_VW), sw);
            sb = hr_vfma(gc, hr_vload(sa + c, HR_VW), sb);
            hr_vstore(dvp + c, hr_vfma(kj, gc, hr_vload(dvp + c, HR_VW)), HR_VW);
            hr_vstore(gb + c, hr_vfma(bj, gc, hr_vload(gb + c, HR_VW)), HR_VW);
        }
        dr[j] = hr_vhsum(sr);
        dk[j] = hr_vhsum(sk);
        dw[j] = hr_vhsum(sw);
        db[j] = hr_vhsum(sb);
    }
    /* da_l = h_{t-1}[l]·gb; g -> M_tᵀ g: row l becomes w_l g[l] + a_l gb */
    for (int l = 0; l < K; l++) {
        float *gl = g + (size_t)l * VP;
        da[l] = wkv_dot(hp + (size_t)l * VP, gb, VP);
        hr_vec wl = hr_vset1(w[l]), al = hr_vset1(a[l]);
        for (int c = 0; c < VP; c += HR_VW)
            hr_vstore(gl + c, hr_vfma(al, hr_vload(gb + c, HR_VW), hr_vmul(wl, hr_vload(gl + c, HR_VW))), HR_VW);
    }
    for (int c = 0; c < V; c += HR_VW) hr_vstore(dv + c, hr_vload(dvp + c, HR_VW), V - c);
}

/* Gradients of hr_wkv7_forward, given dy = ∂L/∂y (B,T,H,V) and dh_last = ∂L/∂h_last (B,H,K,V) or NULL
 * (zeros) -> dr, dw, dk, da, db (B,T,H,K), dv (B,T,H,V), dh0 (B,H,K,V) (skipped when NULL). */
int hr_wkv7_backward(const float *dy, const float *r, const float *w, const float *k, const float *v, const float *a,
                     const float *b, const float *h0, const float *dh_last, float *dr, float *dw, float *dk, float *dv,
                     float *da, float *db, float *dh0, int B, int T, int H, int K, int V) {
    int VP = wkv_pad16(V), nthreads = hr_num_threads();
    size_t st = (size_t)K * VP; /* floats of one padded state */
    int seg = (size_t)(T + 1) * st <= WKV_STATES_BUDGET ? HR_MAX(T, 1) : (int)ceil(sqrt((double)T));
    int nseg = HR_MAX(1, (T + seg - 1) / seg);
    /* per thread: the checkpoints (nseg), one segment's states h_{t0-1} .. h_{t1-1} (seg + 1), g, 5 vectors */
    size_t per_thread = ((size_t)nseg + seg + 2) * st + 5 * (size_t)VP;
    float *scratch = hr_alloc(per_thread * nthreads * sizeof(float));
    if (!scratch) return HR_ENOMEM;
    #pragma omp parallel num_threads(nthreads)
    {
        float *ckpt = scratch + per_thread * wkv_thread(), *hs = ckpt + (size_t)nseg * st;
        float *g = hs + (size_t)(seg + 1) * st, *vec = g + st;
        #pragma omp for schedule(static)
        for (long task = 0; task < (long)B * H; task++) {
            long bb = task / H;
            int hh = (int)(task % H);
            size_t r0 = (size_t)bb * T * H + hh; /* row of (bb, t = 0, hh); row of t is r0 + t·H */
            wkv_load_state(ckpt, h0 ? h0 + (size_t)task * K * V : NULL, K, V, VP);
            for (int s = 1; s < nseg; s++) { /* the state entering each segment */
                memcpy(ckpt + s * st, ckpt + (s - 1) * st, st * sizeof(float));
                for (int t = (s - 1) * seg; t < s * seg; t++) {
                    size_t row = r0 + (size_t)t * H;
                    wkv_step(ckpt + s * st, ckpt + s * st, r + row * K, w + row * K, k + row * K, v + row * V,
                             a + row * K, b + row * K, NULL, K, V, VP);
                }
            }
            wkv_load_state(g, dh_last ? dh_last + (size_t)task * K * V : NULL, K, V, VP);
            for (int s = nseg - 1; s >= 0; s--) {
                int t0 = s * seg, t1 = HR_MIN(T, t0 + seg);
                memcpy(hs, ckpt + s * st, st * sizeof(float)); /* hs + (t - t0 + 1)·st holds h_t */
                for (int t = t0; t < t1; t++) {
                    size_t row = r0 + (size_t)t * H;
                    wkv_step(hs + (t - t0) * st, hs + (t - t0 + 1) * st, r + row * K, w + row * K, k + row * K,
                             v + row * V, a + row * K, b + row * K, NULL, K, V, VP);
                }
                for (int t = t1 - 1; t >= t0; t--) {
                    size_t row = r0 + (size_t)t * H, ik = row * K, iv = row * V;
                    wkv_reverse_step(g, hs + (t - t0) * st, hs + (t - t0 + 1) * st, r + ik, w + ik, k + ik, v + iv,
                                     a + ik, b + ik, dy + iv, dr + ik, dw + ik, dk + ik, dv + iv, da + ik, db + ik,
                                     vec, K, V, VP);
                }
            }
            if (dh0) wkv_store_state(dh0 + (size_t)task * K * V, g, K, V, VP);
        }
    }
    free(scratch);
    return HR_OK;
}
