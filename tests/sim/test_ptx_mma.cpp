// mma.sync m16n8k16 (bf16 and f16 in, f32 accumulate) in the simulator, through the kernels of
// ptx_test_kernels.cuh that use only cp.async + ldmatrix + mma: a single 16x8x16 tile
// (d = a b + c) and a 64x64-block warp-tiled GEMM at several shapes, each compared element by
// element with a float64 reference computed from the same rounded inputs. The tolerance is
// the f32 accumulation bound K u sum|a b| (+|c|), u = 2^-24, which a GPU's f32 adds satisfy
// too. Also: a warp with a lane missing from an mma is an error naming the kernel.
#include "testing.h"

#include "tests/sim/ptx_test_kernels.cuh"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using petal::sim::launch;
namespace ptx = petal::kernels::ptx;
namespace kt = petal::ptx_test;

struct Lcg {
  uint64_t s;
  double uniform() {  // in [-1, 1)
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
  }
};

float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
float to_float(__half x) { return __half2float(x); }
template <typename T>
T from_float(float x);
template <>
__nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <>
__half from_float<__half>(float x) { return __float2half(x); }

template <typename T>
std::vector<T> random_matrix(size_t n, uint64_t seed) {
  Lcg g{seed};
  std::vector<T> v(n);
  for (auto& x : v) x = from_float<T>(static_cast<float>(g.uniform()));
  return v;
}

// Compares d (M x N) with the float64 product of a (M x K) and b (K x N) plus c (or 0);
// prints the first mismatches. Returns the number of elements out of tolerance.
template <typename T>
int check_product(const std::vector<float>& d, const std::vector<T>& a, const std::vector<T>& b,
                  const std::vector<float>* c, int M, int N, int K, const char* what) {
  const double u = std::ldexp(1.0, -24);
  int bad = 0;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double ref = c ? (*c)[m * N + n] : 0.0, mag = c ? std::fabs((*c)[m * N + n]) : 0.0;
      for (int k = 0; k < K; ++k) {
        const double p = static_cast<double>(to_float(a[m * K + k])) * to_float(b[k * N + n]);
        ref += p;
        mag += std::fabs(p);
      }
      const double tol = (K + 1) * u * mag + 1e-30;
      const double got = d[m * N + n];
      if (!(std::fabs(got - ref) <= tol)) {
        if (bad < 5)
          UNSCOPED_INFO(what << ": mismatch at (" << m << ", " << n << "): expected " << ref << ", got " << got
                             << " (tolerance " << tol << ")");
        ++bad;
      }
    }
  return bad;
}

template <typename T>
void run_tile(uint64_t seed) {
  const auto a = random_matrix<T>(16 * 16, seed);
  const auto b = random_matrix<T>(16 * 8, seed + 1);
  std::vector<float> c(16 * 8);
  Lcg g{seed + 2};
  for (auto& x : c) x = static_cast<float>(g.uniform());
  std::vector<float> d(16 * 8, NAN);
  launch("mma_tile_16x8x16", kt::mma_tile_16x8x16<T>, dim3(1), dim3(32), 768, a.data(), b.data(), c.data(), d.data());
  CHECK(check_product(d, a, b, &c, 16, 8, 16, "tile") == 0);
}

template <typename T>
void run_gemm(int M, int N, int K, uint64_t seed) {
  INFO("M=" << M << " N=" << N << " K=" << K << " seed=" << seed);
  const auto a = random_matrix<T>(static_cast<size_t>(M) * K, seed);
  const auto b = random_matrix<T>(static_cast<size_t>(K) * N, seed + 7);
  std::vector<float> c(static_cast<size_t>(M) * N, NAN);
  launch("gemm_64x64", kt::gemm_64x64<T>, dim3(N / kt::kBlockN, M / kt::kBlockM), dim3(kt::kThreads),
         kt::gemm_smem_bytes(sizeof(T)), a.data(), b.data(), c.data(), M, N, K);
  CHECK(check_product(c, a, b, nullptr, M, N, K, "gemm") == 0);
}

// One lane of the warp returns before the mma the other 31 reach.
__global__ void mma_lane_missing(float* out) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (lane == 7) return;
  const uint32_t a[4] = {0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u};  // bf16 1.0 pairs
  const uint32_t b[2] = {0x3f803f80u, 0x3f803f80u};
  float d[4] = {0, 0, 0, 0};
  ptx::mma_m16n8k16_bf16(d, a, b, d);
  out[threadIdx.x] = d[0];
}

// Lane 3 issues the f16 mma, the others the bf16 one.
__global__ void mma_mixed_variants(float* out) {
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float d[4] = {0, 0, 0, 0};
  if (threadIdx.x == 3)
    ptx::mma_m16n8k16_f16(d, a, b, d);
  else
    ptx::mma_m16n8k16_bf16(d, a, b, d);
  out[threadIdx.x] = d[0];
}

std::string message_of(void (*f)()) {
  try {
    f();
  } catch (const petal::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("sim ptx: a 16x8x16 mma tile (cp.async + ldmatrix + mma) matches float64", "[sim][ptx]") {
  const uint64_t schedule = GENERATE(1u, 2u, 3u);
  petal::sim::set_schedule_seed(schedule);
  for (uint64_t seed : {11u, 12u}) {
    INFO("seed " << seed);
    run_tile<__nv_bfloat16>(seed);
    run_tile<__half>(seed);
  }
}

TEST_CASE("sim ptx: the 64x64 warp-tiled GEMM matches float64 at several shapes", "[sim][ptx]") {
  const uint64_t schedule = GENERATE(1u, 5u);
  petal::sim::set_schedule_seed(schedule);
  struct Shape {
    int M, N, K;
  };
  for (const Shape s : {Shape{64, 64, 64}, Shape{128, 64, 96}, Shape{64, 192, 32}, Shape{128, 128, 160}}) {
    run_gemm<__nv_bfloat16>(s.M, s.N, s.K, 100 + s.K);
    run_gemm<__half>(s.M, s.N, s.K, 200 + s.K);
  }
}

TEST_CASE("sim ptx: the float64 check of the tile detects a wrong product", "[sim][ptx]") {
  // The checker itself can fail: a swapped pair of B columns is caught.
  const auto a = random_matrix<__nv_bfloat16>(16 * 16, 3);
  auto b = random_matrix<__nv_bfloat16>(16 * 8, 4);
  std::vector<float> c(16 * 8, 0.5f), d(16 * 8, NAN);
  launch("mma_tile_16x8x16", kt::mma_tile_16x8x16<__nv_bfloat16>, dim3(1), dim3(32), 768, a.data(), b.data(),
         c.data(), d.data());
  for (int k = 0; k < 16; ++k) std::swap(b[k * 8 + 2], b[k * 8 + 5]);
  CHECK(check_product(d, a, b, &c, 16, 8, 16, "planted") > 0);
}

TEST_CASE("sim ptx: an mma with a lane missing or a different variant is an error naming the kernel", "[sim][ptx]") {
  const std::string missing = message_of([] {
    std::vector<float> out(32, 0.0f);
    launch("mma_lane_missing", mma_lane_missing, dim3(1), dim3(32), 0, out.data());
  });
  INFO(missing);
  CHECK(missing.find("mma_lane_missing") != std::string::npos);
  CHECK(missing.find("lane 7") != std::string::npos);
  CHECK(missing.find("mma.sync") != std::string::npos);

  const std::string mixed = message_of([] {
    std::vector<float> out(32, 0.0f);
    launch("mma_mixed_variants", mma_mixed_variants, dim3(1), dim3(32), 0, out.data());
  });
  INFO(mixed);
  CHECK(mixed.find("mma_mixed_variants") != std::string::npos);
  CHECK(mixed.find("f16.f16") != std::string::npos);
}
