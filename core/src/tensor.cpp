// Tensor metadata, views (each view op records its backward), copies, device/dtype
// conversion and the in-place ops. Views share storage; strides are in elements.
#include <petal/autograd.h>
#include <petal/ops.h>
#include <petal/tensor.h>
#include <petal/warning.h>

#include <algorithm>
#include <numeric>

#include "deferred_checks.h"
#include "internal.h"

namespace petal {

using detail::wrap_dim;

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

namespace detail {
void release_pinned(void* data);  // pinned_memory.cpp
}

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev) {
  data = kernels::backend_for(dev).allocate(n == 0 ? 1 : n);
}
Storage::Storage(void* adopted, size_t n, Device dev, Adopt) : data(adopted), nbytes(n), device(dev) {}
Storage::~Storage() {
  if (data) {
    try {
      if (pinned_by != nullptr)
        detail::release_pinned(data);
      else
        kernels::backend_for(device).deallocate(data);
    } catch (...) {
    }
  }
}

void Tensor::check_defined(const char* what) const {
  PETAL_CHECK(impl_ != nullptr, what, ": called on an undefined tensor");
}

const Shape& Tensor::shape() const { check_defined("shape"); return impl_->shape; }
const Shape& Tensor::strides() const { check_defined("strides"); return impl_->strides; }
int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim("size", d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim("stride", d, dim())]; }
int64_t Tensor::storage_offset() const { check_defined("storage_offset"); return impl_->offset; }
int64_t Tensor::numel() const { return detail::shape_numel(shape()); }
DType Tensor::dtype() const { check_defined("dtype"); return impl_->dtype; }
Device Tensor::device() const { check_defined("device"); return impl_->storage->device; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (impl_->shape[i] != 1 && impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

TensorOptions Tensor::options() const {
  check_defined("options");
  return TensorOptions(dtype(), device()).requires_grad(requires_grad());
}

void Tensor::check_element_type(bool matches, const char* cpp_type, const char* what) const {
  check_defined(what);
  if (matches) return;
  const char* want = "?";
  switch (dtype()) {
    case DType::f32: want = "float"; break;
    case DType::f64: want = "double"; break;
    case DType::bf16: case DType::f16: want = "uint16_t"; break;
    case DType::i32: want = "int32_t"; break;
    case DType::i64: want = "int64_t"; break;
    case DType::u8: want = "uint8_t"; break;
    case DType::b8: want = "bool"; break;
  }
  PETAL_FAIL(what, "<", cpp_type, ">: the tensor holds ", dtype_name(dtype()), " elements (shape ", shape_str(shape()),
             "), not ", cpp_type, "; use ", what, "<", want, ">() or convert it with .to(dtype) first");
}

void* Tensor::data_ptr() const {
  check_defined("data_ptr");
  return static_cast<char*>(impl_->storage->data) + impl_->offset * static_cast<int64_t>(element_size());
}

// ---------------------------------------------------------------- views

Tensor Tensor::view(const Shape& new_shape_in) const {
  check_defined("view");
  Shape new_shape = new_shape_in;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      PETAL_CHECK(infer < 0, "view: only one dimension can be -1, got ", shape_str(new_shape_in));
      infer = static_cast<int64_t>(i);
    } else {
      PETAL_CHECK(new_shape[i] >= 0, "view: invalid size in ", shape_str(new_shape_in));
      known *= new_shape[i];
    }
  }
  if (infer >= 0) {
    PETAL_CHECK(known != 0 && numel() % known == 0, "view: shape ", shape_str(new_shape_in),
                " is invalid for input of size ", numel(), " (shape ", shape_str(shape()), ")");
    new_shape[infer] = numel() / known;
  }
  PETAL_CHECK(detail::shape_numel(new_shape) == numel(), "view: shape ", shape_str(new_shape_in),
              " is invalid for input of size ", numel(), " (shape ", shape_str(shape()), ")");
  // Compute strides for the new shape if the old geometry allows it (chunks of
  // dims that are mutually contiguous can be re-split freely).
  Shape new_strides(new_shape.size());
  const Shape& os = shape();
  const Shape& ost = strides();
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = ost.empty() ? 1 : ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  bool ok = true;
  for (int64_t tensor_d = static_cast<int64_t>(os.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= os[tensor_d];
    if (tensor_d == 0 || (os[tensor_d - 1] != 1 && ost[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        new_strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) { ok = false; break; }
      if (tensor_d > 0) {
        chunk_base_stride = ost[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (ok && view_d != -1) {
    // remaining leading 1-sized dims
    while (view_d >= 0) {
      PETAL_CHECK(new_shape[view_d] == 1, "view: internal stride error");
      new_strides[view_d] = 1;
      --view_d;
    }
  }
  if (numel() == 0) new_strides = detail::contiguous_strides(new_shape), ok = true;
  PETAL_CHECK(ok, "view: size ", shape_str(new_shape_in), " is not compatible with input of shape ",
              shape_str(shape()), " and strides ", shape_str(strides()), "; use reshape() (it copies)");
  Tensor out = detail::make_view(*this, new_shape, new_strides, storage_offset());
  Shape in_shape = shape();
  autograd::record("view", out, {*this}, [in_shape](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  check_defined("reshape");
  try {
    return view(new_shape);
  } catch (const Error&) {
    return contiguous().view(new_shape);
  }
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim("flatten", start_dim, dim()), e = wrap_dim("flatten", end_dim, dim());
  PETAL_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape ns;
  for (int64_t i = 0; i < s; ++i) ns.push_back(size(i));
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= size(i);
  ns.push_back(m);
  for (int64_t i = e + 1; i < dim(); ++i) ns.push_back(size(i));
  return reshape(ns);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  check_defined("permute");
  PETAL_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(),
              " dims for a tensor of shape ", shape_str(shape()));
  Shape ns(dims.size()), nst(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim("permute", dims[i], dim());
    PETAL_CHECK(inverse[d] < 0, "permute: dim ", d, " repeated in permutation");
    inverse[d] = static_cast<int64_t>(i);
    ns[i] = shape()[d];
    nst[i] = strides()[d];
  }
  Tensor out = detail::make_view(*this, ns, nst, storage_offset());
  autograd::record("permute", out, {*this}, [inverse](const Tensor& g) {
    return std::vector<Tensor>{g.permute(inverse)};
  });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  check_defined("transpose");
  if (dim() == 0) return *this;
  int64_t a = wrap_dim("transpose", d0, dim()), b = wrap_dim("transpose", d1, dim());
  std::vector<int64_t> p(dim());
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[a], p[b]);
  return permute(p);
}

Tensor Tensor::t() const {
  PETAL_CHECK(dim() <= 2, "t: expects a tensor with <= 2 dims, got shape ", shape_str(shape()));
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  check_defined("slice");
  d = wrap_dim("slice", d, dim());
  PETAL_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t n = size(d);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape ns = shape(), nst = strides();
  ns[d] = (end - start + step - 1) / step;
  nst[d] = strides()[d] * step;
  Tensor out = detail::make_view(*this, ns, nst, storage_offset() + start * strides()[d]);
  Shape in_shape = shape();
  autograd::record("slice", out, {*this}, [in_shape, d, start, end, step](const Tensor& g) {
    Tensor gi = zeros(in_shape, TensorOptions(g.dtype(), g.device()));
    gi.slice(d, start, end, step).copy_(g);
    return std::vector<Tensor>{gi};
  });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  check_defined("narrow");
  int64_t dd = wrap_dim("narrow", d, dim());
  if (start < 0) start += size(dd);
  PETAL_CHECK(start >= 0 && length >= 0 && start + length <= size(dd), "narrow: start ", start,
              " + length ", length, " exceeds dim ", dd, " of size ", size(dd), " (shape ", shape_str(shape()), ")");
  return slice(dd, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  check_defined("select");
  d = wrap_dim("select", d, dim());
  int64_t n = size(d);
  PETAL_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d,
              " of size ", n, " (shape ", shape_str(shape()), ")");
  if (index < 0) index += n;
  Shape ns = shape(), nst = strides();
  ns.erase(ns.begin() + d);
  nst.erase(nst.begin() + d);
  Tensor out = detail::make_view(*this, ns, nst, storage_offset() + index * strides()[d]);
  Shape in_shape = shape();
  autograd::record("select", out, {*this}, [in_shape, d, index](const Tensor& g) {
    Tensor gi = zeros(in_shape, TensorOptions(g.dtype(), g.device()));
    gi.select(d, index).copy_(g);
    return std::vector<Tensor>{gi};
  });
  return out;
}

Tensor Tensor::expand(const Shape& target) const {
  check_defined("expand");
  PETAL_CHECK(target.size() >= shape().size(), "expand: cannot expand shape ", shape_str(shape()),
              " to ", shape_str(target), " (fewer dims)");
  size_t lead = target.size() - shape().size();
  Shape ns(target.size()), nst(target.size());
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      PETAL_CHECK(target[i] >= 0, "expand: size -1 not allowed in new leading dim, target ", shape_str(target));
      ns[i] = target[i];
      nst[i] = 0;
    } else {
      int64_t cur = shape()[i - lead];
      int64_t want = target[i] == -1 ? cur : target[i];
      PETAL_CHECK(cur == want || cur == 1, "expand: the expanded size ", want, " must match the existing size ", cur,
                  " at dim ", i, " (shape ", shape_str(shape()), " to ", shape_str(target), ")");
      ns[i] = want;
      nst[i] = (cur == want) ? strides()[i - lead] : 0;
    }
  }
  Tensor out = detail::make_view(*this, ns, nst, storage_offset());
  Shape in_shape = shape();
  autograd::record("expand", out, {*this}, [in_shape](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, in_shape)};
  });
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  check_defined("unsqueeze");
  d = wrap_dim("unsqueeze", d, dim() + 1);
  Shape ns = shape();
  ns.insert(ns.begin() + d, 1);
  return view(ns);
}

Tensor Tensor::squeeze(int64_t d) const {
  check_defined("squeeze");
  if (dim() == 0) return *this;
  d = wrap_dim("squeeze", d, dim());
  if (size(d) != 1) return *this;
  Shape ns = shape();
  ns.erase(ns.begin() + d);
  return view(ns);
}

Tensor Tensor::squeeze() const {
  Shape ns;
  for (auto s : shape())
    if (s != 1) ns.push_back(s);
  return view(ns);
}

// ---------------------------------------------------------------- copies

Tensor Tensor::contiguous() const {
  check_defined("contiguous");
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  check_defined("clone");
  Tensor out = empty(shape(), TensorOptions(dtype(), device()));
  {
    NoGradGuard ng;
    out.copy_(*this);
  }
  autograd::record("clone", out, {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

namespace {
/// A new contiguous device copy of contiguous pinned host tensor t, uploaded without waiting
/// (Backend::allocate_copy_from_host_async; t's storage is held until the copy is done), or
/// an undefined tensor when the backend has no asynchronous copies.
Tensor upload_async(const Tensor& t, Device dev) {
  kernels::Backend& be = kernels::backend_for(dev);
  const size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
  const void* src = t.data_ptr();
  std::shared_ptr<const void> keep_alive(t.impl()->storage, src);  // owns the pinned storage
  void* p = be.allocate_copy_from_host_async(src, nbytes, std::move(keep_alive));
  if (p == nullptr) return Tensor();
  auto impl = std::make_shared<TensorImpl>();
  try {
    impl->storage = std::make_shared<Storage>(p, nbytes, dev, Storage::Adopt{});
  } catch (...) {
    be.deallocate(p);  // ordered after the copy on the device
    throw;
  }
  impl->shape = t.shape();
  impl->strides = detail::contiguous_strides(t.shape());
  impl->dtype = t.dtype();
  return Tensor(impl);
}
}  // namespace

Tensor Tensor::to(Device dev, DType dt, bool non_blocking) const {
  check_defined("to");
  if (dev == device() && dt == dtype()) return *this;
  Tensor out;
  {
    NoGradGuard ng;
    if (non_blocking && !dev.is_cpu() && device().is_cpu() && is_pinned() && is_contiguous() && numel() > 0) {
      out = upload_async(*this, dev);
      if (out.defined() && dt != dtype()) out = out.to(dt);  // converted on the device, after the copy
    }
    if (!out.defined()) {
      out = empty(shape(), TensorOptions(dt, dev));
      out.copy_(*this);
    }
  }
  Device src_dev = device();
  DType src_dt = dtype();
  if (is_floating(dt) && is_floating(src_dt)) {
    autograd::record("to", out, {*this}, [src_dev, src_dt](const Tensor& g) {
      return std::vector<Tensor>{g.to(src_dev, src_dt)};
    });
  }
  return out;
}
Tensor Tensor::to(Device dev) const { return to(dev, dtype()); }
Tensor Tensor::to(Device dev, bool non_blocking) const { return to(dev, dtype(), non_blocking); }
Tensor Tensor::to(const TensorOptions& options, bool non_blocking) const {
  return to(options.device(), options.dtype(), non_blocking);
}
Tensor Tensor::to(DType dt) const { return to(device(), dt); }

Tensor Tensor::detach() const {
  check_defined("detach");
  return detail::make_view(*this, shape(), strides(), storage_offset());
}

double Tensor::item_double() const {
  check_defined("item");
  PETAL_CHECK(numel() == 1, "item: only one-element tensors can be converted to a scalar, got shape ",
              shape_str(shape()));
  Tensor c = detach().to(kCPU, DType::f64).contiguous();
  return *c.data<double>();
}

template <typename T>
std::vector<T> Tensor::tolist() const {
  check_defined("tolist");
  Tensor c = detach().to(kCPU, DType::f64).contiguous();
  const double* p = c.data<double>();
  std::vector<T> r(static_cast<size_t>(c.numel()));
  for (size_t i = 0; i < r.size(); ++i) r[i] = static_cast<T>(p[i]);
  return r;
}
template std::vector<float> Tensor::tolist<float>() const;
template std::vector<double> Tensor::tolist<double>() const;
template std::vector<int64_t> Tensor::tolist<int64_t>() const;
template std::vector<int32_t> Tensor::tolist<int32_t>() const;
template std::vector<bool> Tensor::tolist<bool>() const;
template std::vector<uint8_t> Tensor::tolist<uint8_t>() const;

// ---------------------------------------------------------------- in-place

Tensor& Tensor::copy_(const Tensor& src_in, bool non_blocking) {
  check_defined("copy_");
  detail::check_defined("copy_", src_in);
  detail::check_inplace("copy_", *this);
  Shape bs = detail::broadcast_shapes("copy_", shape(), src_in.shape());
  PETAL_CHECK(bs == shape(), "copy_: source of shape ", shape_str(src_in.shape()),
              " cannot be broadcast to destination shape ", shape_str(shape()));
  if (numel() == 0) return *this;
  Tensor src = src_in;
  if (src.device() != device()) {
    // Cross-device: stage through a contiguous host buffer of the source dtype.
    Tensor s = src.detach().contiguous();
    if (non_blocking && s.device().is_cpu() && s.is_pinned()) {
      const size_t nbytes = static_cast<size_t>(s.numel()) * s.element_size();
      if (s.shape() == shape() && s.dtype() == dtype() && is_contiguous()) {  // straight into this
        std::shared_ptr<const void> keep_alive(s.impl()->storage, s.data_ptr());
        if (detail::backend_of(*this).copy_from_host_async(data_ptr(), s.data_ptr(), nbytes, std::move(keep_alive)))
          return *this;
      } else {
        Tensor staged = upload_async(s, device());  // then broadcast / convert / stride on the device
        if (staged.defined()) {
          detail::backend_of(*this).copy(detail::to_view(*this), detail::to_view(staged, shape()));
          return *this;
        }
      }
    }
    Tensor staged = empty(s.shape(), TensorOptions(s.dtype(), device()));
    size_t nbytes = static_cast<size_t>(s.numel()) * s.element_size();
    if (s.device().is_cpu()) {
      detail::backend_of(staged).copy_from_host(staged.data_ptr(), s.data_ptr(), nbytes);
    } else if (device().is_cpu()) {
      detail::backend_of(s).copy_to_host(staged.data_ptr(), s.data_ptr(), nbytes);
    } else {
      Tensor h = empty(s.shape(), TensorOptions(s.dtype(), kCPU));
      detail::backend_of(s).copy_to_host(h.data_ptr(), s.data_ptr(), nbytes);
      detail::backend_of(staged).copy_from_host(staged.data_ptr(), h.data_ptr(), nbytes);
    }
    src = staged;
  }
  detail::backend_of(*this).copy(detail::to_view(*this), detail::to_view(src, shape()));
  // A device-to-host copy is a synchronization: report what device-side checks found.
  if (src_in.device() != device() && !src_in.device().is_cpu() && detail::has_deferred_checks())
    detail::run_deferred_checks();
  return *this;
}

Tensor& Tensor::fill_(double value) {
  check_defined("fill_");
  detail::check_inplace("fill_", *this);
  if (numel() > 0) detail::backend_of(*this).fill(detail::to_view(*this), value);
  return *this;
}
Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  detail::check_inplace("add_", *this);
  NoGradGuard ng;
  return copy_(petal::add(*this, other, alpha));
}
Tensor& Tensor::add_(double value) {
  detail::check_inplace("add_", *this);
  NoGradGuard ng;
  return copy_(petal::add(*this, value));
}
Tensor& Tensor::mul_(const Tensor& other) {
  detail::check_inplace("mul_", *this);
  NoGradGuard ng;
  return copy_(petal::mul(*this, other));
}
Tensor& Tensor::mul_(double value) {
  detail::check_inplace("mul_", *this);
  NoGradGuard ng;
  return copy_(petal::mul(*this, value));
}
Tensor& Tensor::div_(const Tensor& other) {
  detail::check_inplace("div_", *this);
  NoGradGuard ng;
  return copy_(petal::div(*this, other));
}

namespace {
// x op= y: computes out of place without a graph, then writes into x's storage.
Tensor& assign_result(const char* op, Tensor& self, const Tensor& result) {
  PETAL_CHECK(result.shape() == self.shape(), op, ": the result has shape ", shape_str(result.shape()),
              " but is written into a tensor of shape ", shape_str(self.shape()),
              " (the right-hand side must broadcast to the left-hand side)");
  return self.copy_(result);
}
}  // namespace

#define PETAL_COMPOUND(OP, NAME, FN)                                   \
  Tensor& Tensor::operator OP(const Tensor& other) {                  \
    check_defined(NAME);                                              \
    detail::check_defined(NAME, other);                               \
    detail::check_inplace(NAME, *this);                               \
    NoGradGuard ng;                                                   \
    return assign_result(NAME, *this, FN(*this, other));              \
  }                                                                   \
  Tensor& Tensor::operator OP(double value) {                         \
    check_defined(NAME);                                              \
    detail::check_inplace(NAME, *this);                               \
    NoGradGuard ng;                                                   \
    return assign_result(NAME, *this, FN(*this, value));              \
  }
PETAL_COMPOUND(+=, "operator+=", petal::add)
PETAL_COMPOUND(-=, "operator-=", petal::sub)
PETAL_COMPOUND(*=, "operator*=", petal::mul)
PETAL_COMPOUND(/=, "operator/=", petal::div)
#undef PETAL_COMPOUND

Tensor& Tensor::clamp_(double lo, double hi) {
  detail::check_inplace("clamp_", *this);
  NoGradGuard ng;
  return copy_(petal::clamp(*this, lo, hi));
}

// ---------------------------------------------------------------- autograd accessors

Tensor& Tensor::requires_grad_(bool r) {
  check_defined("requires_grad_");
  PETAL_CHECK(!r || is_floating(dtype()), "requires_grad_: only floating point tensors can require gradients, got ",
              dtype_name(dtype()));
  PETAL_CHECK(impl_->grad_fn == nullptr || r, "requires_grad_: can only change requires_grad of leaf tensors");
  impl_->requires_grad = r;
  return *this;
}
bool Tensor::requires_grad() const { check_defined("requires_grad"); return impl_->requires_grad; }
bool Tensor::is_leaf() const { check_defined("is_leaf"); return impl_->grad_fn == nullptr; }
Tensor Tensor::grad() const {
  check_defined("grad");
  if (impl_->grad_fn != nullptr && !impl_->retains_grad) {
    warn_once("grad of a non-leaf",
      detail::str_cat("grad(): the gradient of a non-leaf tensor (shape ", shape_str(shape()), ", made by ",
                           impl_->grad_fn->name(), ") is being read; backward does not store it, so it is "
                           "undefined. Call retain_grad() on the tensor before backward to keep it, or read "
                           "the grad() of the leaf tensors (parameters). This warning is shown once."));
  }
  return impl_->grad ? Tensor(impl_->grad) : Tensor();
}
void Tensor::retain_grad() const {
  check_defined("retain_grad");
  PETAL_CHECK(requires_grad(), "retain_grad: the tensor (shape ", shape_str(shape()),
              ") does not require grad, so it has no gradient to retain");
  if (impl_->grad_fn == nullptr || impl_->retains_grad) return;  // leaves keep theirs anyway
  impl_->retains_grad = true;
  impl_->grad_fn->retained.push_back(impl_);
}
bool Tensor::retains_grad() const { check_defined("retains_grad"); return impl_->retains_grad; }
void Tensor::set_grad(const Tensor& g) {
  check_defined("set_grad");
  if (!g.defined()) { impl_->grad.reset(); return; }
  PETAL_CHECK(g.shape() == shape(), "set_grad: gradient shape ", shape_str(g.shape()), " does not match tensor shape ",
              shape_str(shape()));
  impl_->grad = g.impl();
}
void Tensor::zero_grad() { check_defined("zero_grad"); impl_->grad.reset(); }
const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const { check_defined("grad_fn"); return impl_->grad_fn; }

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  check_defined("backward");
  PETAL_CHECK(requires_grad(), "backward: tensor does not require grad and has no grad_fn");
  Tensor g = gradient;
  if (!g.defined()) {
    PETAL_CHECK(numel() == 1, "backward: grad can be implicitly created only for scalar outputs, got shape ",
                shape_str(shape()));
    g = ones(shape(), TensorOptions(dtype(), device()));
  } else {
    PETAL_CHECK(g.shape() == shape(), "backward: gradient shape ", shape_str(g.shape()),
                " does not match output shape ", shape_str(shape()));
  }
  autograd::run_backward({*this}, {g}, retain_graph);
}

}  // namespace petal
