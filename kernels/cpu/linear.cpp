// CPU fused Linear (+ GELU): one backend GEMM (OpenBLAS / oneDNN / the CPU GEMM) and one
// OpenMP pass that adds the bias and applies the activation, keeping the pre-activation in
// aux for the backward. Backward: one pass over dy that writes dpre = dy * gelu'(aux) and
// accumulates the bias gradient (column sums of dpre in double), then the dX and dW GEMMs.
//
// The passes are row kernels over raw pointers in two ISA variants (kernels/cpu/isa.h) for
// f32 and bf16 (bf16 converted with bit operations, kernels/cpu/bf16_bits.h); the GELU
// formulas are kernels/cpu/gelu.h's (float approximations that vectorize, std:: for f64).
// f16 and f64 take the same formulas through a plain loop.
//
// Bias gradient order: the rows are cut into blocks whose size depends on m only (at least
// kBiasRows rows, at most kMaxBiasBlocks blocks); each block sums its rows in order into a
// double partial per column, and the partials are added in block order. The result is the
// same for every thread count (threads take whole blocks) and for both ISA variants up to
// the float rounding of dpre.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/bf16_bits.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

// ---- forward epilogue: y = act(pre + bias), pre kept (rounded to T) when act ----

template <typename T, bool kBias>
PETAL_CPU_INLINE void bias_rows(T* __restrict y, const T* __restrict bias, int64_t n, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    T* __restrict yr = y + r * n;
    for (int64_t j = 0; j < n; ++j) {
      float v = row_load(yr[j]);
      if constexpr (kBias) v += row_load(bias[j]);
      yr[j] = row_store<T>(v);
    }
  }
}

template <typename T, GeluForm F, bool kBias>
PETAL_CPU_INLINE void bias_gelu_rows(T* __restrict pre, T* __restrict y, const T* __restrict bias, int64_t n,
                                     int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    T* __restrict pr = pre + r * n;
    T* __restrict yr = y + r * n;
    for (int64_t j = 0; j < n; ++j) {
      float v = row_load(pr[j]);
      if constexpr (kBias) v += row_load(bias[j]);
      if constexpr (kBias) pr[j] = row_store<T>(v);
      yr[j] = row_store<T>(gelu<F>(v));
    }
  }
}

struct EpilogueRows {
  void* pre;         // the GEMM output: aux when act, else y
  void* y;
  const void* bias;  // may be null
  int64_t n;
  LinearActivation act;
};

template <typename T>
PETAL_CPU_INLINE void epilogue_rows(const EpilogueRows& e, int64_t r0, int64_t r1) {
  T* pre = static_cast<T*>(e.pre);
  T* y = static_cast<T*>(e.y);
  const T* b = static_cast<const T*>(e.bias);
  switch (e.act) {
    case LinearActivation::None:
      if (b != nullptr) bias_rows<T, true>(y, b, e.n, r0, r1);
      break;
    case LinearActivation::GeluErf:
      if (b != nullptr) bias_gelu_rows<T, GeluForm::Erf, true>(pre, y, b, e.n, r0, r1);
      else bias_gelu_rows<T, GeluForm::Erf, false>(pre, y, b, e.n, r0, r1);
      break;
    case LinearActivation::GeluTanh:
      if (b != nullptr) bias_gelu_rows<T, GeluForm::Tanh, true>(pre, y, b, e.n, r0, r1);
      else bias_gelu_rows<T, GeluForm::Tanh, false>(pre, y, b, e.n, r0, r1);
      break;
  }
}

void epilogue_rows_f32_baseline(const EpilogueRows& e, int64_t r0, int64_t r1) { epilogue_rows<float>(e, r0, r1); }
void epilogue_rows_bf16_baseline(const EpilogueRows& e, int64_t r0, int64_t r1) { epilogue_rows<bf16_t>(e, r0, r1); }
PETAL_CPU_AVX512 void epilogue_rows_f32_avx512(const EpilogueRows& e, int64_t r0, int64_t r1) {
  epilogue_rows<float>(e, r0, r1);
}
PETAL_CPU_AVX512 void epilogue_rows_bf16_avx512(const EpilogueRows& e, int64_t r0, int64_t r1) {
  epilogue_rows<bf16_t>(e, r0, r1);
}

// ---- backward: dpre = dy * gelu'(pre) and/or the bias-gradient partial sums of one block ----

template <typename T, GeluForm F, bool kSum>
PETAL_CPU_INLINE void dgelu_rows(const T* __restrict dy, const T* __restrict pre, T* __restrict dpre,
                                 double* __restrict acc, int64_t n, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict g = dy + r * n;
    const T* __restrict p = pre + r * n;
    T* __restrict d = dpre + r * n;
    for (int64_t j = 0; j < n; ++j) {
      const float v = row_load(g[j]) * gelu_grad<F>(row_load(p[j]));
      d[j] = row_store<T>(v);
      if constexpr (kSum) acc[j] += static_cast<double>(v);
    }
  }
}

template <typename T>
PETAL_CPU_INLINE void column_sum_rows(const T* __restrict dy, double* __restrict acc, int64_t n, int64_t r0,
                                      int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* __restrict g = dy + r * n;
    for (int64_t j = 0; j < n; ++j) acc[j] += static_cast<double>(row_load(g[j]));
  }
}

struct BackwardRows {
  const void* dy;
  const void* pre;   // aux (pre-activation), when act
  void* dpre;        // written when act
  double* acc;       // n partial sums of this block (zeroed by the caller), or null: no bias gradient
  int64_t n;
  LinearActivation act;
};

template <typename T>
PETAL_CPU_INLINE void backward_rows(const BackwardRows& b, int64_t r0, int64_t r1) {
  const T* dy = static_cast<const T*>(b.dy);
  const T* pre = static_cast<const T*>(b.pre);
  T* dpre = static_cast<T*>(b.dpre);
  switch (b.act) {
    case LinearActivation::None:
      if (b.acc != nullptr) column_sum_rows<T>(dy, b.acc, b.n, r0, r1);
      break;
    case LinearActivation::GeluErf:
      if (b.acc != nullptr) dgelu_rows<T, GeluForm::Erf, true>(dy, pre, dpre, b.acc, b.n, r0, r1);
      else dgelu_rows<T, GeluForm::Erf, false>(dy, pre, dpre, b.acc, b.n, r0, r1);
      break;
    case LinearActivation::GeluTanh:
      if (b.acc != nullptr) dgelu_rows<T, GeluForm::Tanh, true>(dy, pre, dpre, b.acc, b.n, r0, r1);
      else dgelu_rows<T, GeluForm::Tanh, false>(dy, pre, dpre, b.acc, b.n, r0, r1);
      break;
  }
}

void backward_rows_f32_baseline(const BackwardRows& b, int64_t r0, int64_t r1) { backward_rows<float>(b, r0, r1); }
void backward_rows_bf16_baseline(const BackwardRows& b, int64_t r0, int64_t r1) { backward_rows<bf16_t>(b, r0, r1); }
PETAL_CPU_AVX512 void backward_rows_f32_avx512(const BackwardRows& b, int64_t r0, int64_t r1) {
  backward_rows<float>(b, r0, r1);
}
PETAL_CPU_AVX512 void backward_rows_bf16_avx512(const BackwardRows& b, int64_t r0, int64_t r1) {
  backward_rows<bf16_t>(b, r0, r1);
}

// The plain loops for f16 and f64 (math in Acc<T>: float for f16, double for f64).
template <typename T>
void epilogue_rows_generic(const EpilogueRows& e, int64_t r0, int64_t r1) {
  using A = typename Acc<T>::type;
  T* pre = static_cast<T*>(e.pre);
  T* y = static_cast<T*>(e.y);
  const T* bias = static_cast<const T*>(e.bias);
  for (int64_t i = r0 * e.n; i < r1 * e.n; ++i) {
    A v = static_cast<A>(load(pre[i]));
    if (bias != nullptr) v += static_cast<A>(load(bias[i % e.n]));
    if (e.act == LinearActivation::None) {
      y[i] = store<T>(v);
      continue;
    }
    pre[i] = store<T>(v);
    y[i] = store<T>(e.act == LinearActivation::GeluErf ? gelu<GeluForm::Erf>(v) : gelu<GeluForm::Tanh>(v));
  }
}

template <typename T>
void backward_rows_generic(const BackwardRows& b, int64_t r0, int64_t r1) {
  using A = typename Acc<T>::type;
  const T* dy = static_cast<const T*>(b.dy);
  const T* pre = static_cast<const T*>(b.pre);
  T* dpre = static_cast<T*>(b.dpre);
  for (int64_t i = r0 * b.n; i < r1 * b.n; ++i) {
    A v = static_cast<A>(load(dy[i]));
    if (b.act != LinearActivation::None) {
      const A x = static_cast<A>(load(pre[i]));
      v *= b.act == LinearActivation::GeluErf ? gelu_grad<GeluForm::Erf>(x) : gelu_grad<GeluForm::Tanh>(x);
      dpre[i] = store<T>(v);
    }
    if (b.acc != nullptr) b.acc[i % b.n] += static_cast<double>(v);
  }
}

void run_epilogue_rows(DType dtype, const EpilogueRows& e, int64_t r0, int64_t r1) {
  const bool wide = avx512_enabled();
  switch (dtype) {
    case DType::f32: (wide ? epilogue_rows_f32_avx512 : epilogue_rows_f32_baseline)(e, r0, r1); break;
    case DType::bf16: (wide ? epilogue_rows_bf16_avx512 : epilogue_rows_bf16_baseline)(e, r0, r1); break;
    case DType::f16: epilogue_rows_generic<f16_t>(e, r0, r1); break;
    case DType::f64: epilogue_rows_generic<double>(e, r0, r1); break;
    default: break;
  }
}

void run_backward_rows(DType dtype, const BackwardRows& b, int64_t r0, int64_t r1) {
  const bool wide = avx512_enabled();
  switch (dtype) {
    case DType::f32: (wide ? backward_rows_f32_avx512 : backward_rows_f32_baseline)(b, r0, r1); break;
    case DType::bf16: (wide ? backward_rows_bf16_avx512 : backward_rows_bf16_baseline)(b, r0, r1); break;
    case DType::f16: backward_rows_generic<f16_t>(b, r0, r1); break;
    case DType::f64: backward_rows_generic<double>(b, r0, r1); break;
    default: break;
  }
}

constexpr int64_t kBiasRows = 64;        // the smallest block of rows summed into one partial
constexpr int64_t kMaxBiasBlocks = 64;   // at most this many partials per column

GemmArgs gemm_args(DType dtype, int64_t m, int64_t n, int64_t k, const void* a, bool trans_a, const void* b,
                   bool trans_b, void* c) {
  GemmArgs g;
  g.dtype = dtype;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.trans_a = trans_a;
  g.lda = std::max<int64_t>(1, trans_a ? m : k);
  g.b = b;
  g.trans_b = trans_b;
  g.ldb = std::max<int64_t>(1, trans_b ? k : n);
  g.c = c;
  g.ldc = std::max<int64_t>(1, n);
  return g;
}

// C = op(A) op(B), or zeros when the reduced extent is empty.
void gemm_or_zero(Backend& be, const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {
    std::memset(g.c, 0, static_cast<size_t>(g.m * g.n) * dtype_size(g.dtype));  // +0.0 in every float dtype
    return;
  }
  be.gemm(g);
}

}  // namespace

void CpuBackend::linear_forward(const LinearArgs& a) {
  if (a.m == 0 || a.n == 0) return;
  const bool act = a.act != LinearActivation::None;
  void* out = act ? a.aux : a.y;
  gemm_or_zero(*this, gemm_args(a.dtype, a.m, a.n, a.k, a.x, false, a.w, true, out));
  if (!act && a.bias == nullptr) return;
  const EpilogueRows e{out, a.y, a.bias, a.n, a.act};
  parallel_for(a.m, std::max<int64_t>(1, kParallelGrain / a.n),
               [&](int64_t r0, int64_t r1) { run_epilogue_rows(a.dtype, e, r0, r1); });
}

void CpuBackend::linear_backward(const LinearArgs& a, const void* dy, void* dx, void* dw, void* dbias) {
  const size_t es = dtype_size(a.dtype);
  const bool act = a.act != LinearActivation::None;
  const bool want_bias = dbias != nullptr && a.n > 0;
  std::vector<unsigned char> dpre_buffer;
  const void* dpre = dy;
  if (act && a.m * a.n > 0) {
    dpre_buffer.resize(static_cast<size_t>(a.m * a.n) * es);
    dpre = dpre_buffer.data();
  }
  if ((act && a.m * a.n > 0) || want_bias) {
    // Blocks of rows fixed by m alone (not by the thread count): see the header comment.
    const int64_t block = std::max(kBiasRows, (a.m + kMaxBiasBlocks - 1) / kMaxBiasBlocks);
    const int64_t blocks = (a.m + block - 1) / block;
    std::vector<double> partial(want_bias ? static_cast<size_t>(blocks * a.n) : 0, 0.0);
    const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, block * a.n));
    parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const BackwardRows rows{dy, a.aux, const_cast<void*>(dpre), want_bias ? partial.data() + b * a.n : nullptr,
                                a.n, a.act};
        run_backward_rows(a.dtype, rows, b * block, std::min(a.m, (b + 1) * block));
      }
    });
    if (want_bias) {
      std::vector<double> total(static_cast<size_t>(a.n), 0.0);
      for (int64_t b = 0; b < blocks; ++b)
        for (int64_t j = 0; j < a.n; ++j) total[j] += partial[b * a.n + j];
      dispatch_floating(a.dtype, [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* out = static_cast<T*>(dbias);
        for (int64_t j = 0; j < a.n; ++j) out[j] = store<T>(total[j]);
      });
    }
  }
  if (dx != nullptr) gemm_or_zero(*this, gemm_args(a.dtype, a.m, a.k, a.n, dpre, false, a.w, false, dx));
  if (dw != nullptr) gemm_or_zero(*this, gemm_args(a.dtype, a.n, a.k, a.m, dpre, true, a.x, false, dw));
}

}  // namespace petal::kernels
