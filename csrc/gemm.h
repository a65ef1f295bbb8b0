/* Single-precision GEMM: C = op(A) op(B) + bias + beta C, row-major, op(A) (M,K), op(B) (K,N),
 * bias (N,) added to every row or NULL. Returns HR_OK, or HR_ENOMEM when its packing buffers
 * cannot be allocated. */
int hr_gemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
            const float *bias, float beta, float *C, int ldc);
/* C (M,N) = A (M,K) B (K,N) + bias, B stored in column panels, each (K, width) row-major, one after another:
 * `panel` columns wide but the last, whose columns are rounded up to `unit` (zero past column N) - the
 * decoder's weight layout (csrc/decode_mixer.h), read in place. Returns HR_OK, HR_ENOMEM, or HR_ELAYOUT
 * when unit is not a multiple of the kernel's tile width or panel not a multiple of unit. */
int hr_gemm_panels(int M, int N, int K, const float *A, int lda, const float *B, int panel, int unit,
                   const float *bias, float *C, int ldc);
