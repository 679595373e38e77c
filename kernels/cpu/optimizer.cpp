// CPU optimizer updates: torch.optim.AdamW and torch.optim.SGD on one contiguous
// parameter, fused into a single pass that reads param, grad and the states once and
// writes them once. Math runs in float for f32/bf16/f16 and in double for f64; the
// per-step scalars (bias corrections, step size) are computed once in double. Chunks
// of the flat parameter go to OpenMP threads when it is large; the inner loops have no
// branches on the data (amsgrad, momentum and nesterov are template parameters) so the
// compiler vectorizes them for f32/f64. The multi-tensor forms cut every parameter of a
// list into chunks of kMultiTensorChunk elements and share the chunks of all parameters
// out over the threads in one parallel region (small parameters no longer run alone).
// The element loops are written once (PETAL_CPU_INLINE) and compiled twice (kernels/cpu/isa.h):
// baseline and AVX-512, picked per call; both evaluate the same torch formulas in the same
// order (the AVX-512 variant may fuse a multiply-add).
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

template <typename A>
struct AdamWScalars {
  A decay, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_bias_correction2_sqrt, eps;
};

template <typename A>
AdamWScalars<A> adamw_scalars(const AdamWArgs& a) {
  const double t = static_cast<double>(a.step);
  const double bias_correction1 = 1.0 - std::pow(a.beta1, t);
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(a.beta2, t));
  return AdamWScalars<A>{static_cast<A>(1.0 - a.lr * a.weight_decay),
                         static_cast<A>(a.beta1),
                         static_cast<A>(1.0 - a.beta1),
                         static_cast<A>(a.beta2),
                         static_cast<A>(1.0 - a.beta2),
                         static_cast<A>(a.lr / bias_correction1),
                         static_cast<A>(1.0 / bias_correction2_sqrt),
                         static_cast<A>(a.eps)};
}

template <typename T, bool kAmsgrad>
PETAL_CPU_INLINE void adamw_range(T* __restrict param, const T* __restrict grad, T* __restrict exp_avg, T* __restrict exp_avg_sq,
                 T* __restrict max_exp_avg_sq, int64_t begin, int64_t end, const AdamWScalars<typename Acc<T>::type>& s) {
  using A = typename Acc<T>::type;
  for (int64_t i = begin; i < end; ++i) {
    const A g = load(grad[i]);
    const A p = load(param[i]) * s.decay;
    const A m = s.beta1 * load(exp_avg[i]) + s.one_minus_beta1 * g;
    const A v = s.beta2 * load(exp_avg_sq[i]) + s.one_minus_beta2 * (g * g);
    A second = v;
    if constexpr (kAmsgrad) {
      const A prev = load(max_exp_avg_sq[i]);
      second = prev > v ? prev : v;
      max_exp_avg_sq[i] = store<T>(second);
    }
    const A denom = std::sqrt(second) * s.inv_bias_correction2_sqrt + s.eps;
    exp_avg[i] = store<T>(m);
    exp_avg_sq[i] = store<T>(v);
    param[i] = store<T>(p - s.step_size * (m / denom));
  }
}

template <typename A>
struct SgdScalars {
  A lr, momentum, one_minus_dampening, weight_decay;
};

// kMomentum: 0 = no buffer, 1 = buffer initialised from d (first step), 2 = buffer update.
template <typename T, int kMomentum, bool kNesterov>
PETAL_CPU_INLINE void sgd_range(T* __restrict param, const T* __restrict grad, T* __restrict buffer, int64_t begin, int64_t end,
               const SgdScalars<typename Acc<T>::type>& s) {
  using A = typename Acc<T>::type;
  for (int64_t i = begin; i < end; ++i) {
    const A p = load(param[i]);
    A d = load(grad[i]);
    if (s.weight_decay != A(0)) d += s.weight_decay * p;  // 0 * inf must not poison d
    if constexpr (kMomentum != 0) {
      A b;
      if constexpr (kMomentum == 1) {
        b = d;
      } else {
        b = s.momentum * load(buffer[i]) + s.one_minus_dampening * d;
      }
      buffer[i] = store<T>(b);
      d = kNesterov ? d + s.momentum * b : b;
    }
    param[i] = store<T>(p - s.lr * d);
  }
}

// The two variants of the element loops per element type: adamw(amsgrad, ...) and
// sgd(mode, nesterov, ...), mode as sgd_range's kMomentum.
template <typename T>
struct OptimizerRows;

#define PETAL_OPTIMIZER_ROWS_VARIANT(SUFFIX, ATTR)                                                                  \
  ATTR static void adamw_##SUFFIX(bool amsgrad, T* p, const T* g, T* m, T* v, T* vmax, int64_t b, int64_t e,        \
                                  const AdamWScalars<A>& s) {                                                       \
    if (amsgrad)                                                                                                    \
      adamw_range<T, true>(p, g, m, v, vmax, b, e, s);                                                              \
    else                                                                                                            \
      adamw_range<T, false>(p, g, m, v, vmax, b, e, s);                                                             \
  }                                                                                                                 \
  ATTR static void sgd_##SUFFIX(int mode, bool nesterov, T* p, const T* g, T* buf, int64_t b, int64_t e,           \
                                const SgdScalars<A>& s) {                                                           \
    if (mode == 0)                                                                                                  \
      sgd_range<T, 0, false>(p, g, buf, b, e, s);                                                                   \
    else if (mode == 1 && nesterov)                                                                                 \
      sgd_range<T, 1, true>(p, g, buf, b, e, s);                                                                    \
    else if (mode == 1)                                                                                             \
      sgd_range<T, 1, false>(p, g, buf, b, e, s);                                                                   \
    else if (nesterov)                                                                                              \
      sgd_range<T, 2, true>(p, g, buf, b, e, s);                                                                    \
    else                                                                                                            \
      sgd_range<T, 2, false>(p, g, buf, b, e, s);                                                                   \
  }

#define PETAL_OPTIMIZER_ROWS(TYPE)                \
  template <>                                     \
  struct OptimizerRows<TYPE> {                    \
    using T = TYPE;                               \
    using A = typename Acc<T>::type;              \
    PETAL_OPTIMIZER_ROWS_VARIANT(baseline, )      \
    PETAL_OPTIMIZER_ROWS_VARIANT(avx512, PETAL_CPU_AVX512) \
  };

PETAL_OPTIMIZER_ROWS(float)
PETAL_OPTIMIZER_ROWS(double)
PETAL_OPTIMIZER_ROWS(bf16_t)
PETAL_OPTIMIZER_ROWS(f16_t)
#undef PETAL_OPTIMIZER_ROWS
#undef PETAL_OPTIMIZER_ROWS_VARIANT

template <typename T, typename A>
void adamw_rows(bool avx512, bool amsgrad, T* p, const T* g, T* m, T* v, T* vmax, int64_t b, int64_t e,
                const AdamWScalars<A>& s) {
  if (avx512)
    OptimizerRows<T>::adamw_avx512(amsgrad, p, g, m, v, vmax, b, e, s);
  else
    OptimizerRows<T>::adamw_baseline(amsgrad, p, g, m, v, vmax, b, e, s);
}

template <typename T, typename A>
void sgd_rows(bool avx512, int mode, bool nesterov, T* p, const T* g, T* buf, int64_t b, int64_t e,
              const SgdScalars<A>& s) {
  if (avx512)
    OptimizerRows<T>::sgd_avx512(mode, nesterov, p, g, buf, b, e, s);
  else
    OptimizerRows<T>::sgd_baseline(mode, nesterov, p, g, buf, b, e, s);
}

// A piece of one tensor of a multi-tensor list.
struct Chunk {
  int64_t tensor, begin, end;
};
constexpr int64_t kMultiTensorChunk = 16384;

std::vector<Chunk> chunks_of(const OptimizerTensor* tensors, int64_t count) {
  std::vector<Chunk> chunks;
  for (int64_t t = 0; t < count; ++t)
    for (int64_t b = 0; b < tensors[t].n; b += kMultiTensorChunk)
      chunks.push_back({t, b, std::min(tensors[t].n, b + kMultiTensorChunk)});
  return chunks;
}

// Runs f(chunk) for every chunk, in parallel once the list is large enough.
template <typename F>
void for_each_chunk(const std::vector<Chunk>& chunks, F&& f) {
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / kMultiTensorChunk);
  parallel_for(static_cast<int64_t>(chunks.size()), grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) f(chunks[c]);
  });
}

}  // namespace

void CpuBackend::adamw_update(void* param, const void* grad, void* exp_avg, void* exp_avg_sq, void* max_exp_avg_sq,
                              DType dtype, int64_t n, const AdamWArgs& args) {
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename Acc<T>::type;
    const AdamWScalars<A> s = adamw_scalars<A>(args);
    T* p = static_cast<T*>(param);
    const T* g = static_cast<const T*>(grad);
    T* m = static_cast<T*>(exp_avg);
    T* v = static_cast<T*>(exp_avg_sq);
    T* vmax = static_cast<T*>(max_exp_avg_sq);
    const bool avx512 = avx512_enabled();
    parallel_for(n, kParallelGrain,
                 [&](int64_t b, int64_t e) { adamw_rows(avx512, args.amsgrad, p, g, m, v, vmax, b, e, s); });
  });
}

void CpuBackend::sgd_update(void* param, const void* grad, void* momentum_buffer, DType dtype, int64_t n,
                            const SgdArgs& args) {
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename Acc<T>::type;
    const SgdScalars<A> s{static_cast<A>(args.lr), static_cast<A>(args.momentum),
                          static_cast<A>(1.0 - args.dampening), static_cast<A>(args.weight_decay)};
    T* p = static_cast<T*>(param);
    const T* g = static_cast<const T*>(grad);
    T* buf = static_cast<T*>(momentum_buffer);
    const int mode = args.momentum == 0.0 ? 0 : (args.first_step ? 1 : 2);
    const bool avx512 = avx512_enabled();
    parallel_for(n, kParallelGrain,
                 [&](int64_t b, int64_t e) { sgd_rows(avx512, mode, args.nesterov, p, g, buf, b, e, s); });
  });
}

void CpuBackend::adamw_update_multi_tensor(const OptimizerTensor* tensors, int64_t count, DType dtype,
                                           const AdamWArgs& args) {
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename Acc<T>::type;
    std::vector<AdamWScalars<A>> scalars;
    scalars.reserve(static_cast<size_t>(count));
    for (int64_t t = 0; t < count; ++t) {
      AdamWArgs a = args;
      a.step = tensors[t].step;
      scalars.push_back(adamw_scalars<A>(a));
    }
    const bool avx512 = avx512_enabled();
    for_each_chunk(chunks_of(tensors, count), [&](const Chunk& c) {
      const OptimizerTensor& t = tensors[c.tensor];
      adamw_rows(avx512, args.amsgrad, static_cast<T*>(t.param), static_cast<const T*>(t.grad),
                 static_cast<T*>(t.state0), static_cast<T*>(t.state1), static_cast<T*>(t.state2), c.begin, c.end,
                 scalars[c.tensor]);
    });
  });
}

void CpuBackend::sgd_update_multi_tensor(const OptimizerTensor* tensors, int64_t count, DType dtype,
                                         const SgdArgs& args) {
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename Acc<T>::type;
    const SgdScalars<A> s{static_cast<A>(args.lr), static_cast<A>(args.momentum),
                          static_cast<A>(1.0 - args.dampening), static_cast<A>(args.weight_decay)};
    const bool avx512 = avx512_enabled();
    for_each_chunk(chunks_of(tensors, count), [&](const Chunk& c) {
      const OptimizerTensor& t = tensors[c.tensor];
      const int mode = args.momentum == 0.0 ? 0 : (t.first_step ? 1 : 2);
      sgd_rows(avx512, mode, args.nesterov, static_cast<T*>(t.param), static_cast<const T*>(t.grad),
               static_cast<T*>(t.state0), c.begin, c.end, s);
    });
  });
}

}  // namespace petal::kernels
