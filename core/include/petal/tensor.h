// Tensor: a reference-counted handle to a strided view (shape, strides, offset) of a
// shared storage block on one device, plus the autograd metadata of that view.
// Copying a Tensor copies the handle, not the data (as in PyTorch).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include <petal/device.h>
#include <petal/dtype.h>
#include <petal/error.h>

namespace petal {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  ///< "[4, 8]"

namespace kernels {
class Backend;
}

/// A block of device memory, freed by its backend when the last view goes away.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  /// Set for pinned (page-locked) host memory (device cpu): the accelerator backend that
  /// allocated it (the block comes from, and goes back to, the pinned-memory cache).
  kernels::Backend* pinned_by = nullptr;
  Storage(size_t nbytes, Device device);
  struct Pinned {};
  /// nbytes of pinned host memory (throws when no accelerator can pin: pinned_memory_available()).
  Storage(size_t nbytes, Pinned);
  struct Adopt {};
  /// Takes ownership of data, an allocation of backend_for(device).
  Storage(void* data, size_t nbytes, Device device, Adopt);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

namespace autograd {
class Node;
}

struct TensorOptions;
class Tensor;
struct ValuesIndices;

namespace detail {
/// The dtype a C++ element type stands for in data_ptr<T>() (uint16_t: bf16 or f16 bits).
template <typename T> struct CppDType;
template <> struct CppDType<float> { static bool matches(DType d) { return d == DType::f32; } static constexpr const char* name = "float"; };
template <> struct CppDType<double> { static bool matches(DType d) { return d == DType::f64; } static constexpr const char* name = "double"; };
template <> struct CppDType<int32_t> { static bool matches(DType d) { return d == DType::i32; } static constexpr const char* name = "int32_t"; };
template <> struct CppDType<int64_t> { static bool matches(DType d) { return d == DType::i64; } static constexpr const char* name = "int64_t"; };
template <> struct CppDType<uint8_t> { static bool matches(DType d) { return d == DType::u8; } static constexpr const char* name = "uint8_t"; };
template <> struct CppDType<bool> { static bool matches(DType d) { return d == DType::b8; } static constexpr const char* name = "bool"; };
template <> struct CppDType<uint16_t> {
  static bool matches(DType d) { return d == DType::bf16 || d == DType::f16; }
  static constexpr const char* name = "uint16_t";
};
template <typename T> struct CppDType<const T> : CppDType<T> {};
}  // namespace detail

/// The state behind a Tensor handle.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  bool requires_grad = false;
  bool retains_grad = false;                        // non-leaf that called retain_grad()
  std::shared_ptr<TensorImpl> grad;                 // accumulated gradient (leaves)
  std::shared_ptr<autograd::Node> grad_fn;          // producer (non-leaves)
  std::shared_ptr<autograd::Node> grad_accumulator; // lazily created for leaves
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& sizes() const { return shape(); }
  int64_t size(int64_t dim) const;  ///< negative dims count from the end
  const Shape& strides() const;
  int64_t stride(int64_t dim) const;
  int64_t storage_offset() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  /// Whether this tensor's storage is pinned (page-locked) host memory: pin_memory(),
  /// empty(shape, TensorOptions().pinned_memory(true)), DataLoaderOptions::pin_memory.
  bool is_pinned() const;
  size_t element_size() const { return dtype_size(dtype()); }
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }

  /// PyTorch's spelling of dtype().
  DType scalar_type() const { return dtype(); }
  /// dtype, device and requires_grad of this tensor as factory options.
  TensorOptions options() const;

  /// Pointer to the first element of this view (device memory for cuda tensors).
  void* data_ptr() const;
  /// Typed pointer to the first element, as libtorch's data_ptr<T>(): throws petal::Error
  /// naming both types when T is not the tensor's element type (float for float32, double,
  /// int32_t, int64_t, uint8_t, bool; uint16_t for the bits of bfloat16/float16).
  template <typename T>
  T* data_ptr() const {
    check_element_type(detail::CppDType<T>::matches(dtype()), detail::CppDType<T>::name, "data_ptr");
    return static_cast<T*>(data_ptr());
  }
  /// The same check as data_ptr<T>().
  template <typename T>
  T* data() const {
    check_element_type(detail::CppDType<T>::matches(dtype()), detail::CppDType<T>::name, "data");
    return static_cast<T*>(data_ptr());
  }

  // ---- views (share storage; differentiable)
  Tensor view(const Shape& shape) const;     ///< requires compatible strides; one -1 allowed
  Tensor reshape(const Shape& shape) const;  ///< view when possible, copy otherwise
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  ///< transpose of a 2-D tensor
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor operator[](int64_t index) const { return select(0, index); }
  Tensor expand(const Shape& shape) const;  ///< -1 keeps a size
  Tensor expand_as(const Tensor& other) const { return expand(other.shape()); }
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;

  // ---- copies
  Tensor contiguous() const;  ///< this if already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  /// non_blocking (PyTorch's): a copy from pinned host memory (is_pinned(), contiguous) to a
  /// cuda or sim device returns before the data has arrived: it runs on the device's copy
  /// stream, overlapping with earlier device work, and the device's later ops wait for it; the
  /// source stays alive until it is done, so it may be dropped at once. Any other copy is
  /// synchronous, as without non_blocking (devices.md, "Pinned memory").
  Tensor to(Device device, DType dtype, bool non_blocking = false) const;
  Tensor to(Device device, bool non_blocking) const;
  /// To options' device and dtype (requires_grad in options is ignored, as in libtorch).
  Tensor to(const TensorOptions& options, bool non_blocking = false) const;
  /// A copy of this cpu tensor in pinned (page-locked) host memory, contiguous (this when
  /// already pinned); what fast non_blocking host-to-device copies read. Throws on a tensor
  /// that is not on the cpu, and when no accelerator (cuda, sim) is available to pin for.
  Tensor pin_memory() const;
  Tensor cpu() const { return to(kCPU); }
  Tensor detach() const;  ///< same storage, no autograd history

  /// Value of a one-element tensor.
  template <typename T = double>
  T item() const { return static_cast<T>(item_double()); }
  double item_double() const;
  /// All elements, converted to T, in row-major order (copies to host).
  template <typename T>
  std::vector<T> tolist() const;

  // ---- in-place (not differentiable; throw on tensors that require grad while grad is on)
  Tensor& zero_();
  Tensor& fill_(double value);
  /// Broadcasts src, converts dtype, crosses devices; non_blocking as in to().
  Tensor& copy_(const Tensor& src, bool non_blocking = false);
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other) { return add_(other, -1.0); }
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(double value) { return mul_(1.0 / value); }
  Tensor& div_(const Tensor& other);
  Tensor& sub_(double value) { return add_(-value); }
  Tensor& clamp_(double lo, double hi);

  // Compound assignment (libtorch's operators): in place on this tensor's storage, refused
  // on a tensor that requires grad while grad mode is on (as add_ is). The result of the op
  // must have this tensor's shape (the other operand broadcasts to it); dtypes convert to
  // this tensor's dtype. x /= s divides (no reciprocal).
  Tensor& operator+=(const Tensor& other);
  Tensor& operator-=(const Tensor& other);
  Tensor& operator*=(const Tensor& other);
  Tensor& operator/=(const Tensor& other);
  Tensor& operator+=(double value);
  Tensor& operator-=(double value);
  Tensor& operator*=(double value);
  Tensor& operator/=(double value);

  // ---- method forms of the ops in ops.h (libtorch's spelling; they call the free functions)
  Tensor add(const Tensor& other, double alpha = 1.0) const;
  Tensor add(double other) const;
  Tensor sub(const Tensor& other, double alpha = 1.0) const;
  Tensor sub(double other) const;
  Tensor mul(const Tensor& other) const;
  Tensor mul(double other) const;
  Tensor div(const Tensor& other) const;
  Tensor div(double other) const;
  Tensor pow(double exponent) const;
  Tensor pow(const Tensor& exponent) const;
  Tensor maximum(const Tensor& other) const;
  Tensor minimum(const Tensor& other) const;
  Tensor eq(const Tensor& other) const;
  Tensor ne(const Tensor& other) const;
  Tensor lt(const Tensor& other) const;
  Tensor le(const Tensor& other) const;
  Tensor gt(const Tensor& other) const;
  Tensor ge(const Tensor& other) const;
  Tensor eq(double other) const;
  Tensor ne(double other) const;
  Tensor lt(double other) const;
  Tensor le(double other) const;
  Tensor gt(double other) const;
  Tensor ge(double other) const;
  Tensor neg() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor rsqrt() const;
  Tensor abs() const;
  Tensor sin() const;
  Tensor cos() const;
  Tensor tanh() const;
  Tensor sigmoid() const;
  Tensor relu() const;
  Tensor gelu(bool tanh_approximation = false) const;
  Tensor square() const;
  Tensor clamp(double lo, double hi) const;
  Tensor clamp_min(double lo) const;
  Tensor clamp_max(double hi) const;
  Tensor sum() const;
  Tensor sum(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor sum(int64_t dim, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const std::vector<int64_t>& dims, bool keepdim = false) const;
  Tensor mean(int64_t dim, bool keepdim = false) const;
  Tensor var(const std::vector<int64_t>& dims, int64_t correction = 1, bool keepdim = false) const;
  Tensor max() const;
  /// (values, indices) over dim, as torch.max(x, dim).
  ValuesIndices max(int64_t dim, bool keepdim = false) const;
  Tensor min() const;
  ValuesIndices min(int64_t dim, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor argmin(int64_t dim, bool keepdim = false) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor matmul(const Tensor& other) const;
  /// matmul of two 2-D tensors (torch.mm); throws on other ranks.
  Tensor mm(const Tensor& other) const;
  Tensor index_select(int64_t dim, const Tensor& index) const;
  Tensor gather(int64_t dim, const Tensor& index) const;
  bool allclose(const Tensor& other, double rtol = 1e-5, double atol = 1e-8) const;

  // ---- autograd
  Tensor& requires_grad_(bool requires = true);
  bool requires_grad() const;
  bool is_leaf() const;
  /// Accumulated gradient (undefined until a backward reaches this leaf). On a non-leaf
  /// that did not call retain_grad() it is undefined and a warning is issued (once per
  /// process, as PyTorch warns), since backward never fills it.
  Tensor grad() const;
  /// Makes backward store this non-leaf tensor's gradient in grad() (no-op on leaves).
  void retain_grad() const;
  bool retains_grad() const;
  void set_grad(const Tensor& g);
  void zero_grad();  ///< drops the accumulated gradient
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  /// Runs backpropagation from this tensor. Without a gradient, this must be a scalar.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  // ---- misc
  std::string to_string() const;  ///< PyTorch-like: values, then dtype/device if not default
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  void check_defined(const char* what) const;
  void check_element_type(bool matches, const char* cpp_type, const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

/// What max(x, dim) / min(x, dim) return: (values, indices) as libtorch's std::tuple, so
/// `auto [v, i] = max(x, 1)`, `std::get<1>(max(x, 1))` and `std::tie(v, i) = max(x, 1)`
/// work; it also converts to the values tensor (`Tensor v = max(x, 1)`). Indices are int64
/// (the first extremum); gradients flow through the values.
struct ValuesIndices : std::tuple<Tensor, Tensor> {
  using std::tuple<Tensor, Tensor>::tuple;
  const Tensor& values() const { return std::get<0>(*this); }
  const Tensor& indices() const { return std::get<1>(*this); }
  operator Tensor() const { return values(); }  // NOLINT(google-explicit-constructor)
};

// ---- factories (options: dtype, device, requires_grad)
/// Factory options, torch::TensorOptions-shaped: TensorOptions().dtype(kFloat64).device("sim")
/// .requires_grad(true) (each builder returns a modified copy); the getters are the same
/// names without an argument. Implicit from a DType or a Device.
struct TensorOptions {
  TensorOptions() = default;
  TensorOptions(DType d) : dtype_(d) {}  // NOLINT
  TensorOptions(Device dev) : device_(dev) {}  // NOLINT
  TensorOptions(DeviceType dev) : device_(dev) {}  // NOLINT
  TensorOptions(const char* dev) : device_(dev) {}  // NOLINT
  TensorOptions(DType d, Device dev) : dtype_(d), device_(dev) {}

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool requires_grad() const { return requires_grad_; }
  /// cpu tensors in pinned host memory (libtorch's pinned_memory option).
  bool pinned_memory() const { return pinned_memory_; }
  TensorOptions pinned_memory(bool p) const { TensorOptions o = *this; o.pinned_memory_ = p; return o; }
  TensorOptions dtype(DType d) const { TensorOptions o = *this; o.dtype_ = d; return o; }
  TensorOptions device(Device d) const { TensorOptions o = *this; o.device_ = d; return o; }
  TensorOptions device(DeviceType type, int index) const { return device(Device(type, index)); }
  TensorOptions requires_grad(bool r) const { TensorOptions o = *this; o.requires_grad_ = r; return o; }

  // Older in-place spellings.
  TensorOptions& with_dtype(DType d) { dtype_ = d; return *this; }
  TensorOptions& with_device(Device d) { device_ = d; return *this; }
  TensorOptions& with_requires_grad(bool r = true) { requires_grad_ = r; return *this; }

 private:
  DType dtype_ = DType::f32;
  Device device_ = kCPU;
  bool requires_grad_ = false;
  bool pinned_memory_ = false;
};
/// libtorch's shorthands: zeros({2}, dtype(kFloat64).requires_grad(true)).
inline TensorOptions dtype(DType d) { return TensorOptions(d); }
inline TensorOptions device(Device d) { return TensorOptions(d); }
inline TensorOptions requires_grad(bool r = true) { return TensorOptions().requires_grad(r); }

Tensor empty(const Shape& shape, TensorOptions opts = {});
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
/// Values start, start+step, ... below end (int64 unless opts names a dtype).
Tensor arange(double start, double end, double step = 1.0, TensorOptions opts = TensorOptions(DType::i64));
Tensor arange(int64_t end, TensorOptions opts = TensorOptions(DType::i64));
Tensor linspace(double start, double end, int64_t steps, TensorOptions opts = {});
/// Standard normal / uniform [0,1) / integers in [low, high) from the global generator.
Tensor randn(const Shape& shape, TensorOptions opts = {});
Tensor rand(const Shape& shape, TensorOptions opts = {});
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opts = TensorOptions(DType::i64));
Tensor randn_like(const Tensor& t);
Tensor rand_like(const Tensor& t);
/// From host values; shape defaults to 1-D.
Tensor tensor(const std::vector<float>& values, const Shape& shape = {}, TensorOptions opts = {});
Tensor tensor(const std::vector<double>& values, const Shape& shape, TensorOptions opts);
Tensor tensor(const std::vector<int64_t>& values, const Shape& shape = {}, TensorOptions opts = TensorOptions(DType::i64));
Tensor tensor(std::initializer_list<float> values, const Shape& shape = {}, TensorOptions opts = {});
/// A 0-dim tensor holding value.
Tensor scalar_tensor(double value, TensorOptions opts = {});

// ---- pinned host memory (core/src/pinned_memory.cpp)
/// Whether host memory can be pinned: the cuda backend is usable (cudaHostAlloc) or the
/// simulator is built (host memory it treats as pinned). Without either, pin_memory() throws
/// and DataLoaderOptions::pin_memory gives ordinary batches (with a warning).
bool pinned_memory_available();
/// Pinned blocks are cached (pinning is slow): a freed block is reused by the next request of
/// up to its size. The cache keeps at most 1 GiB of unused blocks.
struct PinnedMemoryStats {
  int64_t allocations = 0;  ///< blocks pinned by the backend since the process started
  int64_t reuses = 0;       ///< requests served from the cache
  size_t in_use_bytes = 0;  ///< held by live storages
  size_t cached_bytes = 0;  ///< free, kept for reuse
};
PinnedMemoryStats pinned_memory_stats();
/// Gives the cached (unused) pinned blocks back to the backend.
void empty_pinned_memory_cache();

}  // namespace petal

// Structured bindings of ValuesIndices: auto [values, indices] = max(x, 1).
template <>
struct std::tuple_size<petal::ValuesIndices> : std::integral_constant<size_t, 2> {};
template <size_t I>
struct std::tuple_element<I, petal::ValuesIndices> : std::tuple_element<I, std::tuple<petal::Tensor, petal::Tensor>> {};
