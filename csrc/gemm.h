/* Single-precision GEMM: C = op(A) op(B) + bias + beta C, row-major, op(A) (M,K), op(B) (K,N),
 * bias (N,) added to every row or NULL. Returns HR_OK, or HR_ENOMEM when its packing buffers
 * cannot be allocated. */
int hr_gemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
            const float *bias, float beta, float *C, int ldc);
