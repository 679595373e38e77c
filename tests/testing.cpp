// Implementation of the shared test helpers (see testing.h).
#include "testing.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "kernels/cpu/isa.h"

namespace petal::testing {

std::vector<std::string> test_devices() {
  std::vector<std::string> d{"cpu"};
  if (sim::is_available()) d.push_back("sim");
  if (cuda::is_available()) d.push_back("cuda");
  return d;
}

bool cuda_available() { return cuda::is_available(); }

double tolerance_for(DType dtype) {
  switch (dtype) {
    case DType::f64: return 1e-12;
    case DType::f32: return 1e-5;
    case DType::bf16: return 1.6e-2;
    case DType::f16: return 2e-3;
    default: return 0.0;
  }
}

void poison(Tensor& t) {
  NoGradGuard ng;
  if (is_floating(t.dtype())) {
    t.fill_(std::nan(""));
  } else {
    t.fill_(t.dtype() == DType::b8 ? 1 : (t.dtype() == DType::u8 ? 0xAB : -12345));
  }
}

Tensor random_input(const Shape& shape, uint64_t seed, DType dtype, Device device) {
  Generator saved = default_generator();
  manual_seed(seed);
  Tensor t = randn(shape, TensorOptions(DType::f64, kCPU));
  default_generator() = saved;
  return t.to(device, dtype);
}

Tensor non_contiguous_copy(const Tensor& t) {
  NoGradGuard ng;
  // Store with a doubled last dimension and view every other element.
  Shape big = t.shape();
  if (big.empty()) return t.clone();
  big.back() *= 2;
  Tensor storage = zeros(big, TensorOptions(t.dtype(), t.device()));
  Tensor v = storage.slice(-1, 0, big.back(), 2);
  v.copy_(t);
  return v;
}

double normalized_error(const Tensor& actual, const Tensor& expected) {
  Tensor a = actual.detach().to(kCPU, DType::f64).contiguous();
  Tensor e = expected.detach().to(kCPU, DType::f64).contiguous();
  const double* pa = a.data<double>();
  const double* pe = e.data<double>();
  double maxe = 1.0, maxd = 0.0;
  for (int64_t i = 0; i < e.numel(); ++i) maxe = std::max(maxe, std::fabs(pe[i]));
  for (int64_t i = 0; i < e.numel(); ++i) {
    double d = std::fabs(pa[i] - pe[i]);
    if (std::isnan(pa[i]) != std::isnan(pe[i]) || (std::isinf(pa[i]) && pa[i] != pe[i])) d = INFINITY;
    if (std::isnan(pa[i]) && std::isnan(pe[i])) d = 0;
    if (pa[i] == pe[i]) d = 0;
    maxd = std::max(maxd, d);
  }
  return maxd / maxe;
}

void check_close(const Tensor& actual, const Tensor& expected, double tol, const std::string& what) {
  INFO(what);
  REQUIRE(actual.defined());
  REQUIRE(actual.shape() == expected.shape());
  if (tol < 0) tol = tolerance_for(actual.dtype());
  double err = normalized_error(actual, expected);
  if (err <= tol) {
    SUCCEED();
    return;
  }
  Tensor a = actual.detach().to(kCPU, DType::f64).contiguous();
  Tensor e = expected.detach().to(kCPU, DType::f64).contiguous();
  const double* pa = a.data<double>();
  const double* pe = e.data<double>();
  double maxe = 1.0;
  for (int64_t i = 0; i < e.numel(); ++i) maxe = std::max(maxe, std::fabs(pe[i]));
  std::ostringstream os;
  os << what << ": normalized error " << err << " > tolerance " << tol << " (shape " << shape_str(actual.shape())
     << ", dtype " << dtype_name(actual.dtype()) << ", device " << actual.device().str() << ")\n";
  int shown = 0;
  for (int64_t i = 0; i < e.numel() && shown < 8; ++i) {
    double d = std::fabs(pa[i] - pe[i]);
    bool bad = !(d / maxe <= tol) && !(std::isnan(pa[i]) && std::isnan(pe[i])) && pa[i] != pe[i];
    if (bad) {
      os << "  [" << i << "] expected " << pe[i] << " actual " << pa[i] << "\n";
      ++shown;
    }
  }
  FAIL(os.str());
}

bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs, double eps,
               double atol, double rtol) {
  for (auto& x : inputs) {
    x = x.detach().to(kCPU, DType::f64).contiguous().clone();
    x.requires_grad_(true);
  }
  Tensor out0;
  {
    NoGradGuard ng;
    out0 = f(inputs);
  }
  Tensor w = random_input(out0.shape(), 4242);
  Tensor out = f(inputs);
  Tensor loss = sum(mul(out, w));
  loss.backward();
  bool ok = true;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    Tensor g = x.grad();
    double* px = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double orig = px[i];
      double fp, fm;
      {
        NoGradGuard ng;
        px[i] = orig + eps;
        fp = sum(mul(f(inputs), w)).item();
        px[i] = orig - eps;
        fm = sum(mul(f(inputs), w)).item();
        px[i] = orig;
      }
      double numeric = (fp - fm) / (2 * eps);
      double analytic = g.defined() ? g.reshape({-1}).select(0, i).item() : 0.0;
      if (std::fabs(numeric - analytic) > atol + rtol * std::fabs(numeric)) {
        std::ostringstream os;
        os << "gradcheck: input " << k << " (shape " << shape_str(x.shape()) << ") element " << i << ": numeric "
           << numeric << " vs autograd " << analytic;
        UNSCOPED_INFO(os.str());
        ok = false;
      }
    }
  }
  CHECK(ok);
  return ok;
}

std::vector<std::string> test_cpu_isas() {
  std::vector<std::string> isas{"baseline"};
  if (kernels::cpu::cpu_supports_avx512()) isas.push_back("avx512");
  return isas;
}

ScopedCpuIsa::ScopedCpuIsa(const std::string& isa) {
  if (isa != "baseline" && isa != "avx512") FAIL("unknown CPU ISA " << isa);
  previous_ = static_cast<int>(
      kernels::cpu::set_cpu_isa(isa == "avx512" ? kernels::cpu::CpuIsa::avx512 : kernels::cpu::CpuIsa::baseline));
}

ScopedCpuIsa::~ScopedCpuIsa() { kernels::cpu::set_cpu_isa(static_cast<kernels::cpu::CpuIsa>(previous_)); }

}  // namespace petal::testing
