/* Causal multi-head softmax attention with the FlashAttention-2 structure.
 *
 * Forward: each (batch, head, query tile) streams over the key tiles it can see,
 * keeping a running max m, sum l and unnormalised output per query (online softmax);
 * the T×T score matrix never exists. Backward recomputes P = exp(s − lse) tile by
 * tile, in two passes so that every output element has one owner (no atomics,
 * deterministic for any thread count): dk, dv per (batch, kv head, key tile), looping
 * over the query heads and query tiles that read it; dq per (batch, head, query tile),
 * looping over its key tiles. Scratch is a few tiles per thread, whatever T is.
 *
 * Layout: the forward and dq passes hold score tiles transposed (keys × queries), the
 * dk/dv pass as queries × keys: the tile axis that stays fixed through a task runs
 * along the SIMD vector, and every product reads q, k, v and dO in place as its
 * broadcast operand, so no tile is copied or transposed per (query, key) tile pair and
 * the head dim P is never padded. Vector widths are padded to 16 floats; padding
 * columns compute finite values that are never written out.
 *
 * Query and key blocks: q holds Tq queries, k and v Tk keys, and query i stands at position
 * i + q_offset of the key block (q_offset >= 0), so a sequence split into blocks is the sum of
 * its block pairs (merged through lse). A query that sees no key of the block gets o = 0 and
 * lse = -inf; the backward takes the lse of the whole key set, so per-block gradients add up to
 * the whole, and gives a query whose lse is -inf (no key at all) zero gradients.
 *
 * Sinks: the first `sinks` keys of the block stay visible to every later query whatever the window
 * (StreamingLLM's attention sinks, Hymba's meta tokens). A query tile then reads two spans of keys,
 * the sinks and its window (attn_key_spans), through the same tile loop (attn_next_tile).
 */
#include "common.h"
#include "simd.h"
#include "attention.h"

#define ATTN_BR 64 /* queries per tile */
#define ATTN_BC 64 /* keys per tile */
#define ATTN_BMAX HR_MAX(ATTN_BR, ATTN_BC)

typedef struct {
    int Tq, Tk, H, Hk, P, window, off, sinks; /* off = q_offset; sinks: keys 0..sinks-1 always visible */
    float scale;
    size_t qstride, kstride; /* floats between consecutive positions of one head */
} attn_dims;

static inline int attn_pad16(int n) { return (n + 15) & ~15; }

static inline size_t attn_q_at(const attn_dims *d, int b, int t, int h) {
    return (((size_t)b * d->Tq + t) * d->H + h) * d->P;
}

static inline size_t attn_kv_at(const attn_dims *d, int b, int t, int g) {
    return (((size_t)b * d->Tk + t) * d->Hk + g) * d->P;
}

static inline size_t attn_lse_at(const attn_dims *d, int b, int h, int t) {
    return ((size_t)b * d->H + h) * d->Tq + t;
}

/* Query i (at key position i + off) sees key j iff j <= i + off and (no window, or i + off - j <= window,
 * or j < sinks). Its window is first_key(i) <= j <= last_key(i) (the sinks come on top: attn_key_spans);
 * key j is seen by queries first_query(j) <= i <= last_query(j). Either range may be empty. */
static inline long attn_first_key(const attn_dims *d, long i) {
    return d->window < 0 ? 0 : HR_MAX(0, i + d->off - d->window);
}

static inline long attn_last_key(const attn_dims *d, long i) { return HR_MIN((long)d->Tk - 1, i + d->off); }

static inline long attn_first_query(const attn_dims *d, long j) { return HR_MAX(0, j - d->off); }

static inline long attn_last_query(const attn_dims *d, long j) {
    return d->window < 0 || j < d->sinks ? (long)d->Tq - 1 : HR_MIN((long)d->Tq - 1, j - d->off + d->window);
}

/* The keys the queries i0..i1 read, as spans lo[s] <= j <= hi[s] (at most two; -> their count): the
 * sinks 0..sinks-1 (causal), then the window first_key(i0)..last_key(i1); one span 0..last_key(i1) when
 * the sinks reach the window. */
static int attn_key_spans(const attn_dims *d, long i0, long i1, long lo[2], long hi[2]) {
    long first = attn_first_key(d, i0), last = attn_last_key(d, i1);
    int n = 0;
    if (d->sinks > 0 && first > d->sinks) {
        lo[n] = 0;
        hi[n++] = HR_MIN((long)d->sinks - 1, last);
    } else if (d->sinks > 0) {
        first = 0;
    }
    if (first <= last) {
        lo[n] = first;
        hi[n++] = last;
    }
    return n;
}

/* The key tiles of a query tile, span after span, at most ATTN_BC keys each:
 *     for (attn_tiles t = attn_key_tiles(d, i0, rows); attn_next_tile(&t);)  keys t.j0 .. t.j0 + t.cols - 1 */
typedef struct {
    long lo[2], hi[2]; /* the spans (attn_key_spans) */
    int n, sp, j0, cols; /* their count, the current one, the current tile */
} attn_tiles;

static attn_tiles attn_key_tiles(const attn_dims *d, int i0, int rows) {
    attn_tiles t;
    t.n = attn_key_spans(d, i0, i0 + rows - 1, t.lo, t.hi);
    t.sp = t.cols = 0;
    t.j0 = t.n ? (int)t.lo[0] : 0;
    return t;
}

/* Step to the next tile (the first on the first call); 0 when every span is done. Spans are never empty. */
static int attn_next_tile(attn_tiles *t) {
    t->j0 += t->cols;
    if (t->sp < t->n && t->j0 > t->hi[t->sp] && ++t->sp < t->n) t->j0 = (int)t->lo[t->sp];
    if (t->sp >= t->n) return 0;
    t->cols = HR_MIN(ATTN_BC, (int)t->hi[t->sp] - t->j0 + 1);
    return 1;
}

/* ---- tile products ---------------------------------------------------------------------- */

#if defined(HR_AVX512)
/* rb rows × nc·16 columns of C in zmm registers over the whole k loop: per k, nc loads of B
 * and rb broadcasts of A feed rb·nc FMAs (4 × 4: 8 loads per 16 FMAs). */
static inline __attribute__((always_inline)) void attn_kernel512(const int rb, const int nc, int kd, const float *A,
                                                                 size_t ars, size_t acs, const float *Bm, int ldb,
                                                                 float *C, int ldc, int accumulate) {
    __m512 acc[4][4];
    for (int r = 0; r < rb; r++)
        for (int c = 0; c < nc; c++)
            acc[r][c] = accumulate ? _mm512_loadu_ps(C + (size_t)r * ldc + 16 * c) : _mm512_setzero_ps();
    for (int k = 0; k < kd; k++) {
        __m512 bv[4];
        for (int c = 0; c < nc; c++) bv[c] = _mm512_loadu_ps(Bm + (size_t)k * ldb + 16 * c);
        const float *a = A + k * acs;
        for (int r = 0; r < rb; r++) {
            __m512 ar = _mm512_set1_ps(a[r * ars]);
            for (int c = 0; c < nc; c++) acc[r][c] = _mm512_fmadd_ps(ar, bv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < rb; r++)
        for (int c = 0; c < nc; c++) _mm512_storeu_ps(C + (size_t)r * ldc + 16 * c, acc[r][c]);
}

static inline __attribute__((always_inline)) void attn_rows512(const int nc, int m, int kd, const float *A,
                                                               size_t ars, size_t acs, const float *Bm, int ldb,
                                                               float *C, int ldc, int accumulate) {
    int r = 0;
    for (; r + 4 <= m; r += 4) attn_kernel512(4, nc, kd, A + r * ars, ars, acs, Bm, ldb, C + (size_t)r * ldc, ldc, accumulate);
    for (; r < m; r++) attn_kernel512(1, nc, kd, A + r * ars, ars, acs, Bm, ldb, C + (size_t)r * ldc, ldc, accumulate);
}
#elif defined(HR_AVX2)
/* rb rows × 16 columns of C (two ymm per row) in registers over the whole k loop. */
static inline __attribute__((always_inline)) void attn_kernel256(const int rb, int kd, const float *A, size_t ars,
                                                                 size_t acs, const float *Bm, int ldb, float *C,
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

/* C[r][0:n] (+)= Σ_k A(r,k) · Bm[k][0:n] for r < m, with A(r,k) = A[r*ars + k*acs] and n a
 * multiple of 16. Every tile product of the file is this one shape: A is read in place from
 * q, k, v or dO (any strides, so Aᵀ costs nothing, and any head dim P works), and Bm is a
 * tile whose columns run along the vector axis. */
static void attn_gemm(int m, int n, int kd, const float *A, size_t ars, size_t acs, const float *Bm, int ldb,
                      float *C, int ldc, int accumulate) {
#if defined(HR_AVX512)
    for (int c0 = 0; c0 < n; c0 += 64) {
        const float *B0 = Bm + c0;
        float *C0 = C + c0;
        switch (HR_MIN(4, (n - c0) / 16)) {
        case 4: attn_rows512(4, m, kd, A, ars, acs, B0, ldb, C0, ldc, accumulate); break;
        case 3: attn_rows512(3, m, kd, A, ars, acs, B0, ldb, C0, ldc, accumulate); break;
        case 2: attn_rows512(2, m, kd, A, ars, acs, B0, ldb, C0, ldc, accumulate); break;
        default: attn_rows512(1, m, kd, A, ars, acs, B0, ldb, C0, ldc, accumulate); break;
        }
    }
#elif defined(HR_AVX2)
    for (int c0 = 0; c0 < n; c0 += 16) {
        int r = 0;
        for (; r + 4 <= m; r += 4)
            attn_kernel256(4, kd, A + r * ars, ars, acs, Bm + c0, ldb, C + (size_t)r * ldc + c0, ldc, accumulate);
        for (; r < m; r++)
            attn_kernel256(1, kd, A + r * ars, ars, acs, Bm + c0, ldb, C + (size_t)r * ldc + c0, ldc, accumulate);
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

/* ---- vector rows (n a multiple of 16) ------------------------------------------------- */

/* s[c] = -inf for the columns outside [lo, hi] (invisible query-key pairs), except the columns c < keep
 * (sink keys), which only hi bounds. */
static void attn_mask(float *s, int n, long lo, long hi, long keep) {
    for (long c = HR_MAX(keep, 0L); c < HR_MIN(lo, (long)n); c++) s[c] = -INFINITY;
    for (long c = HR_MAX(hi + 1, 0L); c < n; c++) s[c] = -INFINITY;
}

/* mx[c] = max(mx[c], s[c]) */
static void attn_max_into(float *mx, const float *s, int n) {
    for (int c = 0; c < n; c += HR_VW)
        hr_vstore(mx + c, hr_vmax(hr_vload(mx + c, HR_VW), hr_vload(s + c, HR_VW)), HR_VW);
}

/* s[c] = exp(s[c] − shift[c]) in place (−inf becomes 0); then sum[c] += s[c] unless sum is NULL. */
static void attn_exp_cols(float *s, const float *shift, float *sum, int n) {
    for (int c = 0; c < n; c += HR_VW)
        hr_vstore(s + c, hr_vexp(hr_vsub(hr_vload(s + c, HR_VW), hr_vload(shift + c, HR_VW))), HR_VW);
    if (sum)
        for (int c = 0; c < n; c++) sum[c] += s[c];
}

/* s[c] = exp(s[c] − shift) in place, one shift for the row. */
static void attn_exp_row(float *s, int n, float shift) {
    hr_vec sh = hr_vset1(shift);
    for (int c = 0; c < n; c += HR_VW) hr_vstore(s + c, hr_vexp(hr_vsub(hr_vload(s + c, HR_VW), sh)), HR_VW);
}

/* ds[c] = p[c] (ds[c] − delta[c]): dS = P ⊙ (dP − Δ), Δ per column or (stride 0) per row. */
static void attn_dscores(float *ds, const float *p, const float *delta, int delta_step, int n) {
    for (int c = 0; c < n; c++) ds[c] = p[c] * (ds[c] - delta[c * delta_step]);
}

/* dst[p*ld + r] = mul · src[r*stride + p] for r < rows, p < P, and 0 for rows <= r < pad16(rows):
 * rows of one head gathered into a P × rows panel (done once per task). */
static void attn_load_transposed(float *dst, int ld, const float *src, size_t stride, int rows, int P, float mul) {
    for (int p = 0; p < P; p++) {
        float *row = dst + (size_t)p * ld;
        for (int r = 0; r < rows; r++) row[r] = mul * src[r * stride + p];
        for (int r = rows; r < attn_pad16(rows); r++) row[r] = 0.0f;
    }
}

/* Δ_i = Σ_p dO_ip O_ip (= Σ_j P_ij dP_ij, the diagonal term of the softmax Jacobian). */
static float attn_delta(const float *dorow, const float *orow, int P) {
    float acc = 0.0f;
    for (int p = 0; p < P; p++) acc += dorow[p] * orow[p];
    return acc;
}

/* Zero the first n columns of a P-row panel whose rows are ld apart (an accumulator). */
static void attn_zero_panel(float *x, int P, int ld, int n) {
    for (int p = 0; p < P; p++)
        for (int c = 0; c < n; c++) x[(size_t)p * ld + c] = 0.0f;
}

/* ---- forward --------------------------------------------------------------------------- */

static size_t attn_forward_scratch(int P) {
    return 2 * (size_t)P * ATTN_BR + (size_t)ATTN_BC * ATTN_BR + 5 * ATTN_BR;
}

/* o, lse of queries i0.. of head h. St = K Qᵀ (keys × queries): the softmax statistics are
 * vectors over the query columns, and Oᵀ += Vᵀ P reads V in place. */
static void attn_forward_tile(const attn_dims *d, const float *q, const float *k, const float *v, float *o,
                              float *lse, int b, int h, int i0, float *w) {
    int P = d->P, rows = HR_MIN(ATTN_BR, d->Tq - i0), n = attn_pad16(rows), g = h / (d->H / d->Hk);
    float *Qt = w, *St = Qt + (size_t)P * ATTN_BR, *Ot = St + (size_t)ATTN_BC * ATTN_BR;
    float *m = Ot + (size_t)P * ATTN_BR, *l = m + ATTN_BR, *mx = l + ATTN_BR, *shift = mx + ATTN_BR;
    float *corr = shift + ATTN_BR;
    size_t qat = attn_q_at(d, b, i0, h);
    attn_load_transposed(Qt, ATTN_BR, q + qat, d->qstride, rows, P, d->scale);
    for (int r = 0; r < n; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    attn_zero_panel(Ot, P, ATTN_BR, n);
    for (attn_tiles t = attn_key_tiles(d, i0, rows); attn_next_tile(&t);) {
        int j0 = t.j0, cols = t.cols;
        size_t kat = attn_kv_at(d, b, j0, g);
        attn_gemm(cols, n, P, k + kat, d->kstride, 1, Qt, ATTN_BR, St, ATTN_BR, 0);
        for (int r = 0; r < n; r++) mx[r] = -INFINITY;
        for (int c = 0; c < cols; c++) {
            float *s = St + (size_t)c * ATTN_BR;
            attn_mask(s, n, attn_first_query(d, j0 + c) - i0, attn_last_query(d, j0 + c) - i0, 0);
            attn_max_into(mx, s, n);
        }
        for (int r = 0; r < n; r++) {
            float m_new = HR_MAX(m[r], mx[r]);
            /* a query that has seen no key yet (sliding window) keeps l = 0, O = 0 */
            shift[r] = m_new == -INFINITY ? 0.0f : m_new;
            corr[r] = hr_expf(m[r] - shift[r]);
            l[r] *= corr[r];
            m[r] = m_new;
        }
        for (int c = 0; c < cols; c++) attn_exp_cols(St + (size_t)c * ATTN_BR, shift, l, n);
        for (int p = 0; p < P; p++)
            for (int r = 0; r < n; r++) Ot[(size_t)p * ATTN_BR + r] *= corr[r];
        attn_gemm(P, n, cols, v + kat, 1, d->kstride, St, ATTN_BR, Ot, ATTN_BR, 1);
    }
    for (int r = 0; r < rows; r++) {
        /* no visible key in this block (l = 0): o = 0, lse = -inf (the identity of the lse merge);
         * a nan l (a nan or +inf score) stays nan in both */
        float inv = l[r] != 0.0f ? 1.0f / l[r] : 0.0f, *orow = o + qat + r * d->qstride;
        for (int p = 0; p < P; p++) orow[p] = Ot[(size_t)p * ATTN_BR + r] * inv;
        lse[attn_lse_at(d, b, h, i0 + r)] = l[r] != 0.0f ? m[r] + logf(l[r]) : -INFINITY;
    }
}

static attn_dims attn_make_dims(int Tq, int Tk, int H, int Hk, int P, int window, int q_offset, int sinks) {
    attn_dims d = {Tq, Tk, H, Hk, P, window, q_offset, sinks, 1.0f / sqrtf((float)P), (size_t)H * P, (size_t)Hk * P};
    return d;
}

/* q (B,Tq,H,P), k, v (B,Tk,Hk,P) -> o (B,Tq,H,P), lse (B,H,Tq); window < 0: none; sinks >= 0 */
int hr_attention_forward(const float *q, const float *k, const float *v, float *o, float *lse, int B, int Tq,
                         int Tk, int H, int Hk, int P, int window, int q_offset, int sinks) {
    attn_dims d = attn_make_dims(Tq, Tk, H, Hk, P, window, q_offset, sinks);
    int nthreads = hr_num_threads(), qtiles = (Tq + ATTN_BR - 1) / ATTN_BR;
    size_t per = attn_forward_scratch(P);
    float *scratch = hr_alloc(sizeof(float) * per * nthreads);
    if (!scratch) return HR_ENOMEM;
    long tasks = (long)B * H * qtiles;
    /* Round-robin (chunk 1): a causal tile costs in proportion to its index, so interleaving
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

/* The shift of a query's probabilities p = exp(s − shift) in the backward: its lse, or +inf for a
 * query whose lse is −inf (it sees no key), so that its p is exp(−inf) = 0 and its gradients are 0,
 * where exp(s − lse) would be exp(−inf + inf) = nan for its masked scores. */
static inline float attn_lse_shift(float lse) { return lse == -INFINITY ? INFINITY : lse; }

/* Per thread: four P × 64 panels, two 64 × 64 score tiles, two vectors (both passes). */
static size_t attn_backward_scratch(int P) {
    return 4 * (size_t)P * ATTN_BMAX + 2 * (size_t)ATTN_BR * ATTN_BC + 2 * ATTN_BMAX;
}

/* dk, dv rows j0.. of kv head g, summed over the query heads of its group and the query tiles
 * that see these keys: S = Q Kᵀ (queries × keys), dVᵀ += dOᵀ P, dKᵀ += Qᵀ dS. */
static void attn_dkdv_tile(const attn_dims *d, const float *dout, const float *q, const float *k,
                           const float *v, const float *o, const float *lse, float *dk, float *dv, int b, int g,
                           int j0, float *w) {
    int P = d->P, G = d->H / d->Hk, cols = HR_MIN(ATTN_BC, d->Tk - j0), n = attn_pad16(cols);
    float *Kt = w, *Vt = Kt + (size_t)P * ATTN_BMAX, *dKt = Vt + (size_t)P * ATTN_BMAX;
    float *dVt = dKt + (size_t)P * ATTN_BMAX, *S = dVt + (size_t)P * ATTN_BMAX, *dS = S + (size_t)ATTN_BR * ATTN_BC;
    float *delta = dS + (size_t)ATTN_BR * ATTN_BC;
    size_t kat = attn_kv_at(d, b, j0, g);
    attn_load_transposed(Kt, ATTN_BC, k + kat, d->kstride, cols, P, d->scale);
    attn_load_transposed(Vt, ATTN_BC, v + kat, d->kstride, cols, P, 1.0f);
    attn_zero_panel(dKt, P, ATTN_BC, n);
    attn_zero_panel(dVt, P, ATTN_BC, n);
    /* the tile's last key sees the furthest query, unless a sink among its keys sees them all */
    int ilast = (int)HR_MAX(attn_last_query(d, j0), attn_last_query(d, j0 + cols - 1));
    for (int h = g * G; h < (g + 1) * G; h++) {
        for (int i0 = (int)attn_first_query(d, j0); i0 <= ilast; i0 += ATTN_BR) {
            int rows = HR_MIN(ATTN_BR, ilast - i0 + 1);
            size_t qat = attn_q_at(d, b, i0, h);
            attn_gemm(rows, n, P, q + qat, d->qstride, 1, Kt, ATTN_BC, S, ATTN_BC, 0);
            attn_gemm(rows, n, P, dout + qat, d->qstride, 1, Vt, ATTN_BC, dS, ATTN_BC, 0);
            for (int r = 0; r < rows; r++) {
                long i = i0 + r;
                float *s = S + (size_t)r * ATTN_BC;
                attn_mask(s, n, attn_first_key(d, i) - j0, i + d->off - j0, (long)d->sinks - j0);
                attn_exp_row(s, n, attn_lse_shift(lse[attn_lse_at(d, b, h, (int)i)]));
                delta[r] = attn_delta(dout + qat + r * d->qstride, o + qat + r * d->qstride, P);
                attn_dscores(dS + (size_t)r * ATTN_BC, s, delta + r, 0, n);
            }
            attn_gemm(P, n, rows, dout + qat, 1, d->qstride, S, ATTN_BC, dVt, ATTN_BC, 1);
            attn_gemm(P, n, rows, q + qat, 1, d->qstride, dS, ATTN_BC, dKt, ATTN_BC, 1);
        }
    }
    for (int c = 0; c < cols; c++)
        for (int p = 0; p < P; p++) {
            dk[kat + c * d->kstride + p] = d->scale * dKt[(size_t)p * ATTN_BC + c];
            dv[kat + c * d->kstride + p] = dVt[(size_t)p * ATTN_BC + c];
        }
}

/* dq rows i0.. of head h: St = K Qᵀ and dPt = V dOᵀ (keys × queries), dQᵀ += Kᵀ dSt. */
static void attn_dq_tile(const attn_dims *d, const float *dout, const float *q, const float *k, const float *v,
                         const float *o, const float *lse, float *dq, int b, int h, int i0, float *w) {
    int P = d->P, g = h / (d->H / d->Hk), rows = HR_MIN(ATTN_BR, d->Tq - i0), n = attn_pad16(rows);
    float *Qt = w, *dOt = Qt + (size_t)P * ATTN_BMAX, *dQt = dOt + (size_t)P * ATTN_BMAX;
    float *St = dQt + 2 * (size_t)P * ATTN_BMAX, *dSt = St + (size_t)ATTN_BR * ATTN_BC;
    float *lse_t = dSt + (size_t)ATTN_BR * ATTN_BC, *delta = lse_t + ATTN_BMAX;
    size_t qat = attn_q_at(d, b, i0, h);
    attn_load_transposed(Qt, ATTN_BR, q + qat, d->qstride, rows, P, d->scale);
    attn_load_transposed(dOt, ATTN_BR, dout + qat, d->qstride, rows, P, 1.0f);
    for (int r = 0; r < n; r++) {
        lse_t[r] = r < rows ? attn_lse_shift(lse[attn_lse_at(d, b, h, i0 + r)]) : 0.0f;
        delta[r] = r < rows ? attn_delta(dout + qat + r * d->qstride, o + qat + r * d->qstride, P) : 0.0f;
    }
    attn_zero_panel(dQt, P, ATTN_BR, n);
    for (attn_tiles t = attn_key_tiles(d, i0, rows); attn_next_tile(&t);) {
        int j0 = t.j0, cols = t.cols;
        size_t kat = attn_kv_at(d, b, j0, g);
        attn_gemm(cols, n, P, k + kat, d->kstride, 1, Qt, ATTN_BR, St, ATTN_BR, 0);
        attn_gemm(cols, n, P, v + kat, d->kstride, 1, dOt, ATTN_BR, dSt, ATTN_BR, 0);
        for (int c = 0; c < cols; c++) {
            float *s = St + (size_t)c * ATTN_BR;
            attn_mask(s, n, attn_first_query(d, j0 + c) - i0, attn_last_query(d, j0 + c) - i0, 0);
            attn_exp_cols(s, lse_t, NULL, n);
            attn_dscores(dSt + (size_t)c * ATTN_BR, s, delta, 1, n);
        }
        attn_gemm(P, n, cols, k + kat, 1, d->kstride, dSt, ATTN_BR, dQt, ATTN_BR, 1);
    }
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < P; p++) dq[qat + r * d->qstride + p] = d->scale * dQt[(size_t)p * ATTN_BR + r];
}

/* dout, q, o (B,Tq,H,P), k, v (B,Tk,Hk,P), lse (B,H,Tq) -> dq (B,Tq,H,P), dk, dv (B,Tk,Hk,P) */
int hr_attention_backward(const float *dout, const float *q, const float *k, const float *v, const float *o,
                          const float *lse, float *dq, float *dk, float *dv, int B, int Tq, int Tk, int H, int Hk,
                          int P, int window, int q_offset, int sinks) {
    attn_dims d = attn_make_dims(Tq, Tk, H, Hk, P, window, q_offset, sinks);
    int nthreads = hr_num_threads(), qtiles = (Tq + ATTN_BR - 1) / ATTN_BR, ktiles = (Tk + ATTN_BC - 1) / ATTN_BC;
    size_t per = attn_backward_scratch(P);
    float *scratch = hr_alloc(sizeof(float) * per * nthreads);
    if (!scratch) return HR_ENOMEM;
    long kv_tasks = (long)B * Hk * ktiles, q_tasks = (long)B * H * qtiles;
    /* Two passes so that each output row has exactly one owning task (see the file comment);
     * round-robin balances the causal triangle as in the forward. */
    #pragma omp parallel num_threads(nthreads)
    {
#ifdef _OPENMP
        float *mine = scratch + per * omp_get_thread_num();
#else
        float *mine = scratch;
#endif
        #pragma omp for schedule(static, 1)
        for (long t = 0; t < kv_tasks; t++) {
            int kt = (int)(t % ktiles), g = (int)(t / ktiles % Hk), b = (int)(t / ktiles / Hk);
            attn_dkdv_tile(&d, dout, q, k, v, o, lse, dk, dv, b, g, kt * ATTN_BC, mine);
        }
        #pragma omp for schedule(static, 1)
        for (long t = 0; t < q_tasks; t++) {
            int qt = (int)(t % qtiles), h = (int)(t / qtiles % H), b = (int)(t / qtiles / H);
            attn_dq_tile(&d, dout, q, k, v, o, lse, dq, b, h, qt * ATTN_BR, mine);
        }
    }
    free(scratch);
    return HR_OK;
}
