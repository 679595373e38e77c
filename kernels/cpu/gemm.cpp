// CPU GEMM through CBLAS (OpenBLAS, OpenMP build): C[b] = alpha op(A[b]) op(B[b]) + beta C[b]
// for row-major operands with explicit leading dimensions and batch strides (a batch stride
// of 0 reuses one matrix). f32/f64 call sgemm/dgemm directly: one call per batch entry,
// with OpenMP over the batch when the matrices are too small for BLAS's own threading
// (OpenBLAS runs single-threaded inside a parallel region). bf16/f16 widen each operand to
// a float matrix, run sgemm and round the result back (float accumulation, like cuBLAS),
// unless oneDNN (gemm_onednn.h, an optional dependency) takes a bf16 call first.
// f32 calls go to oneDNN's f32 matmul first as well when it is built and enabled: on this
// project's AVX-512 machines it matches OpenBLAS's SkylakeX kernels and is 4-5x the SSE3
// (Prescott) kernels Debian's OpenBLAS 0.3.21 falls back to when it does not recognize the CPU
// (docs/mixed_precision.md); PETAL_ONEDNN=0 restores OpenBLAS. f64 always runs dgemm.
// k == 0 is handled here (C = beta C) because BLAS rejects leading dimensions of 0.
#include <cblas.h>

#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm_onednn.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

// Below this many multiply-adds per matrix, parallelize over the batch instead.
constexpr int64_t kSmallGemmFlops = 96 * 96 * 96;

inline CBLAS_TRANSPOSE trans_of(bool t) { return t ? CblasTrans : CblasNoTrans; }

template <typename T>
void blas_gemm(const GemmArgs& g, const T* a, const T* b, T* c) {
  const auto ta = trans_of(g.trans_a), tb = trans_of(g.trans_b);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<blasint>(g.m), static_cast<blasint>(g.n), static_cast<blasint>(g.k),
                static_cast<float>(g.alpha), a, static_cast<blasint>(g.lda), b, static_cast<blasint>(g.ldb),
                static_cast<float>(g.beta), c, static_cast<blasint>(g.ldc));
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, static_cast<blasint>(g.m), static_cast<blasint>(g.n), static_cast<blasint>(g.k),
                g.alpha, a, static_cast<blasint>(g.lda), b, static_cast<blasint>(g.ldb), g.beta, c,
                static_cast<blasint>(g.ldc));
  }
}

template <typename F>
void for_each_batch(const GemmArgs& g, F&& f) {
  // Enough matrices to share out, or too small for BLAS threading to pay: one thread per
  // matrix (attention's per-head products land here).
  if (g.batch > 1 && (g.batch >= omp_get_max_threads() || g.m * g.n * g.k < kSmallGemmFlops) && !omp_in_parallel()) {
    parallel_for(g.batch, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, g.m * g.n * g.k)),
                 [&](int64_t b0, int64_t b1) {
                   for (int64_t i = b0; i < b1; ++i) f(i);
                 });
  } else {
    for (int64_t i = 0; i < g.batch; ++i) f(i);
  }
}

template <typename T>
void gemm_native(const GemmArgs& g) {
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  T* c = static_cast<T*>(g.c);
  for_each_batch(g, [&](int64_t i) { blas_gemm<T>(g, a + i * g.stride_a, b + i * g.stride_b, c + i * g.stride_c); });
}

// Copies a rows x cols matrix with leading dimension ld into a dense float buffer.
template <typename T>
void widen(std::vector<float>& dst, const T* src, int64_t rows, int64_t cols, int64_t ld) {
  dst.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) dst[r * cols + j] = load(src[r * ld + j]);
}

template <typename T>
void gemm_half(const GemmArgs& g) {
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  T* c = static_cast<T*>(g.c);
  // Stored shapes: A is (trans_a ? k x m : m x k), B is (trans_b ? n x k : k x n).
  const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  for_each_batch(g, [&](int64_t i) {
    std::vector<float> fa, fb, fc(static_cast<size_t>(g.m * g.n), 0.0f);
    widen(fa, a + i * g.stride_a, a_rows, a_cols, g.lda);
    widen(fb, b + i * g.stride_b, b_rows, b_cols, g.ldb);
    T* ci = c + i * g.stride_c;
    if (g.beta != 0.0) widen(fc, ci, g.m, g.n, g.ldc);
    GemmArgs f = g;
    f.lda = a_cols;
    f.ldb = b_cols;
    f.ldc = g.n;
    blas_gemm<float>(f, fa.data(), fb.data(), fc.data());
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t j = 0; j < g.n; ++j) ci[r * g.ldc + j] = store<T>(fc[r * g.n + j]);
  });
}

// C = beta C (the product is empty when k == 0).
template <typename T>
void scale_c(const GemmArgs& g) {
  T* c = static_cast<T*>(g.c);
  for (int64_t i = 0; i < g.batch; ++i)
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t j = 0; j < g.n; ++j) {
        T& x = c[i * g.stride_c + r * g.ldc + j];
        x = g.beta == 0.0 ? store<T>(0.0f) : store<T>(load(x) * g.beta);
      }
}

}  // namespace

void CpuBackend::gemm(const GemmArgs& g) {
  if (g.batch <= 0 || g.m <= 0 || g.n <= 0) return;
  if (g.dtype == DType::bf16 && cpu::onednn_gemm(g)) return;
  if (g.dtype == DType::f32 && cpu::onednn_gemm_enabled() && cpu::onednn_gemm_to(g, DType::f32)) return;
  dispatch_floating(g.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (g.k <= 0) {
      scale_c<T>(g);
    } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      gemm_native<T>(g);
    } else {
      gemm_half<T>(g);
    }
  });
}

}  // namespace petal::kernels
