/* Decayed linear attention: the recurrence of Mamba-2 (SSD), RetNet and GLA, in chunks.
 *
 * Per batch b and head h, a K×V state S:  S_t = diag(e^{g_t}) S_{t-1} + k_tᵀ v_t,  o_t = scale q_t S_t.
 * A task is one (b, h). Time runs in chunks of L positions: the quadratic (attention-like) form inside a
 * chunk, the recurrence on S from chunk to chunk (backends/numpy/linear_attention.py, _block):
 *     o_i   = Σ_{j<=i} A_ij v_j + (q'_i ⊙ din_i) S,       A_ij = Σ_k q'_ik k_jk W_ijk,   q' = scale q
 *     S_out = Λ ⊙ S + Σ_j (k_j ⊙ dout_j)ᵀ v_j
 * with a = e^g, W_ijk = Π_{j<s<=i} a_sk, din_i = Π_{s<=i} a_s, dout_j = Π_{j<s<L} a_s, Λ = din_{L-1}.
 * chunk = 1 is the recurrence itself (o_t = q'_t (a_t ⊙ S) + (q'_t·k_t) v_t); chunk >= T the parallel form.
 *
 * Stability: every decay factor is a product of a_s = e^{g_s} <= 1 over a run of consecutive steps, never
 * e^{G_i}·e^{-G_j} of cumulative sums G. So none exceeds 1 (nothing overflows, whatever the decay), none
 * loses precision to cancellation (a product of n factors is within n half-ulps), and a factor that
 * underflows scales a term below 1e-38 of the terms it is added to.
 *
 * Kg = 1 (one decay per head and step): W is an L×L matrix and A = (Q' Kᵀ) ⊙ W.
 * Kg = K (GLA): W varies with k, so A is no longer a product of tiles. Sub-blocks of LA_SUB positions
 * split it (fla's secondary chunking): for i in sub-block I and j in an earlier one,
 *     W_ijk = Π_{I0<=s<=i} a_sk · Π_{j<s<I0} a_sk
 * around the boundary I0 between them, both factors <= 1, so these parts of A, dq and dk are products
 * of tiles; only the diagonal sub-blocks build W_ijk element by element.
 *
 * Backward: a task first runs the state recurrence alone for the state entering each chunk, then runs
 * the chunks in reverse, each turning the gradient of the state leaving it into that of the state
 * entering it (dS_in = Λ ⊙ dS_out + (q' ⊙ din)ᵀ dO). dg comes from the chunk's cumulative decays:
 * ∂L/∂G_i = q_i ⊙ dq_i - k_i ⊙ dk_i (+ Σ_v S_out ⊙ dS_out at the chunk's end), summed from i down to
 * the chunk's start. The states of every task at every chunk boundary are kept (transposed, as the
 * backward reads them) while they fit LA_STATES_BUDGET floats; past that, every ~√(T/L)-th chunk's is
 * kept and a segment's states are recomputed from its checkpoint. No (T, K, V) tensor is ever formed.
 *
 * Threads: each owns a fixed share of the (b, h) tasks and steps them through time together, chunk by
 * chunk, so the heads of a row of q, k, v (neighbours in memory) are read at once: a head's slice of a row
 * is only K or V of its H·K or H·V floats, which read head after head costs long sequences ~1.4x in memory
 * stalls. A task's results never depend on the thread running it; dq, dk of the heads of a group go
 * through per-head buffers added in head order: bit-identical for any thread count.
 *
 * Layout: each chunk's rows are copied into per-thread tiles whose rows are padded with zeros to a
 * multiple of 16 floats, so every tile product runs on whole vectors; only output rows are masked.
 */
#include <string.h>

#include "common.h"
#include "simd.h"
#include "linear_attention.h"

enum { LA_SUB = 16 };                  /* GLA sub-block length */
enum { LA_STATES_BUDGET = 1 << 25 };   /* floats of chunk states (128 MB) the backward keeps before checkpointing */
enum { LA_RB = 4 };                    /* rows of a register block of la_mm (then single rows) */
#if defined(HR_AVX512)
#define LA_NV 4 /* vectors per register block: 4 rows × 64 columns, 16 zmm accumulators */
#elif defined(HR_AVX2)
#define LA_NV 2 /* 4 rows × 16 columns, 8 ymm accumulators (of 16 registers) */
#else
#define LA_NV 4
#endif

static inline int la_pad16(int n) { return (n + 15) & ~15; }

static inline int la_thread(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ---- tile product ------------------------------------------------------------------------------ */

/* rb rows × nv vectors of C in registers over p0 <= p < p1: per p, nv loads of B and rb broadcasts of A
 * feed rb·nv FMAs. */
static inline __attribute__((always_inline)) void la_kernel(const int rb, const int nv, int p0, int p1, const float *A,
                                                            size_t ars, size_t acs, const float *Bm, size_t ldb,
                                                            float *C, size_t ldc, int accumulate) {
    hr_vec acc[LA_RB][LA_NV];
    for (int r = 0; r < rb; r++)
        for (int c = 0; c < nv; c++)
            acc[r][c] = accumulate ? hr_vload(C + r * ldc + c * HR_VW, HR_VW) : hr_vzero();
    for (int p = p0; p < p1; p++) {
        hr_vec bv[LA_NV];
        for (int c = 0; c < nv; c++) bv[c] = hr_vload(Bm + p * ldb + c * HR_VW, HR_VW);
        const float *a = A + p * acs;
        for (int r = 0; r < rb; r++) {
            hr_vec ar = hr_vset1(a[r * ars]);
            for (int c = 0; c < nv; c++) acc[r][c] = hr_vfma(ar, bv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < rb; r++)
        for (int c = 0; c < nv; c++) hr_vstore(C + r * ldc + c * HR_VW, acc[r][c], HR_VW);
}

enum { LA_FULL, LA_LOWER_C, LA_LOWER_A, LA_UPPER_A };

/* C[r][0:n] (+)= Σ_p A(r,p) Bm[p][0:n] for r < m, with A(r,p) = A[r*ars + p*acs] (so Aᵀ is read in place),
 * n a multiple of 16; rows by blocks of LA_RB, the last few one at a time. `tri` skips known zeros:
 * LA_LOWER_C computes only the columns c <= r (rounded up to 16) of a lower-triangular result, which the
 * caller masks; LA_LOWER_A / LA_UPPER_A read only the nonzero part of a lower / upper triangular A. */
static inline __attribute__((always_inline)) void la_rows(const int rb, int r0, int n, int p, const float *A,
                                                          size_t ars, size_t acs, const float *Bm, size_t ldb,
                                                          float *C, size_t ldc, int accumulate, int tri) {
    int nr = tri == LA_LOWER_C ? HR_MIN(n, la_pad16(r0 + rb)) : n;
    int p0 = tri == LA_UPPER_A ? HR_MIN(r0, p) : 0, p1 = tri == LA_LOWER_A ? HR_MIN(p, r0 + rb) : p;
    const float *Ar = A + r0 * ars;
    float *Cr = C + r0 * ldc;
    for (int c0 = 0; c0 < nr; c0 += LA_NV * HR_VW) {
        switch (HR_MIN(LA_NV, (nr - c0) / HR_VW)) {
#if LA_NV == 4
        case 4: la_kernel(rb, 4, p0, p1, Ar, ars, acs, Bm + c0, ldb, Cr + c0, ldc, accumulate); break;
        case 3: la_kernel(rb, 3, p0, p1, Ar, ars, acs, Bm + c0, ldb, Cr + c0, ldc, accumulate); break;
#endif
        case 2: la_kernel(rb, 2, p0, p1, Ar, ars, acs, Bm + c0, ldb, Cr + c0, ldc, accumulate); break;
        default: la_kernel(rb, 1, p0, p1, Ar, ars, acs, Bm + c0, ldb, Cr + c0, ldc, accumulate); break;
        }
    }
}

static void la_mm(int m, int n, int p, const float *A, size_t ars, size_t acs, const float *Bm, size_t ldb, float *C,
                  size_t ldc, int accumulate, int tri) {
    int r0 = 0;
    for (; r0 + LA_RB <= m; r0 += LA_RB) la_rows(LA_RB, r0, n, p, A, ars, acs, Bm, ldb, C, ldc, accumulate, tri);
    for (; r0 < m; r0++) la_rows(1, r0, n, p, A, ars, acs, Bm, ldb, C, ldc, accumulate, tri);
}

/* ---- rows ----------------------------------------------------------------------------------------- */

/* dst[r][0:wp] = mul · src[r*stride + 0:w], zero-padded, for r < rows; rows..rp-1 zero. */
static void la_load_rows(float *dst, int wp, const float *src, size_t stride, int rows, int rp, int w, float mul) {
    hr_vec m = hr_vset1(mul);
    for (int r = 0; r < rp; r++)
        for (int c = 0; c < wp; c += HR_VW) {
            hr_vec x = src && r < rows && c < w ? hr_vmul(m, hr_vload(src + r * stride + c, w - c)) : hr_vzero();
            hr_vstore(dst + (size_t)r * wp + c, x, HR_VW);
        }
}

/* dst[r*stride + 0:w] = mul · src[r][0:w] for r < rows. */
static void la_store_rows(float *dst, size_t stride, const float *src, int wp, int rows, int w, float mul) {
    hr_vec m = hr_vset1(mul);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < w; c += HR_VW)
            hr_vstore(dst + r * stride + c, hr_vmul(m, hr_vload(src + (size_t)r * wp + c, HR_VW)), w - c);
}

#if defined(HR_AVX2)
/* An 8×8 block: dst[c][r] = src[r][c] (unpack pairs, shuffle quads, swap 128-bit halves). */
static inline void la_transpose8(float *dst, int ldd, const float *src, int lds) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            u[i + 2 * j] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], _MM_SHUFFLE(1, 0, 1, 0));
            u[i + 2 * j + 1] = _mm256_shuffle_ps(t[i + j], t[i + j + 2], _MM_SHUFFLE(3, 2, 3, 2));
        }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + (size_t)i * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
        _mm256_storeu_ps(dst + (size_t)(i + 4) * ldd, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
}
#endif

/* dst[c][r] = src[r][c] for r < rows, c < cols (multiples of 8 go by 8×8 blocks in registers). */
static void la_transpose(float *dst, int ldd, const float *src, int lds, int rows, int cols) {
#if defined(HR_AVX2)
    if (rows % 8 == 0 && cols % 8 == 0) {
        for (int r = 0; r < rows; r += 8)
            for (int c = 0; c < cols; c += 8) la_transpose8(dst + (size_t)c * ldd + r, ldd, src + (size_t)r * lds + c, lds);
        return;
    }
#endif
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

/* A decay row: d[i] on every lane (gw = 1, Kg = 1) or the vector d[i*gw + c] (gw = KP). */
static inline hr_vec la_decay(const float *d, int gw, int i, int c) {
    return gw == 1 ? hr_vset1(d[i]) : hr_vload(d + (size_t)i * gw + c, HR_VW);
}

/* dst_i = src_i ⊙ d_i for i < rows, dst_i = 0 for rows <= i < rp (rows of wp floats). */
static void la_scale_rows(float *dst, const float *src, int wp, int rows, int rp, const float *d, int gw) {
    for (int i = 0; i < rp; i++)
        for (int c = 0; c < wp; c += HR_VW) {
            hr_vec x = i < rows ? hr_vmul(hr_vload(src + (size_t)i * wp + c, HR_VW), la_decay(d, gw, i, c)) : hr_vzero();
            hr_vstore(dst + (size_t)i * wp + c, x, HR_VW);
        }
}

/* dst_i += d_i ⊙ src_i for i < rows. */
static void la_fma_rows(float *dst, const float *src, int wp, int rows, const float *d, int gw) {
    for (int i = 0; i < rows; i++)
        for (int c = 0; c < wp; c += HR_VW) {
            float *x = dst + (size_t)i * wp + c;
            hr_vstore(x, hr_vfma(la_decay(d, gw, i, c), hr_vload(src + (size_t)i * wp + c, HR_VW), hr_vload(x, HR_VW)),
                      HR_VW);
        }
}

/* X_ij = X_ij W_ij (W NULL: X_ij) for j <= i and 0 for j > i, rows i < m of LP floats. */
static void la_tril(float *X, const float *W, int m, int LP) {
    for (int i = 0; i < m; i++)
        for (int c = 0; c < LP; c += HR_VW) {
            int live = HR_MIN(HR_VW, i + 1 - c);
            hr_vec x = hr_vzero();
            if (live > 0) {
                x = hr_vload(X + (size_t)i * LP + c, live);
                if (W) x = hr_vmul(x, hr_vload(W + (size_t)i * LP + c, live));
            }
            hr_vstore(X + (size_t)i * LP + c, x, HR_VW);
        }
}

/* ---- decays ---------------------------------------------------------------------------------------- */

/* Over gw lanes (1 when Kg = 1, KP for GLA; padded lanes decay by 1), rows i < Lc of the chunk:
 * a_i = e^{g_i}, din_i = Π_{s<=i} a_s, dout_j = Π_{j<s<Lc} a_s, lam = din_{Lc-1}. */
static void la_decays(const float *g, size_t gstride, int Lc, int Kg, int gw, float *a, float *din, float *dout,
                      float *lam) {
    for (int c = 0; c < gw; c += HR_VW) {
        int n = HR_MIN(HR_VW, gw - c);
        hr_vec run = hr_vset1(1.0f);
        for (int i = 0; i < Lc; i++) {
            hr_vec ai = c < Kg ? hr_vexp(hr_vload(g + i * gstride + c, Kg - c)) : hr_vset1(1.0f);
            hr_vstore(a + (size_t)i * gw + c, ai, n);
            run = hr_vmul(run, ai);
            hr_vstore(din + (size_t)i * gw + c, run, n);
        }
        hr_vstore(lam + c, run, n);
        run = hr_vset1(1.0f);
        for (int j = Lc - 1; j >= 0; j--) {
            hr_vstore(dout + (size_t)j * gw + c, run, n);
            run = hr_vmul(run, hr_vload(a + (size_t)j * gw + c, n));
        }
    }
}

/* Kg = 1: W_ij = Π_{j<s<=i} a_s for j <= i < Lc (rows of LP floats; nothing above the diagonal is read). */
static void la_decay_matrix(const float *a, int Lc, int LP, float *W) {
    for (int i = 0; i < Lc; i++) {
        float *row = W + (size_t)i * LP;
        for (int j = 0; j < i; j++) row[j] = row[j - LP] * a[i];
        row[i] = 1.0f;
    }
}

/* GLA, per sub-block [I0, I1): eF_i = Π_{I0<=s<=i} a_s, er_j = Π_{j<s<I1} a_s, lamb_I = eF_{I1-1}. */
static void la_subblock_decays(const float *a, int Lc, int KP, float *eF, float *er, float *lamb) {
    for (int I0 = 0; I0 < Lc; I0 += LA_SUB) {
        int I1 = HR_MIN(I0 + LA_SUB, Lc);
        for (int c = 0; c < KP; c += HR_VW) {
            hr_vec run = hr_vset1(1.0f);
            for (int i = I0; i < I1; i++) {
                run = hr_vmul(run, hr_vload(a + (size_t)i * KP + c, HR_VW));
                hr_vstore(eF + (size_t)i * KP + c, run, HR_VW);
            }
            hr_vstore(lamb + (size_t)(I0 / LA_SUB) * KP + c, run, HR_VW);
            run = hr_vset1(1.0f);
            for (int j = I1 - 1; j >= I0; j--) {
                hr_vstore(er + (size_t)j * KP + c, run, HR_VW);
                run = hr_vmul(run, hr_vload(a + (size_t)j * KP + c, HR_VW));
            }
        }
    }
}

/* ---- one task's tiles ------------------------------------------------------------------------------ */

typedef struct {
    int T, Hq, H, K, V, Kg, L, rep; /* rep = H / Hq heads per group */
    int KP, VP, LP, gw;             /* K, V, L padded to 16; decay lanes: 1 (Kg = 1) or KP */
    float scale;
} la_dims;

typedef struct {
    float *qs, *ks, *vs, *dos;  /* the chunk's q' = scale q, k (LP×KP), v, dO (LP×VP) */
    float *a, *din, *dout, *lam; /* decays (LP×gw), lam (gw) */
    float *W, *kT;              /* Kg = 1: decay matrix (LP×LP), kᵀ (KP×LP) */
    float *eF, *er, *lamb, *wv; /* GLA: sub-block decays (LP×KP), lamb (LP/16 × KP), a row of W (KP) */
    float *qh, *kh, *khT, *qc;  /* GLA: q'⊙eF, K̂ (LP×KP) and K̂ᵀ (KP×LP), Q̌ (LP×KP) */
    float *A, *dA;              /* decayed scores and their gradient (LP×LP) */
    float *qd, *kd, *tmp;       /* q'⊙din, k⊙dout, a product (LP×KP) */
    float *ot;                  /* output rows: o or dv (LP×VP) */
    float *vT, *dST;            /* vᵀ (VP×LP), dSᵀ (VP×KP) */
    float *dq, *dk;             /* dq', dk of the chunk (LP×KP) */
} la_work;

/* Points w's tiles into base (only counts when base is NULL); returns the floats used. */
static size_t la_layout(const la_dims *d, la_work *w, float *base, int backward) {
    size_t used = 0, LK = (size_t)d->LP * d->KP, LV = (size_t)d->LP * d->VP, KV = (size_t)d->KP * d->VP;
    size_t LL = (size_t)d->LP * d->LP, LG = (size_t)d->LP * d->gw;
    int gla = d->Kg > 1;
#define LA_TILE(field, n)                                                                                  \
    do {                                                                                                   \
        w->field = base ? base + used : NULL;                                                              \
        used += ((size_t)(n) + 15) & ~(size_t)15;                                                          \
    } while (0)
    LA_TILE(qs, LK); LA_TILE(ks, LK); LA_TILE(vs, LV); LA_TILE(dos, backward ? LV : 0);
    LA_TILE(a, LG); LA_TILE(din, LG); LA_TILE(dout, LG); LA_TILE(lam, d->gw);
    LA_TILE(W, gla ? 0 : LL); LA_TILE(kT, gla ? 0 : LK);
    LA_TILE(eF, gla ? LK : 0); LA_TILE(er, gla ? LK : 0); LA_TILE(lamb, gla ? LK / LA_SUB : 0);
    LA_TILE(wv, gla ? d->KP : 0);
    LA_TILE(qh, gla ? LK : 0); LA_TILE(kh, gla ? LK : 0); LA_TILE(khT, gla ? LK : 0);
    LA_TILE(qc, gla && backward ? LK : 0);
    LA_TILE(A, LL); LA_TILE(dA, backward ? LL : 0);
    LA_TILE(qd, LK); LA_TILE(kd, LK); LA_TILE(tmp, backward ? LK : 0); LA_TILE(ot, LV);
    LA_TILE(vT, backward ? LV : 0); LA_TILE(dST, backward ? KV : 0);
    LA_TILE(dq, backward ? LK : 0); LA_TILE(dk, backward ? LK : 0);
#undef LA_TILE
    return used;
}

/* Reads every cache line of columns [c0, c1) of `rows` rows of `width` floats from x, in address order, and
 * returns a sum that only keeps the reads from being dropped. */
static float la_sweep_rows(const float *x, size_t width, int rows, size_t c0, size_t c1) {
    hr_vec acc = hr_vzero();
    for (int r = 0; r < rows; r++)
        for (size_t c = c0; c < c1; c += 16) acc = hr_vadd(acc, hr_vload(x + r * width + c, (int)HR_MIN(HR_VW, c1 - c)));
    return hr_vhsum(acc);
}

/* Rows t0..t0+Lc-1 of task (b, h) into the tiles (q when not NULL: the state pass needs only k, v, g; dO
 * when not NULL: the backward) and the chunk's decays.
 * sweep > 0: first read these rows of heads h..h+sweep-1 (the thread's next tasks, in the same rows) in one
 * sweep: their slices lie side by side, so the sweep is sequential and the hardware prefetcher runs ahead of
 * it, where it cannot follow the tasks' strided slices one after the other (14% of the forward's time at
 * T = 32768, H = 4, when q, k, v come from memory); the tasks then find the rows in cache. */
static void la_load_chunk(const la_dims *d, la_work *w, const float *q, const float *k, const float *v,
                          const float *g, const float *dout, long b, int h, int t0, int Lc, int sweep) {
    size_t row = (size_t)b * d->T + t0, qrow = row * d->Hq + h / d->rep, vrow = row * d->H + h;
    size_t qstride = (size_t)d->Hq * d->K, vstride = (size_t)d->H * d->V;
    if (sweep > 0) {
        size_t g0 = (size_t)(h / d->rep) * d->K, g1 = (size_t)((h + sweep - 1) / d->rep + 1) * d->K;
        size_t v0 = (size_t)h * d->V, v1 = (size_t)(h + sweep) * d->V;
        float sum = la_sweep_rows(k + row * qstride, qstride, Lc, g0, g1) +
                    la_sweep_rows(v + row * vstride, vstride, Lc, v0, v1);
        if (q) sum += la_sweep_rows(q + row * qstride, qstride, Lc, g0, g1);
        if (dout) sum += la_sweep_rows(dout + row * vstride, vstride, Lc, v0, v1);
        __asm__ volatile("" : : "g"(sum));
    }
    if (q) la_load_rows(w->qs, d->KP, q + qrow * d->K, qstride, Lc, d->LP, d->K, d->scale);
    if (dout) la_load_rows(w->dos, d->VP, dout + vrow * d->V, vstride, Lc, d->LP, d->V, 1.0f);
    la_load_rows(w->ks, d->KP, k + qrow * d->K, qstride, Lc, d->LP, d->K, 1.0f);
    la_load_rows(w->vs, d->VP, v + vrow * d->V, vstride, Lc, d->LP, d->V, 1.0f);
    la_decays(g + vrow * d->Kg, (size_t)d->H * d->Kg, Lc, d->Kg, d->gw, w->a, w->din, w->dout, w->lam);
}

/* The heads a thread sweeps before task (its tasks t0..t1-1, chunk-major): all of the batch row's that it
 * holds at the row's first task, none otherwise. */
static inline int la_sweep_heads(long task, long t0, long t1, int H) {
    long b = task / H;
    return task == t0 || task % H == 0 ? (int)(HR_MIN(t1, (b + 1) * H) - task) : 0;
}

/* S = Λ ⊙ S + (k ⊙ dout)ᵀ v: the state leaving the loaded chunk, in place; S is K×V (KP×VP), or with
 * `transposed` Sᵀ (VP×KP), the layout the backward reads it in (Sᵀ = Sᵀ Λ + vᵀ (k ⊙ dout)). */
static void la_state_update(const la_dims *d, la_work *w, float *S, int Lc, int transposed) {
    int KP = d->KP, VP = d->VP;
    la_scale_rows(w->kd, w->ks, KP, Lc, d->LP, w->dout, d->gw);
    if (transposed) {
        for (int r = 0; r < VP; r++)
            for (int c = 0; c < KP; c += HR_VW)
                hr_vstore(S + (size_t)r * KP + c, hr_vmul(la_decay(w->lam, d->gw, 0, c), hr_vload(S + (size_t)r * KP + c, HR_VW)),
                          HR_VW);
        la_mm(d->V, KP, Lc, w->vs, 1, VP, w->kd, KP, S, KP, 1, LA_FULL);
        return;
    }
    for (int r = 0; r < KP; r++) {
        hr_vec lam = hr_vset1(w->lam[d->gw == 1 ? 0 : r]);
        for (int c = 0; c < VP; c += HR_VW)
            hr_vstore(S + (size_t)r * VP + c, hr_vmul(lam, hr_vload(S + (size_t)r * VP + c, HR_VW)), HR_VW);
    }
    la_mm(d->K, VP, Lc, w->kd, 1, KP, w->vs, VP, S, VP, 1, LA_FULL);
}

/* GLA, diagonal sub-block [I0, I1): W_ijk = Π_{j<s<=i} a_sk built up i by i for each j;
 * A_ij = Σ_k q'_ik k_jk W_ijk, and with dA also dq'_i += dA_ij k_j ⊙ W_ij, dk_j += dA_ij q'_i ⊙ W_ij. */
static void la_gla_diag(const la_dims *d, la_work *w, int I0, int I1, const float *dA) {
    int KP = d->KP, LP = d->LP;
    for (int j = I0; j < I1; j++) {
        const float *kj = w->ks + (size_t)j * KP;
        for (int c = 0; c < KP; c += HR_VW) hr_vstore(w->wv + c, hr_vset1(1.0f), HR_VW);
        for (int i = j; i < I1; i++) {
            const float *qi = w->qs + (size_t)i * KP, *ai = w->a + (size_t)i * KP;
            hr_vec s = hr_vzero(), da = hr_vset1(dA ? dA[(size_t)i * LP + j] : 0.0f);
            for (int c = 0; c < KP; c += HR_VW) {
                hr_vec wc = hr_vload(w->wv + c, HR_VW);
                if (i > j) {
                    wc = hr_vmul(wc, hr_vload(ai + c, HR_VW));
                    hr_vstore(w->wv + c, wc, HR_VW);
                }
                hr_vec qw = hr_vmul(hr_vload(qi + c, HR_VW), wc), kc = hr_vload(kj + c, HR_VW);
                s = hr_vfma(qw, kc, s);
                if (dA) {
                    float *dqi = w->dq + (size_t)i * KP + c, *dkj = w->dk + (size_t)j * KP + c;
                    hr_vstore(dqi, hr_vfma(da, hr_vmul(kc, wc), hr_vload(dqi, HR_VW)), HR_VW);
                    hr_vstore(dkj, hr_vfma(da, qw, hr_vload(dkj, HR_VW)), HR_VW);
                }
            }
            w->A[(size_t)i * LP + j] = hr_vhsum(s);
        }
    }
}

/* GLA's decayed scores A by sub-blocks; with dA (backward) also the chunk-internal dq' = Σ_j dA_ij k_j ⊙ W_ij
 * and dk_j = Σ_i dA_ij q'_i ⊙ W_ij, added into w->dq, w->dk.
 * Rows of sub-block I against the earlier positions j < I0 factor around the boundary I0:
 *     A = q̂ K̂ᵀ,  q̂_i = q'_i ⊙ eF_i (<= |q'_i|),  K̂_j = k_j ⊙ Π_{j<s<I0} a_s (<= |k_j|),
 * K̂ being carried from one boundary to the next by the sub-block's decay lamb. The columns of sub-block
 * J against later rows i >= J1 factor around the boundary J1 the same way, with Q̌_i = q'_i ⊙ Π_{J1<=s<=i} a_s
 * carried backwards, for dk. */
static void la_gla_intra(const la_dims *d, la_work *w, int Lc, const float *dA) {
    int KP = d->KP, LP = d->LP, nsub = (Lc + LA_SUB - 1) / LA_SUB;
    la_subblock_decays(w->a, Lc, KP, w->eF, w->er, w->lamb);
    la_scale_rows(w->qh, w->qs, KP, Lc, Lc, w->eF, KP);
    for (int i = 0; i < Lc; i++)
        for (int c = 0; c < LP; c += HR_VW) hr_vstore(w->A + (size_t)i * LP + c, hr_vzero(), HR_VW);
    for (int I = 0; I < nsub; I++) {
        int I0 = I * LA_SUB, I1 = HR_MIN(I0 + LA_SUB, Lc), m = I1 - I0;
        if (I > 0) {
            int J0 = I0 - LA_SUB; /* sub-block I-1 joins K̂; the earlier ones decay through it */
            const float *lam = w->lamb + (size_t)(I - 1) * KP;
            for (int j = 0; j < J0; j++)
                for (int c = 0; c < KP; c += HR_VW) {
                    float *x = w->kh + (size_t)j * KP + c;
                    hr_vstore(x, hr_vmul(hr_vload(x, HR_VW), hr_vload(lam + c, HR_VW)), HR_VW);
                }
            for (int r = 0; r < KP; r++) {
                hr_vec l = hr_vset1(lam[r]);
                for (int j = 0; j < J0; j += HR_VW) {
                    float *x = w->khT + (size_t)r * LP + j;
                    hr_vstore(x, hr_vmul(hr_vload(x, HR_VW), l), HR_VW);
                }
            }
            la_scale_rows(w->kh + (size_t)J0 * KP, w->ks + (size_t)J0 * KP, KP, LA_SUB, LA_SUB,
                          w->er + (size_t)J0 * KP, KP);
            la_transpose(w->khT + J0, LP, w->kh + (size_t)J0 * KP, KP, LA_SUB, KP);
            la_mm(m, I0, d->K, w->qh + (size_t)I0 * KP, KP, 1, w->khT, LP, w->A + (size_t)I0 * LP, LP, 0, LA_FULL);
            if (dA) {
                la_mm(m, KP, I0, dA + (size_t)I0 * LP, LP, 1, w->kh, KP, w->tmp, KP, 0, LA_FULL);
                la_fma_rows(w->dq + (size_t)I0 * KP, w->tmp, KP, I1 - I0, w->eF + (size_t)I0 * KP, KP);
            }
        }
        la_gla_diag(d, w, I0, I1, dA);
    }
    if (!dA) return;
    for (int J = nsub - 2; J >= 0; J--) {
        int J0 = J * LA_SUB, J1 = J0 + LA_SUB, N1 = HR_MIN(J1 + LA_SUB, Lc); /* sub-block J+1 is [J1, N1) */
        const float *lam = w->lamb + (size_t)(J + 1) * KP;
        for (int i = N1; i < Lc; i++)
            for (int c = 0; c < KP; c += HR_VW) {
                float *x = w->qc + (size_t)i * KP + c;
                hr_vstore(x, hr_vmul(hr_vload(x, HR_VW), hr_vload(lam + c, HR_VW)), HR_VW);
            }
        for (int i = J1; i < N1; i++)
            for (int c = 0; c < KP; c += HR_VW)
                hr_vstore(w->qc + (size_t)i * KP + c, hr_vload(w->qh + (size_t)i * KP + c, HR_VW), HR_VW);
        la_mm(LA_SUB, KP, Lc - J1, dA + (size_t)J1 * LP + J0, 1, LP, w->qc + (size_t)J1 * KP, KP, w->tmp, KP, 0,
              LA_FULL);
        la_fma_rows(w->dk + (size_t)J0 * KP, w->tmp, KP, LA_SUB, w->er + (size_t)J0 * KP, KP);
    }
}

/* The loaded chunk's decayed scores A (rows < pad4(Lc), zero above the diagonal). Backward (dA given,
 * masked): also dq' = Σ_j dA_ij k_j ⊙ W_ij and dk_j = Σ_i dA_ij q'_i ⊙ W_ij into w->dq, w->dk. */
static void la_scores(const la_dims *d, la_work *w, int Lc, float *dA) {
    int KP = d->KP, LP = d->LP;
    if (d->Kg > 1) {
        if (dA)
            for (size_t i = 0; i < (size_t)Lc * KP; i++) w->dq[i] = w->dk[i] = 0.0f;
        la_gla_intra(d, w, Lc, dA);
        return;
    }
    la_transpose(w->kT, LP, w->ks, KP, LP, KP);
    la_decay_matrix(w->a, Lc, LP, w->W);
    la_mm(Lc, la_pad16(Lc), d->K, w->qs, KP, 1, w->kT, LP, w->A, LP, 0, LA_LOWER_C);
    la_tril(w->A, w->W, Lc, LP);
    if (!dA) return;
    la_tril(dA, w->W, Lc, LP); /* dP = dA ⊙ W: then dq' = dP K, dk = dPᵀ Q' */
    la_mm(Lc, KP, Lc, dA, LP, 1, w->ks, KP, w->dq, KP, 0, LA_LOWER_A);
    la_mm(Lc, KP, Lc, dA, 1, LP, w->qs, KP, w->dk, KP, 0, LA_UPPER_A);
}

/* o rows of the loaded chunk = A v + (q' ⊙ din) S, then S -> the state leaving the chunk. */
static void la_forward_chunk(const la_dims *d, la_work *w, float *S, int Lc, float *o, size_t ostride) {
    la_scores(d, w, Lc, NULL);
    la_mm(Lc, d->VP, Lc, w->A, d->LP, 1, w->vs, d->VP, w->ot, d->VP, 0, LA_LOWER_A);
    la_scale_rows(w->qd, w->qs, d->KP, Lc, d->LP, w->din, d->gw);
    la_mm(Lc, d->VP, d->K, w->qd, d->KP, 1, S, d->VP, w->ot, d->VP, 1, LA_FULL);
    la_store_rows(o, ostride, w->ot, d->VP, Lc, d->V, 1.0f);
    la_state_update(d, w, S, Lc, 0);
}

/* Backward through the loaded chunk, which enters with state S_in and leaves with S_out (given transposed,
 * VP×KP); dS (KP×VP) holds the gradient of S_out and leaves holding that of S_in. Writes the chunk's rows of
 * dq (scale dq'), dk, dv, dg. */
static void la_backward_chunk(const la_dims *d, la_work *w, int Lc, const float *SinT, const float *SoutT, float *dS,
                              float *dq, float *dk, size_t kstride, float *dv, float *dg) {
    int KP = d->KP, VP = d->VP, LP = d->LP, gw = d->gw;
    size_t vstride = (size_t)d->H * d->V, gstride = (size_t)d->H * d->Kg;
    /* dA = dO vᵀ, masked; the scores and the chunk-internal dq', dk */
    la_transpose(w->vT, LP, w->vs, VP, LP, VP);
    la_mm(Lc, la_pad16(Lc), d->V, w->dos, VP, 1, w->vT, LP, w->dA, LP, 0, LA_LOWER_C);
    if (d->Kg > 1) la_tril(w->dA, NULL, Lc, LP);
    la_scores(d, w, Lc, w->dA);
    /* dv = Aᵀ dO + (k ⊙ dout) dS */
    la_mm(Lc, VP, Lc, w->A, 1, LP, w->dos, VP, w->ot, VP, 0, LA_UPPER_A);
    la_scale_rows(w->kd, w->ks, KP, Lc, LP, w->dout, gw);
    la_mm(Lc, VP, d->K, w->kd, KP, 1, dS, VP, w->ot, VP, 1, LA_FULL);
    /* dq' += din ⊙ (dO S_inᵀ), dk += dout ⊙ (v dSᵀ) */
    la_mm(Lc, KP, d->V, w->dos, VP, 1, SinT, KP, w->tmp, KP, 0, LA_FULL);
    la_fma_rows(w->dq, w->tmp, KP, Lc, w->din, gw);
    la_transpose(w->dST, KP, dS, VP, KP, VP);
    la_mm(Lc, KP, d->V, w->vs, VP, 1, w->dST, KP, w->tmp, KP, 0, LA_FULL);
    la_fma_rows(w->dk, w->tmp, KP, Lc, w->dout, gw);
    /* dg_s = Σ_{s<=i<Lc} ∂L/∂G_i, ∂L/∂G_i = q'_i ⊙ dq'_i - k_i ⊙ dk_i, + Σ_v S_out ⊙ dS at i = Lc-1 (Λ);
     * rows of tmp (free again) take dg per k */
    for (int c = 0; c < KP; c += HR_VW) {
        hr_vec run = hr_vzero();
        for (int r = 0; r < VP; r++)
            run = hr_vfma(hr_vload(SoutT + (size_t)r * KP + c, HR_VW), hr_vload(w->dST + (size_t)r * KP + c, HR_VW), run);
        for (int i = Lc - 1; i >= 0; i--) {
            size_t o = (size_t)i * KP + c;
            hr_vec qdq = hr_vmul(hr_vload(w->qs + o, HR_VW), hr_vload(w->dq + o, HR_VW));
            run = hr_vadd(run, hr_vfnma(hr_vload(w->ks + o, HR_VW), hr_vload(w->dk + o, HR_VW), qdq));
            hr_vstore(w->tmp + o, run, HR_VW);
        }
    }
    for (int i = 0; i < Lc; i++) {
        const float *row = w->tmp + (size_t)i * KP;
        if (d->Kg == 1) {
            hr_vec s = hr_vzero();
            for (int c = 0; c < KP; c += HR_VW) s = hr_vadd(s, hr_vload(row + c, HR_VW));
            dg[i * gstride] = hr_vhsum(s);
        } else {
            la_store_rows(dg + i * gstride, 0, row, KP, 1, d->K, 1.0f);
        }
    }
    /* dS_in = Λ ⊙ dS + (q' ⊙ din)ᵀ dO */
    la_scale_rows(w->qd, w->qs, KP, Lc, LP, w->din, gw);
    for (int r = 0; r < KP; r++) {
        hr_vec lam = hr_vset1(w->lam[gw == 1 ? 0 : r]);
        for (int c = 0; c < VP; c += HR_VW)
            hr_vstore(dS + (size_t)r * VP + c, hr_vmul(lam, hr_vload(dS + (size_t)r * VP + c, HR_VW)), HR_VW);
    }
    la_mm(d->K, VP, Lc, w->qd, 1, KP, w->dos, VP, dS, VP, 1, LA_FULL);
    la_store_rows(dq, kstride, w->dq, KP, Lc, d->K, d->scale);
    la_store_rows(dk, kstride, w->dk, KP, Lc, d->K, 1.0f);
    la_store_rows(dv, vstride, w->ot, VP, Lc, d->V, 1.0f);
}

static la_dims la_make_dims(int T, int Hq, int H, int K, int V, int Kg, float scale, int chunk) {
    la_dims d = {T, Hq, H, K, V, Kg, HR_MIN(chunk, HR_MAX(T, 1)), H / Hq, la_pad16(K), la_pad16(V), 0, 0, scale};
    d.LP = la_pad16(d.L);
    d.gw = Kg == 1 ? 1 : d.KP;
    return d;
}

/* This thread's share [*t0, *t1) of the B·H tasks: a fixed split, so each task runs on one thread from its
 * first chunk to its last whatever the loop, and a thread steps its tasks through time together (chunk by
 * chunk): the heads of a (b, t) row, neighbours in memory, are then read together. */
static void la_my_tasks(long ntasks, long *t0, long *t1) {
#ifdef _OPENMP
    hr_partition(ntasks, omp_get_num_threads(), omp_get_thread_num(), t0, t1);
#else
    *t0 = 0;
    *t1 = ntasks;
#endif
}

/* o_t = scale q_t S_t,  S_t = diag(e^{g_t}) S_{t-1} + k_tᵀ v_t,  S_{-1} = h0 (zeros if NULL), in chunks
 * q, k (B,T,Hq,K), v (B,T,H,V), g (B,T,H,Kg) (Kg = 1 or K, g <= 0), h0 (B,H,K,V) or NULL, H % Hq == 0,
 * chunk >= 1 -> o (B,T,H,V), h_last (B,H,K,V) (may be h0 itself: a task reads its h0 before writing). */
int hr_linear_attention_forward(const float *q, const float *k, const float *v, const float *g, const float *h0,
                                float *o, float *h_last, int B, int T, int Hq, int H, int K, int V, int Kg, float scale,
                                int chunk) {
    la_dims d = la_make_dims(T, Hq, H, K, V, Kg, scale, chunk);
    int nthreads = hr_num_threads();
    long ntasks = (long)B * H;
    size_t KVp = (size_t)d.KP * d.VP, KVh = (size_t)K * V;
    la_work lay;
    size_t per_thread = la_layout(&d, &lay, NULL, 0);
    float *scratch = hr_alloc(per_thread * nthreads * sizeof(float));
    float *states = hr_alloc(ntasks * KVp * sizeof(float)); /* each task's running state, padded */
    int status = scratch && states ? HR_OK : HR_ENOMEM;
    if (status == HR_OK) {
        #pragma omp parallel num_threads(nthreads)
        {
            la_work w;
            long t0, t1;
            float *mine = scratch + per_thread * la_thread();
            for (size_t i = 0; i < per_thread; i++) mine[i] = 0.0f; /* padding rows and columns stay 0 */
            la_layout(&d, &w, mine, 0);
            la_my_tasks(ntasks, &t0, &t1);
            for (long task = t0; task < t1; task++)
                la_load_rows(states + task * KVp, d.VP, h0 ? h0 + task * KVh : NULL, V, K, d.KP, V, 1.0f);
            for (int s0 = 0; s0 < T; s0 += d.L) {
                int Lc = HR_MIN(d.L, T - s0);
                for (long task = t0; task < t1; task++) {
                    long b = task / H;
                    int h = (int)(task % H);
                    la_load_chunk(&d, &w, q, k, v, g, NULL, b, h, s0, Lc, la_sweep_heads(task, t0, t1, H));
                    la_forward_chunk(&d, &w, states + task * KVp, Lc, o + (((size_t)b * T + s0) * H + h) * V,
                                     (size_t)H * V);
                }
            }
            for (long task = t0; task < t1; task++)
                la_store_rows(h_last + task * KVh, V, states + task * KVp, d.VP, K, V, 1.0f);
        }
    }
    free(scratch);
    free(states);
    return status;
}

/* Chunks per checkpoint segment of the backward: all of them while the states of every task at every
 * chunk boundary fit the budget, else ~√n (checkpoints and one segment's states, for ~2√n states a task). */
static int la_segment(long ntasks, int nchunks, size_t state_floats) {
    if ((size_t)ntasks * (nchunks + 1) * state_floats <= LA_STATES_BUDGET) return HR_MAX(nchunks, 1);
    return (int)ceil(sqrt((double)nchunks));
}

/* The state leaving chunk c of a task: Sᵀ advanced in place over that chunk. */
static void la_advance(const la_dims *d, la_work *w, const float *k, const float *v, const float *g, long task,
                       int c, int sweep, float *ST) {
    int Lc = HR_MIN(d->L, d->T - c * d->L);
    la_load_chunk(d, w, NULL, k, v, g, NULL, task / d->H, (int)(task % d->H), c * d->L, Lc, sweep);
    la_state_update(d, w, ST, Lc, 1);
}

/* Gradients of hr_linear_attention_forward, given dout = ∂L/∂o (B,T,H,V) and dh_last = ∂L/∂h_last (B,H,K,V)
 * or NULL (zeros) -> dq, dk (B,T,Hq,K) summed over the heads of a group, dv (B,T,H,V), dg (B,T,H,Kg) (Kg = 1:
 * summed over K), dh0 (B,H,K,V) (skipped when NULL). */
int hr_linear_attention_backward(const float *dout, const float *q, const float *k, const float *v, const float *g,
                                 const float *h0, const float *dh_last, float *dq, float *dk, float *dv, float *dg,
                                 float *dh0, int B, int T, int Hq, int H, int K, int V, int Kg, float scale,
                                 int chunk) {
    la_dims d = la_make_dims(T, Hq, H, K, V, Kg, scale, chunk);
    int nthreads = hr_num_threads(), nchunks = (T + d.L - 1) / d.L;
    long ntasks = (long)B * H;
    size_t KVp = (size_t)d.KP * d.VP, KVh = (size_t)K * V;
    int seg = la_segment(ntasks, nchunks, KVp), nseg = HR_MAX(1, (nchunks + seg - 1) / seg);
    /* per task: dS, the checkpoints (the state entering each segment), the states leaving a segment's chunks;
     * states transposed (Sᵀ), as the backward reads them */
    size_t per_task = (1 + (size_t)nseg + seg) * KVp;
    la_work lay;
    size_t per_thread = la_layout(&d, &lay, NULL, 1);
    /* per-head dq, dk (B,T,H,K) when heads share a group, added in head order afterwards */
    size_t head_rows = d.rep > 1 ? (size_t)B * T * H * K : 0;
    float *scratch = hr_alloc(per_thread * nthreads * sizeof(float));
    float *tasks = hr_alloc(ntasks * per_task * sizeof(float));
    float *dqh = d.rep > 1 ? hr_alloc(head_rows * sizeof(float)) : dq;
    float *dkh = d.rep > 1 ? hr_alloc(head_rows * sizeof(float)) : dk;
    int status = scratch && tasks && dqh && dkh ? HR_OK : HR_ENOMEM;
    if (status == HR_OK) {
        #pragma omp parallel num_threads(nthreads)
        {
            la_work w;
            long t0, t1;
            float *mine = scratch + per_thread * la_thread();
            for (size_t i = 0; i < per_thread; i++) mine[i] = 0.0f;
            la_layout(&d, &w, mine, 1);
            la_my_tasks(ntasks, &t0, &t1);
            #define LA_DS(task) (tasks + (task) * per_task)
            #define LA_CKPT(task, s) (LA_DS(task) + (1 + (size_t)(s)) * KVp)
            #define LA_LEAVING(task, i) (LA_CKPT(task, nseg) + (size_t)(i) * KVp) /* chunk c0 + i of a segment */
            for (long task = t0; task < t1; task++) {
                la_load_rows(w.dST, d.VP, h0 ? h0 + task * KVh : NULL, V, K, d.KP, V, 1.0f);
                la_transpose(LA_CKPT(task, 0), d.KP, w.dST, d.VP, d.KP, d.VP);
                la_load_rows(LA_DS(task), d.VP, dh_last ? dh_last + task * KVh : NULL, V, K, d.KP, V, 1.0f);
            }
            for (int s = 0; s + 1 < nseg; s++) /* checkpoints */
                for (int c = s * seg; c < (s + 1) * seg; c++)
                    for (long task = t0; task < t1; task++) {
                        if (c == s * seg) memcpy(LA_CKPT(task, s + 1), LA_CKPT(task, s), KVp * sizeof(float));
                        la_advance(&d, &w, k, v, g, task, c, la_sweep_heads(task, t0, t1, H), LA_CKPT(task, s + 1));
                    }
            for (int s = nseg - 1; s >= 0; s--) {
                int c0 = s * seg, c1 = HR_MIN(nchunks, c0 + seg);
                for (int c = c0; c < c1; c++) /* the segment's states */
                    for (long task = t0; task < t1; task++) {
                        float *next = LA_LEAVING(task, c - c0);
                        memcpy(next, c == c0 ? LA_CKPT(task, s) : next - KVp, KVp * sizeof(float));
                        la_advance(&d, &w, k, v, g, task, c, la_sweep_heads(task, t0, t1, H), next);
                    }
                for (int c = c1 - 1; c >= c0; c--)
                    for (long task = t0; task < t1; task++) {
                        long b = task / H;
                        int h = (int)(task % H), s0 = c * d.L, Lc = HR_MIN(d.L, T - s0);
                        size_t row = ((size_t)b * T + s0) * H + h;
                        la_load_chunk(&d, &w, q, k, v, g, dout, b, h, s0, Lc, la_sweep_heads(task, t0, t1, H));
                        la_backward_chunk(&d, &w, Lc, c == c0 ? LA_CKPT(task, s) : LA_LEAVING(task, c - c0 - 1),
                                          LA_LEAVING(task, c - c0), LA_DS(task), dqh + row * K,
                                          dkh + row * K, (size_t)H * K, dv + row * V, dg + row * Kg);
                    }
            }
            for (long task = t0; task < t1; task++)
                if (dh0) la_store_rows(dh0 + task * KVh, V, LA_DS(task), d.VP, K, V, 1.0f);
            #undef LA_DS
            #undef LA_CKPT
            #undef LA_LEAVING
            if (d.rep > 1) {
                #pragma omp barrier
                #pragma omp for schedule(static)
                for (long r = 0; r < (long)B * T * Hq; r++) {
                    size_t first = (size_t)r * d.rep * K; /* row (b, t, group) starts at head group * rep */
                    for (int c = 0; c < K; c++) {
                        float sq = 0.0f, sk = 0.0f;
                        for (int j = 0; j < d.rep; j++) {
                            sq += dqh[first + (size_t)j * K + c];
                            sk += dkh[first + (size_t)j * K + c];
                        }
                        dq[(size_t)r * K + c] = sq;
                        dk[(size_t)r * K + c] = sk;
                    }
                }
            }
        }
    }
    free(scratch);
    free(tasks);
    if (d.rep > 1) {
        free(dqh);
        free(dkh);
    }
    return status;
}
