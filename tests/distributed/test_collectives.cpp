// Collectives of petal::distributed across the ranks of mpirun, on cpu and sim tensors,
// against results computed here from the formula every rank used to fill its tensor.
// Values are small integers plus multiples of 2^-10 (a 0.5 step for bf16/f16/int), so every
// dtype holds them and their sums exactly and comparisons are exact. Sizes are odd (1, 7,
// 197, 1025) and one input is a transposed (non-contiguous) view.
#include <catch2/catch.hpp>

#include <petal/petal.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

using namespace petal;
namespace dist = petal::distributed;

namespace {

std::vector<Device> devices() {
  std::vector<Device> d{kCPU};
  if (sim::is_available()) d.push_back(Device("sim"));
  return d;
}

const std::vector<DType> kAllDtypes = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8};

// Element i of rank r's tensor.
double value(int r, int64_t i, DType dt) {
  double v = static_cast<double>((i * 7 + r * 3) % 17);
  if (dt == DType::u8) return v;
  v -= 8.0;
  if (dt == DType::f32 || dt == DType::f64) return v + static_cast<double>(i % 1024) / 1024.0 + 0.25 * r;
  if (dt == DType::bf16 || dt == DType::f16) return v + 0.5 * r;
  return v + r;
}

Tensor filled(int r, const Shape& shape, DType dt, Device dev) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = value(r, i, dt);
  return tensor(v, shape, TensorOptions(DType::f64)).to(dev, dt);
}

// Compares t (any device, dtype) elementwise with expected, exactly unless a relative
// tolerance is given; prints the first mismatches.
void require_equal(const Tensor& t, const std::vector<double>& expected, const std::string& what, double rel = 0.0) {
  INFO(what);
  REQUIRE(t.numel() == static_cast<int64_t>(expected.size()));
  const auto got = t.to(kCPU, DType::f64).contiguous().tolist<double>();
  int bad = 0;
  for (size_t i = 0; i < expected.size(); ++i)
    if (std::abs(got[i] - expected[i]) > rel * std::abs(expected[i]) && bad++ < 5) UNSCOPED_INFO("index " << i << ": expected " << expected[i] << ", got " << got[i]);
  REQUIRE(bad == 0);
}

std::string label(const char* op, Device dev, DType dt, int64_t n) {
  return std::string(op) + " on " + dev.str() + " " + dtype_name(dt) + " n=" + std::to_string(n);
}

}  // namespace

TEST_CASE("process group matches the launcher", "[collectives]") {
  REQUIRE(dist::is_initialized());
  const int W = dist::world_size(), r = dist::rank();
  if (const char* s = std::getenv("OMPI_COMM_WORLD_SIZE")) REQUIRE(W == std::atoi(s));
  if (const char* s = std::getenv("OMPI_COMM_WORLD_RANK")) REQUIRE(r == std::atoi(s));
  if (const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) REQUIRE(dist::local_rank() == std::atoi(s));
  REQUIRE(dist::is_main_process() == (r == 0));
  REQUIRE(dist::backend_name().find("mpi") == 0);
  // Every rank reports a distinct rank in [0, W).
  Tensor ranks = dist::all_gather(tensor(std::vector<int64_t>{r}, {1}));
  std::vector<double> expected;
  for (int q = 0; q < W; ++q) expected.push_back(q);
  require_equal(ranks, expected, "all_gather of the ranks");
  dist::barrier();
}

TEST_CASE("all_reduce sum and avg, every dtype, odd sizes, cpu and sim", "[collectives]") {
  const int W = dist::world_size(), r = dist::rank();
  for (Device dev : devices())
    for (DType dt : kAllDtypes)
      for (int64_t n : {1, 7, 197, 1025}) {
        Tensor t = filled(r, {n}, dt, dev);
        dist::all_reduce(t, dist::ReduceOp::sum);
        REQUIRE(t.device() == dev);
        REQUIRE(t.dtype() == dt);
        std::vector<double> sum(static_cast<size_t>(n), 0.0);
        for (int q = 0; q < W; ++q)
          for (int64_t i = 0; i < n; ++i) sum[static_cast<size_t>(i)] += value(q, i, dt);
        require_equal(t, sum, label("all_reduce sum", dev, dt, n));
        if (is_floating(dt) && dt != DType::bf16 && dt != DType::f16) {
          Tensor a = filled(r, {n}, dt, dev);
          dist::all_reduce(a, dist::ReduceOp::avg);
          std::vector<double> avg = sum;
          for (auto& v : avg) v /= W;
          // The exact sum scaled by 1/W in the tensor's dtype: within a few units of its last place.
          require_equal(a, avg, label("all_reduce avg", dev, dt, n), dt == DType::f32 ? 1e-6 : 1e-14);
        }
      }
}

TEST_CASE("all_reduce of a non-contiguous view writes through the view", "[collectives]") {
  const int W = dist::world_size(), r = dist::rank();
  for (Device dev : devices()) {
    Tensor base = filled(r, {5, 7}, DType::f32, dev);
    Tensor view = base.t();  // [7, 5], strides (1, 7)
    REQUIRE_FALSE(view.is_contiguous());
    dist::all_reduce(view, dist::ReduceOp::sum);
    std::vector<double> expected(35, 0.0);
    for (int q = 0; q < W; ++q)
      for (int64_t i = 0; i < 35; ++i) expected[static_cast<size_t>(i)] += value(q, i, DType::f32);
    require_equal(base, expected, "all_reduce through a transposed view on " + dev.str());
  }
}

TEST_CASE("broadcast from every root, every dtype including bool", "[collectives]") {
  const int W = dist::world_size(), r = dist::rank();
  std::vector<DType> dtypes = kAllDtypes;
  dtypes.push_back(DType::b8);
  for (Device dev : devices())
    for (int root = 0; root < W; ++root)
      for (DType dt : dtypes) {
        const int64_t n = 197;
        Tensor t = dt == DType::b8 ? filled(r, {n}, DType::u8, dev).to(DType::b8) : filled(r, {n}, dt, dev);
        dist::broadcast(t, root);
        std::vector<double> expected(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i)
          expected[static_cast<size_t>(i)] = dt == DType::b8 ? (value(root, i, DType::u8) != 0) : value(root, i, dt);
        require_equal(t, expected, label("broadcast", dev, dt, n) + " root " + std::to_string(root));
      }
}

TEST_CASE("all_gather stacks the ranks' tensors in rank order", "[collectives]") {
  const int W = dist::world_size(), r = dist::rank();
  for (Device dev : devices())
    for (DType dt : {DType::f32, DType::bf16, DType::i64}) {
      Tensor t = filled(r, {3, 7}, dt, dev);
      Tensor g = dist::all_gather(t);
      REQUIRE(g.shape() == Shape{W, 3, 7});
      REQUIRE(g.device() == dev);
      std::vector<double> expected;
      for (int q = 0; q < W; ++q)
        for (int64_t i = 0; i < 21; ++i) expected.push_back(value(q, i, dt));
      require_equal(g, expected, label("all_gather", dev, dt, 21));
    }
}

TEST_CASE("reduce_scatter gives each rank its block of the sum", "[collectives]") {
  const int W = dist::world_size(), r = dist::rank();
  for (Device dev : devices())
    for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32}) {
      const int64_t rows = 3;  // per rank
      Tensor t = filled(r, {W * rows, 5}, dt, dev);
      Tensor out = dist::reduce_scatter(t, dist::ReduceOp::sum);
      REQUIRE(out.shape() == Shape{rows, 5});
      std::vector<double> expected(static_cast<size_t>(rows * 5), 0.0);
      for (int q = 0; q < W; ++q)
        for (int64_t i = 0; i < rows * 5; ++i) expected[static_cast<size_t>(i)] += value(q, r * rows * 5 + i, dt);
      require_equal(out, expected, label("reduce_scatter", dev, dt, W * rows * 5));
    }
  REQUIRE_THROWS_WITH(dist::reduce_scatter(zeros({W * 2 + 1})), Catch::Contains("multiple of the world size"));
}

TEST_CASE("asynchronous all_reduces complete in any wait order", "[collectives]") {
  const int W = dist::world_size(), r = dist::rank();
  std::vector<Tensor> ts;
  std::vector<dist::Work> works;
  for (int k = 0; k < 4; ++k) {
    ts.push_back(filled(r + k, {1025}, DType::f32, k % 2 ? devices().back() : kCPU));
    works.push_back(dist::all_reduce_async(ts.back(), dist::ReduceOp::sum));
  }
  for (int k = 3; k >= 0; --k) {
    works[static_cast<size_t>(k)].wait();
    REQUIRE(works[static_cast<size_t>(k)].is_completed());
    std::vector<double> expected(1025, 0.0);
    for (int q = 0; q < W; ++q)
      for (int64_t i = 0; i < 1025; ++i) expected[static_cast<size_t>(i)] += value(q + k, i, DType::f32);
    require_equal(ts[static_cast<size_t>(k)], expected, "async all_reduce " + std::to_string(k));
  }
}

TEST_CASE("ranks that disagree get an error naming every rank's call, not a hang", "[collectives]") {
  const int W = dist::world_size(), r = dist::rank();
  if (W < 2) return;
  // Shape mismatch: rank 1 has one element more.
  Tensor t = ones({r == 1 ? 4 : 3});
  REQUIRE_THROWS_WITH(dist::all_reduce(t), Catch::Contains("ranks disagree") && Catch::Contains("rank 0 calls all_reduce float32 [3]") &&
                                               Catch::Contains("rank 1 calls all_reduce float32 [4]"));
  // dtype mismatch.
  Tensor u = ones({5}, TensorOptions(r == 0 ? DType::f32 : DType::f64));
  REQUIRE_THROWS_WITH(dist::all_reduce(u), Catch::Contains("ranks disagree") && Catch::Contains("float64"));
  // Different collectives.
  Tensor v = ones({2});
  if (r == 0)
    REQUIRE_THROWS_WITH(dist::broadcast(v, 0), Catch::Contains("rank 1 calls all_reduce"));
  else
    REQUIRE_THROWS_WITH(dist::all_reduce(v), Catch::Contains("rank 0 calls broadcast"));
  // Broadcast roots must agree too.
  REQUIRE_THROWS_WITH(dist::broadcast(v, r == 0 ? 0 : 1), Catch::Contains("root 1"));
  // The group is still usable afterwards.
  Tensor w = ones({3});
  dist::all_reduce(w);
  require_equal(w, std::vector<double>(3, W), "all_reduce after the mismatches");
}

TEST_CASE("argument errors name the problem", "[collectives]") {
  REQUIRE_THROWS_WITH(dist::all_reduce(ones({2}, TensorOptions(DType::i32)), dist::ReduceOp::avg), Catch::Contains("floating-point"));
  REQUIRE_THROWS_WITH(dist::all_reduce(ones({2}, TensorOptions(DType::b8))), Catch::Contains("bool"));
  REQUIRE_THROWS_WITH(dist::broadcast(ones({2}), dist::world_size()), Catch::Contains("not a rank"));
  REQUIRE_THROWS_WITH(dist::all_reduce(Tensor()), Catch::Contains("undefined"));
}
