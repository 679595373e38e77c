// softmax / log_softmax against float64 references on every backend: dtypes, odd row
// lengths, every dim of 3-D inputs, non-contiguous inputs, large and -inf logits, the
// kernels called directly on poisoned outputs, error messages and gradchecks; the cpu cases
// under both ISA variants (kernels/cpu/isa.h), and the cpu kernel's own exp against std::exp.
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/backend.h"
#include "kernels/cpu/softmax.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

namespace {

// Clear float64 reference over `dim`: for each line along dim, exp(x - max) / sum.
Tensor ref_softmax(const Tensor& x_in, int64_t dim, bool log) {
  Tensor x = x_in.detach().to(kCPU, DType::f64).contiguous();
  if (dim < 0) dim += x.dim();
  Tensor out = zeros(x.shape(), TensorOptions(DType::f64));
  const int64_t n = x.shape()[dim];
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  const int64_t outer = x.numel() / (n * inner);
  const double* p = x.data<double>();
  double* o = out.data<double>();
  for (int64_t a = 0; a < outer; ++a)
    for (int64_t c = 0; c < inner; ++c) {
      auto at = [&](int64_t i) { return a * n * inner + i * inner + c; };
      double mx = -INFINITY;
      for (int64_t i = 0; i < n; ++i) mx = std::max(mx, p[at(i)]);
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(p[at(i)] - mx);
      for (int64_t i = 0; i < n; ++i) o[at(i)] = log ? p[at(i)] - mx - std::log(s) : std::exp(p[at(i)] - mx) / s;
    }
  return out;
}

// Every ISA variant on cpu; the default one elsewhere (the ISA only picks cpu loops).
std::vector<std::string> isas_for(const std::string& dev) {
  return dev == "cpu" ? petal::testing::test_cpu_isas() : std::vector<std::string>{"baseline"};
}

}  // namespace

TEST_CASE("softmax's vectorized exp is within 2 ulp of std::exp", "[softmax][cpu_math]") {
  auto isa = GENERATE(from_range(petal::testing::test_cpu_isas()));
  petal::testing::ScopedCpuIsa guard(isa);
  INFO("ISA " << isa);
  // A grid over the bit patterns of [-88, 88] (about 2 million floats, every 1000th pattern
  // of each sign) plus the ends, round numbers and the special values.
  std::vector<float> x;
  for (float lim : {-88.0f, 88.0f}) {
    uint32_t top;
    std::memcpy(&top, &lim, sizeof top);
    const uint32_t sign = top & 0x80000000u;
    for (uint32_t mag = 0; mag <= (top & 0x7fffffffu); mag += 1000) {
      const uint32_t b = sign | mag;
      float f;
      std::memcpy(&f, &b, sizeof f);
      x.push_back(f);
    }
    x.push_back(lim);
  }
  for (float f : {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.6931472f, 0.6931472f, -87.33f, -87.3f, 87.0f, 1e-8f, -1e-8f})
    x.push_back(f);
  std::vector<float> y(x.size());
  kernels::cpu::softmax_exp(y.data(), x.data(), static_cast<int64_t>(x.size()));
  // Bound (softmax.cpp's exp_vec): 0.5 ulp for the last addition 1 + (r + r^2 q), the 0.05-ulp
  // Taylor remainder and the tail's and r's roundings; measured 1.04 ulp in both variants.
  double worst = 0;
  float worst_x = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp(static_cast<double>(x[i]));
    if (e < std::numeric_limits<float>::min()) {  // below the normal range: may flush to 0
      CHECK(std::fabs(y[i] - e) <= std::numeric_limits<float>::min());
      continue;
    }
    const double ulp = std::ldexp(1.0, std::ilogb(e) - 23);
    const double err = std::fabs(static_cast<double>(y[i]) - e) / ulp;
    if (err > worst) worst = err, worst_x = x[i];
  }
  INFO("worst " << worst << " ulp at x = " << worst_x);
  CHECK(worst <= 2.0);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float special[] = {-inf, -1000.0f, -88.5f, nan, 0.0f};
  float out[5];
  kernels::cpu::softmax_exp(out, special, 5);
  CHECK(out[0] == 0.0f);
  CHECK(out[1] == 0.0f);
  CHECK(out[2] == 0.0f);
  CHECK(std::isnan(out[3]));
  CHECK(out[4] == 1.0f);
}

TEST_CASE("softmax and log_softmax match float64 references", "[softmax]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto isa = GENERATE_COPY(from_range(isas_for(dev)));
  petal::testing::ScopedCpuIsa guard(isa);
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto noncontig = GENERATE(false, true);
  const std::vector<std::pair<Shape, int64_t>> cases = {{{1}, 0},       {{7}, 0},       {{5, 33}, -1},
                                                        {{3, 197}, 1},  {{4, 7, 9}, 0}, {{4, 7, 9}, 1},
                                                        {{4, 7, 9}, 2}, {{2, 1025}, 1}, {{6, 1}, 1}};
  uint64_t seed = 30;
  for (const auto& [shape, dim] : cases) {
    Tensor x = mul(random_input(shape, seed++, dt, Device(dev)), 3.0);
    if (noncontig) x = non_contiguous_copy(x);
    INFO("shape " << shape_str(shape) << " dim " << dim << " dtype " << dtype_name(dt) << " on " << dev << " (" << isa
                   << ")");
    Tensor y = softmax(x, dim);
    CHECK(y.dtype() == dt);
    CHECK(y.shape() == shape);
    check_close(y, ref_softmax(x, dim, false), -1, "softmax");
    check_close(log_softmax(x, dim), ref_softmax(x, dim, true), -1, "log_softmax");
  }
}

TEST_CASE("softmax is stable for large and -inf logits", "[softmax]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto isa = GENERATE_COPY(from_range(isas_for(dev)));
  petal::testing::ScopedCpuIsa guard(isa);
  Device d(dev);
  const float inf = std::numeric_limits<float>::infinity();
  Tensor x = tensor({1000.f, 999.f, -1000.f, 0.f, -inf, 2.f, -inf, 1.f}, {2, 4}).to(d);
  check_close(softmax(x, 1), ref_softmax(x, 1, false));
  auto ls = log_softmax(x, 1).tolist<double>();
  CHECK(ls[4] == -INFINITY);
  CHECK(std::fabs(ls[0] - (-std::log(1 + std::exp(-1.0)))) < 1e-4);  // float ulp at 1000 is 6e-5
  // A fully masked row gives NaN, as in PyTorch.
  Tensor masked = full({1, 3}, -INFINITY, TensorOptions(DType::f32, d));
  for (double v : softmax(masked, 1).tolist<double>()) CHECK(std::isnan(v));
}

TEST_CASE("softmax kernels write every element", "[softmax]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto isa = GENERATE_COPY(from_range(isas_for(dev)));
  petal::testing::ScopedCpuIsa guard(isa);
  auto dt = GENERATE(DType::f32, DType::f64);
  Device d(dev);
  const int64_t rows = 13, cols = 197;
  Tensor x = random_input({rows, cols}, 8, dt, d);
  Tensor dy = random_input({rows, cols}, 9, dt, d);
  for (bool log : {false, true}) {
    Tensor y = empty({rows, cols}, TensorOptions(dt, d));
    petal::testing::poison(y);
    kernels::backend_for(d).softmax(y.data_ptr(), x.data_ptr(), dt, rows, cols, log);
    check_close(y, ref_softmax(x, 1, log), -1, log ? "log_softmax kernel" : "softmax kernel");
    Tensor dx = empty({rows, cols}, TensorOptions(dt, d));
    petal::testing::poison(dx);
    kernels::backend_for(d).softmax_backward(dx.data_ptr(), dy.data_ptr(), y.data_ptr(), dt, rows, cols, log);
    // Reference gradient from the float64 forward.
    Tensor yr = ref_softmax(x, 1, false), dyr = dy.to(kCPU, DType::f64);
    Tensor expected = log ? sub(dyr, mul(yr, sum(dyr, {1}, true))) : mul(yr, sub(dyr, sum(mul(dyr, yr), {1}, true)));
    check_close(dx, expected, dt == DType::f32 ? 1e-5 : 1e-10, "backward kernel");
  }
}

TEST_CASE("softmax errors name the op", "[softmax]") {
  Tensor i = arange(int64_t(6)).reshape({2, 3});
  CHECK_THROWS_WITH(softmax(i, 1), Catch::Contains("softmax") && Catch::Contains("int64") && Catch::Contains("[2, 3]"));
  Tensor x = random_input({2, 3}, 1, DType::f32);
  CHECK_THROWS_WITH(log_softmax(x, 2), Catch::Contains("log_softmax") && Catch::Contains("dimension 2"));
}

TEST_CASE("softmax gradients", "[softmax][grad]") {
  using V = std::vector<Tensor>;
  Tensor x = random_input({3, 4, 5}, 40);
  for (int64_t dim : {0, 1, 2, -1}) {
    INFO("dim " << dim);
    CHECK(gradcheck([dim](const V& v) { return softmax(v[0], dim); }, {x}));
    CHECK(gradcheck([dim](const V& v) { return log_softmax(v[0], dim); }, {x}));
  }
  CHECK(gradcheck([](const V& v) { return softmax(v[0].t(), 1); }, {random_input({6, 3}, 41)}));
}
