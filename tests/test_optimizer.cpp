// Fused optimizer updates (adamw_step_, sgd_step_) against float64 references of
// torch.optim.AdamW / SGD written plainly here, over several steps with a fresh random
// gradient each step, on every device, for f32/f64/bf16, odd sizes (1, 7, 1025: covers
// the vectorized body and its scalar tail) and every option (amsgrad, momentum,
// dampening, nesterov, weight decay); plus the op's error messages.
#include <cmath>
#include <vector>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::random_input;

namespace {

struct AdamWRef {
  std::vector<double> p, m, v, vmax;
};

void adamw_ref_step(AdamWRef& s, const std::vector<double>& g, double lr, double b1, double b2, double eps, double wd,
                    int64_t t, bool amsgrad) {
  for (size_t i = 0; i < s.p.size(); ++i) {
    s.p[i] -= lr * wd * s.p[i];
    s.m[i] = b1 * s.m[i] + (1 - b1) * g[i];
    s.v[i] = b2 * s.v[i] + (1 - b2) * g[i] * g[i];
    double second = s.v[i];
    if (amsgrad) {
      s.vmax[i] = std::max(s.vmax[i], s.v[i]);
      second = s.vmax[i];
    }
    const double denom = std::sqrt(second) / std::sqrt(1 - std::pow(b2, double(t))) + eps;
    s.p[i] -= lr / (1 - std::pow(b1, double(t))) * s.m[i] / denom;
  }
}

void sgd_ref_step(std::vector<double>& p, std::vector<double>& buf, const std::vector<double>& g_in, double lr,
                  double momentum, double dampening, double wd, bool nesterov, bool first) {
  for (size_t i = 0; i < p.size(); ++i) {
    double g = g_in[i] + wd * p[i];
    if (momentum != 0) {
      buf[i] = first ? g : momentum * buf[i] + (1 - dampening) * g;
      g = nesterov ? g + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * g;
  }
}

std::vector<double> values(const Tensor& t) { return t.to(kCPU, DType::f64).contiguous().tolist<double>(); }

Tensor from_values(const std::vector<double>& v, const Shape& shape) {
  Tensor t = zeros(shape, TensorOptions(DType::f64));
  for (size_t i = 0; i < v.size(); ++i) t.data<double>()[i] = v[i];
  return t;
}

// bf16 state rounding drifts from the float64 sequence over steps.
double step_tol(DType dt) { return dt == DType::bf16 ? 3e-2 : (dt == DType::f32 ? 2e-5 : 1e-12); }

}  // namespace

TEST_CASE("adamw_step_ follows torch.optim.AdamW over several steps", "[optimizer]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto amsgrad = GENERATE(false, true);
  Device d(dev);
  for (int64_t n : {1, 7, 1025}) {
    INFO("n " << n << " dtype " << dtype_name(dt) << " amsgrad " << amsgrad << " on " << dev);
    const Shape shape = n == 1025 ? Shape{25, 41} : Shape{n};
    const double lr = 0.05, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
    Tensor param = random_input(shape, 100 + n, dt, d);
    Tensor m = zeros(shape, TensorOptions(dt, d)), v = zeros(shape, TensorOptions(dt, d));
    Tensor vmax = zeros(shape, TensorOptions(dt, d));
    AdamWRef ref{values(param), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
    for (int64_t t = 1; t <= 4; ++t) {
      Tensor g = random_input(shape, 200 + 10 * n + t, dt, d);
      adamw_ref_step(ref, values(g), lr, b1, b2, eps, wd, t, amsgrad);
      adamw_step_(param, g, m, v, vmax, lr, b1, b2, eps, wd, t, amsgrad);
      check_close(param, from_values(ref.p, shape), step_tol(dt), "param");
      check_close(m, from_values(ref.m, shape), step_tol(dt), "exp_avg");
      check_close(v, from_values(ref.v, shape), step_tol(dt), "exp_avg_sq");
      if (amsgrad) check_close(vmax, from_values(ref.vmax, shape), step_tol(dt), "max_exp_avg_sq");
    }
  }
}

TEST_CASE("sgd_step_ follows torch.optim.SGD over several steps", "[optimizer]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  struct Config {
    double momentum, dampening, wd;
    bool nesterov;
  };
  const std::vector<Config> configs = {{0.0, 0.0, 0.0, false}, {0.0, 0.0, 0.05, false}, {0.9, 0.0, 0.0, false},
                                       {0.9, 0.3, 0.01, false}, {0.8, 0.0, 0.02, true}};
  Device d(dev);
  for (const Config& c : configs) {
    for (int64_t n : {1, 7, 1025}) {
      INFO("n " << n << " dtype " << dtype_name(dt) << " momentum " << c.momentum << " dampening " << c.dampening
                << " wd " << c.wd << " nesterov " << c.nesterov << " on " << dev);
      const double lr = 0.1;
      Tensor param = random_input({n}, 300 + n, dt, d);
      Tensor buf = empty({n}, TensorOptions(dt, d));
      petal::testing::poison(buf);  // the first step must overwrite it
      std::vector<double> p = values(param), b(n, 0.0);
      for (int t = 0; t < 4; ++t) {
        Tensor g = random_input({n}, 400 + 10 * n + t, dt, d);
        sgd_ref_step(p, b, values(g), lr, c.momentum, c.dampening, c.wd, c.nesterov, t == 0);
        sgd_step_(param, g, buf, lr, c.momentum, c.dampening, c.wd, c.nesterov, t == 0);
        check_close(param, from_values(p, {n}), step_tol(dt), "param");
        if (c.momentum != 0) check_close(buf, from_values(b, {n}), step_tol(dt), "momentum_buffer");
      }
    }
  }
}

TEST_CASE("optimizer step kernels write only their operands", "[optimizer]") {
  // A parameter that is a contiguous slice in the middle of a bigger buffer: the
  // elements around it stay untouched (the vectorized body must not overrun).
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  Tensor storage = random_input({40}, 5, DType::f32, d);
  Tensor before = storage.to(kCPU, DType::f64).clone();
  Tensor param = storage.slice(0, 3, 36);
  Tensor g = random_input({33}, 6, DType::f32, d);
  Tensor buf = zeros({33}, TensorOptions(DType::f32, d));
  sgd_step_(param, g, buf, 0.1, 0.9, 0.0, 0.0, false, true);
  Tensor after = storage.to(kCPU, DType::f64);
  for (int64_t i : {0, 1, 2, 36, 37, 38, 39}) CHECK(after.data<double>()[i] == before.data<double>()[i]);
  std::vector<double> expect = values(before.slice(0, 3, 36)), gv = values(g);
  for (size_t i = 0; i < expect.size(); ++i) expect[i] -= 0.1 * gv[i];
  check_close(param, from_values(expect, {33}), 1e-6, "param slice");
}

TEST_CASE("optimizer step errors name the op and operand", "[optimizer]") {
  Tensor p = random_input({4, 3}, 1, DType::f32), g = random_input({4, 3}, 2, DType::f32);
  Tensor m = zeros({4, 3}), v = zeros({4, 3}), none;
  Tensor short_m = zeros({4, 2});
  CHECK_THROWS_WITH(adamw_step_(p, g, short_m, v, none, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, false),
                    Catch::Contains("adamw_step_") && Catch::Contains("exp_avg") && Catch::Contains("[4, 2]"));
  CHECK_THROWS_WITH(adamw_step_(p, g, m, v, none, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, true),
                    Catch::Contains("adamw_step_") && Catch::Contains("max_exp_avg_sq"));
  CHECK_THROWS_WITH(adamw_step_(p, g, m, v, none, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0, false),
                    Catch::Contains("adamw_step_") && Catch::Contains("step"));
  Tensor g64 = g.to(DType::f64);
  Tensor buf = zeros({4, 3});
  CHECK_THROWS_WITH(sgd_step_(p, g64, buf, 0.1, 0.9, 0.0, 0.0, false, true),
                    Catch::Contains("sgd_step_") && Catch::Contains("grad") && Catch::Contains("float64"));
  Tensor gt = random_input({3, 4}, 3, DType::f32).t();
  CHECK_THROWS_WITH(sgd_step_(p, gt, buf, 0.1, 0.9, 0.0, 0.0, false, true),
                    Catch::Contains("sgd_step_") && Catch::Contains("contiguous"));
  Tensor pi = arange(int64_t(12)).reshape({4, 3});
  CHECK_THROWS_WITH(sgd_step_(pi, g, buf, 0.1, 0.0, 0.0, 0.0, false, true), Catch::Contains("sgd_step_"));
}
