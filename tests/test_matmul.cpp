// matmul against a naive float64 reference on every backend: 1-D/2-D/batched operands,
// batch broadcasting, transposed and non-contiguous views, odd sizes, dtypes; the GEMM
// kernel called directly (transposes, beta, batch strides, k = 0) on poisoned outputs;
// error messages; gradchecks including broadcast batch dims and 1-D operands.
#include <cmath>

#include "kernels/backend.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

namespace {

// Element (i0, ..., in) of a float64 contiguous tensor broadcast to `shape`.
double at_broadcast(const Tensor& t, const Shape& shape, const std::vector<int64_t>& idx) {
  int64_t off = 0, stride = 1;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    int64_t i = idx[idx.size() - (t.dim() - d)];
    if (t.shape()[d] != 1) off += i * stride;
    stride *= t.shape()[d];
  }
  (void)shape;
  return t.data<double>()[off];
}

// Naive torch.matmul in float64: promote 1-D operands, broadcast batch dims, triple loop.
Tensor ref_matmul(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor b = b_in.detach().to(kCPU, DType::f64).contiguous();
  const bool a1 = a.dim() == 1, b1 = b.dim() == 1;
  if (a1) a = a.reshape({1, a.shape()[0]});
  if (b1) b = b.reshape({b.shape()[0], 1});
  const int64_t m = a.shape()[a.dim() - 2], k = a.shape()[a.dim() - 1], n = b.shape()[b.dim() - 1];
  const size_t nb = std::max(a.dim(), b.dim()) - 2;
  Shape batch(nb, 1);
  for (size_t i = 0; i < nb; ++i) {
    int64_t ia = static_cast<int64_t>(i) - static_cast<int64_t>(nb) + a.dim() - 2;
    int64_t ib = static_cast<int64_t>(i) - static_cast<int64_t>(nb) + b.dim() - 2;
    if (ia >= 0) batch[i] = std::max(batch[i], a.shape()[ia]);
    if (ib >= 0) batch[i] = std::max(batch[i], b.shape()[ib]);
  }
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = zeros(out_shape, TensorOptions(DType::f64));
  int64_t batches = 1;
  for (auto s : batch) batches *= s;
  double* o = out.data<double>();
  for (int64_t bi = 0; bi < batches; ++bi) {
    std::vector<int64_t> idx(nb + 2);
    int64_t rem = bi;
    for (int64_t d = static_cast<int64_t>(nb) - 1; d >= 0; --d) {
      idx[d] = rem % batch[d];
      rem /= batch[d];
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) {
          idx[nb] = i, idx[nb + 1] = p;
          double x = at_broadcast(a, out_shape, idx);
          idx[nb] = p, idx[nb + 1] = j;
          s += x * at_broadcast(b, out_shape, idx);
        }
        o[(bi * m + i) * n + j] = s;
      }
  }
  Shape final_shape = batch;
  if (!a1) final_shape.push_back(m);
  if (!b1) final_shape.push_back(n);
  return out.reshape(final_shape);
}

}  // namespace

TEST_CASE("matmul matches a float64 reference", "[matmul]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{5}, {5}},
      {{4, 8}, {8}},
      {{8}, {8, 3}},
      {{1, 1}, {1, 1}},
      {{7, 33}, {33, 5}},
      {{2, 3, 4, 5}, {5, 6}},
      {{3, 1, 4, 5}, {2, 5, 6}},
      {{4, 5}, {3, 5, 6}},
      {{2, 7, 9}, {2, 9, 1}},
      {{9}, {3, 9, 4}},
      {{3, 2, 9}, {9}},
      {{1, 197, 7}, {7, 13}},
  };
  uint64_t seed = 50;
  for (const auto& [sa, sb] : cases) {
    Tensor a = random_input(sa, seed++, dt, Device(dev));
    Tensor b = random_input(sb, seed++, dt, Device(dev));
    INFO(shape_str(sa) << " @ " << shape_str(sb) << " dtype " << dtype_name(dt) << " on " << dev);
    Tensor c = matmul(a, b);
    CHECK(c.dtype() == dt);
    check_close(c, ref_matmul(a, b), -1, "matmul");
    check_close(matmul(non_contiguous_copy(a), non_contiguous_copy(b)), ref_matmul(a, b), -1, "non-contiguous");
  }
}

TEST_CASE("matmul takes transposed and broadcast views without copies going wrong", "[matmul]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64);
  Device d(dev);
  Tensor a = random_input({33, 7}, 1, dt, d), b = random_input({5, 33}, 2, dt, d);
  check_close(matmul(a.t(), b.t()), ref_matmul(a.t(), b.t()), -1, "A^T B^T");
  Tensor w = random_input({9, 7}, 3, dt, d);
  check_close(matmul(a, w.t()), ref_matmul(a, w.t()), -1, "A W^T");
  Tensor x = random_input({3, 4, 9}, 4, dt, d);
  check_close(matmul(x.transpose(1, 2), random_input({4, 6}, 5, dt, d)),
              ref_matmul(x.transpose(1, 2), random_input({4, 6}, 5, dt, d)), -1, "batched transposed A");
  // Batch dims that are permuted (not coalescible) and broadcast with stride 0.
  Tensor y = random_input({4, 3, 5, 6}, 6, dt, d).permute({1, 0, 2, 3});
  Tensor z = random_input({4, 1, 6, 2}, 7, dt, d).expand({4, 3, 6, 2}).permute({1, 0, 2, 3});
  check_close(matmul(y, z), ref_matmul(y, z), -1, "permuted batch");
  Tensor e = random_input({1, 5, 6}, 8, dt, d).expand({3, 5, 6});
  check_close(matmul(e, random_input({6, 2}, 9, dt, d)), ref_matmul(e, random_input({6, 2}, 9, dt, d)), -1,
              "expanded left batch");
  // A column of a matrix as a 1-D operand (stride != 1).
  Tensor col = random_input({6, 4}, 10, dt, d).select(1, 2);
  check_close(matmul(random_input({3, 6}, 11, dt, d), col), ref_matmul(random_input({3, 6}, 11, dt, d), col), -1,
              "strided vector");
  check_close(matmul(col, random_input({6, 4}, 12, dt, d)), ref_matmul(col, random_input({6, 4}, 12, dt, d)), -1,
              "strided vector left");
  // Empty inner dimension: zeros.
  Tensor c0 = matmul(empty({3, 0}, TensorOptions(dt, d)), empty({0, 4}, TensorOptions(dt, d)));
  CHECK(c0.shape() == Shape{3, 4});
  check_close(c0, zeros({3, 4}, TensorOptions(DType::f64)), 0.0, "k = 0");
}

TEST_CASE("gemm kernel honours transposes, leading dims, batch strides and beta", "[matmul]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto trans_a = GENERATE(false, true);
  auto trans_b = GENERATE(false, true);
  Device d(dev);
  const int64_t batch = 3, m = 7, n = 5, k = 9, pad = 3;
  // Stored operands with padded leading dimensions.
  Tensor a_store = random_input({batch, trans_a ? k : m, (trans_a ? m : k) + pad}, 20, dt, d);
  Tensor b_store = random_input({batch, trans_b ? n : k, (trans_b ? k : n) + pad}, 21, dt, d);
  Tensor a = a_store.narrow(2, 0, trans_a ? m : k), b = b_store.narrow(2, 0, trans_b ? k : n);
  Tensor opa = trans_a ? a.transpose(1, 2) : a, opb = trans_b ? b.transpose(1, 2) : b;
  for (double beta : {0.0, 0.5}) {
    Tensor c_store = random_input({batch, m, n + pad}, 22, dt, d);
    Tensor c0 = c_store.to(kCPU, DType::f64).narrow(2, 0, n).clone();
    if (beta == 0.0) {
      Tensor cv = c_store.narrow(2, 0, n);
      petal::testing::poison(cv);  // beta = 0 must not read C
    }
    kernels::GemmArgs g;
    g.dtype = dt;
    g.batch = batch, g.m = m, g.n = n, g.k = k;
    g.a = a.data_ptr(), g.lda = a_store.shape()[2], g.stride_a = a_store.stride(0), g.trans_a = trans_a;
    g.b = b.data_ptr(), g.ldb = b_store.shape()[2], g.stride_b = b_store.stride(0), g.trans_b = trans_b;
    g.c = c_store.data_ptr(), g.ldc = n + pad, g.stride_c = c_store.stride(0);
    g.alpha = 1.5, g.beta = beta;
    kernels::backend_for(d).gemm(g);
    Tensor expected = add(mul(ref_matmul(opa, opb), 1.5), mul(c0, beta));
    INFO("trans_a " << trans_a << " trans_b " << trans_b << " beta " << beta << " dtype " << dtype_name(dt));
    check_close(c_store.narrow(2, 0, n), expected, -1, "gemm");
  }
  // k = 0: C = beta C.
  Tensor c = random_input({2, 3}, 23, dt, d);
  Tensor c_before = c.to(kCPU, DType::f64).clone();  // clone: to() is a no-op for f64
  kernels::GemmArgs g;
  g.dtype = dt;
  g.m = 2, g.n = 3, g.k = 0;
  g.a = c.data_ptr(), g.lda = 1, g.b = c.data_ptr(), g.ldb = 3;
  g.c = c.data_ptr(), g.ldc = 3, g.beta = 2.0;
  kernels::backend_for(d).gemm(g);
  check_close(c, mul(c_before, 2.0), -1, "k = 0");
}

TEST_CASE("matmul errors name the op and the shapes", "[matmul]") {
  Tensor a = random_input({4, 8}, 1, DType::f32), b = random_input({7, 3}, 2, DType::f32);
  CHECK_THROWS_WITH(matmul(a, b), Catch::Contains("matmul: shapes [4, 8] and [7, 3] cannot be multiplied"));
  CHECK_THROWS_WITH(matmul(random_input({5}, 1, DType::f32), random_input({6}, 2, DType::f32)),
                    Catch::Contains("matmul: shapes [5] and [6] cannot be multiplied"));
  CHECK_THROWS_WITH(matmul(random_input({2, 3, 4}, 1, DType::f32), random_input({5, 4, 2}, 2, DType::f32)),
                    Catch::Contains("matmul") && Catch::Contains("[2, 3, 4]") && Catch::Contains("[5, 4, 2]"));
  CHECK_THROWS_WITH(matmul(a, random_input({8, 3}, 2, DType::f64)),
                    Catch::Contains("matmul") && Catch::Contains("float32") && Catch::Contains("float64"));
  CHECK_THROWS_WITH(matmul(scalar_tensor(1.0), a),
                    Catch::Contains("matmul") && Catch::Contains("at least 1 dimension"));
  Tensor i = arange(int64_t(4)).reshape({2, 2});
  CHECK_THROWS_WITH(matmul(i, i), Catch::Contains("matmul") && Catch::Contains("int64"));
}

TEST_CASE("matmul gradients", "[matmul][grad]") {
  using V = std::vector<Tensor>;
  auto mm = [](const V& v) { return matmul(v[0], v[1]); };
  CHECK(gradcheck(mm, {random_input({3, 4}, 1), random_input({4, 2}, 2)}));
  CHECK(gradcheck(mm, {random_input({4}, 3), random_input({4}, 4)}));
  CHECK(gradcheck(mm, {random_input({3, 4}, 5), random_input({4}, 6)}));
  CHECK(gradcheck(mm, {random_input({4}, 7), random_input({4, 3}, 8)}));
  CHECK(gradcheck(mm, {random_input({2, 3, 4}, 9), random_input({4, 2}, 10)}));
  CHECK(gradcheck(mm, {random_input({2, 3, 4}, 17), random_input({1, 1, 4, 2}, 18)}));
  CHECK(gradcheck(mm, {random_input({3, 4}, 19), random_input({2, 4, 2}, 20)}));
  CHECK(gradcheck(mm, {random_input({2, 1, 3, 4}, 11), random_input({3, 4, 2}, 12)}));
  CHECK(gradcheck(mm, {random_input({3}, 13), random_input({2, 3, 2}, 14)}));
  CHECK(gradcheck([](const V& v) { return matmul(v[0].t(), v[1]); },
                  {random_input({4, 3}, 15), random_input({4, 2}, 16)}));
}
