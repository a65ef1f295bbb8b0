/* Causal multi-head softmax attention with the FlashAttention-2 structure.
 *
 * Forward: each (batch, head, query tile) streams over the key tiles it can see,
 * keeping a running row max m, row sum l and unnormalised output (online softmax);
 * the T×T score matrix never exists. Backward recomputes P = exp(s − lse) tile by
 * tile, in two passes so that every output element has one owner (no atomics,
 * deterministic): dk, dv per (batch, kv head, key tile), looping over the query
 * heads and query tiles that read it; dq per (batch, head, query tile), looping
 * over its key tiles. Scratch is a few tiles per thread, whatever T is.
 *
 * Tile rows are padded to a multiple of 16 floats (one zmm, two ymm) and the
 * padding is kept zero, so vector loops have no remainder for any head dim P.
 */
#include "common.h"
#include "vmath.h"
#include "attention.h"

#define ATTN_BR 64 /* query rows per tile */
#define ATTN_BC 64 /* keys per tile */
#define ATTN_BMAX HR_MAX(ATTN_BR, ATTN_BC) /* rows of an accumulator: dK, dV or dQ */

typedef struct {
    int B, T, H, Hk, P, Pp, window;
    float scale;
} attn_dims;

static inline int attn_pad16(int n) { return (n + 15) & ~15; }

/* The first key query i sees (the last is i itself). */
static inline int attn_first_key(const attn_dims *d, int i) {
    return d->window < 0 ? 0 : HR_MAX(0, i - d->window);
}

/* ---- tile products ---------------------------------------------------------------------- */

#if defined(HR_AVX512)
/* rb rows × 16 columns of C, held in zmm registers over the whole k loop. */
static inline __attribute__((always_inline)) void attn_block512(const int rb, int kd, const float *A, long ars,
                                                                long acs, const float *Bm, int ldb, float *C,
                                                                int ldc, int accumulate) {
    __m512 acc[8];
    for (int r = 0; r < rb; r++) acc[r] = accumulate ? _mm512_loadu_ps(C + (size_t)r * ldc) : _mm512_setzero_ps();
    for (int k = 0; k < kd; k++) {
        __m512 bv = _mm512_loadu_ps(Bm + (size_t)k * ldb);
        const float *a = A + k * acs;
        for (int r = 0; r < rb; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * ars]), bv, acc[r]);
    }
    for (int r = 0; r < rb; r++) _mm512_storeu_ps(C + (size_t)r * ldc, acc[r]);
}
#elif defined(HR_AVX2)
/* rb rows × 16 columns of C (two ymm per row), held in registers over the whole k loop. */
static inline __attribute__((always_inline)) void attn_block256(const int rb, int kd, const float *A, long ars,
                                                                long acs, const float *Bm, int ldb, float *C,
                                                                int ldc, int accumulate) {
    __m256 lo[4], hi[4];
    for (int r = 0; r < rb; r++) {
        lo[r] = accumulate ? _mm256_loadu_ps(C + (size_t)r * ldc) : _mm256_setzero_ps();
        hi[r] = accumulate ? _mm256_loadu_ps(C + (size_t)r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int k = 0; k < kd; k++) {
        __m256 b0 = _mm256_loadu_ps(Bm + (size_t)k * ldb), b1 = _mm256_loadu_ps(Bm + (size_t)k * ldb + 8);
        const float *a = A + k * acs;
        for (int r = 0; r < rb; r++) {
            __m256 ar = _mm256_broadcast_ss(a + r * ars);
            lo[r] = _mm256_fmadd_ps(ar, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(ar, b1, hi[r]);
        }
    }
    for (int r = 0; r < rb; r++) {
        _mm256_storeu_ps(C + (size_t)r * ldc, lo[r]);
        _mm256_storeu_ps(C + (size_t)r * ldc + 8, hi[r]);
    }
}
#endif

/* C[r][0:n] (+)= Σ_k A(r,k) · Bm[k][0:n] for r < m, where A(r,k) = A[r*ars + k*acs] and n is a
 * multiple of 16. All six tile products are this one shape: Aᵀ is A with its strides swapped,
 * and a product with Kᵀ or Vᵀ reads a tile stored transposed. */
static void attn_gemm(int m, int n, int kd, const float *A, long ars, long acs, const float *Bm, int ldb,
                      float *C, int ldc, int accumulate) {
#if defined(HR_AVX512)
    for (int c0 = 0; c0 < n; c0 += 16) {
        int r = 0;
        for (; r + 8 <= m; r += 8)
            attn_block512(8, kd, A + r * ars, ars, acs, Bm + c0, ldb, C + (size_t)r * ldc + c0, ldc, accumulate);
        for (; r < m; r++)
            attn_block512(1, kd, A + r * ars, ars, acs, Bm + c0, ldb, C + (size_t)r * ldc + c0, ldc, accumulate);
    }
#elif defined(HR_AVX2)
    for (int c0 = 0; c0 < n; c0 += 16) {
        int r = 0;
        for (; r + 4 <= m; r += 4)
            attn_block256(4, kd, A + r * ars, ars, acs, Bm + c0, ldb, C + (size_t)r * ldc + c0, ldc, accumulate);
        for (; r < m; r++)
            attn_block256(1, kd, A + r * ars, ars, acs, Bm + c0, ldb, C + (size_t)r * ldc + c0, ldc, accumulate);
    }
#else
    for (int r = 0; r < m; r++) {
        float *c = C + (size_t)r * ldc;
        if (!accumulate)
            for (int j = 0; j < n; j++) c[j] = 0.0f;
        for (int k = 0; k < kd; k++) {
            float a = A[r * ars + k * acs];
            const float *bk = Bm + (size_t)k * ldb;
            for (int j = 0; j < n; j++) c[j] += a * bk[j];
        }
    }
#endif
}

/* ---- score rows (n a multiple of 16) -------------------------------------------------- */

/* Sets s[c] = -inf for the columns outside [clo, chi] (keys not visible from this query);
 * returns whether any column is visible. */
static int attn_mask_row(float *s, int n, long clo, long chi) {
    for (long c = 0; c < HR_MIN(clo, (long)n); c++) s[c] = -INFINITY;
    for (long c = HR_MAX(chi + 1, 0L); c < n; c++) s[c] = -INFINITY;
    return clo <= chi && chi >= 0 && clo < n;
}

static float attn_row_max(const float *s, int n) {
#if defined(HR_AVX512)
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int c = 0; c < n; c += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + c));
    return _mm512_reduce_max_ps(mx);
#elif defined(HR_AVX2)
    __m256 mx = _mm256_set1_ps(-INFINITY);
    for (int c = 0; c < n; c += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + c));
    return hr_hmax256(mx);
#else
    float mx = -INFINITY;
    for (int c = 0; c < n; c++) mx = HR_MAX(mx, s[c]);
    return mx;
#endif
}

/* s[c] = exp(s[c] − shift) in place (masked −inf entries become 0); returns Σ_c s[c]. */
static float attn_exp_row(float *s, int n, float shift) {
#if defined(HR_AVX512)
    __m512 sh = _mm512_set1_ps(shift), sum = _mm512_setzero_ps();
    for (int c = 0; c < n; c += 16) {
        __m512 e = hr_exp512(_mm512_sub_ps(_mm512_loadu_ps(s + c), sh));
        _mm512_storeu_ps(s + c, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
#elif defined(HR_AVX2)
    __m256 sh = _mm256_set1_ps(shift), sum = _mm256_setzero_ps();
    for (int c = 0; c < n; c += 8) {
        __m256 e = hr_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + c), sh));
        _mm256_storeu_ps(s + c, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hr_hsum256(sum);
#else
    float sum = 0.0f;
    for (int c = 0; c < n; c++) {
        s[c] = hr_expf(s[c] - shift);
        sum += s[c];
    }
    return sum;
#endif
}

/* ---- tile loads ------------------------------------------------------------------------ */

/* dst[r][p] = mul · src[r*stride + p] for r < rows, p < P; dst rows are ld apart and their
 * padding p >= P is left as it is (zero). */
static void attn_load_rows(float *dst, int ld, const float *src, size_t stride, int rows, int P, float mul) {
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < P; p++) dst[(size_t)r * ld + p] = mul * src[r * stride + p];
}

/* dst[p][c] = src[c*stride + p] (a key or value tile transposed to P × ATTN_BC, so a score
 * row is built from contiguous rows), with columns cols <= c < pad16(cols) zeroed. */
static void attn_load_transposed(float *dst, const float *src, size_t stride, int cols, int P) {
    for (int p = 0; p < P; p++) {
        float *row = dst + (size_t)p * ATTN_BC;
        for (int c = 0; c < cols; c++) row[c] = src[c * stride + p];
        for (int c = cols; c < attn_pad16(cols); c++) row[c] = 0.0f;
    }
}

/* The per-query-tile inputs of both backward passes: scale·q rows, dO rows, lse and
 * Δ_i = Σ_p dO_ip O_ip (= Σ_j P_ij dP_ij, the softmax Jacobian's diagonal term). */
static void attn_load_query_grad(const attn_dims *d, const float *q, const float *dout, const float *o,
                                 const float *lse, int b, int h, int i0, int rows, float *Qs, float *dOs,
                                 float *lse_t, float *delta) {
    size_t stride = (size_t)d->H * d->P;
    size_t at = (((size_t)b * d->T + i0) * d->H + h) * d->P;
    attn_load_rows(Qs, d->Pp, q + at, stride, rows, d->P, d->scale);
    attn_load_rows(dOs, d->Pp, dout + at, stride, rows, d->P, 1.0f);
    for (int r = 0; r < rows; r++) {
        const float *orow = o + at + r * stride, *drow = dOs + (size_t)r * d->Pp;
        float acc = 0.0f;
        for (int p = 0; p < d->P; p++) acc += drow[p] * orow[p];
        delta[r] = acc;
        lse_t[r] = lse[((size_t)b * d->H + h) * d->T + i0 + r];
    }
}

/* S = (scale·Q) Kᵀ for a rows × cols tile at queries i0.., keys j0..; then P = exp(S − lse)
 * with invisible keys at 0, and dP = dO Vᵀ overwritten by dS = P ⊙ (dP − Δ). */
static void attn_probs_and_dscores(const attn_dims *d, int i0, int rows, int j0, int cols, const float *Qs,
                                   const float *dOs, const float *Kt, const float *Vt, const float *lse_t,
                                   const float *delta, float *S, float *dS) {
    int n = attn_pad16(cols);
    attn_gemm(rows, n, d->P, Qs, d->Pp, 1, Kt, ATTN_BC, S, ATTN_BC, 0);
    attn_gemm(rows, n, d->P, dOs, d->Pp, 1, Vt, ATTN_BC, dS, ATTN_BC, 0);
    for (int r = 0; r < rows; r++) {
        float *s = S + (size_t)r * ATTN_BC, *ds = dS + (size_t)r * ATTN_BC;
        int i = i0 + r;
        attn_mask_row(s, n, (long)attn_first_key(d, i) - j0, (long)i - j0);
        attn_exp_row(s, n, lse_t[r]);
        for (int c = 0; c < n; c++) ds[c] = s[c] * (ds[c] - delta[r]);
    }
}

/* ---- forward --------------------------------------------------------------------------- */

static size_t attn_forward_scratch(int P, int Pp) {
    return (size_t)ATTN_BR * Pp + (size_t)P * ATTN_BC + (size_t)ATTN_BC * Pp + (size_t)ATTN_BR * ATTN_BC
         + (size_t)ATTN_BR * Pp + 2 * ATTN_BR;
}

static void attn_forward_tile(const attn_dims *d, const float *q, const float *k, const float *v, float *o,
                              float *lse, int b, int h, int i0, float *scratch) {
    int Pp = d->Pp, P = d->P, rows = HR_MIN(ATTN_BR, d->T - i0), g = h / (d->H / d->Hk);
    float *Qs = scratch, *Kt = Qs + (size_t)ATTN_BR * Pp, *Vs = Kt + (size_t)P * ATTN_BC;
    float *S = Vs + (size_t)ATTN_BC * Pp, *Os = S + (size_t)ATTN_BR * ATTN_BC, *m = Os + (size_t)ATTN_BR * Pp;
    float *l = m + ATTN_BR;
    size_t qstride = (size_t)d->H * P, kstride = (size_t)d->Hk * P;
    size_t qat = (((size_t)b * d->T + i0) * d->H + h) * P;
    attn_load_rows(Qs, Pp, q + qat, qstride, rows, P, d->scale);
    for (int r = 0; r < rows; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int p = 0; p < Pp; p++) Os[(size_t)r * Pp + p] = 0.0f;
    }
    int klast = i0 + rows - 1;
    for (int j0 = attn_first_key(d, i0); j0 <= klast; j0 += ATTN_BC) {
        int cols = HR_MIN(ATTN_BC, klast - j0 + 1), n = attn_pad16(cols);
        size_t kat = (((size_t)b * d->T + j0) * d->Hk + g) * P;
        attn_load_transposed(Kt, k + kat, kstride, cols, P);
        attn_load_rows(Vs, Pp, v + kat, kstride, cols, P, 1.0f);
        attn_gemm(rows, n, P, Qs, Pp, 1, Kt, ATTN_BC, S, ATTN_BC, 0);
        for (int r = 0; r < rows; r++) {
            float *s = S + (size_t)r * ATTN_BC, *orow = Os + (size_t)r * Pp;
            int i = i0 + r;
            float mx = attn_mask_row(s, n, (long)attn_first_key(d, i) - j0, (long)i - j0) ? attn_row_max(s, n)
                                                                                           : -INFINITY;
            if (mx == -INFINITY) { /* no visible key in this tile (sliding window): no update */
                for (int c = 0; c < n; c++) s[c] = 0.0f;
                continue;
            }
            float m_new = HR_MAX(m[r], mx), corr = hr_expf(m[r] - m_new);
            l[r] = l[r] * corr + attn_exp_row(s, n, m_new);
            m[r] = m_new;
            if (corr != 1.0f)
                for (int p = 0; p < Pp; p++) orow[p] *= corr;
        }
        attn_gemm(rows, Pp, cols, S, ATTN_BC, 1, Vs, Pp, Os, Pp, 1);
    }
    for (int r = 0; r < rows; r++) {
        float inv = 1.0f / l[r], *orow = o + qat + r * qstride;
        for (int p = 0; p < P; p++) orow[p] = Os[(size_t)r * Pp + p] * inv;
        lse[((size_t)b * d->H + h) * d->T + i0 + r] = m[r] + logf(l[r]);
    }
}

/* q (B,T,H,P), k, v (B,T,Hk,P) -> o (B,T,H,P), lse (B,H,T); window < 0: none */
int hr_attention_forward(const float *q, const float *k, const float *v, float *o, float *lse, int B, int T,
                         int H, int Hk, int P, int window) {
    attn_dims d = {B, T, H, Hk, P, attn_pad16(P), window, 1.0f / sqrtf((float)P)};
    int nthreads = hr_num_threads(), qtiles = (T + ATTN_BR - 1) / ATTN_BR;
    size_t per = attn_forward_scratch(P, d.Pp);
    float *scratch = hr_alloc(sizeof(float) * per * nthreads);
    if (!scratch) return HR_ENOMEM;
    for (size_t e = 0; e < per * nthreads; e++) scratch[e] = 0.0f; /* tile padding must be zero */
    long tasks = (long)B * H * qtiles;
    /* Round-robin (chunk 1): causal tiles cost in proportion to their index, so interleaving
     * balances the threads; each task owns its output rows. */
    #pragma omp parallel for schedule(static, 1) num_threads(nthreads)
    for (long t = 0; t < tasks; t++) {
#ifdef _OPENMP
        float *mine = scratch + per * omp_get_thread_num();
#else
        float *mine = scratch;
#endif
        int qt = (int)(t % qtiles), h = (int)(t / qtiles % H), b = (int)(t / qtiles / H);
        attn_forward_tile(&d, q, k, v, o, lse, b, h, qt * ATTN_BR, mine);
    }
    free(scratch);
    return HR_OK;
}

/* ---- backward -------------------------------------------------------------------------- */

static size_t attn_backward_scratch(int P, int Pp) {
    return 2 * (size_t)P * ATTN_BC                            /* Kt, Vt */
         + (size_t)ATTN_BC * Pp                               /* Ks */
         + 2 * (size_t)ATTN_BR * Pp                           /* Qs, dOs */
         + 2 * (size_t)ATTN_BR * ATTN_BC                      /* S, dS */
         + 2 * (size_t)ATTN_BMAX * Pp                         /* dK, dV (or dQ) accumulators */
         + 2 * ATTN_BR;                                       /* lse, Δ */
}

typedef struct {
    float *Kt, *Vt, *Ks, *Qs, *dOs, *S, *dS, *acc1, *acc2, *lse_t, *delta;
} attn_bwd_scratch;

static attn_bwd_scratch attn_bwd_split(float *base, int P, int Pp) {
    attn_bwd_scratch w;
    w.Kt = base;
    w.Vt = w.Kt + (size_t)P * ATTN_BC;
    w.Ks = w.Vt + (size_t)P * ATTN_BC;
    w.Qs = w.Ks + (size_t)ATTN_BC * Pp;
    w.dOs = w.Qs + (size_t)ATTN_BR * Pp;
    w.S = w.dOs + (size_t)ATTN_BR * Pp;
    w.dS = w.S + (size_t)ATTN_BR * ATTN_BC;
    w.acc1 = w.dS + (size_t)ATTN_BR * ATTN_BC;
    w.acc2 = w.acc1 + (size_t)ATTN_BMAX * Pp;
    w.lse_t = w.acc2 + (size_t)ATTN_BMAX * Pp;
    w.delta = w.lse_t + ATTN_BR;
    return w;
}

/* dk, dv rows j0.. of kv head g: Σ over the query heads of its group and the query tiles that
 * see these keys of dV += Pᵀ dO and dK += dSᵀ (scale·Q). */
static void attn_dkdv_tile(const attn_dims *d, const float *dout, const float *q, const float *k,
                           const float *v, const float *o, const float *lse, float *dk, float *dv, int b, int g,
                           int j0, attn_bwd_scratch *w) {
    int P = d->P, Pp = d->Pp, G = d->H / d->Hk, cols = HR_MIN(ATTN_BC, d->T - j0);
    size_t kstride = (size_t)d->Hk * P, kat = (((size_t)b * d->T + j0) * d->Hk + g) * P;
    attn_load_transposed(w->Kt, k + kat, kstride, cols, P);
    attn_load_transposed(w->Vt, v + kat, kstride, cols, P);
    for (size_t e = 0; e < (size_t)ATTN_BC * Pp; e++) w->acc1[e] = w->acc2[e] = 0.0f;
    int ilast = d->window < 0 ? d->T - 1 : (int)HR_MIN((long)d->T - 1, (long)j0 + cols - 1 + d->window);
    for (int h = g * G; h < (g + 1) * G; h++) {
        for (int i0 = j0; i0 <= ilast; i0 += ATTN_BR) {
            int rows = HR_MIN(ATTN_BR, ilast - i0 + 1);
            attn_load_query_grad(d, q, dout, o, lse, b, h, i0, rows, w->Qs, w->dOs, w->lse_t, w->delta);
            attn_probs_and_dscores(d, i0, rows, j0, cols, w->Qs, w->dOs, w->Kt, w->Vt, w->lse_t, w->delta, w->S,
                                   w->dS);
            attn_gemm(cols, Pp, rows, w->S, 1, ATTN_BC, w->dOs, Pp, w->acc2, Pp, 1);  /* dV += Pᵀ dO */
            attn_gemm(cols, Pp, rows, w->dS, 1, ATTN_BC, w->Qs, Pp, w->acc1, Pp, 1); /* dK += dSᵀ Q */
        }
    }
    for (int c = 0; c < cols; c++)
        for (int p = 0; p < P; p++) {
            dk[kat + c * kstride + p] = w->acc1[(size_t)c * Pp + p];
            dv[kat + c * kstride + p] = w->acc2[(size_t)c * Pp + p];
        }
}

/* dq rows i0.. of head h: scale · Σ over the visible key tiles of dS K. */
static void attn_dq_tile(const attn_dims *d, const float *dout, const float *q, const float *k, const float *v,
                         const float *o, const float *lse, float *dq, int b, int h, int i0, attn_bwd_scratch *w) {
    int P = d->P, Pp = d->Pp, g = h / (d->H / d->Hk), rows = HR_MIN(ATTN_BR, d->T - i0);
    size_t kstride = (size_t)d->Hk * P;
    attn_load_query_grad(d, q, dout, o, lse, b, h, i0, rows, w->Qs, w->dOs, w->lse_t, w->delta);
    for (size_t e = 0; e < (size_t)ATTN_BR * Pp; e++) w->acc1[e] = 0.0f;
    int klast = i0 + rows - 1;
    for (int j0 = attn_first_key(d, i0); j0 <= klast; j0 += ATTN_BC) {
        int cols = HR_MIN(ATTN_BC, klast - j0 + 1);
        size_t kat = (((size_t)b * d->T + j0) * d->Hk + g) * P;
        attn_load_transposed(w->Kt, k + kat, kstride, cols, P);
        attn_load_transposed(w->Vt, v + kat, kstride, cols, P);
        attn_load_rows(w->Ks, Pp, k + kat, kstride, cols, P, 1.0f);
        attn_probs_and_dscores(d, i0, rows, j0, cols, w->Qs, w->dOs, w->Kt, w->Vt, w->lse_t, w->delta, w->S, w->dS);
        attn_gemm(rows, Pp, cols, w->dS, ATTN_BC, 1, w->Ks, Pp, w->acc1, Pp, 1); /* dQ += dS K */
    }
    size_t qstride = (size_t)d->H * P, qat = (((size_t)b * d->T + i0) * d->H + h) * P;
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < P; p++) dq[qat + r * qstride + p] = d->scale * w->acc1[(size_t)r * Pp + p];
}

/* dout, q, o (B,T,H,P), k, v (B,T,Hk,P), lse (B,H,T) -> dq (B,T,H,P), dk, dv (B,T,Hk,P) */
int hr_attention_backward(const float *dout, const float *q, const float *k, const float *v, const float *o,
                          const float *lse, float *dq, float *dk, float *dv, int B, int T, int H, int Hk, int P,
                          int window) {
    attn_dims d = {B, T, H, Hk, P, attn_pad16(P), window, 1.0f / sqrtf((float)P)};
    int nthreads = hr_num_threads(), qtiles = (T + ATTN_BR - 1) / ATTN_BR, ktiles = (T + ATTN_BC - 1) / ATTN_BC;
    size_t per = attn_backward_scratch(P, d.Pp);
    float *scratch = hr_alloc(sizeof(float) * per * nthreads);
    if (!scratch) return HR_ENOMEM;
    for (size_t e = 0; e < per * nthreads; e++) scratch[e] = 0.0f; /* tile padding must be zero */
    long kv_tasks = (long)B * Hk * ktiles, q_tasks = (long)B * H * qtiles;
    /* Two passes so that each output row has exactly one owning task (see the file comment);
     * round-robin balances the causal triangle as in the forward. */
    #pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        attn_bwd_scratch w = attn_bwd_split(scratch + per * omp_get_thread_num(), P, d.Pp);
#else
        attn_bwd_scratch w = attn_bwd_split(scratch, P, d.Pp);
#endif
        #pragma omp for schedule(static, 1)
        for (long t = 0; t < kv_tasks; t++) {
            int kt = (int)(t % ktiles), g = (int)(t / ktiles % Hk), b = (int)(t / ktiles / Hk);
            attn_dkdv_tile(&d, dout, q, k, v, o, lse, dk, dv, b, g, kt * ATTN_BC, &w);
        }
        #pragma omp for schedule(static, 1)
        for (long t = 0; t < q_tasks; t++) {
            int qt = (int)(t % qtiles), h = (int)(t / qtiles % H), b = (int)(t / qtiles / H);
            attn_dq_tile(&d, dout, q, k, v, o, lse, dq, b, h, qt * ATTN_BR, &w);
        }
    }
    free(scratch);
    return HR_OK;
}
