/* Long causal depthwise convolution (Hyena's implicit filters), per batch b and channel c:
 *
 *     y[t] = Σ_{j<L} h[j] ũ[W + t − j],    ũ = concat(prefix, u),  W = L−1 rows of prefix (0 when NULL).
 *
 * Only the first Lh = min(L, N) lags of h meet the N = W + T positions of ũ, so both paths work on
 * ũ (N rows) and h[0:Lh].
 *
 * Two ways to compute the same sum, chosen by size (lc_use_fft):
 *  - direct: O(T·Lh) multiply-adds, channels as the vector axis; the faster one for short sequences;
 *  - FFT: linear convolution as a product of spectra, O(n log n) for an FFT size n = the power of two
 *    >= N + Lh − 1 (no circular wrap reaches an output that is kept). The FFT is complex radix-2 on
 *    LC_CB channels at once: each complex point is LC_CB floats of real and LC_CB of imaginary part
 *    (split arrays, rows of hr_vec), so every butterfly is a few vector operations and there is no
 *    shuffle. Two batch rows share one complex transform (ũ_b0 + i ũ_b1: the filter is real, so the
 *    real and imaginary parts of the product's inverse are the two rows' convolutions), halving the
 *    transforms. The forward transform is decimation in frequency (natural order in, bit-reversed
 *    out), the inverse decimation in time (bit-reversed in, natural out): the spectra are only
 *    multiplied point by point, so no bit reversal is ever done. Stages whose butterflies span at most
 *    LC_FFT_BLOCK points run depth first on cache-sized sub-blocks, so a large transform sweeps main
 *    memory log2(n / LC_FFT_BLOCK) + 1 times instead of log2 n.
 *
 * Threads: a task is one block of LC_CB channels (all batch rows: the filter's spectrum is computed
 * once per block, and dh is owned by its block, so nothing is reduced across tasks and the results do
 * not depend on the thread count). Scratch: 4 (forward) or 8 (backward) arrays of n·LC_CB floats per
 * thread. */
#include <string.h>
#include "common.h"
#include "simd.h"
#include "long_conv.h"

/* channels per task: one zmm, two ymm */
enum { LC_CB = 16 };
/* FFT stages spanning at most this many points run depth first: 2 arrays × 2048 points × 16 floats
 * = 256 KB, an L2's worth */
enum { LC_FFT_BLOCK = 2048 };
/* The direct sum costs ~T·Lh multiply-adds per channel and row, the FFT path ~LC_FFT_COST·n·log2 n in
 * the same units. Measured (benchmarks/bench_long_conv.py --crossover, AVX-512, B = 4, D = 128, L = T,
 * forward + backward): direct 0.18 ms vs FFT 0.21 ms at T = 48, 0.37 vs 0.22 ms at T = 64, so the paths
 * cross at T ≈ 56 (n = 128): 56² = 3.5 · 128 · 7. */
#define LC_FFT_COST 3.5

static inline int lc_thread(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

typedef struct {
    int B, T, C, L;
    int W;  /* rows of prefix before u: L−1, or 0 without a prefix */
    int N;  /* rows of ũ: W + T */
    int Lh; /* lags that meet ũ: min(L, N) */
    int n;  /* FFT size: the power of two >= N + Lh − 1 */
} lc_geom;

static lc_geom lc_geometry(int B, int T, int C, int L, int has_prefix) {
    lc_geom g = {B, T, C, L, has_prefix ? L - 1 : 0, 0, 0, 1};
    g.N = g.W + T;
    g.Lh = HR_MIN(L, g.N);
    while (g.n < g.N + g.Lh - 1) g.n *= 2;
    if (g.n < 2) g.n = 2;
    return g;
}

static int lc_use_fft(const lc_geom *g, int method) {
    if (method) return method == 2;
    double direct = (double)g->T * g->Lh, fft = LC_FFT_COST * g->n * log2((double)g->n);
    return direct > fft;
}

/* row i of ũ for batch row b: prefix rows first, then u */
static inline const float *lc_row(const float *u, const float *prefix, const lc_geom *g, int b, int i) {
    return i < g->W ? prefix + ((size_t)b * g->W + i) * g->C : u + ((size_t)b * g->T + (i - g->W)) * g->C;
}

/* ---- direct sum ------------------------------------------------------------------------------------ */

/* y[b, t, c0:c0+nc] = Σ_{j <= min(Lh−1, W+t)} h[j] ũ[W+t−j] */
static void lc_direct_forward(const float *u, const float *h, const float *prefix, float *y, const lc_geom *g, int b,
                              int c0, int nc) {
    for (int t = 0; t < g->T; t++) {
        int i = g->W + t, last = HR_MIN(g->Lh - 1, i);
        hr_vec acc[LC_CB / HR_VW];
        for (int k = 0; k < nc; k += HR_VW) acc[k / HR_VW] = hr_vzero();
        for (int j = 0; j <= last; j++) {
            const float *hj = h + (size_t)j * g->C + c0, *uj = lc_row(u, prefix, g, b, i - j) + c0;
            for (int k = 0; k < nc; k += HR_VW)
                acc[k / HR_VW] = hr_vfma(hr_vload(hj + k, nc - k), hr_vload(uj + k, nc - k), acc[k / HR_VW]);
        }
        float *yt = y + ((size_t)b * g->T + t) * g->C + c0;
        for (int k = 0; k < nc; k += HR_VW) hr_vstore(yt + k, acc[k / HR_VW], nc - k);
    }
}

/* dũ[s] = Σ_t dy[t] h[W+t−s] (to du, or dprefix for s < W) for every row b; dh[j] = Σ_b Σ_t dy[b,t] ũ[b,W+t−j]
 * (0 for the lags j >= Lh that meet no position) */
static void lc_direct_backward(const float *dy, const float *u, const float *h, const float *prefix, float *du,
                               float *dh, float *dprefix, const lc_geom *g, int c0, int nc) {
    int C = g->C, W = g->W, T = g->T;
    hr_vec acc[LC_CB / HR_VW];
    for (int b = 0; b < g->B; b++)
        for (int s = 0; s < g->N; s++) {
            int t0 = HR_MAX(0, s - W), t1 = HR_MIN(T - 1, s - W + g->Lh - 1);
            for (int k = 0; k < nc; k += HR_VW) acc[k / HR_VW] = hr_vzero();
            for (int t = t0; t <= t1; t++) {
                const float *dyt = dy + ((size_t)b * T + t) * C + c0, *hj = h + (size_t)(W + t - s) * C + c0;
                for (int k = 0; k < nc; k += HR_VW)
                    acc[k / HR_VW] = hr_vfma(hr_vload(dyt + k, nc - k), hr_vload(hj + k, nc - k), acc[k / HR_VW]);
            }
            float *out = s < W ? dprefix + ((size_t)b * W + s) * C + c0 : du + ((size_t)b * T + (s - W)) * C + c0;
            if (s >= W || dprefix)
                for (int k = 0; k < nc; k += HR_VW) hr_vstore(out + k, acc[k / HR_VW], nc - k);
        }
    for (int j = 0; j < g->L; j++) {
        for (int k = 0; k < nc; k += HR_VW) acc[k / HR_VW] = hr_vzero();
        for (int b = 0; b < g->B && j < g->Lh; b++)
            for (int t = HR_MAX(0, j - W); t < T; t++) {
                const float *dyt = dy + ((size_t)b * T + t) * C + c0, *ut = lc_row(u, prefix, g, b, W + t - j) + c0;
                for (int k = 0; k < nc; k += HR_VW)
                    acc[k / HR_VW] = hr_vfma(hr_vload(dyt + k, nc - k), hr_vload(ut + k, nc - k), acc[k / HR_VW]);
            }
        for (int k = 0; k < nc; k += HR_VW) hr_vstore(dh + (size_t)j * C + c0 + k, acc[k / HR_VW], nc - k);
    }
}

/* ---- FFT on LC_CB channels at once ----------------------------------------------------------------- */

/* a spectrum: n points, each LC_CB floats of real part (re) and of imaginary part (im) */
typedef struct {
    float *re, *im;
} lc_spec;

/* One radix-2 butterfly stage of span len (half = len/2) over points [s0, s0 + count), twiddles
 * w^j = exp(∓2πi j/len) = tw[j·n/len]. DIF (inverse = 0): a, b <- a + b, (a − b) w^j.
 * DIT (inverse = 1): b' = b conj(w^j), a, b <- a + b', a − b'. */
static void lc_stage(lc_spec z, int s0, int count, int len, int n, const float *twr, const float *twi, int inverse) {
    int half = len / 2, stride = n / len;
    for (int s = s0; s < s0 + count; s += len)
        for (int j = 0; j < half; j++) {
            hr_vec wr = hr_vset1(twr[(size_t)j * stride]), wi = hr_vset1(twi[(size_t)j * stride]);
            float *ar = z.re + (size_t)(s + j) * LC_CB, *ai = z.im + (size_t)(s + j) * LC_CB;
            float *br = ar + (size_t)half * LC_CB, *bi = ai + (size_t)half * LC_CB;
            for (int k = 0; k < LC_CB; k += HR_VW) {
                hr_vec xr = hr_vload(ar + k, HR_VW), xi = hr_vload(ai + k, HR_VW);
                hr_vec yr = hr_vload(br + k, HR_VW), yi = hr_vload(bi + k, HR_VW);
                if (!inverse) {
                    hr_vec dr = hr_vsub(xr, yr), di = hr_vsub(xi, yi);
                    hr_vstore(ar + k, hr_vadd(xr, yr), HR_VW);
                    hr_vstore(ai + k, hr_vadd(xi, yi), HR_VW);
                    hr_vstore(br + k, hr_vfnma(di, wi, hr_vmul(dr, wr)), HR_VW);
                    hr_vstore(bi + k, hr_vfma(dr, wi, hr_vmul(di, wr)), HR_VW);
                } else {
                    hr_vec pr = hr_vfma(yi, wi, hr_vmul(yr, wr)), pi = hr_vfnma(yr, wi, hr_vmul(yi, wr));
                    hr_vstore(ar + k, hr_vadd(xr, pr), HR_VW);
                    hr_vstore(ai + k, hr_vadd(xi, pi), HR_VW);
                    hr_vstore(br + k, hr_vsub(xr, pr), HR_VW);
                    hr_vstore(bi + k, hr_vsub(xi, pi), HR_VW);
                }
            }
        }
}

/* Forward DFT Z[k] = Σ_m z[m] exp(−2πi mk/n), natural order in, bit-reversed order out (DIF). The
 * stages wider than LC_FFT_BLOCK sweep the whole array; then each sub-block runs its remaining
 * stages while it is in cache. */
static void lc_fft(lc_spec z, int n, const float *twr, const float *twi) {
    int len = n;
    for (; len > LC_FFT_BLOCK; len /= 2) lc_stage(z, 0, n, len, n, twr, twi, 0);
    for (int s0 = 0; s0 < n; s0 += len)
        for (int l = len; l >= 2; l /= 2) lc_stage(z, s0, len, l, n, twr, twi, 0);
}

/* Inverse DFT without the 1/n (the callers fold it into the filter), bit-reversed in, natural out (DIT) */
static void lc_ifft(lc_spec z, int n, const float *twr, const float *twi) {
    int block = HR_MIN(n, LC_FFT_BLOCK);
    for (int s0 = 0; s0 < n; s0 += block)
        for (int l = 2; l <= block; l *= 2) lc_stage(z, s0, block, l, n, twr, twi, 1);
    for (int l = 2 * block; l <= n; l *= 2) lc_stage(z, 0, n, l, n, twr, twi, 1);
}

/* z <- rows 0..rows−1 of a (row stride ld, channels c0:c0+nc) · scale as the real part, those of b (or
 * zeros when b is NULL) as the imaginary part, zeros in the other points and lanes. Rows of a source
 * start at `first` of the spectrum (the rows before are zero). get(src, r) gives row r's pointer. */
typedef const float *(*lc_rowfn)(const void *ctx, int b, int r);

static void lc_load(lc_spec z, int n, int first, int rows, lc_rowfn get, const void *ctx, int b0, int b1, int c0,
                    int nc, float scale) {
    memset(z.re, 0, (size_t)n * LC_CB * sizeof(float));
    memset(z.im, 0, (size_t)n * LC_CB * sizeof(float));
    hr_vec sc = hr_vset1(scale);
    for (int r = 0; r < rows; r++) {
        const float *a = get(ctx, b0, r) + c0, *bb = b1 >= 0 ? get(ctx, b1, r) + c0 : NULL;
        float *zr = z.re + (size_t)(first + r) * LC_CB, *zi = z.im + (size_t)(first + r) * LC_CB;
        for (int k = 0; k < nc; k += HR_VW) {
            hr_vstore(zr + k, hr_vmul(hr_vload(a + k, nc - k), sc), nc - k);
            if (bb) hr_vstore(zi + k, hr_vmul(hr_vload(bb + k, nc - k), sc), nc - k);
        }
    }
}

typedef struct {
    const float *u, *prefix, *plain;
    const lc_geom *g;
} lc_src;

static const float *lc_src_ext(const void *ctx, int b, int r) { /* ũ */
    const lc_src *s = ctx;
    return lc_row(s->u, s->prefix, s->g, b, r);
}
static const float *lc_src_plain(const void *ctx, int b, int r) { /* a (B,T,C) array, or h (L,C) for b = 0 */
    const lc_src *s = ctx;
    return s->plain + ((size_t)b * s->g->T + r) * s->g->C;
}

/* z <- z ⊙ f (conj = 0) or z ⊙ conj(f) (conj = 1), point by point */
static void lc_mul(lc_spec z, lc_spec f, int n, int conj) {
    hr_vec sgn = hr_vset1(conj ? -1.0f : 1.0f);
    for (size_t i = 0; i < (size_t)n * LC_CB; i += HR_VW) {
        hr_vec zr = hr_vload(z.re + i, HR_VW), zi = hr_vload(z.im + i, HR_VW);
        hr_vec fr = hr_vload(f.re + i, HR_VW), fi = hr_vmul(sgn, hr_vload(f.im + i, HR_VW));
        hr_vstore(z.re + i, hr_vfnma(zi, fi, hr_vmul(zr, fr)), HR_VW);
        hr_vstore(z.im + i, hr_vfma(zr, fi, hr_vmul(zi, fr)), HR_VW);
    }
}

/* acc += a ⊙ conj(b) */
static void lc_mul_conj_add(lc_spec acc, lc_spec a, lc_spec b, int n) {
    for (size_t i = 0; i < (size_t)n * LC_CB; i += HR_VW) {
        hr_vec ar = hr_vload(a.re + i, HR_VW), ai = hr_vload(a.im + i, HR_VW);
        hr_vec br = hr_vload(b.re + i, HR_VW), bi = hr_vload(b.im + i, HR_VW);
        hr_vstore(acc.re + i, hr_vfma(ai, bi, hr_vfma(ar, br, hr_vload(acc.re + i, HR_VW))), HR_VW);
        hr_vstore(acc.im + i, hr_vfnma(ar, bi, hr_vfma(ai, br, hr_vload(acc.im + i, HR_VW))), HR_VW);
    }
}

/* rows first..first+rows−1 of a part of z (re or im) -> dst rows 0.. (row stride C, channels c0:c0+nc) */
static void lc_store(float *dst, const float *part, int first, int rows, int C, int c0, int nc) {
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < nc; k += HR_VW)
            hr_vstore(dst + (size_t)r * C + c0 + k, hr_vload(part + (size_t)(first + r) * LC_CB + k, HR_VW), nc - k);
}

/* twiddles exp(−2πi j/n), j < n/2, computed in double */
static void lc_twiddles(float *twr, float *twi, int n) {
    for (int j = 0; j < n / 2; j++) {
        double a = -2.0 * 3.14159265358979323846 * j / n;
        twr[j] = (float)cos(a);
        twi[j] = (float)sin(a);
    }
}

static lc_spec lc_part(float *base, int n, int i) {
    lc_spec z = {base + (size_t)(2 * i) * n * LC_CB, base + (size_t)(2 * i + 1) * n * LC_CB};
    return z;
}

/* The FFT path's workspace, in one place for both passes: the twiddles of size n (twr, twi) and, per
 * thread, `spectra` complex spectra of n × LC_CB (lc_part of lc_work_mine). */
typedef struct { float *tw, *twr, *twi, *scratch; size_t per_thread; int nthreads; } lc_work;

static int lc_work_alloc(lc_work *w, int n, int spectra) {
    w->nthreads = hr_num_threads();
    w->per_thread = 2 * (size_t)spectra * n * LC_CB;
    w->tw = hr_alloc((size_t)n * sizeof(float));
    w->scratch = hr_alloc(w->per_thread * w->nthreads * sizeof(float));
    if (!w->tw || !w->scratch) {
        free(w->tw), free(w->scratch);
        return HR_ENOMEM;
    }
    w->twr = w->tw, w->twi = w->tw + n / 2;
    lc_twiddles(w->twr, w->twi, n);
    return HR_OK;
}

static float *lc_work_mine(const lc_work *w) { return w->scratch + w->per_thread * lc_thread(); }

static void lc_work_free(lc_work *w) { free(w->tw), free(w->scratch); }

/* u (B,T,C), h (L,C), prefix (B,L−1,C) or NULL -> y (B,T,C) */
int hr_long_conv_forward(const float *u, const float *h, const float *prefix, float *y, int B, int T, int C, int L,
                         int method) {
    lc_geom g = lc_geometry(B, T, C, L, prefix != NULL);
    int blocks = (C + LC_CB - 1) / LC_CB;
    if (!lc_use_fft(&g, method)) {
        #pragma omp parallel for schedule(static) if ((double)B * T * g.Lh * C > 1e5)
        for (long task = 0; task < (long)B * blocks; task++) {
            int c0 = (int)(task % blocks) * LC_CB;
            lc_direct_forward(u, h, prefix, y, &g, (int)(task / blocks), c0, HR_MIN(LC_CB, C - c0));
        }
        return HR_OK;
    }
    int n = g.n;
    lc_work w;
    if (lc_work_alloc(&w, n, 2)) return HR_ENOMEM;
    const float *twr = w.twr, *twi = w.twi;
    lc_src src = {u, prefix, NULL, &g}, filt = {NULL, NULL, h, &g};
    #pragma omp parallel num_threads(w.nthreads)
    {
        float *mine = lc_work_mine(&w);
        lc_spec H = lc_part(mine, n, 0), Z = lc_part(mine, n, 1);
        #pragma omp for schedule(static)
        for (int blk = 0; blk < blocks; blk++) {
            int c0 = blk * LC_CB, nc = HR_MIN(LC_CB, C - c0);
            lc_load(H, n, 0, g.Lh, lc_src_plain, &filt, 0, -1, c0, nc, 1.0f / n);
            lc_fft(H, n, twr, twi);
            for (int b = 0; b < B; b += 2) {
                int b1 = b + 1 < B ? b + 1 : -1;
                lc_load(Z, n, 0, g.N, lc_src_ext, &src, b, b1, c0, nc, 1.0f);
                lc_fft(Z, n, twr, twi);
                lc_mul(Z, H, n, 0);
                lc_ifft(Z, n, twr, twi);
                lc_store(y + (size_t)b * T * C, Z.re, g.W, T, C, c0, nc);
                if (b1 >= 0) lc_store(y + (size_t)b1 * T * C, Z.im, g.W, T, C, c0, nc);
            }
        }
    }
    lc_work_free(&w);
    return HR_OK;
}

/* dy, u (B,T,C), h (L,C), prefix (B,L−1,C) or NULL -> du (B,T,C), dh (L,C), dprefix (B,L−1,C) (written when
 * prefix is given). By FFT: dũ = IFFT(DY · conj(H)) with dy at rows W..N−1 of its transform (a
 * correlation with the filter), and dh = Re IFFT(Σ_pairs DY · conj(Ũ)): for a pair, (dy_0 + i dy_1)
 * times conj(ũ_0 + i ũ_1) has the real part dy_0 ⋆ ũ_0 + dy_1 ⋆ ũ_1, the two rows' filter gradients. */
int hr_long_conv_backward(const float *dy, const float *u, const float *h, const float *prefix, float *du, float *dh,
                          float *dprefix, int B, int T, int C, int L, int method) {
    lc_geom g = lc_geometry(B, T, C, L, prefix != NULL);
    int blocks = (C + LC_CB - 1) / LC_CB;
    if (!prefix) dprefix = NULL;
    if (!lc_use_fft(&g, method)) {
        #pragma omp parallel for schedule(static) if ((double)B * T * g.Lh * C > 1e5)
        for (int blk = 0; blk < blocks; blk++) {
            int c0 = blk * LC_CB;
            lc_direct_backward(dy, u, h, prefix, du, dh, dprefix, &g, c0, HR_MIN(LC_CB, C - c0));
        }
        return HR_OK;
    }
    int n = g.n;
    lc_work w;
    if (lc_work_alloc(&w, n, 4)) return HR_ENOMEM;
    const float *twr = w.twr, *twi = w.twi;
    lc_src src = {u, prefix, NULL, &g}, filt = {NULL, NULL, h, &g}, grad = {NULL, NULL, dy, &g};
    #pragma omp parallel num_threads(w.nthreads)
    {
        float *mine = lc_work_mine(&w);
        lc_spec H = lc_part(mine, n, 0), U = lc_part(mine, n, 1), D = lc_part(mine, n, 2), G = lc_part(mine, n, 3);
        #pragma omp for schedule(static)
        for (int blk = 0; blk < blocks; blk++) {
            int c0 = blk * LC_CB, nc = HR_MIN(LC_CB, C - c0);
            lc_load(H, n, 0, g.Lh, lc_src_plain, &filt, 0, -1, c0, nc, 1.0f / n);
            lc_fft(H, n, twr, twi);
            memset(G.re, 0, (size_t)n * LC_CB * sizeof(float));
            memset(G.im, 0, (size_t)n * LC_CB * sizeof(float));
            for (int b = 0; b < B; b += 2) {
                int b1 = b + 1 < B ? b + 1 : -1;
                lc_load(U, n, 0, g.N, lc_src_ext, &src, b, b1, c0, nc, 1.0f / n);
                lc_fft(U, n, twr, twi);
                lc_load(D, n, g.W, T, lc_src_plain, &grad, b, b1, c0, nc, 1.0f);
                lc_fft(D, n, twr, twi);
                lc_mul_conj_add(G, D, U, n);
                lc_mul(D, H, n, 1);
                lc_ifft(D, n, twr, twi);
                lc_store(du + (size_t)b * T * C, D.re, g.W, T, C, c0, nc);
                if (b1 >= 0) lc_store(du + (size_t)b1 * T * C, D.im, g.W, T, C, c0, nc);
                if (dprefix) {
                    lc_store(dprefix + (size_t)b * g.W * C, D.re, 0, g.W, C, c0, nc);
                    if (b1 >= 0) lc_store(dprefix + (size_t)b1 * g.W * C, D.im, 0, g.W, C, c0, nc);
                }
            }
            lc_ifft(G, n, twr, twi);
            lc_store(dh, G.re, 0, g.Lh, C, c0, nc);
            for (int j = g.Lh; j < L; j++)
                for (int k = 0; k < nc; k += HR_VW) hr_vstore(dh + (size_t)j * C + c0 + k, hr_vzero(), nc - k);
        }
    }
    lc_work_free(&w);
    return HR_OK;
}
