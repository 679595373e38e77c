// Elementwise unary and binary ops against float64 references on every backend,
// dtype, odd sizes, broadcasting and non-contiguous inputs; gradchecks for each.
#include <cmath>
#include <functional>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

namespace {

// Applies f to every element of a float64 CPU tensor (the clear, slow reference).
Tensor ref_map(const Tensor& x, const std::function<double(double)>& f) {
  Tensor c = x.detach().to(kCPU, DType::f64).contiguous().clone();
  double* p = c.data<double>();
  for (int64_t i = 0; i < c.numel(); ++i) p[i] = f(p[i]);
  return c;
}

// Reference binary op with numpy broadcasting via explicit index arithmetic.
Tensor ref_binary(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& f) {
  Shape s(std::max(a.dim(), b.dim()));
  for (size_t i = 0; i < s.size(); ++i) {
    int64_t da = i + a.dim() >= s.size() ? a.shape()[i + a.dim() - s.size()] : 1;
    int64_t db = i + b.dim() >= s.size() ? b.shape()[i + b.dim() - s.size()] : 1;
    s[i] = std::max(da, db);
  }
  Tensor ac = a.detach().to(kCPU, DType::f64).contiguous(), bc = b.detach().to(kCPU, DType::f64).contiguous();
  Tensor out = zeros(s, TensorOptions(DType::f64));
  int64_t n = out.numel();
  for (int64_t lin = 0; lin < n; ++lin) {
    int64_t rem = lin, ia = 0, ib = 0, sa = 1, sb = 1;
    for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
      int64_t idx = rem % s[d];
      rem /= s[d];
      int64_t ad = d - (static_cast<int64_t>(s.size()) - a.dim());
      int64_t bd = d - (static_cast<int64_t>(s.size()) - b.dim());
      if (ad >= 0) {
        if (a.shape()[ad] != 1) ia += idx * sa;
        sa *= a.shape()[ad];
      }
      if (bd >= 0) {
        if (b.shape()[bd] != 1) ib += idx * sb;
        sb *= b.shape()[bd];
      }
    }
    out.data<double>()[lin] = f(ac.data<double>()[ia], bc.data<double>()[ib]);
  }
  return out;
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  bool positive;  // domain needs x > 0
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, false},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, false},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, true},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); }, true},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::fabs(x); }, false},
      {"sin", [](const Tensor& x) { return sin(x); }, [](double x) { return std::sin(x); }, false},
      {"cos", [](const Tensor& x) { return cos(x); }, [](double x) { return std::cos(x); }, false},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, false},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, false},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; }, false},
      {"gelu", [](const Tensor& x) { return gelu(x); },
       [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, false},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, true); },
       [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }, false},
      {"square", [](const Tensor& x) { return square(x); }, [](double x) { return x * x; }, false},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); },
       [](double x) { return std::min(std::max(x, -0.5), 0.7); }, false},
      {"pow2.5", [](const Tensor& x) { return pow(x, 2.5); }, [](double x) { return std::pow(x, 2.5); }, true},
      {"add_scalar", [](const Tensor& x) { return x + 1.5; }, [](double x) { return x + 1.5; }, false},
      {"rsub_scalar", [](const Tensor& x) { return 2.0 - x; }, [](double x) { return 2.0 - x; }, false},
      {"rdiv_scalar", [](const Tensor& x) { return 2.0 / x; }, [](double x) { return 2.0 / x; }, true},
  };
}

Tensor domain_input(const Shape& shape, uint64_t seed, bool positive) {
  Tensor x = random_input(shape, seed);
  if (positive) x = add(abs(x), 0.1);
  return x;
}

}  // namespace

TEST_CASE("unary ops match float64 references", "[elementwise]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  Shape shape = GENERATE(Shape{1}, Shape{7}, Shape{3, 33}, Shape{2, 5, 197});
  if (dev == "sim" && shape.size() == 3) return;  // keep simulated launches small
  for (const auto& c : unary_cases()) {
    Tensor x64 = domain_input(shape, 11, c.positive);
    Tensor x = x64.to(Device(dev), dt);
    Tensor expected = ref_map(x.to(kCPU, DType::f64), c.ref);  // reference on the rounded input
    check_close(c.op(x), expected, -1, std::string(c.name) + " on " + dev);
    // non-contiguous input
    Tensor xn = non_contiguous_copy(x);
    REQUIRE_FALSE((shape.back() > 1 && xn.is_contiguous()));
    check_close(c.op(xn), expected, -1, std::string(c.name) + " (strided) on " + dev);
  }
}

TEST_CASE("unary ops have correct gradients", "[elementwise][grad]") {
  for (const auto& c : unary_cases()) {
    if (std::string(c.name) == "relu" || std::string(c.name) == "abs" || std::string(c.name) == "clamp") continue;
    INFO(c.name);
    gradcheck([&](const std::vector<Tensor>& in) { return c.op(in[0]); }, {domain_input({3, 4}, 5, c.positive)});
  }
  // Kinked functions away from their kinks.
  Tensor x = tensor(std::vector<double>{-1.3, -0.2, 0.3, 0.9, 2.0}, {5}, TensorOptions(DType::f64));
  gradcheck([](const std::vector<Tensor>& in) { return relu(in[0]); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return abs(in[0]); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return clamp(in[0], -0.5, 1.0); }, {x});
}

TEST_CASE("binary ops broadcast and match float64 references", "[elementwise]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64);
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> op;
    std::function<double(double, double)> ref;
  };
  std::vector<Case> cases = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, [](double a, double b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, [](double a, double b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, [](double a, double b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, [](double a, double b) { return a / b; }},
      {"add_alpha", [](const Tensor& a, const Tensor& b) { return add(a, b, -0.5); },
       [](double a, double b) { return a - 0.5 * b; }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
       [](double a, double b) { return std::max(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
       [](double a, double b) { return std::min(a, b); }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(abs(a), b); },
       [](double a, double b) { return std::pow(std::fabs(a), b); }},
  };
  std::vector<std::pair<Shape, Shape>> shapes = {{{7}, {7}}, {{3, 1}, {1, 5}}, {{2, 3, 33}, {33}}, {{1}, {4, 9}}, {{}, {5}}};
  for (const auto& c : cases) {
    for (const auto& [sa, sb] : shapes) {
      Tensor a = random_input(sa, 21).to(Device(dev), dt);
      Tensor b = random_input(sb, 22).to(Device(dev), dt);
      Tensor expected = ref_binary(a, b, c.ref);
      std::string what = std::string(c.name) + " " + shape_str(sa) + " x " + shape_str(sb) + " on " + dev;
      check_close(c.op(a, b), expected, -1, what);
      check_close(c.op(non_contiguous_copy(a), non_contiguous_copy(b)), expected, -1, what + " strided");
    }
  }
}

TEST_CASE("binary op gradients reduce over broadcast dims", "[elementwise][grad]") {
  Tensor a = random_input({3, 1, 4}, 1), b = random_input({5, 1}, 2);
  Tensor bp = add(abs(b), 0.5);
  gradcheck([](const std::vector<Tensor>& in) { return add(in[0], in[1], 0.3); }, {a, b});
  gradcheck([](const std::vector<Tensor>& in) { return sub(in[0], in[1]); }, {a, b});
  gradcheck([](const std::vector<Tensor>& in) { return mul(in[0], in[1]); }, {a, b});
  gradcheck([](const std::vector<Tensor>& in) { return div(in[0], in[1]); }, {a, bp});
  gradcheck([](const std::vector<Tensor>& in) { return pow(in[1], in[0]); }, {a, bp});
  gradcheck([](const std::vector<Tensor>& in) { return maximum(in[0], in[1]); }, {a, b});
  gradcheck([](const std::vector<Tensor>& in) { return minimum(in[0], in[1]); }, {a, b});
  Tensor cond = gt(random_input({3, 5, 4}, 3), 0.0);
  gradcheck([cond](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); }, {a, b});
}

TEST_CASE("comparisons, where and dtype promotion", "[elementwise]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Tensor a = tensor({1.f, 2.f, 3.f, 4.f}).to(Device(dev));
  Tensor b = tensor({4.f, 2.f, 1.f, 5.f}).to(Device(dev));
  CHECK(eq(a, b).tolist<int>() == std::vector<int>{0, 1, 0, 0});
  CHECK(ne(a, b).tolist<int>() == std::vector<int>{1, 0, 1, 1});
  CHECK(lt(a, b).tolist<int>() == std::vector<int>{1, 0, 0, 1});
  CHECK(le(a, b).tolist<int>() == std::vector<int>{1, 1, 0, 1});
  CHECK(gt(a, 2.0).tolist<int>() == std::vector<int>{0, 0, 1, 1});
  CHECK(ge(a, 2.0).dtype() == DType::b8);
  CHECK(where(gt(a, b), a, b).tolist<float>() == std::vector<float>{4, 2, 3, 5});
  Tensor i = arange(4).to(Device(dev));
  CHECK((i + a).dtype() == DType::f32);
  CHECK((i * 2.0).dtype() == DType::i64);
  CHECK((i * 0.5).dtype() == DType::f32);
  CHECK((i / 2.0).tolist<float>() == std::vector<float>{0, 0.5, 1, 1.5});
  CHECK((a.to(DType::f64) + a).dtype() == DType::f64);
  CHECK(neg(i).tolist<int64_t>() == std::vector<int64_t>{0, -1, -2, -3});
  CHECK(clamp(i, 1, 2).tolist<int64_t>() == std::vector<int64_t>{1, 1, 2, 2});
  CHECK(clamp_min(i, 2).tolist<int64_t>() == std::vector<int64_t>{2, 2, 2, 3});
}

TEST_CASE("in-place ops update storage and refuse autograd leaves", "[elementwise]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Tensor a = tensor({1.f, 2.f, 3.f}).to(Device(dev));
  Tensor v = a;  // same handle
  a.add_(tensor({1.f, 1.f, 1.f}).to(Device(dev)));
  a.mul_(2.0);
  a.add_(0.5);
  CHECK(v.tolist<float>() == std::vector<float>{4.5f, 6.5f, 8.5f});
  a.zero_();
  CHECK(sum(v).item() == 0.0);
  Tensor w = ones({3}).requires_grad_();
  CHECK_THROWS_WITH(w.add_(1.0), Catch::Contains("in-place") && Catch::Contains("requires grad"));
  {
    NoGradGuard ng;
    w.add_(1.0);
  }
  CHECK(w.tolist<float>() == std::vector<float>{2, 2, 2});
}
