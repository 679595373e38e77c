// Tensor's method forms of the ops (x.sum(), x.matmul(y), x.softmax(-1), ...): each one
// calls the free function of ops.h, so there is a single implementation (and autograd rule).
// Kept out of tensor.h so that header does not depend on ops.h.
#include <petal/ops.h>
#include <petal/tensor.h>

namespace petal {

Tensor Tensor::add(const Tensor& o, double alpha) const { return petal::add(*this, o, alpha); }
Tensor Tensor::add(double o) const { return petal::add(*this, o); }
Tensor Tensor::sub(const Tensor& o, double alpha) const { return petal::sub(*this, o, alpha); }
Tensor Tensor::sub(double o) const { return petal::sub(*this, o); }
Tensor Tensor::mul(const Tensor& o) const { return petal::mul(*this, o); }
Tensor Tensor::mul(double o) const { return petal::mul(*this, o); }
Tensor Tensor::div(const Tensor& o) const { return petal::div(*this, o); }
Tensor Tensor::div(double o) const { return petal::div(*this, o); }
Tensor Tensor::pow(double e) const { return petal::pow(*this, e); }
Tensor Tensor::pow(const Tensor& e) const { return petal::pow(*this, e); }
Tensor Tensor::maximum(const Tensor& o) const { return petal::maximum(*this, o); }
Tensor Tensor::minimum(const Tensor& o) const { return petal::minimum(*this, o); }
Tensor Tensor::eq(const Tensor& o) const { return petal::eq(*this, o); }
Tensor Tensor::ne(const Tensor& o) const { return petal::ne(*this, o); }
Tensor Tensor::lt(const Tensor& o) const { return petal::lt(*this, o); }
Tensor Tensor::le(const Tensor& o) const { return petal::le(*this, o); }
Tensor Tensor::gt(const Tensor& o) const { return petal::gt(*this, o); }
Tensor Tensor::ge(const Tensor& o) const { return petal::ge(*this, o); }
Tensor Tensor::eq(double o) const { return petal::eq(*this, o); }
Tensor Tensor::ne(double o) const { return petal::ne(*this, o); }
Tensor Tensor::lt(double o) const { return petal::lt(*this, o); }
Tensor Tensor::le(double o) const { return petal::le(*this, o); }
Tensor Tensor::gt(double o) const { return petal::gt(*this, o); }
Tensor Tensor::ge(double o) const { return petal::ge(*this, o); }

Tensor Tensor::neg() const { return petal::neg(*this); }
Tensor Tensor::exp() const { return petal::exp(*this); }
Tensor Tensor::log() const { return petal::log(*this); }
Tensor Tensor::sqrt() const { return petal::sqrt(*this); }
Tensor Tensor::rsqrt() const { return petal::rsqrt(*this); }
Tensor Tensor::abs() const { return petal::abs(*this); }
Tensor Tensor::sin() const { return petal::sin(*this); }
Tensor Tensor::cos() const { return petal::cos(*this); }
Tensor Tensor::tanh() const { return petal::tanh(*this); }
Tensor Tensor::sigmoid() const { return petal::sigmoid(*this); }
Tensor Tensor::relu() const { return petal::relu(*this); }
Tensor Tensor::gelu(bool tanh_approximation) const { return petal::gelu(*this, tanh_approximation); }
Tensor Tensor::square() const { return petal::square(*this); }
Tensor Tensor::clamp(double lo, double hi) const { return petal::clamp(*this, lo, hi); }
Tensor Tensor::clamp_min(double lo) const { return petal::clamp_min(*this, lo); }
Tensor Tensor::clamp_max(double hi) const { return petal::clamp_max(*this, hi); }

Tensor Tensor::sum() const { return petal::sum(*this); }
Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const { return petal::sum(*this, dims, keepdim); }
Tensor Tensor::sum(int64_t dim, bool keepdim) const { return petal::sum(*this, std::vector<int64_t>{dim}, keepdim); }
Tensor Tensor::mean() const { return petal::mean(*this); }
Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const { return petal::mean(*this, dims, keepdim); }
Tensor Tensor::mean(int64_t dim, bool keepdim) const { return petal::mean(*this, std::vector<int64_t>{dim}, keepdim); }
Tensor Tensor::var(const std::vector<int64_t>& dims, int64_t correction, bool keepdim) const {
  return petal::var(*this, dims, correction, keepdim);
}
Tensor Tensor::max() const { return petal::max(*this); }
ValuesIndices Tensor::max(int64_t dim, bool keepdim) const { return petal::max(*this, dim, keepdim); }
Tensor Tensor::min() const { return petal::min(*this); }
ValuesIndices Tensor::min(int64_t dim, bool keepdim) const { return petal::min(*this, dim, keepdim); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return petal::argmax(*this, dim, keepdim); }
Tensor Tensor::argmin(int64_t dim, bool keepdim) const { return petal::argmin(*this, dim, keepdim); }

Tensor Tensor::softmax(int64_t dim) const { return petal::softmax(*this, dim); }
Tensor Tensor::log_softmax(int64_t dim) const { return petal::log_softmax(*this, dim); }
Tensor Tensor::matmul(const Tensor& o) const { return petal::matmul(*this, o); }
Tensor Tensor::mm(const Tensor& o) const {
  check_defined("mm");
  PETAL_CHECK(dim() == 2 && o.defined() && o.dim() == 2, "mm: expects two 2-D tensors, got shapes ",
              shape_str(shape()), " and ", o.defined() ? shape_str(o.shape()) : std::string("(undefined)"));
  return petal::matmul(*this, o);
}
Tensor Tensor::index_select(int64_t dim, const Tensor& index) const { return petal::index_select(*this, dim, index); }
Tensor Tensor::gather(int64_t dim, const Tensor& index) const { return petal::gather(*this, dim, index); }
bool Tensor::allclose(const Tensor& o, double rtol, double atol) const { return petal::allclose(*this, o, rtol, atol); }

}  // namespace petal
