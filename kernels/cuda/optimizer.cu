// Optimizer updates on one contiguous parameter: torch.optim.AdamW and torch.optim.SGD
// fused into one grid-stride elementwise kernel each, so param, grad and the states are
// read once and written once per step. Math runs in the accumulator type (float for
// f32/bf16/f16, double for f64); the per-step scalars (bias corrections, step size) are
// computed once in double on the host. When every pointer is 16-byte aligned, each thread
// moves Vector<T> (16 bytes) per operand per iteration and a scalar loop finishes the tail.
// The multi-tensor forms take a list of parameters: the host cuts each into chunks of
// kMultiTensorChunk elements, copies one table of per-tensor entries (pointers, size,
// per-tensor scalars) and one of chunks into a device buffer, and one launch runs a block
// per chunk (more launches only past kMaxChunksPerLaunch chunks); the buffer is freed in
// stream order after the launches.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

template <typename A>
struct AdamWScalars {
  A decay, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_bias_correction2_sqrt, eps;
};

template <typename A>
struct SgdScalars {
  A lr, momentum, one_minus_dampening, weight_decay;
};

// One AdamW element in the accumulator type; vmax is read/written only with amsgrad.
template <typename T, typename A, bool kAmsgrad>
__device__ inline void adamw_element(T& param, T grad, T& exp_avg, T& exp_avg_sq, T& vmax, const AdamWScalars<A>& s) {
  const A g = to_acc(grad);
  const A p = A(to_acc(param)) * s.decay;
  const A m = s.beta1 * A(to_acc(exp_avg)) + s.one_minus_beta1 * g;
  const A v = s.beta2 * A(to_acc(exp_avg_sq)) + s.one_minus_beta2 * (g * g);
  A second = v;
  if constexpr (kAmsgrad) {
    const A prev = to_acc(vmax);
    second = prev > v ? prev : v;
    vmax = from_acc<T>(second);
  }
  const A denom = dmath::sqrt(second) * s.inv_bias_correction2_sqrt + s.eps;
  exp_avg = from_acc<T>(m);
  exp_avg_sq = from_acc<T>(v);
  param = from_acc<T>(p - s.step_size * (m / denom));
}

template <typename T, typename A, bool kAmsgrad>
static __global__ void adamw_update_kernel(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
                                           int64_t n, AdamWScalars<A> s, bool vectorized) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  constexpr int kVec = Vector<T>::kSize;
  int64_t scalar_begin = 0;
  if (vectorized) {
    const int64_t nvec = n / kVec;
    for (int64_t j = tid; j < nvec; j += nthreads) {
      const int64_t i = j * kVec;
      Vector<T> p = load_vector(param + i), g = load_vector(grad + i), m = load_vector(exp_avg + i),
                v = load_vector(exp_avg_sq + i), vm{};
      if constexpr (kAmsgrad) vm = load_vector(max_exp_avg_sq + i);
PETAL_UNROLL
      for (int e = 0; e < kVec; ++e) adamw_element<T, A, kAmsgrad>(p.v[e], g.v[e], m.v[e], v.v[e], vm.v[e], s);
      store_vector(param + i, p);
      store_vector(exp_avg + i, m);
      store_vector(exp_avg_sq + i, v);
      if constexpr (kAmsgrad) store_vector(max_exp_avg_sq + i, vm);
    }
    scalar_begin = nvec * kVec;
  }
  for (int64_t i = scalar_begin + tid; i < n; i += nthreads) {
    T unused{};
    adamw_element<T, A, kAmsgrad>(param[i], grad[i], exp_avg[i], exp_avg_sq[i],
                                  kAmsgrad ? max_exp_avg_sq[i] : unused, s);
  }
}

// kMomentum: 0 = no buffer, 1 = buffer initialised from d (first step), 2 = buffer update.
template <typename T, typename A, int kMomentum>
__device__ inline void sgd_element(T& param, T grad, T& buffer, const SgdScalars<A>& s, bool nesterov) {
  const A p = to_acc(param);
  A d = to_acc(grad);
  if (s.weight_decay != A(0)) d += s.weight_decay * p;  // 0 * inf must not poison d
  if constexpr (kMomentum != 0) {
    A b;
    if constexpr (kMomentum == 1) {
      b = d;
    } else {
      b = s.momentum * A(to_acc(buffer)) + s.one_minus_dampening * d;
    }
    buffer = from_acc<T>(b);
    d = nesterov ? d + s.momentum * b : b;
  }
  param = from_acc<T>(p - s.lr * d);
}

template <typename T, typename A, int kMomentum>
static __global__ void sgd_update_kernel(T* param, const T* grad, T* buffer, int64_t n, SgdScalars<A> s, bool nesterov,
                                         bool vectorized) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  constexpr int kVec = Vector<T>::kSize;
  int64_t scalar_begin = 0;
  if (vectorized) {
    const int64_t nvec = n / kVec;
    for (int64_t j = tid; j < nvec; j += nthreads) {
      const int64_t i = j * kVec;
      Vector<T> p = load_vector(param + i), g = load_vector(grad + i), b{};
      if constexpr (kMomentum == 2) b = load_vector(buffer + i);
PETAL_UNROLL
      for (int e = 0; e < kVec; ++e) sgd_element<T, A, kMomentum>(p.v[e], g.v[e], b.v[e], s, nesterov);
      store_vector(param + i, p);
      if constexpr (kMomentum != 0) store_vector(buffer + i, b);
    }
    scalar_begin = nvec * kVec;
  }
  for (int64_t i = scalar_begin + tid; i < n; i += nthreads) {
    T unused{};
    sgd_element<T, A, kMomentum>(param[i], grad[i], kMomentum != 0 ? buffer[i] : unused, s, nesterov);
  }
}

template <typename T, typename A>
static void launch_adamw(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
                         const AdamWArgs& a, Stream stream) {
  const double t = static_cast<double>(a.step);
  const double bias_correction1 = 1.0 - std::pow(a.beta1, t);
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(a.beta2, t));
  const AdamWScalars<A> s{static_cast<A>(1.0 - a.lr * a.weight_decay),
                          static_cast<A>(a.beta1),
                          static_cast<A>(1.0 - a.beta1),
                          static_cast<A>(a.beta2),
                          static_cast<A>(1.0 - a.beta2),
                          static_cast<A>(a.lr / bias_correction1),
                          static_cast<A>(1.0 / bias_correction2_sqrt),
                          static_cast<A>(a.eps)};
  const bool vectorized = vector_aligned({param, grad, exp_avg, exp_avg_sq, a.amsgrad ? max_exp_avg_sq : nullptr});
  const unsigned grid = grid_for(vectorized ? (n + Vector<T>::kSize - 1) / Vector<T>::kSize : n);
  if (a.amsgrad)
    PETAL_LAUNCH((adamw_update_kernel<T, A, true>), grid, kBlockSize, 0, stream, param, grad, exp_avg, exp_avg_sq,
                 max_exp_avg_sq, n, s, vectorized);
  else
    PETAL_LAUNCH((adamw_update_kernel<T, A, false>), grid, kBlockSize, 0, stream, param, grad, exp_avg, exp_avg_sq,
                 max_exp_avg_sq, n, s, vectorized);
}

template <typename T, typename A>
static void launch_sgd(T* param, const T* grad, T* buffer, int64_t n, const SgdArgs& a, Stream stream) {
  const SgdScalars<A> s{static_cast<A>(a.lr), static_cast<A>(a.momentum), static_cast<A>(1.0 - a.dampening),
                        static_cast<A>(a.weight_decay)};
  const int mode = a.momentum == 0.0 ? 0 : (a.first_step ? 1 : 2);
  const bool vectorized = vector_aligned({param, grad, mode != 0 ? buffer : nullptr});
  const unsigned grid = grid_for(vectorized ? (n + Vector<T>::kSize - 1) / Vector<T>::kSize : n);
  if (mode == 0)
    PETAL_LAUNCH((sgd_update_kernel<T, A, 0>), grid, kBlockSize, 0, stream, param, grad, buffer, n, s, a.nesterov,
                 vectorized);
  else if (mode == 1)
    PETAL_LAUNCH((sgd_update_kernel<T, A, 1>), grid, kBlockSize, 0, stream, param, grad, buffer, n, s, a.nesterov,
                 vectorized);
  else
    PETAL_LAUNCH((sgd_update_kernel<T, A, 2>), grid, kBlockSize, 0, stream, param, grad, buffer, n, s, a.nesterov,
                 vectorized);
}

// ------------------------------------------------------------------ multi-tensor lists

constexpr int64_t kMultiTensorChunk = 65536;  // elements per block (a multiple of every Vector<T>::kSize)
constexpr int64_t kMaxChunksPerLaunch = 65535;

// One tensor of the device-side list.
template <typename T, typename A>
struct MultiTensorEntry {
  T* param;
  const T* grad;
  T* state0;
  T* state1;
  T* state2;
  int64_t n;
  AdamWScalars<A> adamw;  // this tensor's AdamW scalars (its own step count)
  int32_t first_step;     // SGD: buffer initialised from the gradient
  int32_t vectorized;     // every operand is 16-byte aligned
};

struct MultiTensorChunk {
  int64_t tensor;
  int64_t begin;
};

template <typename T, typename A, bool kAmsgrad>
static __global__ void adamw_multi_tensor_kernel(const MultiTensorEntry<T, A>* entries,
                                                 const MultiTensorChunk* chunks) {
  const MultiTensorChunk c = chunks[blockIdx.x];
  const MultiTensorEntry<T, A> e = entries[c.tensor];
  const int64_t end = c.begin + kMultiTensorChunk < e.n ? c.begin + kMultiTensorChunk : e.n;
  constexpr int kVec = Vector<T>::kSize;
  int64_t scalar_begin = c.begin;
  if (e.vectorized) {
    const int64_t nvec = (end - c.begin) / kVec;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      const int64_t i = c.begin + j * kVec;
      Vector<T> p = load_vector(e.param + i), g = load_vector(e.grad + i), m = load_vector(e.state0 + i),
                v = load_vector(e.state1 + i), vm{};
      if constexpr (kAmsgrad) vm = load_vector(e.state2 + i);
PETAL_UNROLL
      for (int k = 0; k < kVec; ++k) adamw_element<T, A, kAmsgrad>(p.v[k], g.v[k], m.v[k], v.v[k], vm.v[k], e.adamw);
      store_vector(e.param + i, p);
      store_vector(e.state0 + i, m);
      store_vector(e.state1 + i, v);
      if constexpr (kAmsgrad) store_vector(e.state2 + i, vm);
    }
    scalar_begin = c.begin + nvec * kVec;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
    T unused{};
    adamw_element<T, A, kAmsgrad>(e.param[i], e.grad[i], e.state0[i], e.state1[i], kAmsgrad ? e.state2[i] : unused,
                                  e.adamw);
  }
}

// One chunk of an SGD entry (kMomentum as in sgd_element).
template <typename T, typename A, int kMomentum>
__device__ inline void sgd_chunk(const MultiTensorEntry<T, A>& e, int64_t begin, int64_t end, const SgdScalars<A>& s,
                                 bool nesterov) {
  constexpr int kVec = Vector<T>::kSize;
  int64_t scalar_begin = begin;
  if (e.vectorized) {
    const int64_t nvec = (end - begin) / kVec;
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      const int64_t i = begin + j * kVec;
      Vector<T> p = load_vector(e.param + i), g = load_vector(e.grad + i), b{};
      if constexpr (kMomentum == 2) b = load_vector(e.state0 + i);
PETAL_UNROLL
      for (int k = 0; k < kVec; ++k) sgd_element<T, A, kMomentum>(p.v[k], g.v[k], b.v[k], s, nesterov);
      store_vector(e.param + i, p);
      if constexpr (kMomentum != 0) store_vector(e.state0 + i, b);
    }
    scalar_begin = begin + nvec * kVec;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
    T unused{};
    sgd_element<T, A, kMomentum>(e.param[i], e.grad[i], kMomentum != 0 ? e.state0[i] : unused, s, nesterov);
  }
}

template <typename T, typename A, bool kMomentum>
static __global__ void sgd_multi_tensor_kernel(const MultiTensorEntry<T, A>* entries, const MultiTensorChunk* chunks,
                                               SgdScalars<A> s, bool nesterov) {
  const MultiTensorChunk c = chunks[blockIdx.x];
  const MultiTensorEntry<T, A> e = entries[c.tensor];
  const int64_t end = c.begin + kMultiTensorChunk < e.n ? c.begin + kMultiTensorChunk : e.n;
  if constexpr (!kMomentum)
    sgd_chunk<T, A, 0>(e, c.begin, end, s, nesterov);
  else if (e.first_step)
    sgd_chunk<T, A, 1>(e, c.begin, end, s, nesterov);
  else
    sgd_chunk<T, A, 2>(e, c.begin, end, s, nesterov);
}

template <typename A>
static AdamWScalars<A> adamw_scalars(const AdamWArgs& a) {
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

// The device copy of a list: entries then chunks in one buffer, freed in stream order.
template <typename T, typename A>
class DeviceTensorList {
 public:
  DeviceTensorList(CudaBackend& backend, const OptimizerTensor* tensors, int64_t count, const AdamWArgs* adamw)
      : backend_(backend) {
    std::vector<MultiTensorEntry<T, A>> entries(static_cast<size_t>(count));
    std::vector<MultiTensorChunk> chunks;
    for (int64_t t = 0; t < count; ++t) {
      const OptimizerTensor& o = tensors[t];
      MultiTensorEntry<T, A>& e = entries[static_cast<size_t>(t)];
      std::memset(&e, 0, sizeof(e));  // padding too: the whole buffer is defined on the device
      e.param = static_cast<T*>(o.param);
      e.grad = static_cast<const T*>(o.grad);
      e.state0 = static_cast<T*>(o.state0);
      e.state1 = static_cast<T*>(o.state1);
      e.state2 = static_cast<T*>(o.state2);
      e.n = o.n;
      if (adamw != nullptr) {
        AdamWArgs a = *adamw;
        a.step = o.step;
        e.adamw = adamw_scalars<A>(a);
      }
      e.first_step = o.first_step ? 1 : 0;
      e.vectorized = vector_aligned({o.param, o.grad, o.state0, o.state1, o.state2}) ? 1 : 0;
      for (int64_t b = 0; b < o.n; b += kMultiTensorChunk) chunks.push_back({t, b});
    }
    chunk_count_ = static_cast<int64_t>(chunks.size());
    if (chunk_count_ == 0) return;
    const size_t entry_bytes = (entries.size() * sizeof(MultiTensorEntry<T, A>) + 15) / 16 * 16;
    const size_t chunk_bytes = chunks.size() * sizeof(MultiTensorChunk);
    std::vector<unsigned char> host(entry_bytes + chunk_bytes, 0);
    std::memcpy(host.data(), entries.data(), entries.size() * sizeof(MultiTensorEntry<T, A>));
    std::memcpy(host.data() + entry_bytes, chunks.data(), chunk_bytes);
    buffer_ = backend_.allocate(host.size());
    backend_.copy_from_host(buffer_, host.data(), host.size());
    entries_ = static_cast<const MultiTensorEntry<T, A>*>(buffer_);
    chunks_ = reinterpret_cast<const MultiTensorChunk*>(static_cast<unsigned char*>(buffer_) + entry_bytes);
  }
  ~DeviceTensorList() { backend_.deallocate(buffer_); }
  DeviceTensorList(const DeviceTensorList&) = delete;
  DeviceTensorList& operator=(const DeviceTensorList&) = delete;

  /// Calls launch(entries, chunks, blocks) for each run of at most kMaxChunksPerLaunch chunks.
  template <typename F>
  void for_each_launch(F&& launch) const {
    for (int64_t c = 0; c < chunk_count_; c += kMaxChunksPerLaunch)
      launch(entries_, chunks_ + c, static_cast<unsigned>(std::min(kMaxChunksPerLaunch, chunk_count_ - c)));
  }

 private:
  CudaBackend& backend_;
  void* buffer_ = nullptr;
  const MultiTensorEntry<T, A>* entries_ = nullptr;
  const MultiTensorChunk* chunks_ = nullptr;
  int64_t chunk_count_ = 0;
};

}  // namespace

void CudaBackend::adamw_update(void* param, const void* grad, void* exp_avg, void* exp_avg_sq, void* max_exp_avg_sq,
                               DType dtype, int64_t n, const AdamWArgs& args) {
  if (n == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_adamw<T, acc_t<T>>(static_cast<T*>(param), static_cast<const T*>(grad), static_cast<T*>(exp_avg),
                              static_cast<T*>(exp_avg_sq), static_cast<T*>(max_exp_avg_sq), n, args, stream);
  });
}

void CudaBackend::sgd_update(void* param, const void* grad, void* momentum_buffer, DType dtype, int64_t n,
                             const SgdArgs& args) {
  if (n == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_sgd<T, acc_t<T>>(static_cast<T*>(param), static_cast<const T*>(grad), static_cast<T*>(momentum_buffer), n,
                            args, stream);
  });
}

void CudaBackend::adamw_update_multi_tensor(const OptimizerTensor* tensors, int64_t count, DType dtype,
                                            const AdamWArgs& args) {
  if (count == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const DeviceTensorList<T, A> list(*this, tensors, count, &args);
    list.for_each_launch([&](const MultiTensorEntry<T, A>* entries, const MultiTensorChunk* chunks, unsigned blocks) {
      if (args.amsgrad)
        PETAL_LAUNCH((adamw_multi_tensor_kernel<T, A, true>), blocks, kBlockSize, 0, stream, entries, chunks);
      else
        PETAL_LAUNCH((adamw_multi_tensor_kernel<T, A, false>), blocks, kBlockSize, 0, stream, entries, chunks);
    });
  });
}

void CudaBackend::sgd_update_multi_tensor(const OptimizerTensor* tensors, int64_t count, DType dtype,
                                          const SgdArgs& args) {
  if (count == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const SgdScalars<A> s{static_cast<A>(args.lr), static_cast<A>(args.momentum),
                          static_cast<A>(1.0 - args.dampening), static_cast<A>(args.weight_decay)};
    const DeviceTensorList<T, A> list(*this, tensors, count, nullptr);
    list.for_each_launch([&](const MultiTensorEntry<T, A>* entries, const MultiTensorChunk* chunks, unsigned blocks) {
      if (args.momentum == 0.0)
        PETAL_LAUNCH((sgd_multi_tensor_kernel<T, A, false>), blocks, kBlockSize, 0, stream, entries, chunks, s,
                     args.nesterov);
      else
        PETAL_LAUNCH((sgd_multi_tensor_kernel<T, A, true>), blocks, kBlockSize, 0, stream, entries, chunks, s,
                     args.nesterov);
    });
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
