/* Rotary position embedding (RoFormer; GPT-NeoX layout: the two halves of a head are the pairs).
 * The angles p θ_i are formed and their cos/sin taken in double, once per position (a table of
 * T × P/2), so a position in the thousands keeps full float precision; the rotation itself is
 * float, with the half-dims as the vector axis. */
#include "common.h"
#include "simd.h"
#include "rope.h"

/* cos/sin of (offset + t) θ_i, θ_i = base^(-2i/P): two (T, P/2) tables; sign -1 gives the inverse. */
static float *rope_table(int T, int P, long offset, double base, double sign) {
    int half = P / 2;
    float *tab = hr_alloc((size_t)2 * T * half * sizeof(float));
    if (!tab) return NULL;
    for (int i = 0; i < half; i++) {
        double theta = pow(base, -2.0 * i / P);
        for (int t = 0; t < T; t++) {
            double a = (double)(offset + t) * theta;
            tab[(size_t)t * half + i] = (float)cos(a);
            tab[(size_t)(T + t) * half + i] = (float)(sign * sin(a));
        }
    }
    return tab;
}

/* y₁ = x₁ c − x₂ s, y₂ = x₂ c + x₁ s on every head of every (b, t) row; in place is safe because
 * both halves are loaded before either is stored. */
static int rope_apply(const float *x, float *y, int B, int T, int H, int P, long offset, double base, double sign) {
    int half = P / 2;
    float *tab = rope_table(T, P, offset, base, sign);
    if (!tab) return HR_ENOMEM;
    HR_PARALLEL_FOR((long)B * T * H * P > 32768,
        for (long r = 0; r < (long)B * T; r++) {
            long t = r % T;
            const float *c = tab + (size_t)t * half, *s = tab + (size_t)(T + t) * half;
            for (int h = 0; h < H; h++) {
                const float *xr = x + ((size_t)r * H + h) * P;
                float *yr = y + ((size_t)r * H + h) * P;
                for (int i = 0; i < half; i += HR_VW) {
                    int n = half - i;
                    hr_vec x1 = hr_vload(xr + i, n), x2 = hr_vload(xr + half + i, n);
                    hr_vec cv = hr_vload(c + i, n), sv = hr_vload(s + i, n);
                    hr_vstore(yr + i, hr_vfnma(x2, sv, hr_vmul(x1, cv)), n);
                    hr_vstore(yr + half + i, hr_vfma(x1, sv, hr_vmul(x2, cv)), n);
                }
            }
        });
    free(tab);
    return HR_OK;
}

/* x (B,T,H,P), P even -> y (B,T,H,P) rotated by (offset + t) θ */
int hr_rope_forward(const float *x, float *y, int B, int T, int H, int P, long offset, double base) {
    return rope_apply(x, y, B, T, H, P, offset, base, 1.0);
}

/* dy (B,T,H,P) -> dx (B,T,H,P) rotated by −(offset + t) θ (the transpose of the rotation) */
int hr_rope_backward(const float *dy, float *dx, int B, int T, int H, int P, long offset, double base) {
    return rope_apply(dy, dx, B, T, H, P, offset, base, -1.0);
}
