// The libtorch-shaped Tensor API: method forms of the ops (same results as the free
// functions), data_ptr<T>() checked against the dtype, compound assignment and scalar
// comparisons, max/min over a dim returning (values, indices), TensorOptions builders,
// grad() of a non-leaf, retain_grad(), and the checks on custom-op (autograd::record)
// gradients. Every device; float64 references computed on the host.
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::random_input;
using V = std::vector<Tensor>;

namespace {

// Exactly equal (same dtype, shape and values): the method and the free function share one
// implementation, so anything else means the method forwards to the wrong op.
void check_same(const Tensor& method, const Tensor& free_fn, const std::string& what) {
  INFO(what);
  REQUIRE(method.dtype() == free_fn.dtype());
  REQUIRE(method.shape() == free_fn.shape());
  REQUIRE(method.device() == free_fn.device());
  CHECK(method.to(kCPU, DType::f64).tolist<double>() == free_fn.to(kCPU, DType::f64).tolist<double>());
}

// Host reference of a binary elementwise op on two same-shaped tensors.
template <typename F>
Tensor host_binary(const Tensor& a, const Tensor& b, F f) {
  std::vector<double> x = a.tolist<double>(), y = b.tolist<double>(), r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = f(x[i], y[i]);
  return tensor(r, a.shape(), TensorOptions(DType::f64));
}

}  // namespace

TEST_CASE("method forms give the free functions' results", "[tensor][api]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  Tensor x = random_input({5, 7}, 11).to(d, DType::f32);
  Tensor y = random_input({5, 7}, 12).to(d, DType::f32);
  Tensor w = random_input({7, 3}, 13).to(d, DType::f32);
  Tensor pos = add(abs(x), 0.5);
  check_same(x.sum(), sum(x), "sum()");
  check_same(x.sum({1}, true), sum(x, {1}, true), "sum({1}, true)");
  check_same(x.sum(0), sum(x, {0}), "sum(0)");
  check_same(x.sum({0, 1}), sum(x, {0, 1}), "sum({0, 1})");
  check_same(x.mean(), mean(x), "mean()");
  check_same(x.mean(-1, true), mean(x, {-1}, true), "mean(-1, true)");
  check_same(x.var({1}), var(x, {1}), "var");
  check_same(x.max(), max(x), "max()");
  check_same(x.min(), min(x), "min()");
  check_same(x.max(1).values(), max(x, 1).values(), "max(1) values");
  check_same(x.max(1).indices(), max(x, 1).indices(), "max(1) indices");
  check_same(x.min(0, true).indices(), min(x, 0, true).indices(), "min(0, true) indices");
  check_same(x.argmax(1), argmax(x, 1), "argmax");
  check_same(x.argmin(0), argmin(x, 0), "argmin");
  check_same(x.abs(), abs(x), "abs");
  check_same(x.neg(), neg(x), "neg");
  check_same(x.exp(), exp(x), "exp");
  check_same(pos.log(), log(pos), "log");
  check_same(pos.sqrt(), sqrt(pos), "sqrt");
  check_same(pos.rsqrt(), rsqrt(pos), "rsqrt");
  check_same(x.pow(2), pow(x, 2.0), "pow(2)");
  check_same(pos.pow(y), pow(pos, y), "pow(tensor)");
  check_same(x.square(), square(x), "square");
  check_same(x.sin(), sin(x), "sin");
  check_same(x.cos(), cos(x), "cos");
  check_same(x.tanh(), tanh(x), "tanh");
  check_same(x.sigmoid(), sigmoid(x), "sigmoid");
  check_same(x.relu(), relu(x), "relu");
  check_same(x.gelu(), gelu(x), "gelu");
  check_same(x.gelu(true), gelu(x, true), "gelu tanh");
  check_same(x.clamp(-0.5, 0.5), clamp(x, -0.5, 0.5), "clamp");
  check_same(x.clamp_min(0.1), clamp_min(x, 0.1), "clamp_min");
  check_same(x.clamp_max(0.1), clamp_max(x, 0.1), "clamp_max");
  check_same(x.add(y, 2.0), add(x, y, 2.0), "add");
  check_same(x.sub(y), sub(x, y), "sub");
  check_same(x.mul(y), mul(x, y), "mul");
  check_same(x.div(pos), div(x, pos), "div");
  check_same(x.add(3.0), add(x, 3.0), "add scalar");
  check_same(x.mul(3.0), mul(x, 3.0), "mul scalar");
  check_same(x.maximum(y), maximum(x, y), "maximum");
  check_same(x.minimum(y), minimum(x, y), "minimum");
  check_same(x.gt(y), gt(x, y), "gt");
  check_same(x.le(0.0), le(x, 0.0), "le scalar");
  check_same(x.matmul(w), matmul(x, w), "matmul");
  check_same(x.mm(w), matmul(x, w), "mm");
  check_same(x.softmax(-1), softmax(x, -1), "softmax");
  check_same(x.log_softmax(1), log_softmax(x, 1), "log_softmax");
  Tensor idx = tensor(std::vector<int64_t>{4, 0, 2}).to(d);
  check_same(x.index_select(0, idx), index_select(x, 0, idx), "index_select");
  CHECK(x.allclose(x.clone()));
  CHECK_FALSE(x.allclose(add(x, 1.0)));
  CHECK_THROWS_WITH(x.unsqueeze(0).mm(w), Catch::Contains("mm") && Catch::Contains("[1, 5, 7]"));
  // the method forms build the same graph as the free functions
  Tensor xg = random_input({4, 6}, 14);
  CHECK(gradcheck([](const V& v) { return v[0].softmax(-1).mul(v[1]).sum({1}); }, {xg, random_input({4, 6}, 15)}));
  CHECK(gradcheck([](const V& v) { return v[0].matmul(v[1]).tanh().mean(0, true); },
                  {random_input({3, 4}, 16), random_input({4, 2}, 17)}));
}

TEST_CASE("data_ptr<T> and data<T> check the element type", "[tensor][api]") {
  Tensor f = zeros({2, 3}, DType::f32);
  Tensor d = zeros({2, 3}, DType::f64);
  CHECK(f.data_ptr<float>() == static_cast<float*>(f.data_ptr()));
  CHECK(d.data<double>() == static_cast<double*>(d.data_ptr()));
  CHECK(zeros({2}, DType::i64).data_ptr<int64_t>() != nullptr);
  CHECK(zeros({2}, DType::i32).data_ptr<int32_t>() != nullptr);
  CHECK(zeros({2}, DType::u8).data_ptr<uint8_t>() != nullptr);
  CHECK(zeros({2}, DType::b8).data_ptr<bool>() != nullptr);
  CHECK(zeros({2}, DType::bf16).data_ptr<uint16_t>() != nullptr);
  CHECK(zeros({2}, DType::f16).data<const uint16_t>() != nullptr);
  // an offset view points at its first element
  Tensor a = arange(0.0, 6.0, 1.0, DType::f64);
  CHECK(*a.slice(0, 2, 6).data_ptr<double>() == 2.0);
  CHECK_THROWS_WITH(d.data_ptr<float>(), Catch::Contains("data_ptr<float>") && Catch::Contains("float64") &&
                                             Catch::Contains("[2, 3]") && Catch::Contains("data_ptr<double>"));
  CHECK_THROWS_WITH(f.data<double>(), Catch::Contains("data<double>") && Catch::Contains("float32"));
  CHECK_THROWS_WITH(zeros({2}, DType::i32).data_ptr<int64_t>(), Catch::Contains("int32"));
  CHECK_THROWS_WITH(zeros({2}, DType::b8).data_ptr<uint8_t>(), Catch::Contains("bool"));
  CHECK_THROWS_WITH(Tensor().data_ptr<float>(), Catch::Contains("undefined"));
}

TEST_CASE("compound assignment works in place and is refused on tensors that require grad", "[tensor][api]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  Tensor x64 = random_input({4, 5}, 21);
  Tensor y64 = random_input({4, 5}, 22);
  Tensor r64 = random_input({5}, 23);  // broadcast row
  Tensor ry64 = r64.view({1, 5}).expand({4, 5}).contiguous();
  Tensor yp64 = add(abs(y64), 0.5);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = x64.to(d, dt).clone();
    Tensor alias = x;  // same handle: the storage is updated in place
    void* before = x.data_ptr();
    x += y64.to(d, dt);
    check_close(alias, host_binary(x64, y64, [](double a, double b) { return a + b; }), -1, "+= tensor");
    CHECK(x.data_ptr() == before);
    x -= r64.to(d, dt);  // broadcast right-hand side
    Tensor e = host_binary(host_binary(x64, y64, [](double a, double b) { return a + b; }), ry64,
                           [](double a, double b) { return a - b; });
    check_close(alias, e, -1, "-= broadcast");
    x *= yp64.to(d, dt);
    e = host_binary(e, yp64, [](double a, double b) { return a * b; });
    check_close(alias, e, -1, "*= tensor");
    x /= yp64.to(d, dt);
    e = host_binary(e, yp64, [](double a, double b) { return a / b; });
    check_close(alias, e, -1, "/= tensor");
    x += 1.5;
    x -= 0.25;
    x *= -2.0;
    x /= 3.0;
    std::vector<double> ev = e.tolist<double>();
    for (double& v : ev) v = ((v + 1.5) - 0.25) * -2.0 / 3.0;
    check_close(alias, tensor(ev, {4, 5}, DType::f64), -1, "scalar compound ops");
  }
  // integer tensors keep their dtype
  Tensor i = arange(6).to(d);
  i += 2.0;
  CHECK(i.dtype() == DType::i64);
  CHECK(i.tolist<int64_t>() == std::vector<int64_t>{2, 3, 4, 5, 6, 7});
  // the result must fit the left-hand side
  Tensor small = zeros({5}, TensorOptions(DType::f32, d));
  CHECK_THROWS_WITH(small += ones({4, 5}, TensorOptions(DType::f32, d)),
                    Catch::Contains("operator+=") && Catch::Contains("[4, 5]") && Catch::Contains("[5]"));
  // refused on a tensor that requires grad while grad mode is on, allowed under NoGradGuard
  Tensor p = ones({3}, TensorOptions(DType::f32, d).requires_grad(true));
  CHECK_THROWS_WITH(p += 1.0, Catch::Contains("operator+=") && Catch::Contains("requires grad"));
  CHECK_THROWS_WITH(p *= p, Catch::Contains("operator*=") && Catch::Contains("requires grad"));
  CHECK_THROWS_WITH(p /= 2.0, Catch::Contains("operator/="));
  CHECK_THROWS_WITH(p -= p, Catch::Contains("operator-="));
  {
    NoGradGuard ng;
    p -= 0.5;
  }
  CHECK(p.tolist<float>() == std::vector<float>{0.5f, 0.5f, 0.5f});
  Tensor q = ones({3}, TensorOptions(DType::f32, d));
  q.div_(full({3}, 4.0, TensorOptions(DType::f32, d)));
  CHECK(q.tolist<float>() == std::vector<float>{0.25f, 0.25f, 0.25f});
}

TEST_CASE("comparison operators with scalars and tensors give bool tensors", "[tensor][api]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  Tensor h = random_input({3, 7}, 31);
  std::vector<double> v = h.tolist<double>();
  Tensor t = h.to(d, DType::f32);
  std::vector<float> vf = t.tolist<float>();
  const float c = 0.25f;
  auto expect = [&](auto pred) {
    std::vector<bool> r;
    for (float a : vf) r.push_back(pred(a));
    return r;
  };
  Tensor gt0 = t > 0.0;
  CHECK(gt0.dtype() == DType::b8);
  CHECK(gt0.device() == d);
  CHECK(gt0.shape() == t.shape());
  CHECK(gt0.tolist<bool>() == expect([](float a) { return a > 0.0f; }));
  CHECK((t >= c).tolist<bool>() == expect([&](float a) { return a >= c; }));
  CHECK((t < c).tolist<bool>() == expect([&](float a) { return a < c; }));
  CHECK((t <= c).tolist<bool>() == expect([&](float a) { return a <= c; }));
  CHECK((t == vf[4]).tolist<bool>() == expect([&](float a) { return a == vf[4]; }));
  CHECK((t != vf[4]).tolist<bool>() == expect([&](float a) { return a != vf[4]; }));
  // scalar on the left mirrors the comparison
  CHECK((0.0 < t).tolist<bool>() == expect([](float a) { return 0.0f < a; }));
  CHECK((c >= t).tolist<bool>() == expect([&](float a) { return c >= a; }));
  CHECK((c > t).tolist<bool>() == expect([&](float a) { return c > a; }));
  CHECK((c <= t).tolist<bool>() == expect([&](float a) { return c <= a; }));
  CHECK((vf[2] == t).tolist<bool>() == expect([&](float a) { return vf[2] == a; }));
  // tensor against tensor, broadcast
  Tensor row = t.select(0, 1);
  std::vector<bool> r;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 7; ++j) r.push_back(vf[i * 7 + j] > vf[7 + j]);
  CHECK((t > row).tolist<bool>() == r);
  // a mask works as a weight
  check_close(sum(mul(t > 0.0, t)), scalar_tensor([&] {
                double s = 0;
                for (float a : vf) s += a > 0 ? a : 0;
                return s;
              }(), DType::f64), -1, "masked sum");
  (void)v;
}

TEST_CASE("max and min over a dim return values and indices", "[tensor][api][reduce]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  Tensor h = random_input({4, 6, 3}, 41);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = h.to(d, dt);
    std::vector<double> v = x.tolist<double>();  // the values as rounded to dt
    // reference over dim 1 of [4, 6, 3]: first extremum
    std::vector<double> mx(12), mn(12);
    std::vector<int64_t> imx(12), imn(12);
    for (int64_t a = 0; a < 4; ++a)
      for (int64_t c = 0; c < 3; ++c) {
        int64_t bi = 0, bj = 0;
        for (int64_t b = 1; b < 6; ++b) {
          if (v[(a * 6 + b) * 3 + c] > v[(a * 6 + bi) * 3 + c]) bi = b;
          if (v[(a * 6 + b) * 3 + c] < v[(a * 6 + bj) * 3 + c]) bj = b;
        }
        mx[a * 3 + c] = v[(a * 6 + bi) * 3 + c];
        mn[a * 3 + c] = v[(a * 6 + bj) * 3 + c];
        imx[a * 3 + c] = bi;
        imn[a * 3 + c] = bj;
      }
    auto [values, indices] = max(x, 1);
    CHECK(values.shape() == Shape{4, 3});
    CHECK(indices.dtype() == DType::i64);
    CHECK(indices.device() == d);
    check_close(values, tensor(mx, {4, 3}, DType::f64), 0.0, "max values");
    CHECK(indices.tolist<int64_t>() == imx);
    Tensor mv, mi;
    std::tie(mv, mi) = x.min(1, true);
    CHECK(mv.shape() == Shape{4, 1, 3});
    CHECK(mi.shape() == Shape{4, 1, 3});
    check_close(mv, tensor(mn, {4, 1, 3}, DType::f64), 0.0, "min values");
    CHECK(mi.tolist<int64_t>() == imn);
    CHECK(std::get<1>(x.max(-2)).tolist<int64_t>() == imx);
    // indices agree with gather
    check_close(gather(x, 1, std::get<1>(max(x, 1, true))), tensor(mx, {4, 1, 3}, DType::f64), 0.0, "gather");
    // still converts to the values tensor
    Tensor only = max(x, 1);
    check_close(only, tensor(mx, {4, 3}, DType::f64), 0.0, "converted");
  }
  // ties give the first index, as torch does on the CPU
  Tensor tie = tensor({1.f, 3.f, 3.f, 0.f, 2.f, 2.f}, {2, 3});
  CHECK(std::get<1>(max(tie, 1)).tolist<int64_t>() == std::vector<int64_t>{1, 1});
  // gradients flow through the values (to the selected element)
  CHECK(gradcheck([](const V& in) { return std::get<0>(in[0].max(1)); }, {random_input({3, 5}, 42)}));
  CHECK(gradcheck([](const V& in) { return in[0].min(0, true).values(); }, {random_input({4, 2}, 43)}));
  Tensor g = random_input({2, 4}, 44).requires_grad_(true);
  auto [gv, gi] = max(g, 1);
  sum(gv).backward();
  std::vector<double> expect(8, 0.0);
  std::vector<int64_t> gil = gi.tolist<int64_t>();
  for (int64_t r = 0; r < 2; ++r) expect[r * 4 + gil[r]] = 1.0;
  CHECK(g.grad().tolist<double>() == expect);
  CHECK_FALSE(gi.requires_grad());
}

TEST_CASE("TensorOptions builders configure the factories", "[tensor][api]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  const TensorOptions o = TensorOptions().dtype(kFloat64).device(d).requires_grad(true);
  CHECK(o.dtype() == DType::f64);
  CHECK(o.device() == d);
  CHECK(o.requires_grad());
  // builders return modified copies
  const TensorOptions base;
  CHECK(base.dtype(kInt64).dtype() == DType::i64);
  CHECK(base.dtype() == DType::f32);
  CHECK(base.device() == kCPU);
  CHECK_FALSE(base.requires_grad());
  CHECK(TensorOptions(kHalf).device(DeviceType::SIM, 0).device() == Device("sim"));
  for (const Tensor& t : {zeros({2, 3}, o), ones({2, 3}, o), full({2, 3}, 1.5, o), empty({2, 3}, o), randn({2, 3}, o),
                          rand({2, 3}, o), tensor(std::vector<double>(6, 1.0), {2, 3}, o),
                          tensor(std::vector<int64_t>(6, 1), {2, 3}, o)}) {
    CHECK(t.dtype() == DType::f64);
    CHECK(t.device() == d);
    CHECK(t.requires_grad());
    CHECK(t.is_leaf());
  }
  CHECK(full({2}, 1.5, o).tolist<double>() == std::vector<double>{1.5, 1.5});
  Tensor ar = arange(0.0, 3.0, 1.0, TensorOptions().dtype(kFloat32).device(d).requires_grad(true));
  CHECK((ar.dtype() == DType::f32 && ar.device() == d && ar.requires_grad()));
  Tensor ls = linspace(0.0, 1.0, 3, dtype(kDouble).device(d));
  CHECK(ls.tolist<double>() == std::vector<double>{0.0, 0.5, 1.0});
  CHECK_FALSE(ls.requires_grad());
  Tensor z = zeros({2}, requires_grad());
  CHECK((z.requires_grad() && z.dtype() == DType::f32 && z.device() == kCPU));
  CHECK(zeros({2}, device(d)).device() == d);
  CHECK(zeros({2}, kLong).dtype() == DType::i64);
  // options() round trip and to(options)
  Tensor x = randn({3}, o);
  TensorOptions xo = x.options();
  CHECK((xo.dtype() == DType::f64 && xo.device() == d && xo.requires_grad()));
  Tensor y = x.detach().to(TensorOptions().dtype(kFloat32).device(kCPU));
  CHECK((y.dtype() == DType::f32 && y.device() == kCPU));
  CHECK(x.scalar_type() == DType::f64);
  // requires_grad on an integer dtype is refused by name
  CHECK_THROWS_WITH(zeros({2}, TensorOptions().dtype(kLong).requires_grad(true)), Catch::Contains("floating"));
  // the in-place spellings still work
  TensorOptions w;
  w.with_dtype(kFloat64).with_requires_grad();
  CHECK((w.dtype() == DType::f64 && w.requires_grad()));
}

TEST_CASE("grad() of a non-leaf warns once; retain_grad keeps it", "[autograd][api]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  std::vector<std::string> warnings;
  WarningHandler prev = set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  reset_warn_once();
  Tensor x = random_input({3, 4}, 51).to(d).requires_grad_(true);
  Tensor y = mul(x, 3.0);
  Tensor z = sum(mul(y, y));
  z.backward();
  CHECK_FALSE(y.grad().defined());
  REQUIRE(warnings.size() == 1);
  CHECK_THAT(warnings[0], Catch::Contains("non-leaf") && Catch::Contains("retain_grad") && Catch::Contains("[3, 4]"));
  CHECK_FALSE(y.grad().defined());
  CHECK(warnings.size() == 1);  // once
  CHECK(x.grad().defined());    // leaves do not warn
  CHECK(warnings.size() == 1);

  // retain_grad: dz/dy = 2y, accumulated across backward calls as a leaf's grad is
  Tensor x2 = random_input({3, 4}, 52).to(d).requires_grad_(true);
  Tensor y2 = mul(x2, 3.0);
  y2.retain_grad();
  CHECK(y2.retains_grad());
  Tensor w2 = y2.exp();  // a second consumer of y2
  Tensor z2 = add(sum(mul(y2, y2)), sum(w2));
  z2.backward(Tensor(), /*retain_graph=*/true);
  std::vector<double> yv = y2.detach().tolist<double>(), ref(yv.size());
  for (size_t i = 0; i < yv.size(); ++i) ref[i] = 2 * yv[i] + std::exp(yv[i]);
  check_close(y2.grad(), tensor(ref, {3, 4}, DType::f64), -1, "retained grad");
  CHECK(warnings.size() == 1);
  Tensor z3 = sum(y2);
  z3.backward();
  for (double& r : ref) r += 1.0;
  check_close(y2.grad(), tensor(ref, {3, 4}, DType::f64), -1, "retained grad accumulates");
  // leaves: no-op; no grad: an error
  x2.retain_grad();
  CHECK_FALSE(x2.retains_grad());
  CHECK_THROWS_WITH(zeros({2}).retain_grad(), Catch::Contains("does not require grad"));
  set_warning_handler(prev);
}

namespace {
// A user-defined op through the custom-op API: out = a * b (elementwise, b broadcast to a);
// `mode` plants the mistakes the checks must catch.
Tensor custom_mul(const Tensor& a, const Tensor& b, int mode) {
  Tensor out;
  {
    NoGradGuard ng;
    out = mul(a, b);
  }
  Tensor ad = a.detach(), bd = b.detach();
  autograd::record("my_custom_mul", out, {a, b}, [ad, bd, mode](const Tensor& g) -> std::vector<Tensor> {
    Tensor ga = mul(g, bd);
    Tensor gb_full = mul(g, ad);  // shaped like a: broadcast, summed by the engine to b's shape
    if (mode == 1) return {ga};                          // too few gradients
    if (mode == 2) return {ga, gb_full, gb_full};        // too many
    if (mode == 3) return {ga.reshape({-1}), gb_full};   // wrong shape for input 0
    if (mode == 4) return {ga.to(kCPU), gb_full};        // wrong device (only differs off cpu)
    return {ga, gb_full};
  });
  return out;
}
}  // namespace

TEST_CASE("custom ops: the gradients a backward returns are checked and reduced", "[autograd][api]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  // correct op: broadcast gradient for b ([4] under a [3, 4]) is summed to b's shape
  CHECK(gradcheck([](const V& v) { return custom_mul(v[0], v[1], 0); }, {random_input({3, 4}, 61), random_input({4}, 62)}));
  Tensor a = random_input({3, 4}, 63).to(d).requires_grad_(true);
  Tensor b = random_input({4}, 64).to(d).requires_grad_(true);
  sum(custom_mul(a, b, 0)).backward();
  REQUIRE(b.grad().shape() == Shape{4});
  check_close(b.grad(), sum(a.detach().to(kCPU, DType::f64), {0}), -1, "reduced broadcast gradient");
  // a non-leaf input also gets its gradient in its own shape
  Tensor b2 = random_input({4}, 65).to(d).requires_grad_(true);
  Tensor bm = mul(b2, 2.0);
  sum(custom_mul(a.detach(), bm, 0)).backward();
  check_close(b2.grad(), mul(sum(a.detach().to(kCPU, DType::f64), {0}), 2.0), -1, "through a non-leaf");

  auto run = [&](int mode) {
    Tensor x = random_input({3, 4}, 66).to(d).requires_grad_(true);
    Tensor y = random_input({4}, 67).to(d).requires_grad_(true);
    sum(custom_mul(x, y, mode)).backward();
  };
  CHECK_THROWS_WITH(run(1), Catch::Contains("my_custom_mul") && Catch::Contains("returned 1 gradient for 2 inputs"));
  CHECK_THROWS_WITH(run(2), Catch::Contains("my_custom_mul") && Catch::Contains("returned 3 gradients for 2 inputs"));
  CHECK_THROWS_WITH(run(3), Catch::Contains("my_custom_mul") && Catch::Contains("[12]") && Catch::Contains("[3, 4]") &&
                                Catch::Contains("input 0"));
  if (!d.is_cpu()) CHECK_THROWS_WITH(run(4), Catch::Contains("my_custom_mul") && Catch::Contains("cpu"));
  // gradients for inputs that need none are not checked
  Tensor x = random_input({3, 4}, 68).to(d).requires_grad_(true);
  Tensor y = random_input({4}, 69).to(d);
  Tensor out;
  {
    NoGradGuard ng;
    out = mul(x, y);
  }
  autograd::record("partial", out, {x, y}, [](const Tensor& g) { return std::vector<Tensor>{g, Tensor()}; });
  sum(out).backward();
  CHECK(x.grad().defined());
}
