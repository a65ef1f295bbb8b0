/* Single-precision GEMM in the GotoBLAS/BLIS structure.
 *
 *   for jc in N step NC                      column block of C
 *     for pc in K step kc                    rank-kc step, in order (K is never split across threads)
 *       B block op(B)[pc:+kc, jc:+NC]: NR-wide panels, packed once and shared by
 *                                      all threads, or read in place    (~L2)
 *       for each MR-row panel i of op(A)     (threads split the grid of panels)
 *         A micro-panel MR x kc, packed or read in place                 (~L1)
 *         for each NR panel j: micro-kernel C[i, j] (+)= A_i B_j
 *
 * The micro-kernel keeps an MR x NR tile of C in registers: per k it loads one
 * row of the B panel (NR floats = 2 vectors) and broadcasts MR elements of A.
 * Packed panels are zero padded to full MR / NR, so the kernel never branches on
 * the edges; a last B panel of at most NR/2 columns is packed half wide and runs
 * a one-vector kernel, so a narrow N (e.g. 36) wastes a quarter, not a half.
 *
 * The model's products are thin (K and N of 16..256): packing would cost as much
 * as the arithmetic, so operands with short rows are read in place by the
 * micro-kernel, whose loads overlap its FMAs; only a transposed B (the forward
 * x wᵀ) and edge panels are packed, and big operands (rows > 512 floats apart).
 *
 * Every element of C is owned by exactly one thread, and its K sum runs in the
 * same order whatever the thread count, so results are bit-for-bit repeatable.
 */
#include <string.h>

#include "common.h"
#include "gemm.h"

#if defined(HR_AVX512)
/* 12 x 32: 24 zmm accumulators, 2 for B, 1 broadcast; 2 FMA ports need >= 8 independent chains. */
#define HR_GEMM_MR 12
#define HR_GEMM_VL 16
typedef __m512 hr_gemm_vec;
#define HR_GEMM_VZERO() _mm512_setzero_ps()
#define HR_GEMM_VSET1(x) _mm512_set1_ps(x)
#define HR_GEMM_VLOADU(p) _mm512_loadu_ps(p)
#define HR_GEMM_VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define HR_GEMM_VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define HR_GEMM_VADD(a, b) _mm512_add_ps(a, b)
#elif defined(HR_AVX2)
/* 6 x 16: 12 ymm accumulators, 2 for B, 1 broadcast (of 16 registers). */
#define HR_GEMM_MR 6
#define HR_GEMM_VL 8
typedef __m256 hr_gemm_vec;
#define HR_GEMM_VZERO() _mm256_setzero_ps()
#define HR_GEMM_VSET1(x) _mm256_set1_ps(x)
#define HR_GEMM_VLOADU(p) _mm256_loadu_ps(p)
#define HR_GEMM_VSTOREU(p, v) _mm256_storeu_ps(p, v)
#define HR_GEMM_VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define HR_GEMM_VADD(a, b) _mm256_add_ps(a, b)
#else
#define HR_GEMM_MR 4
#define HR_GEMM_VL 4
#endif
#define HR_GEMM_NR (2 * HR_GEMM_VL)
/* Blocking for 48 KiB L1 / 2 MiB L2 per core. KC: the least depth of a rank-kc
 * step; a 12 x 256 A micro-panel is 12 KiB, L1-resident while it sweeps the B
 * block. NC: C column block, so a packed 256 x 1024 B block is 1 MiB. STEP_FLOATS:
 * the L2 budget (1 MiB) for what a step keeps re-reading, which lets narrow
 * products (dW = dYᵀ X) take deeper steps and fewer passes over C. */
#define HR_GEMM_KC 256
#define HR_GEMM_NC 1024
#define HR_GEMM_STEP_FLOATS (256L * 1024)
/* Operands whose rows are at most this many floats apart are read in place;
 * farther apart, a panel's rows collide in L1 sets and on pages: pack them. */
#define HR_GEMM_INPLACE_LD 512
/* Below this many multiply-adds one thread beats waking the team. */
#define HR_GEMM_MIN_PARALLEL (1L << 18)

/* Write the tile acc (MR rows, NR columns, row stride NR) into C's mr x nr
 * corner: C = acc + bias + beta C; C is not read when beta == 0, bias may be NULL. */
static void hr_gemm_store_edge(const float *acc, int mr, int nr, const float *bias, float beta, float *C, long ldc) {
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float *c = C + r * ldc + j;
            float x = bias ? acc[r * HR_GEMM_NR + j] + bias[j] : acc[r * HR_GEMM_NR + j];
            *c = beta == 0.0f ? x : x + beta * *c;
        }
}

/* One micro-tile: C[0:mr, 0:nr] = A_panel B_panel + bias + beta C, over kc.
 * A element (r, k) is a[r*rs + k*cs]: k-major (rs = 1, cs = a_ld: a packed panel,
 * or Aᵀ in place) or row-major (rs = a_ld, cs = 1: A in place). B row k is
 * b + k*ldb_p: a packed panel, or B in place. nv = vectors per B row.
 * always_inline with constant nv and a_kmajor gives four straight-line kernels. */
static inline __attribute__((always_inline)) void hr_gemm_tile(int nv, int a_kmajor, int kc, const float *a,
                                                              long a_ld, const float *b, long ldb_p,
                                                              const float *bias, float beta, float *C, long ldc,
                                                              int mr, int nr) {
    const long rs = a_kmajor ? 1 : a_ld, cs = a_kmajor ? a_ld : 1;
#if defined(HR_AVX2)
    /* C's tile is needed only after the k loop: start fetching its lines now. */
    for (int r = 0; r < mr; r++) {
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + r * ldc + nr - 1), _MM_HINT_T0);
    }
    hr_gemm_vec acc[HR_GEMM_MR][2];
    #pragma GCC unroll 16
    for (int r = 0; r < HR_GEMM_MR; r++) acc[r][0] = acc[r][1] = HR_GEMM_VZERO();
    for (int k = 0; k < kc; k++) {
        const float *ak = a + k * cs;
        hr_gemm_vec b0 = HR_GEMM_VLOADU(b), b1 = nv == 2 ? HR_GEMM_VLOADU(b + HR_GEMM_VL) : b0;
        #pragma GCC unroll 16
        for (int r = 0; r < HR_GEMM_MR; r++) {
            hr_gemm_vec av = HR_GEMM_VSET1(ak[r * rs]);
            acc[r][0] = HR_GEMM_VFMA(av, b0, acc[r][0]);
            if (nv == 2) acc[r][1] = HR_GEMM_VFMA(av, b1, acc[r][1]);
        }
        b += ldb_p;
    }
    /* Every acc index below is a constant after unrolling, so acc stays in registers. */
    hr_gemm_vec vbias[2] = {HR_GEMM_VZERO(), HR_GEMM_VZERO()};
    if (bias && nr == nv * HR_GEMM_VL) {
        vbias[0] = HR_GEMM_VLOADU(bias);
        if (nv == 2) vbias[1] = HR_GEMM_VLOADU(bias + HR_GEMM_VL);
    }
    if (mr == HR_GEMM_MR && nr == nv * HR_GEMM_VL) {
        const hr_gemm_vec vbeta = HR_GEMM_VSET1(beta);
        #pragma GCC unroll 16
        for (int r = 0; r < HR_GEMM_MR; r++) {
            float *c = C + r * ldc;
            #pragma GCC unroll 2
            for (int v = 0; v < nv; v++) {
                hr_gemm_vec x = acc[r][v];
                if (bias) x = HR_GEMM_VADD(x, vbias[v]);
                if (beta != 0.0f) x = HR_GEMM_VFMA(vbeta, HR_GEMM_VLOADU(c + v * HR_GEMM_VL), x);
                HR_GEMM_VSTOREU(c + v * HR_GEMM_VL, x);
            }
        }
        return;
    }
    float tile[HR_GEMM_MR * HR_GEMM_NR];
    #pragma GCC unroll 16
    for (int r = 0; r < HR_GEMM_MR; r++) {
        #pragma GCC unroll 2
        for (int v = 0; v < nv; v++) HR_GEMM_VSTOREU(tile + r * HR_GEMM_NR + v * HR_GEMM_VL, acc[r][v]);
    }
    hr_gemm_store_edge(tile, mr, nr, bias, beta, C, ldc);
#else
    const int w = nv * HR_GEMM_VL;
    float acc[HR_GEMM_MR][HR_GEMM_NR] = {{0}};
    for (int k = 0; k < kc; k++) {
        /* A straight-line body (all loops unrolled) that the compiler vectorizes along j. */
        #pragma GCC unroll 8
        for (int r = 0; r < HR_GEMM_MR; r++) {
            const float av = a[r * rs + k * cs];
            #pragma GCC unroll 16
            for (int j = 0; j < w; j++) acc[r][j] += av * b[j];
        }
        b += ldb_p;
    }
    hr_gemm_store_edge(&acc[0][0], mr, nr, bias, beta, C, ldc);
#endif
}

#if defined(HR_AVX2)
#define HR_GEMM_MICRO_ATTR
#else
/* Keep the compiler from vectorizing the portable kernel along k (a gather of
 * shuffles); vectorizing the unrolled body along j is what it should do. */
#define HR_GEMM_MICRO_ATTR __attribute__((optimize("no-tree-loop-vectorize")))
#endif
static HR_GEMM_MICRO_ATTR void hr_gemm_micro(int nv, int a_kmajor, int kc, const float *a, long a_ld,
                                             const float *b, long ldb_p, const float *bias, float beta, float *C,
                                             long ldc, int mr, int nr) {
    if (nv == 2) {
        if (a_kmajor) hr_gemm_tile(2, 1, kc, a, a_ld, b, ldb_p, bias, beta, C, ldc, mr, nr);
        else hr_gemm_tile(2, 0, kc, a, a_ld, b, ldb_p, bias, beta, C, ldc, mr, nr);
    } else {
        if (a_kmajor) hr_gemm_tile(1, 1, kc, a, a_ld, b, ldb_p, bias, beta, C, ldc, mr, nr);
        else hr_gemm_tile(1, 0, kc, a, a_ld, b, ldb_p, bias, beta, C, ldc, mr, nr);
    }
}

/* op(A)[i0:i0+mr, pc:pc+kc] -> dst[k*MR + r], rows mr..MR-1 zero; next_mr rows
 * follow this panel (prefetched). */
static void hr_gemm_pack_a(int trans_a, const float *A, long lda, long i0, int mr, int next_mr, long pc, int kc,
                           float *dst) {
    if (trans_a && mr == HR_GEMM_MR) {
        for (long k = 0; k < kc; k++) memcpy(dst + k * HR_GEMM_MR, A + (pc + k) * lda + i0, sizeof(float) * HR_GEMM_MR);
    } else if (trans_a) {
        for (long k = 0; k < kc; k++) {
            const float *src = A + (pc + k) * lda + i0;
            for (int r = 0; r < HR_GEMM_MR; r++) dst[k * HR_GEMM_MR + r] = r < mr ? src[r] : 0.0f;
        }
    } else {
        for (int r = 0; r < HR_GEMM_MR; r++) {
            const float *src = A + (i0 + r) * lda + pc;
            for (long k = 0; k < kc; k++) dst[k * HR_GEMM_MR + r] = r < mr ? src[k] : 0.0f;
            /* The next panel's rows, fetched a whole panel sweep ahead (a strided
             * gather of short rows that the hardware prefetchers do not foresee). */
            if (r < next_mr)
                for (long k = 0; k < kc; k += 16) __builtin_prefetch(src + HR_GEMM_MR * lda + k, 0, 2);
        }
    }
}

/* op(B)[pc:pc+kc, j0:j0+nr] -> dst[k*w + j], columns nr..w-1 zero (w = NR or NR/2). */
static void hr_gemm_pack_b(int trans_b, const float *B, long ldb, long pc, int kc, long j0, int nr, int w,
                           float *dst) {
    if (!trans_b && nr == HR_GEMM_NR) {
        for (long k = 0; k < kc; k++) memcpy(dst + k * HR_GEMM_NR, B + (pc + k) * ldb + j0, sizeof(float) * HR_GEMM_NR);
    } else if (!trans_b) {
        for (long k = 0; k < kc; k++) {
            const float *src = B + (pc + k) * ldb + j0;
            for (int j = 0; j < w; j++) dst[k * w + j] = j < nr ? src[j] : 0.0f;
        }
    } else {
        for (int j = 0; j < w; j++) {
            const float *src = B + (j0 + j) * ldb + pc;
            for (long k = 0; k < kc; k++) dst[k * w + j] = j < nr ? src[k] : 0.0f;
        }
    }
}

/* Split `nth` threads into a tm x tn grid over mp x np micro-tiles, minimising the
 * busiest thread's tiles plus its A panels (each column of threads reads A again). */
static void hr_gemm_grid(long mp, long np, int nth, int *tm, int *tn) {
    double best = -1.0;
    for (int m = nth; m >= 1; m--) {
        if (nth % m) continue;
        int n = nth / m;
        long ti = (mp + m - 1) / m, tj = (np + n - 1) / n;
        double cost = (double)ti * tj + 0.5 * ti;
        if (best < 0 || cost < best) { best = cost; *tm = m; *tn = n; }
    }
}

static inline int hr_gemm_thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int hr_gemm_team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* C (M,N) = op(A) (M,K) op(B) (K,N) + bias (N,) + beta C
 * op(A) = A (M,K) with row stride lda, or Aᵀ for A (K,M) when trans_a;
 * op(B) = B (K,N) with row stride ldb, or Bᵀ for B (N,K) when trans_b;
 * bias, added to every row, may be NULL; beta == 0 overwrites C without reading it. */
int hr_gemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
            const float *bias, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return HR_OK;
    if (K <= 0) {
        for (long i = 0; i < M; i++)
            for (long j = 0; j < N; j++) {
                const float x = bias ? bias[j] : 0.0f;
                C[i * ldc + j] = beta == 0.0f ? x : x + beta * C[i * ldc + j];
            }
        return HR_OK;
    }
    /* Operands with short rows are read in place: the kernel's loads then overlap
     * its FMAs, where a packing pass would stall on them, and there is nothing to
     * share, so no barrier. Only a transposed B (and edge panels) must be packed. */
    const int a_in_place = lda <= HR_GEMM_INPLACE_LD;
    const int b_in_place = !trans_b && ldb <= HR_GEMM_INPLACE_LD;
    const long nc_max = HR_MIN(((long)N + HR_GEMM_NR - 1) / HR_GEMM_NR * HR_GEMM_NR, HR_GEMM_NC);
    /* Depth of a rank-kc step: as deep as the L2 budget for the slices the step
     * keeps re-reading allows (the B block, and all of Aᵀ's rows when read in
     * place), at least KC, split evenly: a narrow C (dW = dYᵀ X) then needs only
     * one or a few passes. */
    const long kc_cap = HR_MAX(HR_GEMM_KC, HR_GEMM_STEP_FLOATS / (nc_max + (trans_a && a_in_place ? M : 0)));
    const long steps = (K + kc_cap - 1) / kc_cap;
    const int kc_max = (int)((K + steps - 1) / steps);
    const long a_stride = ((long)HR_GEMM_MR * kc_max + 15) / 16 * 16;  /* keeps each thread's panel 64-byte aligned */
    int nt = hr_num_threads();
    if ((double)M * N * K < HR_GEMM_MIN_PARALLEL) nt = 1;
    float *bpack = hr_alloc(sizeof(float) * ((size_t)kc_max * nc_max + (size_t)nt * a_stride));
    if (!bpack) return HR_ENOMEM;
    float *apack_all = bpack + (size_t)kc_max * nc_max;
    const long mp = ((long)M + HR_GEMM_MR - 1) / HR_GEMM_MR;

    #pragma omp parallel num_threads(nt)
    {
        const int tid = hr_gemm_thread_id(), nth = hr_gemm_team_size();
        float *apack = apack_all + (size_t)tid * a_stride;
        for (long jc = 0; jc < N; jc += HR_GEMM_NC) {
            const long nc = HR_MIN((long)N - jc, HR_GEMM_NC);
            const long np = (nc + HR_GEMM_NR - 1) / HR_GEMM_NR;
            const int nr_last = (int)(nc - (np - 1) * HR_GEMM_NR);
            /* Shape-only, so every thread agrees on whether to wait for the packing. */
            const int shared_b = !b_in_place || (nr_last != HR_GEMM_NR && nr_last != HR_GEMM_NR / 2);
            int tm = 1, tn = 1;
            hr_gemm_grid(mp, np, nth, &tm, &tn);
            long i_lo = 0, i_hi = 0, j_lo = 0, j_hi = 0;
            if (tid < tm * tn) {
                hr_partition(mp, tm, tid / tn, &i_lo, &i_hi);
                hr_partition(np, tn, tid % tn, &j_lo, &j_hi);
            }
            for (long pc = 0; pc < K; pc += kc_max) {
                const int kc = (int)HR_MIN((long)K - pc, kc_max);
                if (shared_b) {
                    long p_lo, p_hi;
                    hr_partition(b_in_place ? 1 : np, nth, tid, &p_lo, &p_hi);
                    for (long p = p_lo; p < p_hi; p++) {
                        const long q = b_in_place ? np - 1 : p;  /* in place: only the edge panel */
                        const int nr = (int)HR_MIN(nc - q * HR_GEMM_NR, HR_GEMM_NR);
                        const int w = nr <= HR_GEMM_NR / 2 ? HR_GEMM_NR / 2 : HR_GEMM_NR;
                        hr_gemm_pack_b(trans_b, B, ldb, pc, kc, jc + q * HR_GEMM_NR, nr, w,
                                       bpack + q * kc * HR_GEMM_NR);
                    }
                    #pragma omp barrier
                }
                /* The first step applies beta and the bias; later ones accumulate. */
                const float beta_pc = pc == 0 ? beta : 1.0f;
                const float *bias_pc = pc == 0 ? bias : NULL;
                for (long ip = i_lo; ip < i_hi; ip++) {
                    const long i0 = ip * HR_GEMM_MR;
                    const int mr = (int)HR_MIN((long)M - i0, HR_GEMM_MR);
                    /* A element (r, k) at a[r*rs + k*cs]: k-major (packed, or Aᵀ in place) or row-major. */
                    const float *a;
                    int a_kmajor = 1;
                    long a_ld = HR_GEMM_MR;
                    if (a_in_place && mr == HR_GEMM_MR) {
                        a = trans_a ? A + pc * lda + i0 : A + i0 * lda + pc;
                        a_kmajor = trans_a;
                        a_ld = lda;
                    } else {
                        const int next_mr = (int)HR_MIN(HR_MAX((long)M - i0 - HR_GEMM_MR, 0), HR_GEMM_MR);
                        hr_gemm_pack_a(trans_a, A, lda, i0, mr, next_mr, pc, kc, apack);
                        a = apack;
                    }
                    for (long p = j_lo; p < j_hi; p++) {
                        const long j0 = jc + p * HR_GEMM_NR;
                        const int nr = (int)HR_MIN(nc - p * HR_GEMM_NR, HR_GEMM_NR);
                        const int nv = nr <= HR_GEMM_NR / 2 ? 1 : 2;
                        const int b_here = b_in_place && nr == nv * HR_GEMM_VL;
                        const float *b = b_here ? B + pc * ldb + j0 : bpack + p * kc * HR_GEMM_NR;
                        hr_gemm_micro(nv, a_kmajor, kc, a, a_ld, b, b_here ? ldb : nv * HR_GEMM_VL,
                                      bias_pc ? bias_pc + j0 : NULL, beta_pc, C + i0 * ldc + j0, ldc, mr, nr);
                    }
                }
                /* The next rank-kc step repacks the shared B block. */
                if (shared_b) {
                    #pragma omp barrier
                }
            }
        }
    }
    free(bpack);
    return HR_OK;
}
