// Reductions (sum, mean, max, min, argmax, argmin, var, sum_to) against float64
// references on every backend: dtypes, odd sizes, several dim subsets, keepdim,
// non-contiguous inputs, NaN and tie semantics, integer dtype rules, error messages,
// the reduce kernel called directly on poisoned outputs, and gradchecks.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/backend.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

namespace {

enum class Kind { Sum, Mean, Max, Min, ArgMax, ArgMin, Var };

// Clear float64 reference: visits every element, maps it to its output position by
// dropping the reduced dims, and folds it there. Empty dims = all dims.
Tensor ref_reduce(const Tensor& x_in, std::vector<int64_t> dims, bool keepdim, Kind kind, int64_t correction = 1) {
  Tensor x = x_in.detach().to(kCPU, DType::f64).contiguous();
  const int64_t nd = x.dim();
  if (dims.empty())
    for (int64_t d = 0; d < nd; ++d) dims.push_back(d);
  for (auto& d : dims) d = d < 0 ? d + nd : d;
  auto reduced = [&](int64_t d) { return std::find(dims.begin(), dims.end(), d) != dims.end(); };
  Shape out_shape, kept_shape;
  for (int64_t d = 0; d < nd; ++d) {
    if (!reduced(d)) kept_shape.push_back(x.shape()[d]);
    if (!reduced(d))
      out_shape.push_back(x.shape()[d]);
    else if (keepdim)
      out_shape.push_back(1);
  }
  int64_t outputs = 1;
  for (auto s : kept_shape) outputs *= s;
  std::vector<std::vector<double>> groups(static_cast<size_t>(outputs));
  const double* p = x.data<double>();
  for (int64_t lin = 0; lin < x.numel(); ++lin) {
    int64_t rem = lin, out_index = 0, scale = 1;
    for (int64_t d = nd - 1; d >= 0; --d) {
      int64_t i = rem % x.shape()[d];
      rem /= x.shape()[d];
      if (!reduced(d)) {
        out_index += i * scale;
        scale *= x.shape()[d];
      }
    }
    groups[out_index].push_back(p[lin]);  // in row-major order of the reduced dims
  }
  Tensor out = zeros(out_shape, TensorOptions(DType::f64));
  double* o = out.data<double>();
  for (int64_t k = 0; k < outputs; ++k) {
    const auto& g = groups[k];
    double r = 0;
    switch (kind) {
      case Kind::Sum:
      case Kind::Mean:
        for (double v : g) r += v;
        if (kind == Kind::Mean) r /= static_cast<double>(g.size());
        break;
      case Kind::Var: {
        double m = 0;
        for (double v : g) m += v;
        m /= static_cast<double>(g.size());
        for (double v : g) r += (v - m) * (v - m);
        r /= static_cast<double>(g.size()) - static_cast<double>(correction);
        break;
      }
      case Kind::Max:
      case Kind::Min:
      case Kind::ArgMax:
      case Kind::ArgMin: {
        bool want_max = kind == Kind::Max || kind == Kind::ArgMax;
        size_t best = 0;
        for (size_t i = 1; i < g.size(); ++i)
          if (want_max ? g[i] > g[best] : g[i] < g[best]) best = i;
        r = (kind == Kind::Max || kind == Kind::Min) ? g[best] : static_cast<double>(best);
        break;
      }
    }
    o[k] = r;
  }
  return out;
}

struct ReduceCase {
  Shape shape;
  std::vector<int64_t> dims;
};

std::vector<ReduceCase> reduce_cases() {
  return {
      {{7}, {}},
      {{1}, {0}},
      {{33, 5}, {0}},
      {{33, 5}, {1}},
      {{3, 197}, {-1}},
      {{3, 197}, {}},
      {{4, 7, 9}, {0, 2}},
      {{4, 7, 9}, {1}},
      {{4, 7, 9}, {2, 0, 1}},
      {{2, 1, 33}, {0}},
      {{5, 6, 7, 3}, {1, 3}},
      {{1025}, {0}},
  };
}

Device dev_of(const std::string& s) { return Device(s); }

}  // namespace

TEST_CASE("sum, mean and var match float64 references", "[reduce]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto keepdim = GENERATE(false, true);
  auto noncontig = GENERATE(false, true);
  uint64_t seed = 1;
  for (const auto& c : reduce_cases()) {
    Tensor x = random_input(c.shape, seed++, dt, dev_of(dev));
    if (noncontig) x = non_contiguous_copy(x);
    INFO("shape " << shape_str(c.shape) << " dims " << shape_str(c.dims) << " dtype " << dtype_name(dt) << " on " << dev
                  << (noncontig ? " (non-contiguous)" : "") << " keepdim " << keepdim);
    Tensor s = sum(x, c.dims, keepdim);
    CHECK(s.dtype() == dt);
    check_close(s, ref_reduce(x, c.dims, keepdim, Kind::Sum), -1, "sum");
    check_close(mean(x, c.dims, keepdim), ref_reduce(x, c.dims, keepdim, Kind::Mean), -1, "mean");
    int64_t count = 1;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (c.dims.empty() || std::find(c.dims.begin(), c.dims.end(), d) != c.dims.end() ||
          std::find(c.dims.begin(), c.dims.end(), d - x.dim()) != c.dims.end())
        count *= x.shape()[d];
    if (count > 1) {
      check_close(var(x, c.dims, 1, keepdim), ref_reduce(x, c.dims, keepdim, Kind::Var, 1), -1, "var");
      check_close(var(x, c.dims, 0, keepdim), ref_reduce(x, c.dims, keepdim, Kind::Var, 0), -1, "var(correction=0)");
    }
  }
}

TEST_CASE("sum and mean over all elements return 0-dim tensors", "[reduce]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Tensor x = random_input({7, 33}, 5, DType::f32, dev_of(dev));
  Tensor s = sum(x);
  CHECK(s.dim() == 0);
  check_close(s, ref_reduce(x, {}, false, Kind::Sum));
  check_close(mean(x), ref_reduce(x, {}, false, Kind::Mean));
  // A transposed view reduces the same values.
  Tensor xt = x.t();
  check_close(sum(xt, {0}), ref_reduce(xt, {0}, false, Kind::Sum));
  check_close(sum(xt, {1}, true), ref_reduce(xt, {1}, true, Kind::Sum));
  // 0-dim input
  Tensor z = scalar_tensor(2.5, TensorOptions(DType::f32, dev_of(dev)));
  CHECK(sum(z).item() == 2.5);
  CHECK(sum(z, {0}).item() == 2.5);
}

TEST_CASE("max, min, argmax and argmin match float64 references", "[reduce]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto keepdim = GENERATE(false, true);
  auto noncontig = GENERATE(false, true);
  const std::vector<std::pair<Shape, int64_t>> cases = {
      {{7}, 0}, {{1}, 0}, {{33, 5}, 0}, {{33, 5}, 1}, {{3, 197}, -1}, {{4, 7, 9}, 1}, {{4, 7, 9}, 0}, {{2, 1, 33}, 1}};
  uint64_t seed = 100;
  for (const auto& [shape, dim] : cases) {
    Tensor x = random_input(shape, seed++, dt, dev_of(dev));
    if (noncontig) x = non_contiguous_copy(x);
    INFO("shape " << shape_str(shape) << " dim " << dim << " dtype " << dtype_name(dt) << " on " << dev);
    check_close(max(x, dim, keepdim), ref_reduce(x, {dim}, keepdim, Kind::Max), 0.0, "max");
    check_close(min(x, dim, keepdim), ref_reduce(x, {dim}, keepdim, Kind::Min), 0.0, "min");
    Tensor am = argmax(x, dim, keepdim);
    CHECK(am.dtype() == DType::i64);
    check_close(am, ref_reduce(x, {dim}, keepdim, Kind::ArgMax), 0.0, "argmax");
    check_close(argmin(x, dim, keepdim), ref_reduce(x, {dim}, keepdim, Kind::ArgMin), 0.0, "argmin");
    check_close(max(x), ref_reduce(x, {}, false, Kind::Max), 0.0, "max all");
    check_close(min(x), ref_reduce(x, {}, false, Kind::Min), 0.0, "min all");
  }
}

TEST_CASE("long reductions split across blocks (column sums of a Linear's bias gradient, whole tensors)", "[reduce]") {
  // Shapes that take the split schedules of kernels/cuda/reduce.cu on sim/cuda: few outputs
  // with a long reduced range, thread-per-output (columns) and block-per-output (rows, all).
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  uint64_t seed = 300;
  for (const Shape& shape : {Shape{1031, 9}, Shape{9000, 3}, Shape{2, 9001}, Shape{300, 40}, Shape{200, 1100}}) {
    Tensor x = random_input(shape, seed++, dt, dev_of(dev));
    INFO("shape " << shape_str(shape) << " dtype " << dtype_name(dt) << " on " << dev);
    check_close(sum(x, {0}), ref_reduce(x, {0}, false, Kind::Sum), -1, "column sum");
    check_close(sum(x, {1}), ref_reduce(x, {1}, false, Kind::Sum), -1, "row sum");
    check_close(sum(x), ref_reduce(x, {}, false, Kind::Sum), -1, "sum all");
    check_close(max(x, 0), ref_reduce(x, {0}, false, Kind::Max), 0.0, "column max");
    check_close(argmax(x, 0), ref_reduce(x, {0}, false, Kind::ArgMax), 0.0, "column argmax");
    check_close(argmin(x, 1), ref_reduce(x, {1}, false, Kind::ArgMin), 0.0, "row argmin");
    check_close(min(x), ref_reduce(x, {}, false, Kind::Min), 0.0, "min all");
    // Deterministic: the same call gives the same bits.
    CHECK(sum(x, {0}).to(kCPU, DType::f64).tolist<double>() == sum(x, {0}).to(kCPU, DType::f64).tolist<double>());
  }
}

TEST_CASE("max/argmax: ties pick the first index, NaN propagates", "[reduce]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d = dev_of(dev);
  Tensor x = tensor({1.f, 5.f, 5.f, 2.f, 3.f, 3.f, 0.f, 3.f}, {2, 4}).to(d);
  CHECK(argmax(x, 1).tolist<int64_t>() == std::vector<int64_t>{1, 0});
  CHECK(argmin(x, 1).tolist<int64_t>() == std::vector<int64_t>{0, 2});
  CHECK(argmax(x, 0).tolist<int64_t>() == std::vector<int64_t>{1, 0, 0, 1});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor y = tensor({1.f, nan, 7.f, 2.f, 4.f, 3.f}, {2, 3}).to(d);
  auto mx = max(y, 1).values().tolist<double>();
  CHECK(std::isnan(mx[0]));
  CHECK(mx[1] == 4.0);
  CHECK(argmax(y, 1).tolist<int64_t>() == std::vector<int64_t>{1, 1});
  CHECK(std::isnan(min(y).item()));
  CHECK(std::isnan(sum(y, {1}).tolist<double>()[0]));
  // Reducing dim 0 of a wide matrix walks whole rows at once (kernel's column schedule).
  std::vector<float> v(3 * 9);
  for (size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>((k * 7) % 5);
  v[1 * 9 + 2] = nan;                 // column 2: NaN in the middle
  v[0 * 9 + 5] = v[2 * 9 + 5] = 9.f;  // column 5: tie between rows 0 and 2
  Tensor w = tensor(v, {3, 9}).to(d);
  auto wmax = max(w, 0).values().tolist<double>();
  auto wam = argmax(w, 0).tolist<int64_t>();
  auto wamin = argmin(w, 0).tolist<int64_t>();
  for (int64_t c = 0; c < 9; ++c) {
    INFO("column " << c);
    if (c == 2) {
      CHECK(std::isnan(wmax[c]));
      CHECK(wam[c] == 1);
      CHECK(wamin[c] == 1);
      continue;
    }
    int64_t best = 0, worst = 0;
    for (int64_t r = 1; r < 3; ++r) {
      if (v[r * 9 + c] > v[best * 9 + c]) best = r;
      if (v[r * 9 + c] < v[worst * 9 + c]) worst = r;
    }
    CHECK(wmax[c] == v[best * 9 + c]);
    CHECK(wam[c] == best);
    CHECK(wamin[c] == worst);
  }
  CHECK(wam[5] == 0);
}

TEST_CASE("sum of integers and bools gives int64; mean/var need floating", "[reduce]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d = dev_of(dev);
  Tensor i = tensor(std::vector<int64_t>{3, -4, 5, 6, 7, 8}, {2, 3}).to(d, DType::i32);
  // int32 sums do not overflow: they accumulate in int64.
  Tensor big = full({5}, 2000000000.0, TensorOptions(DType::i32, d));
  Tensor sb = sum(big);
  CHECK(sb.dtype() == DType::i64);
  CHECK(sb.item<int64_t>() == 10000000000LL);
  Tensor b = gt(random_input({7, 33}, 9, DType::f32, d), 0.0);
  Tensor count = sum(b, {1});
  CHECK(count.dtype() == DType::i64);
  check_close(count, ref_reduce(b.to(DType::f64), {1}, false, Kind::Sum), 0.0, "bool count");
  Tensor i64 = arange(int64_t(12), TensorOptions(DType::i64, d)).reshape({3, 4});
  CHECK(sum(i64, {0}).tolist<int64_t>() == std::vector<int64_t>{12, 15, 18, 21});
  CHECK(max(i64, 1).values().tolist<int64_t>() == std::vector<int64_t>{3, 7, 11});
  CHECK(max(i64, 1).values().dtype() == DType::i64);
  CHECK_THROWS_WITH(mean(i), Catch::Contains("mean") && Catch::Contains("int32") && Catch::Contains("[2, 3]"));
  CHECK_THROWS_WITH(var(i64, {0}), Catch::Contains("var") && Catch::Contains("int64"));
}

TEST_CASE("reduction errors name the op and the shape", "[reduce]") {
  Tensor x = random_input({3, 4}, 1, DType::f32);
  CHECK_THROWS_WITH(sum(x, {2}), Catch::Contains("sum") && Catch::Contains("dimension 2"));
  CHECK_THROWS_WITH(sum(x, {1, -1}), Catch::Contains("sum") && Catch::Contains("more than once"));
  Tensor e = empty({0, 4});
  CHECK_THROWS_WITH(max(e), Catch::Contains("max") && Catch::Contains("[0, 4]"));
  CHECK_THROWS_WITH(argmax(e, 0), Catch::Contains("argmax") && Catch::Contains("[0, 4]"));
  CHECK(max(e, 1).values().shape() == Shape{0});
  CHECK(sum(e, {0}).tolist<float>() == std::vector<float>{0, 0, 0, 0});
  CHECK_THROWS_WITH(sum_to(x, {5}), Catch::Contains("sum_to") && Catch::Contains("[3, 4]") && Catch::Contains("[5]"));
}

TEST_CASE("sum_to reduces broadcast dims", "[reduce]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Tensor x = random_input({2, 3, 5}, 3, DType::f64, dev_of(dev));
  check_close(sum_to(x, {3, 1}), ref_reduce(x, {0, 2}, false, Kind::Sum).reshape({3, 1}));
  check_close(sum_to(x, {5}), ref_reduce(x, {0, 1}, false, Kind::Sum));
  check_close(sum_to(x, {1, 1, 1}), ref_reduce(x, {}, true, Kind::Sum));
  check_close(sum_to(x, {}), ref_reduce(x, {}, false, Kind::Sum));
  CHECK(sum_to(x, {2, 3, 5}).is_same(x));
}

TEST_CASE("float32 sum of a million elements stays accurate", "[reduce]") {
  // Values with a large common offset make naive float accumulation lose digits.
  Tensor x64 = add(random_input({1000003}, 77), 3.0);
  Tensor x = x64.to(DType::f32);
  Tensor ref = ref_reduce(x, {}, false, Kind::Sum);
  check_close(sum(x), ref, 1e-5, "sum all");
  check_close(mean(x), ref_reduce(x, {}, false, Kind::Mean), 1e-5, "mean all");
  Tensor m = x.reshape({1000003, 1}).expand({1000003, 2});  // stride-0 kept dim
  check_close(sum(m, {0}), ref_reduce(m, {0}, false, Kind::Sum), 1e-5, "sum columns");
  check_close(max(x), ref_reduce(x, {}, false, Kind::Max), 0.0, "max all");
  check_close(argmax(x, 0), ref_reduce(x, {0}, false, Kind::ArgMax), 0.0, "argmax all");
}

TEST_CASE("reduce kernel writes every output element", "[reduce]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d = dev_of(dev);
  using kernels::ReduceOp;
  // [kept..., reduced...] views: rows (unit-stride reduction), columns (strided
  // reduction with unit-stride outputs) and a general strided mix.
  Tensor x = random_input({6, 35, 9}, 11, DType::f32, d);
  struct ViewCase {
    std::vector<int64_t> perm;
    int reduced;
  };
  for (const ViewCase& vc : {ViewCase{{0, 1, 2}, 1}, ViewCase{{2, 0, 1}, 2}, ViewCase{{1, 2, 0}, 1},
                             ViewCase{{0, 2, 1}, 1}, ViewCase{{2, 1, 0}, 3}}) {
    Tensor xp = x.permute(vc.perm);
    Shape kept(xp.shape().begin(), xp.shape().end() - vc.reduced);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::ArgMax, ReduceOp::ArgMin}) {
      bool arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
      Tensor out = empty(kept, TensorOptions(arg ? DType::i64 : DType::f32, d));
      petal::testing::poison(out);
      kernels::View ov, iv;
      ov.data = out.data_ptr();
      ov.dtype = out.dtype();
      ov.ndim = static_cast<int>(kept.size());
      for (int i = 0; i < ov.ndim; ++i) ov.shape[i] = kept[i], ov.strides[i] = out.strides()[i];
      iv.data = xp.data_ptr();
      iv.dtype = xp.dtype();
      iv.ndim = static_cast<int>(xp.dim());
      for (int i = 0; i < iv.ndim; ++i) iv.shape[i] = xp.shape()[i], iv.strides[i] = xp.strides()[i];
      kernels::backend_for(d).reduce(op, ov, iv, vc.reduced);
      Kind k = op == ReduceOp::Sum      ? Kind::Sum
               : op == ReduceOp::Max    ? Kind::Max
               : op == ReduceOp::Min    ? Kind::Min
               : op == ReduceOp::ArgMax ? Kind::ArgMax
                                        : Kind::ArgMin;
      INFO("perm " << shape_str(vc.perm) << " reduced " << vc.reduced << " op " << static_cast<int>(op));
      // Arg results are linear indices over the reduced dims in row-major order.
      Shape flat_shape = kept;
      flat_shape.push_back(-1);
      Tensor flat = xp.contiguous().reshape(flat_shape);
      check_close(out, ref_reduce(flat, {-1}, false, k), arg ? 0.0 : -1.0);
    }
  }
}

TEST_CASE("reduction gradients", "[reduce][grad]") {
  using V = std::vector<Tensor>;
  Tensor x = random_input({3, 4, 5}, 21);
  CHECK(gradcheck([](const V& v) { return sum(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return sum(v[0], {0, 2}); }, {x}));
  CHECK(gradcheck([](const V& v) { return sum(v[0], {1}, true); }, {x}));
  CHECK(gradcheck([](const V& v) { return mean(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return mean(v[0], {-1}, true); }, {x}));
  CHECK(gradcheck([](const V& v) { return max(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return min(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return max(v[0], 1); }, {x}));
  CHECK(gradcheck([](const V& v) { return min(v[0], 2, true); }, {x}));
  CHECK(gradcheck([](const V& v) { return var(v[0], {1}); }, {x}));
  CHECK(gradcheck([](const V& v) { return var(v[0], {0, 2}, 0, true); }, {x}));
  CHECK(gradcheck([](const V& v) { return sum_to(v[0], {4, 1}); }, {x}));
  CHECK(gradcheck([](const V& v) { return sum(v[0].t(), {1}); }, {random_input({7, 3}, 4)}));
}

TEST_CASE("max gradients: ties share (all) or go to the selected index (dim)", "[reduce][grad]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d = dev_of(dev);
  Tensor x = tensor({1.f, 3.f, 3.f, 2.f}, {2, 2}).to(d);
  x.requires_grad_();
  max(x).backward();
  CHECK(x.grad().tolist<float>() == std::vector<float>{0.f, 0.5f, 0.5f, 0.f});
  Tensor y = tensor({3.f, 3.f, 1.f, 2.f, 2.f, 0.f}, {2, 3}).to(d);
  y.requires_grad_();
  sum(max(y, 1)).backward();
  CHECK(y.grad().tolist<float>() == std::vector<float>{1.f, 0.f, 0.f, 1.f, 0.f, 0.f});
}
