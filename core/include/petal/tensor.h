// Tensor: a reference-counted handle to a strided view (shape, strides, offset) of a
// shared storage block on one device, plus the autograd metadata of that view.
// Copying a Tensor copies the handle, not the data (as in PyTorch).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <petal/device.h>
#include <petal/dtype.h>
#include <petal/error.h>

namespace petal {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  ///< "[4, 8]"

/// A block of device memory, freed by its backend when the last view goes away.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

namespace autograd {
class Node;
}

/// The state behind a Tensor handle.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  bool requires_grad = false;
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
  size_t element_size() const { return dtype_size(dtype()); }
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }

  /// Pointer to the first element of this view (device memory for cuda tensors).
  void* data_ptr() const;
  template <typename T>
  T* data() const { return static_cast<T*>(data_ptr()); }

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
  Tensor to(Device device, DType dtype) const;
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
  Tensor& copy_(const Tensor& src);  ///< broadcasts src, converts dtype, crosses devices
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other) { return add_(other, -1.0); }
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(double value) { return mul_(1.0 / value); }
  Tensor& clamp_(double lo, double hi);

  // ---- autograd
  Tensor& requires_grad_(bool requires = true);
  bool requires_grad() const;
  bool is_leaf() const;
  /// Accumulated gradient (undefined until a backward reaches this leaf).
  Tensor grad() const;
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
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- factories (options: dtype and device)
struct TensorOptions {
  DType dtype = DType::f32;
  Device device = kCPU;
  bool requires_grad = false;
  TensorOptions() = default;
  TensorOptions(DType d) : dtype(d) {}  // NOLINT
  TensorOptions(Device dev) : device(dev) {}  // NOLINT
  TensorOptions(DType d, Device dev) : dtype(d), device(dev) {}
  TensorOptions& with_dtype(DType d) { dtype = d; return *this; }
  TensorOptions& with_device(Device d) { device = d; return *this; }
  TensorOptions& with_requires_grad(bool r = true) { requires_grad = r; return *this; }
};

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

}  // namespace petal
