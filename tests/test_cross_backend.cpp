// The cross-backend suite: every op family of the backend instruction set (the table in
// test_cross_backend_cases.h) on every available device (cpu, sim, cuda), in float32,
// float64 and bfloat16, over odd sizes and non-contiguous inputs, forward and backward;
// plus the same-seed random streams and the copy/cast/fill kernels across dtypes.
#include <cmath>

#include "test_cross_backend_cases.h"

using namespace petal;
using petal::cross_backend::run_family;
using petal::testing::check_close;
using petal::testing::normalized_error;
using petal::testing::test_devices;

namespace {

const std::vector<DType> kFloatDtypes = {DType::f32, DType::f64, DType::bf16};

void run_family_everywhere(const std::vector<cross_backend::Case>& rows) {
  for (const std::string& device : test_devices()) run_family(rows, device, kFloatDtypes);
}

}  // namespace

TEST_CASE("cross-backend: unary ops forward and backward", "[cross_backend]") {
  run_family_everywhere(cross_backend::unary_cases());
}

TEST_CASE("cross-backend: binary ops, where and comparisons", "[cross_backend]") {
  run_family_everywhere(cross_backend::binary_cases());
}

TEST_CASE("cross-backend: reductions", "[cross_backend]") { run_family_everywhere(cross_backend::reduce_cases()); }

TEST_CASE("cross-backend: softmax and log_softmax", "[cross_backend]") {
  run_family_everywhere(cross_backend::softmax_cases());
}

TEST_CASE("cross-backend: matmul", "[cross_backend]") { run_family_everywhere(cross_backend::matmul_cases()); }

TEST_CASE("cross-backend: indexing, joining and copies", "[cross_backend]") {
  run_family_everywhere(cross_backend::index_cases());
}

TEST_CASE("cross-backend: fused kernels (layer_norm, cross_entropy, attention, patch_embed, optimizers)",
          "[cross_backend]") {
  run_family_everywhere(cross_backend::fused_cases());
}

TEST_CASE("cross-backend: the same seed draws the same numbers on every device", "[cross_backend]") {
  for (const std::string& device : test_devices()) {
    for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::i64}) {
      INFO("device " << device << ", dtype " << dtype_name(dt));
      // On the simulator the numbers are bit-identical (same host math library); a GPU's
      // double-precision log/sin/cos may differ from glibc's in the last ulp.
      const double tol = Device(device).is_cuda() && is_floating(dt) ? petal::testing::tolerance_for(dt) : 0.0;
      for (uint64_t seed : {1ull, 77ull, 0x123456789abcdefull}) {
        manual_seed(seed);
        Tensor a = randn({7, 33}, TensorOptions(DType::f64, Device(device))).to(dt);  // odd count: partial Philox block
        Tensor a2 = is_floating(dt) ? randn({197}, TensorOptions(dt, Device(device))) : Tensor();
        Tensor u = rand({5, 3}, TensorOptions(is_floating(dt) ? dt : DType::f32, Device(device)));
        Tensor r = randint(-5, 9, {33}, TensorOptions(is_floating(dt) ? DType::i64 : dt, Device(device)));
        manual_seed(seed);
        Tensor b = randn({7, 33}, TensorOptions(DType::f64)).to(dt);
        Tensor b2 = is_floating(dt) ? randn({197}, TensorOptions(dt)) : Tensor();
        Tensor v = rand({5, 3}, TensorOptions(is_floating(dt) ? dt : DType::f32));
        Tensor s = randint(-5, 9, {33}, TensorOptions(is_floating(dt) ? DType::i64 : dt));
        check_close(a, b, tol, "randn");
        if (a2.defined()) check_close(a2, b2, tol, "randn in dtype (second draw)");
        check_close(u, v, tol, "rand");
        check_close(r, s, 0.0, "randint");
        // The numbers are random, not a constant fill.
        CHECK(sum(abs(b)).item() > 0);
      }
    }
  }
}

TEST_CASE("cross-backend: casts between every pair of dtypes", "[cross_backend]") {
  const std::vector<DType> all = {DType::f32, DType::f64, DType::bf16, DType::f16,
                                  DType::i32, DType::i64, DType::u8,   DType::b8};
  // Non-negative values with fractions and zeros: every cast is defined (no negative -> u8).
  Tensor base = mul(abs(petal::testing::random_input({3, 37}, 5)), 6.0);
  base = where(lt(base, 1.0), zeros_like(base), base);
  for (const std::string& device : test_devices()) {
    for (DType from : all) {
      Tensor src_cpu = base.to(from);
      for (bool nc : {false, true}) {
        Tensor src = src_cpu.to(Device(device));
        if (nc) src = petal::testing::non_contiguous_copy(src);
        for (DType to : all) {
          INFO("device " << device << ": " << dtype_name(from) << " -> " << dtype_name(to)
                         << (nc ? " (non-contiguous source)" : ""));
          Tensor out = src.to(to);
          REQUIRE(out.dtype() == to);
          REQUIRE(out.device() == Device(device));
          check_close(out, src_cpu.to(to), 0.0, "cast");
        }
      }
    }
  }
}

TEST_CASE("cross-backend: fill_ and copy_ into strided and broadcast views", "[cross_backend]") {
  for (const std::string& device : test_devices()) {
    for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::u8, DType::b8}) {
      INFO("device " << device << ", dtype " << dtype_name(dt));
      const Device dev(device);
      Tensor t = full({5, 9}, 3.0, TensorOptions(dt, dev));
      Tensor c = full({5, 9}, 3.0, TensorOptions(dt));
      t.slice(1, 1, 9, 3).fill_(1.5);  // every third column from 1
      c.slice(1, 1, 9, 3).fill_(1.5);
      check_close(t, c, 0.0, "fill_ of a strided view");

      // copy_ from a broadcast source of another dtype, into a transposed view.
      Tensor src = petal::testing::random_input({1, 5}, 9);
      src = is_floating(dt) ? src : abs(mul(src, 4.0));
      Tensor dst = full({9, 5}, -1.0, TensorOptions(dt, dev));
      Tensor dst_cpu = full({9, 5}, -1.0, TensorOptions(dt));
      dst.t().t().copy_(src.to(dev).expand({9, 5}));
      dst_cpu.copy_(src.expand({9, 5}));
      check_close(dst, dst_cpu, 0.0, "copy_ of a broadcast source with a cast");

      // Across devices into a non-contiguous destination.
      Tensor host = petal::testing::random_input({4, 6}, 11).to(dt);
      Tensor wide = zeros({4, 12}, TensorOptions(dt, dev));
      wide.slice(1, 0, 12, 2).copy_(host);
      check_close(wide.slice(1, 0, 12, 2), host, 0.0, "copy_ from the CPU into a strided device view");
      check_close(wide.slice(1, 1, 12, 2), zeros({4, 6}, TensorOptions(dt)), 0.0, "gaps stay untouched");
    }
  }
}
