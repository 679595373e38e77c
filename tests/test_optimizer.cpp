// Fused optimizer updates (adamw_step_, sgd_step_) against float64 references of
// torch.optim.AdamW / SGD written plainly here, over several steps with a fresh random
// gradient each step, on every device, for f32/f64/bf16, odd sizes (1, 7, 1025: covers
// the vectorized body and its scalar tail) and every option (amsgrad, momentum,
// dampening, nesterov, weight decay); plus the op's error messages. The multi-tensor forms
// (adamw_multi_tensor_step_, sgd_multi_tensor_step_) run on lists mixing sizes (one more
// than a CPU chunk and one more than a CUDA chunk among them) and per-parameter step
// counts, against the same references and bit for bit against the per-parameter kernels.
#include <cmath>
#include <vector>

#include "device_variants.h"
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
  const petal::testing::DeviceVariant variant(GENERATE(from_range(petal::testing::device_variants())));
  const std::string& dev = variant.dev;
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
  const petal::testing::DeviceVariant variant(GENERATE(from_range(petal::testing::device_variants())));
  const std::string& dev = variant.dev;
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
  const petal::testing::DeviceVariant variant(GENERATE(from_range(petal::testing::device_variants())));
  const std::string& dev = variant.dev;
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

namespace {

// Sizes of a multi-tensor list: tiny ones, vector tails, one past the CPU chunk (16384)
// and one past the CUDA chunk (65536).
const std::vector<int64_t> kListSizes = {1, 7, 1025, 16385, 3, 65537};

std::vector<Tensor> zeros_list(DType dt, Device d) {
  std::vector<Tensor> out;
  for (int64_t n : kListSizes) out.push_back(zeros({n}, TensorOptions(dt, d)));
  return out;
}

// Largest |a - b| over two lists (exact comparisons).
double max_abs_diff(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, max(abs(sub(a[i].to(kCPU, DType::f64), b[i].to(kCPU, DType::f64)))).item<double>());
  return m;
}

}  // namespace

TEST_CASE("adamw_multi_tensor_step_ follows torch.optim.AdamW and the per-parameter kernel", "[optimizer]") {
  const petal::testing::DeviceVariant variant(GENERATE(from_range(petal::testing::device_variants())));
  const std::string& dev = variant.dev;
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto amsgrad = GENERATE(false, true);
  Device d(dev);
  INFO("dtype " << dtype_name(dt) << " amsgrad " << amsgrad << " on " << dev);
  const double lr = 0.05, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
  const size_t count = kListSizes.size();
  std::vector<Tensor> params, single, m = zeros_list(dt, d), v = zeros_list(dt, d), vmax = zeros_list(dt, d),
                                      m1 = zeros_list(dt, d), v1 = zeros_list(dt, d), vmax1 = zeros_list(dt, d);
  std::vector<AdamWRef> refs;
  for (size_t i = 0; i < count; ++i) {
    const int64_t n = kListSizes[i];
    params.push_back(random_input({n}, 500 + i, dt, d));
    single.push_back(params.back().clone());
    refs.push_back({values(params.back()), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0),
                    std::vector<double>(n, 0.0)});
  }
  // Parameter i starts at step i % 3 + 1 (as if it had missed steps): per-entry bias corrections.
  std::vector<int64_t> steps(count);
  for (size_t i = 0; i < count; ++i) steps[i] = static_cast<int64_t>(i % 3);
  for (int t = 0; t < 3; ++t) {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < count; ++i) {
      ++steps[i];
      grads.push_back(random_input({kListSizes[i]}, 600 + 10 * i + t, dt, d));
      adamw_ref_step(refs[i], values(grads[i]), lr, b1, b2, eps, wd, steps[i], amsgrad);
      adamw_step_(single[i], grads[i], m1[i], v1[i], vmax1[i], lr, b1, b2, eps, wd, steps[i], amsgrad);
    }
    adamw_multi_tensor_step_(params, grads, m, v, amsgrad ? vmax : std::vector<Tensor>{}, steps, lr, b1, b2, eps, wd,
                             amsgrad);
    for (size_t i = 0; i < count; ++i) {
      INFO("tensor " << i << " (n " << kListSizes[i] << ") step " << steps[i]);
      check_close(params[i], from_values(refs[i].p, {kListSizes[i]}), step_tol(dt), "param");
      check_close(m[i], from_values(refs[i].m, {kListSizes[i]}), step_tol(dt), "exp_avg");
      check_close(v[i], from_values(refs[i].v, {kListSizes[i]}), step_tol(dt), "exp_avg_sq");
      if (amsgrad) check_close(vmax[i], from_values(refs[i].vmax, {kListSizes[i]}), step_tol(dt), "max_exp_avg_sq");
    }
    // The same element function as the per-parameter kernel: identical results.
    CHECK(max_abs_diff(params, single) == 0.0);
    CHECK(max_abs_diff(v, v1) == 0.0);
  }
}

TEST_CASE("sgd_multi_tensor_step_ follows torch.optim.SGD and the per-parameter kernel", "[optimizer]") {
  const petal::testing::DeviceVariant variant(GENERATE(from_range(petal::testing::device_variants())));
  const std::string& dev = variant.dev;
  auto dt = GENERATE(DType::f32, DType::bf16);
  struct Config {
    double momentum, dampening, wd;
    bool nesterov;
  };
  auto c = GENERATE(Config{0.0, 0.0, 0.05, false}, Config{0.9, 0.3, 0.01, false}, Config{0.8, 0.0, 0.02, true});
  Device d(dev);
  INFO("dtype " << dtype_name(dt) << " momentum " << c.momentum << " nesterov " << c.nesterov << " on " << dev);
  const double lr = 0.1;
  const size_t count = kListSizes.size();
  std::vector<Tensor> params, single, bufs, bufs1;
  std::vector<std::vector<double>> p, b;
  for (size_t i = 0; i < count; ++i) {
    const int64_t n = kListSizes[i];
    params.push_back(random_input({n}, 700 + i, dt, d));
    single.push_back(params.back().clone());
    bufs.push_back(empty({n}, TensorOptions(dt, d)));
    petal::testing::poison(bufs.back());  // the first step must overwrite it
    bufs1.push_back(zeros({n}, TensorOptions(dt, d)));
    p.push_back(values(params.back()));
    b.push_back(std::vector<double>(n, 0.0));
  }
  // Parameter 1 joins one step late (its buffer is initialised then).
  for (int t = 0; t < 3; ++t) {
    std::vector<Tensor> list_p, list_g, list_b;
    std::vector<bool> first;
    for (size_t i = 0; i < count; ++i) {
      const int start = i == 1 ? 1 : 0;
      if (t < start) continue;
      Tensor g = random_input({kListSizes[i]}, 800 + 10 * i + t, dt, d);
      sgd_ref_step(p[i], b[i], values(g), lr, c.momentum, c.dampening, c.wd, c.nesterov, t == start);
      sgd_step_(single[i], g, bufs1[i], lr, c.momentum, c.dampening, c.wd, c.nesterov, t == start);
      list_p.push_back(params[i]);
      list_g.push_back(g);
      list_b.push_back(bufs[i]);
      first.push_back(t == start);
    }
    sgd_multi_tensor_step_(list_p, list_g, list_b, first, lr, c.momentum, c.dampening, c.wd, c.nesterov);
    for (size_t i = 0; i < count; ++i) {
      INFO("tensor " << i << " (n " << kListSizes[i] << ") step " << t);
      check_close(params[i], from_values(p[i], {kListSizes[i]}), step_tol(dt), "param");
      if (c.momentum != 0 && !(i == 1 && t == 0))
        check_close(bufs[i], from_values(b[i], {kListSizes[i]}), step_tol(dt), "momentum_buffer");
    }
    CHECK(max_abs_diff(params, single) == 0.0);
  }
}

TEST_CASE("multi-tensor steps check their lists", "[optimizer]") {
  Tensor p = random_input({4, 3}, 1, DType::f32), g = random_input({4, 3}, 2, DType::f32);
  Tensor q = random_input({5}, 3, DType::f64), gq = random_input({5}, 4, DType::f64);
  Tensor m = zeros({4, 3}), v = zeros({4, 3});
  CHECK_THROWS_WITH(adamw_multi_tensor_step_({p}, {g}, {m}, {v}, {}, {1, 2}, 1e-3, 0.9, 0.999, 1e-8, 0.0, false),
                    Catch::Contains("adamw_multi_tensor_step_") && Catch::Contains("step counts"));
  CHECK_THROWS_WITH(adamw_multi_tensor_step_({p}, {g}, {m}, {v}, {}, {1}, 1e-3, 0.9, 0.999, 1e-8, 0.0, true),
                    Catch::Contains("max_exp_avg_sq"));
  CHECK_THROWS_WITH(adamw_multi_tensor_step_({p}, {g}, {m}, {v}, {}, {0}, 1e-3, 0.9, 0.999, 1e-8, 0.0, false),
                    Catch::Contains("step counts from 1"));
  CHECK_THROWS_WITH(sgd_multi_tensor_step_({p, q}, {g, gq}, {}, {}, 0.1, 0.0, 0.0, 0.0, false),
                    Catch::Contains("sgd_multi_tensor_step_") && Catch::Contains("one dtype"));
  CHECK_THROWS_WITH(sgd_multi_tensor_step_({p}, {g}, {}, {}, 0.1, 0.9, 0.0, 0.0, false),
                    Catch::Contains("momentum buffers"));
  Tensor gt = random_input({3, 4}, 5, DType::f32).t();
  CHECK_THROWS_WITH(sgd_multi_tensor_step_({p}, {gt}, {}, {}, 0.1, 0.0, 0.0, 0.0, false),
                    Catch::Contains("contiguous"));
}
