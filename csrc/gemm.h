/* Single-precision GEMM: C = op(A) op(B) + beta C, row-major, op(A) (M,K), op(B) (K,N).
 * Returns HR_OK, or HR_ENOMEM when its packing buffers cannot be allocated. */
int hr_gemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
            float beta, float *C, int ldc);
