// Tests of the CUDA backend that need a real GPU (tag [cuda], ctest label "cuda": they
// report skipped on machines without one), plus the behaviour without a GPU: asking
// for "cuda" then gives a clear petal::Error, never a crash. The kernels themselves are
// also checked on every machine through the simulator (test_cross_backend*.cpp).
#include <cstring>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::random_input;

TEST_CASE("device cuda without a usable GPU is reported unavailable, not a crash", "[cuda_runtime]") {
  const int n = cuda::device_count();
  CHECK(cuda::is_available() == (n > 0));
  if (n > 0) {
    // Out-of-range indices are still a clear error.
    CHECK_THROWS_AS(zeros({2}, TensorOptions(Device("cuda:" + std::to_string(n)))), Error);
    return;
  }
  try {
    zeros({2}, TensorOptions(Device("cuda")));
    FAIL("creating a tensor on cuda without a GPU did not throw");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("cuda") != std::string::npos);
    CHECK(msg.find("not available") != std::string::npos);
  }
  CHECK_THROWS_AS(random_input({3}, 1).to(Device("cuda:1")), Error);
}

TEST_CASE("cuda: host<->device copies across staging-buffer chunks are exact", "[cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  // 9 MiB + 3 bytes: more than two 4 MiB pinned staging chunks, with a ragged tail.
  const int64_t n = (int64_t(9) << 20) + 3;
  Tensor host = empty({n}, TensorOptions(DType::u8));
  uint8_t* p = host.data<uint8_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  Tensor dev = host.to(Device("cuda"));
  Tensor back = dev.to(kCPU);
  REQUIRE(std::memcmp(back.data<uint8_t>(), p, static_cast<size_t>(n)) == 0);
  // A device->device copy and an offset view keep every byte too.
  Tensor copy = dev.slice(0, 5, n).clone().to(kCPU);
  REQUIRE(std::memcmp(copy.data<uint8_t>(), p + 5, static_cast<size_t>(n - 5)) == 0);
}

TEST_CASE("cuda: pooled allocations are reused without corrupting live tensors", "[cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  const Device dev("cuda");
  Tensor keep = random_input({1000}, 3).to(dev, DType::f32);
  const Tensor expected = keep.to(kCPU);
  for (int round = 0; round < 200; ++round) {
    Tensor t = full({(round * 7919) % 50000 + 1}, static_cast<double>(round), TensorOptions(DType::f32, dev));
    CHECK(sum(t).item() == Approx(static_cast<double>(round) * t.numel()));
  }
  check_close(keep, expected, 0.0, "live tensor after allocation churn");
}

TEST_CASE("cuda: large reductions, softmax rows and casts match the CPU", "[cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  const Device dev("cuda");
  Tensor x = random_input({1 << 20}, 11);
  check_close(sum(x.to(dev, DType::f32)), sum(x), 1e-5, "sum of 2^20 floats");
  check_close(argmax(x.reshape({64, 16384}).to(dev, DType::f32), 1), argmax(x.reshape({64, 16384}).to(DType::f32), 1),
              0.0, "argmax over long rows");
  check_close(sum(x.reshape({1024, 1024}).to(dev), {0}), sum(x.reshape({1024, 1024}), {0}), 1e-12, "column sums");
  Tensor rows = random_input({3, 20000}, 12);
  check_close(log_softmax(rows.to(dev, DType::f32), 1), log_softmax(rows, 1), 1e-5, "log_softmax over 20000 cols");
  check_close(x.to(dev, DType::bf16).to(DType::f32).to(kCPU), x.to(DType::bf16).to(DType::f32), 0.0,
              "bf16 round trip");
}

TEST_CASE("cuda: cuBLASLt GEMMs (attention-shaped, batched, transposed) match float64", "[cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  const Device dev("cuda");
  // B*H = 2*3 heads, S = 65, head dim 64: Q K^T then (P V).
  Tensor q = random_input({2, 3, 65, 64}, 21), k = random_input({2, 3, 65, 64}, 22), v = random_input({2, 3, 65, 64}, 23);
  Tensor ref = matmul(matmul(q, k.transpose(-1, -2)), v);
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    INFO("dtype " << dtype_name(dt));
    Tensor qd = q.to(dev, dt), kd = k.to(dev, dt), vd = v.to(dev, dt);
    Tensor out = matmul(matmul(qd, kd.transpose(-1, -2)), vd);
    const double tol = dt == DType::f64 ? 1e-12 : (dt == DType::f32 ? 1e-5 : 3e-2);
    check_close(out, ref, tol, "attention-shaped batched GEMM");
  }
  // Batch broadcasting (one right-hand matrix for every batch entry) and 1-D operands.
  Tensor a = random_input({4, 33, 17}, 24), b = random_input({17, 9}, 25), c = random_input({17}, 26);
  check_close(matmul(a.to(dev, DType::f32), b.to(dev, DType::f32)), matmul(a, b), 1e-5, "broadcast batch");
  check_close(matmul(a.to(dev), c.to(dev)), matmul(a, c), 1e-12, "matrix-vector");
}

TEST_CASE("cuda: tensors move between GPUs and back", "[cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  Tensor x = random_input({7, 33}, 31);
  for (int i = 0; i < cuda::device_count(); ++i) {
    const Device dev(DeviceType::CUDA, i);
    Tensor y = mul(x.to(dev, DType::f32), 2.0);
    REQUIRE(y.device() == dev);
    if (cuda::device_count() > 1) y = y.to(Device(DeviceType::CUDA, (i + 1) % cuda::device_count()));
    check_close(y, mul(x, 2.0), 1e-6, "2x on every GPU");
  }
}
