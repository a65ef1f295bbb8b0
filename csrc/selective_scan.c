#include <string.h>
#include "common.h"
#include "simd.h"
#include "selective_scan.h"

/* The N states of one channel are the vector axis (N = 16: one zmm, two ymm). States live in
 * scratch zero-padded to NP = N rounded up to the vector width; A is padded the same way, so the
 * pad lanes stay exactly 0 (decay exp(0) = 1, input Δ x 0) and add nothing to any sum. Bm and Cm
 * rows are read in place with a masked load of the last N mod width lanes. The states are hr_vec
 * (simd.h); only scan_hsum_rows, the channel sums of a group, is written per ISA. */
#if defined(HR_AVX512)
/* The sums of 16 rows of 16 floats, by a transpose-and-add tree: 15 adds for all 16 rows. */
static inline void scan_hsum_rows(const float *rows, float *out) {
    __m512 t[8], u[4], w[2];
    for (int i = 0; i < 8; i++) {
        __m512 a = _mm512_loadu_ps(rows + 32 * i), b = _mm512_loadu_ps(rows + 32 * i + 16);
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    for (int i = 0; i < 4; i++)
        u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int i = 0; i < 2; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1))));
}
#elif defined(HR_AVX2)
/* The sums of 16 rows of 8 floats, 8 rows at a time by a transpose-and-add tree. */
static inline void scan_hsum_rows(const float *rows, float *out) {
    for (int half = 0; half < 2; half++, rows += 64, out += 8) {
        __m256 t[4];
        for (int i = 0; i < 4; i++)
            t[i] = _mm256_hadd_ps(_mm256_loadu_ps(rows + 16 * i), _mm256_loadu_ps(rows + 16 * i + 8));
        __m256 u0 = _mm256_hadd_ps(t[0], t[1]), u1 = _mm256_hadd_ps(t[2], t[3]);
        _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                                            _mm256_permute2f128_ps(u0, u1, 0x31)));
    }
}
#else
static inline void scan_hsum_rows(const float *rows, float *out) {
    for (int i = 0; i < 16; i++) out[i] = rows[i];
}
#endif

/* A task is one batch row b and a group of SCAN_GROUP consecutive channels (one 64-byte line of
 * x, delta, y): the group steps through time together, so each row of x, delta, Bm, Cm is fetched
 * once per group rather than once per channel, and the group's states stay in L1. */
enum { SCAN_GROUP = 16 };
_Static_assert(SCAN_GROUP == 16, "scan_hsum_rows reduces the 16 channels of a group");
/* The backward keeps the states and decays of all T steps while they fit in this many floats per
 * thread; past it, chunks of ~√T steps restart from checkpoints kept by an extra forward pass. */
enum { SCAN_STATES_BUDGET = 1 << 17 };

static inline int scan_thread(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline size_t scan_line_up(size_t floats) { return (floats + 15) & ~(size_t)15; }

/* G rows of N floats (zeros when src is NULL) -> G zero-padded rows of NP floats. */
static void scan_pad_rows(float *dst, const float *src, int G, int N, int NP) {
    for (int g = 0; g < G; g++)
        for (int n = 0; n < NP; n += HR_VW)
            hr_vstore(dst + (size_t)g * NP + n, src ? hr_vload(src + (size_t)g * N + n, N - n) : hr_vzero(),
                       HR_VW);
}

/* G padded rows of NP floats -> G rows of N floats. */
static void scan_unpad_rows(float *dst, const float *src, int G, int N, int NP) {
    for (int g = 0; g < G; g++)
        for (int n = 0; n < NP; n += HR_VW)
            hr_vstore(dst + (size_t)g * N + n, hr_vload(src + (size_t)g * NP + n, HR_VW), N - n);
}

/* v with the lanes from `live` on (the padding of a state row past N) set to 0. The pad lanes must
 * stay exactly 0 for any input: a non-finite Δ makes their Δ·A and Δ x B products inf·0 = nan, which
 * would then reach every channel sum (dx, ddelta, dBm of the earlier steps); a select, unlike a
 * product with a 0/1 mask, does not propagate the nan. */
static inline hr_vec scan_live(hr_vec v, int live) {
    static const float ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    return live >= HR_VW ? v : hr_vgt_select(hr_vload(ones, live), hr_vzero(), v, hr_vzero());
}

/* One time step of G channels: h = exp(Δ A) ⊙ hprev + Δ x Bt (h may alias hprev); the decays
 * exp(Δ A) go to `decay` and yt = Ct · h + D x, each unless NULL. Pointers are offset to the
 * group's first channel; A, hprev, h, decay padded (their pad lanes 0). */
static void scan_step(const float *hprev, float *h, float *decay, const float *A, const float *Bt, const float *Ct,
                      const float *xt, const float *dt, const float *D, float *yt, int G, int N, int NP) {
    _Alignas(64) float rows[SCAN_GROUP * HR_VW]; /* per channel, the vector partials of C_t · h_t */
    float sums[SCAN_GROUP];
    for (int g = 0; g < G; g++) {
        size_t row = (size_t)g * NP;
        hr_vec dl = hr_vset1(dt[g]), dlx = hr_vset1(dt[g] * xt[g]), acc = hr_vzero();
        for (int n = 0; n < NP; n += HR_VW) {
            hr_vec a = scan_live(hr_vexp(hr_vmul(dl, hr_vload(A + row + n, HR_VW))), N - n);
            hr_vec hv = scan_live(hr_vfma(a, hr_vload(hprev + row + n, HR_VW), hr_vmul(dlx, hr_vload(Bt + n, N - n))),
                                  N - n);
            hr_vstore(h + row + n, hv, HR_VW);
            if (decay) hr_vstore(decay + row + n, a, HR_VW);
            if (yt) acc = hr_vfma(hv, hr_vload(Ct + n, N - n), acc);
        }
        if (yt) hr_vstore(rows + g * HR_VW, acc, HR_VW);
    }
    if (!yt) return;
    for (int g = G; g < SCAN_GROUP; g++) hr_vstore(rows + g * HR_VW, hr_vzero(), HR_VW);
    scan_hsum_rows(rows, sums);
    for (int g = 0; g < G; g++) yt[g] = sums[g] + D[g] * xt[g];
}

/* h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t x_t B_t,  y_t = C_t · h_t + D x_t,  h_{-1} = h0 (zeros if NULL)
 * x, delta (B,T,Din), A (Din,N), Bm, Cm (B,T,N), D (Din,), h0 (B,Din,N) or NULL
 * -> y (B,T,Din), h_last (B,Din,N) */
int hr_selective_scan_forward(const float *x, const float *delta, const float *A, const float *Bm, const float *Cm,
                              const float *D, const float *h0, float *y, float *h_last, int B, int T, int Din, int N) {
    int NP = (N + HR_VW - 1) / HR_VW * HR_VW, ngroups = (Din + SCAN_GROUP - 1) / SCAN_GROUP;
    /* N a multiple of the vector width (Mamba's 16 on every ISA): no pad lanes, so the states are stepped
     * in place in h_last and A is read as it is. A one-token decode step is then a pass over the state
     * alone, without the copies in and out of padded scratch that would cost as much as the step. */
    int padded = NP != N;
    size_t per_thread = padded ? scan_line_up((size_t)SCAN_GROUP * NP) : 0;
    float *Ap = padded ? hr_alloc((size_t)Din * NP * sizeof(float)) : NULL;
    float *scratch = padded ? hr_alloc(per_thread * hr_num_threads() * sizeof(float)) : NULL;
    if (padded && (!Ap || !scratch)) {
        free(Ap);
        free(scratch);
        return HR_ENOMEM;
    }
    if (padded) scan_pad_rows(Ap, A, Din, N, NP);
    HR_PARALLEL_FOR((long)B * T * Din * N >= HR_PARALLEL_MIN,
        for (long task = 0; task < (long)B * ngroups; task++) {
            long b = task / ngroups;
            int d0 = (int)(task % ngroups) * SCAN_GROUP, G = HR_MIN(SCAN_GROUP, Din - d0);
            size_t sd = (size_t)b * Din + d0; /* this group's first row of h0 / h_last */
            float *h = padded ? scratch + per_thread * scan_thread() : h_last + sd * N;
            if (padded) scan_pad_rows(h, h0 ? h0 + sd * N : NULL, G, N, NP);
            else if (!h0) memset(h, 0, (size_t)G * N * sizeof(float));
            else if (h0 != h_last) memcpy(h, h0 + sd * N, (size_t)G * N * sizeof(float));
            for (int t = 0; t < T; t++) {
                size_t bt = (size_t)b * T + t;
                scan_step(h, h, NULL, (padded ? Ap : A) + (size_t)d0 * NP, Bm + bt * N, Cm + bt * N,
                          x + bt * Din + d0, delta + bt * Din + d0, D + d0, y + bt * Din + d0, G, N, NP);
            }
            if (padded) scan_unpad_rows(h_last + sd * N, h, G, N, NP);
        });
    free(Ap);
    free(scratch);
    return HR_OK;
}

/* Scratch of one backward task: the running gradient g and the sums over time. */
typedef struct {
    float *g;  /* ∂L/∂h_t of the group, (G, NP) */
    float *dA; /* Σ_t of the dA terms, (G, NP) */
    float dD[SCAN_GROUP];
} scan_grad;

/* One reverse step at time t of G channels, from h_t, h_{t-1} and e^{Δ_t A}: g += C_t dy_t; write
 * dx_t, ddelta_t, this group's share of dBm_t and dCm_t; add to dA, dD; then g = e^{Δ_t A} ⊙ g.
 * The state axis is the outer loop so that the channel sums dBm_t, dCm_t stay in registers. */
static void scan_reverse_step(scan_grad *s, const float *ht, const float *hprev, const float *decay, const float *A,
                              const float *Bt, const float *Ct, const float *xt, const float *dt, const float *dyt,
                              const float *D, float *dxt, float *ddt, float *dBt, float *dCt, int G, int N, int NP) {
    /* per channel, the vector partials of Σ_n g B (rows 0..15) and of Σ_n g h_{t-1} e^{ΔA} A (rows 16..31) */
    _Alignas(64) float rows[2 * SCAN_GROUP * HR_VW];
    float gB[SCAN_GROUP], gA[SCAN_GROUP];
    for (int n = 0; n < NP; n += HR_VW) {
        hr_vec Bv = hr_vload(Bt + n, N - n), Cv = hr_vload(Ct + n, N - n);
        hr_vec dB = hr_vzero(), dC = hr_vzero();
        for (int g = 0; g < G; g++) {
            size_t o = (size_t)g * NP + n;
            float *sB = rows + g * HR_VW, *sA = sB + SCAN_GROUP * HR_VW;
            hr_vec dl = hr_vset1(dt[g]), dy = hr_vset1(dyt[g]), a = hr_vload(decay + o, HR_VW);
            hr_vec gt = hr_vfma(Cv, dy, hr_vload(s->g + o, HR_VW));
            hr_vec q = hr_vmul(hr_vmul(gt, hr_vload(hprev + o, HR_VW)), a); /* ∂L/∂(Δ A) */
            dC = hr_vfma(hr_vload(ht + o, HR_VW), dy, dC);
            dB = hr_vfma(gt, hr_vset1(dt[g] * xt[g]), dB);
            hr_vstore(s->dA + o, hr_vfma(q, dl, hr_vload(s->dA + o, HR_VW)), HR_VW);
            hr_vstore(s->g + o, hr_vmul(gt, a), HR_VW);
            hr_vec pB = hr_vmul(gt, Bv), pA = hr_vmul(q, hr_vload(A + o, HR_VW));
            if (n > 0) {
                pB = hr_vadd(pB, hr_vload(sB, HR_VW));
                pA = hr_vadd(pA, hr_vload(sA, HR_VW));
            }
            hr_vstore(sB, pB, HR_VW);
            hr_vstore(sA, pA, HR_VW);
        }
        hr_vstore(dBt + n, dB, N - n);
        hr_vstore(dCt + n, dC, N - n);
    }
    for (int g = G; g < SCAN_GROUP; g++) {
        hr_vstore(rows + g * HR_VW, hr_vzero(), HR_VW);
        hr_vstore(rows + (SCAN_GROUP + g) * HR_VW, hr_vzero(), HR_VW);
    }
    scan_hsum_rows(rows, gB);
    scan_hsum_rows(rows + SCAN_GROUP * HR_VW, gA);
    for (int g = 0; g < G; g++) {
        dxt[g] = D[g] * dyt[g] + dt[g] * gB[g];
        ddt[g] = gA[g] + xt[g] * gB[g];
        s->dD[g] += dyt[g] * xt[g];
    }
}

/* Reverse sweep with g_t = ∂L/∂h_t = C_t dy_t + exp(Δ_{t+1} A) ⊙ g_{t+1}, g_{T-1} = C_{T-1} dy_{T-1} + dh_last:
 * dx_t = D dy_t + Δ_t Σ_n g_t B_t,  ddelta_t = Σ_n g_t h_{t-1} exp(Δ_t A) A + x_t Σ_n g_t B_t,
 * dA = Σ_{b,t} g_t h_{t-1} exp(Δ_t A) Δ_t,  dBm_t = Σ_d g_t Δ_t x_t,  dCm_t = Σ_d h_t dy_t,
 * dD = Σ_{b,t} dy_t x_t,  dh0 = exp(Δ_0 A) ⊙ g_0
 * dy (B,T,Din), forward inputs as above, dh_last (B,Din,N) or NULL
 * -> dx, ddelta (B,T,Din), dA (Din,N), dBm, dCm (B,T,N), dD (Din,), dh0 (B,Din,N) (skipped when NULL)
 *
 * No state tensor is kept from the forward: each task recomputes its group's states and decays one
 * chunk of time at a time into per-thread scratch. Sums over channels (dBm, dCm) and over batch
 * (dA, dD) go through per-task partials added in task order: results do not depend on the thread count. */
int hr_selective_scan_backward(const float *dy, const float *x, const float *delta, const float *A, const float *Bm,
                               const float *Cm, const float *D, const float *h0, const float *dh_last, float *dx,
                               float *ddelta, float *dA, float *dBm, float *dCm, float *dD, float *dh0,
                               int B, int T, int Din, int N) {
    int NP = (N + HR_VW - 1) / HR_VW * HR_VW, ngroups = (Din + SCAN_GROUP - 1) / SCAN_GROUP;
    int nthreads = hr_num_threads();
    size_t gs = (size_t)SCAN_GROUP * NP; /* floats in the states of one group at one time */
    int K = HR_MAX(T, 1);                /* time steps per chunk */
    if ((size_t)T * 2 * gs > SCAN_STATES_BUDGET) K = (int)ceil(sqrt((double)T));
    int nchunks = HR_MAX(1, (T + K - 1) / K);
    /* per thread: checkpoints (nchunks), chunk states and decays (2K), g and the dA sums */
    size_t per_thread = scan_line_up(((size_t)nchunks + 2 * (size_t)K + 2) * gs);
    size_t ntasks = (size_t)B * ngroups;
    float *Ap = hr_alloc((size_t)Din * NP * sizeof(float));
    float *scratch = hr_alloc(per_thread * nthreads * sizeof(float));
    float *dBp = hr_alloc(ntasks * T * N * sizeof(float)); /* (B, ngroups, T, N) partials of dBm */
    float *dCp = hr_alloc(ntasks * T * N * sizeof(float));
    float *dAp = hr_alloc((size_t)B * Din * N * sizeof(float)); /* (B, Din, N) partials of dA */
    float *dDp = hr_alloc((size_t)B * Din * sizeof(float));
    int status = Ap && scratch && dBp && dCp && dAp && dDp ? HR_OK : HR_ENOMEM;
    if (status == HR_OK) {
        scan_pad_rows(Ap, A, Din, N, NP);
        #pragma omp parallel num_threads(nthreads)
        {
            float *ckpt = scratch + per_thread * scan_thread(), *hs = ckpt + (size_t)nchunks * gs;
            float *decays = hs + (size_t)K * gs;
            scan_grad s = {decays + (size_t)K * gs, decays + (size_t)(K + 1) * gs, {0}};
            #pragma omp for schedule(static)
            for (long task = 0; task < (long)ntasks; task++) {
                long b = task / ngroups;
                int d0 = (int)(task % ngroups) * SCAN_GROUP, G = HR_MIN(SCAN_GROUP, Din - d0);
                size_t sd = (size_t)b * Din + d0;
                const float *Ag = Ap + (size_t)d0 * NP;
                scan_pad_rows(ckpt, h0 ? h0 + sd * N : NULL, G, N, NP);
                for (int k = 1; k < nchunks; k++)
                    for (int t = (k - 1) * K; t < k * K; t++) {
                        size_t bt = (size_t)b * T + t;
                        scan_step(ckpt + (t == (k - 1) * K ? k - 1 : k) * gs, ckpt + k * gs, NULL, Ag, Bm + bt * N,
                                  NULL, x + bt * Din + d0, delta + bt * Din + d0, NULL, NULL, G, N, NP);
                    }
                scan_pad_rows(s.g, dh_last ? dh_last + sd * N : NULL, G, N, NP);
                scan_pad_rows(s.dA, NULL, G, N, NP);
                for (int g = 0; g < SCAN_GROUP; g++) s.dD[g] = 0.0f;
                for (int k = nchunks - 1; k >= 0; k--) {
                    int t0 = k * K, t1 = HR_MIN(T, t0 + K);
                    for (int t = t0; t < t1; t++) {
                        size_t bt = (size_t)b * T + t;
                        scan_step(t == t0 ? ckpt + k * gs : hs + (t - t0 - 1) * gs, hs + (t - t0) * gs,
                                  decays + (t - t0) * gs, Ag, Bm + bt * N, NULL, x + bt * Din + d0,
                                  delta + bt * Din + d0, NULL, NULL, G, N, NP);
                    }
                    for (int t = t1 - 1; t >= t0; t--) {
                        size_t bt = (size_t)b * T + t, i = bt * Din + d0, row = ((size_t)task * T + t) * N;
                        const float *ht = hs + (t - t0) * gs;
                        scan_reverse_step(&s, ht, t == t0 ? ckpt + k * gs : ht - gs, decays + (t - t0) * gs, Ag,
                                          Bm + bt * N, Cm + bt * N, x + i, delta + i, dy + i, D + d0, dx + i,
                                          ddelta + i, dBp + row, dCp + row, G, N, NP);
                    }
                }
                if (dh0) scan_unpad_rows(dh0 + sd * N, s.g, G, N, NP);
                scan_unpad_rows(dAp + sd * N, s.dA, G, N, NP);
                for (int g = 0; g < G; g++) dDp[sd + g] = s.dD[g];
            }
            #pragma omp for schedule(static)
            for (long r = 0; r < (long)B * T; r++) {
                long b = r / T, t = r % T;
                for (int n = 0; n < N; n++) {
                    float sb = 0.0f, sc = 0.0f;
                    for (int j = 0; j < ngroups; j++) {
                        size_t o = (((size_t)b * ngroups + j) * T + t) * N + n;
                        sb += dBp[o];
                        sc += dCp[o];
                    }
                    dBm[(size_t)r * N + n] = sb;
                    dCm[(size_t)r * N + n] = sc;
                }
            }
            #pragma omp for schedule(static)
            for (long i = 0; i < (long)Din * N; i++) {
                float sum = 0.0f;
                for (int b = 0; b < B; b++) sum += dAp[(size_t)b * Din * N + i];
                dA[i] = sum;
            }
            #pragma omp for schedule(static)
            for (int d = 0; d < Din; d++) {
                float sum = 0.0f;
                for (int b = 0; b < B; b++) sum += dDp[(size_t)b * Din + d];
                dD[d] = sum;
            }
        }
    }
    free(Ap);
    free(scratch);
    free(dBp);
    free(dCp);
    free(dAp);
    free(dDp);
    return status;
}
