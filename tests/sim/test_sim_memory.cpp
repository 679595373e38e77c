// The simulator's memory and grid semantics: atomics across many blocks spread over several
// host threads (exact integer results), dynamic shared memory, 3-D grids and blocks, kernel
// arguments copied per thread, the math intrinsics and the sim runtime layer.
#include "testing.h"

#include "kernels/sim/sim_cuda.h"

#include <cstdint>
#include <vector>

#include "kernels/cuda/runtime.h"

namespace {

using petal::sim::launch;

__global__ void atomic_sums(const int* in, int n, int* sum, unsigned long long* wide, int* maximum, unsigned* minimum,
                            float* fsum, unsigned* cas_counter) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    atomicAdd(sum, in[i]);
    atomicAdd(wide, static_cast<unsigned long long>(in[i] + 1000) << 20);
    atomicMax(maximum, in[i]);
    atomicMin(minimum, static_cast<unsigned>(in[i] + 1000));
    atomicAdd(fsum, static_cast<float>(in[i] % 16));  // small integers: exact in any order
    unsigned old = atomicAdd(cas_counter, 0u), assumed;  // an atomic read: a plain one would race
    do {
      assumed = old;
      old = atomicCAS(cas_counter, assumed, assumed + 1);
    } while (old != assumed);
  }
}

// Reverses each block's slice through dynamic shared memory.
__global__ void reverse_in_shared(const double* in, double* out) {
  PETAL_DYNAMIC_SHARED(double, buf);
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  buf[threadIdx.x] = in[i];
  __syncthreads();
  out[i] = buf[blockDim.x - 1 - threadIdx.x];
}

// Every thread of a 3-D grid of 3-D blocks writes its coordinates to its own slot.
__global__ void coordinates_3d(int* out, unsigned* visits) {
  const unsigned x = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned y = blockIdx.y * blockDim.y + threadIdx.y;
  const unsigned z = blockIdx.z * blockDim.z + threadIdx.z;
  const unsigned nx = gridDim.x * blockDim.x, ny = gridDim.y * blockDim.y;
  const unsigned idx = (z * ny + y) * nx + x;
  out[3 * idx + 0] = static_cast<int>(x);
  out[3 * idx + 1] = static_cast<int>(y);
  out[3 * idx + 2] = static_cast<int>(z);
  atomicAdd(&visits[idx], 1u);
}

// Parameters are per-thread copies: modifying one must not leak into other threads.
__global__ void modifies_its_parameter(int step, int* out) {
  step += static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = step;
}

__global__ void math_intrinsics(const float* in, float* out) {
  const float x = in[threadIdx.x];
  float* o = out + 8 * threadIdx.x;
  o[0] = __expf(x);
  o[1] = __logf(fabsf(x) + 1.0f);
  o[2] = rsqrtf(fabsf(x) + 1.0f);
  o[3] = __fdividef(x, 3.0f);
  o[4] = __saturatef(x);
  o[5] = max(x, 0.25f) + static_cast<float>(min(3, static_cast<int>(threadIdx.x)));
  o[6] = __bfloat162float(__float2bfloat16(x)) + __half2float(__float2half(x));
  o[7] = tanhf(x) + erff(x);
}

}  // namespace

TEST_CASE("sim: atomics across many blocks on several host threads are exact", "[sim]") {
  const int n = 20011;
  std::vector<int> in(n);
  for (int i = 0; i < n; ++i) in[i] = (i * 7919) % 1999 - 999;
  int64_t sum = 0;
  uint64_t wide = 0;
  int maximum = INT32_MIN;
  unsigned minimum = UINT32_MAX;
  double fsum = 0;
  for (int v : in) {
    sum += v;
    wide += static_cast<uint64_t>(v + 1000) << 20;
    maximum = std::max(maximum, v);
    minimum = std::min(minimum, static_cast<unsigned>(v + 1000));
    fsum += v % 16;
  }
  for (int threads : {1, 4}) {
    petal::sim::set_host_threads(threads);
    int got_sum = 0, got_max = INT32_MIN;
    unsigned long long got_wide = 0;
    unsigned got_min = UINT32_MAX, counter = 0;
    float got_fsum = 0;
    launch("atomic_sums", atomic_sums, dim3(61), dim3(96), 0, in.data(), n, &got_sum, &got_wide, &got_max, &got_min,
           &got_fsum, &counter);
    INFO("host threads " << threads);
    CHECK(got_sum == sum);
    CHECK(got_wide == wide);
    CHECK(got_max == maximum);
    CHECK(got_min == minimum);
    CHECK(static_cast<double>(got_fsum) == fsum);
    CHECK(counter == static_cast<unsigned>(n));
  }
  petal::sim::set_host_threads(0);
}

TEST_CASE("sim: dynamic shared memory", "[sim]") {
  const unsigned blocks = 5, threads = 77;
  std::vector<double> in(blocks * threads), out(blocks * threads, -1.0);
  for (size_t i = 0; i < in.size(); ++i) in[i] = 0.5 * static_cast<double>(i) - 3.0;
  launch("reverse_in_shared", reverse_in_shared, dim3(blocks), dim3(threads), threads * sizeof(double), in.data(),
         out.data());
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < threads; ++t) CHECK(out[b * threads + t] == in[b * threads + threads - 1 - t]);
}

TEST_CASE("sim: 3-D grids and blocks", "[sim]") {
  const dim3 grid(3, 2, 4), block(5, 3, 2);
  const unsigned nx = grid.x * block.x, ny = grid.y * block.y, nz = grid.z * block.z;
  const size_t total = static_cast<size_t>(nx) * ny * nz;
  std::vector<int> out(3 * total, -1);
  std::vector<unsigned> visits(total, 0);
  launch("coordinates_3d", coordinates_3d, grid, block, 0, out.data(), visits.data());
  for (unsigned z = 0; z < nz; ++z)
    for (unsigned y = 0; y < ny; ++y)
      for (unsigned x = 0; x < nx; ++x) {
        const size_t idx = (static_cast<size_t>(z) * ny + y) * nx + x;
        REQUIRE(visits[idx] == 1u);
        CHECK(out[3 * idx] == static_cast<int>(x));
        CHECK(out[3 * idx + 1] == static_cast<int>(y));
        CHECK(out[3 * idx + 2] == static_cast<int>(z));
      }
}

TEST_CASE("sim: every thread gets its own copy of the kernel arguments", "[sim]") {
  std::vector<int> out(64, -1);
  launch("modifies_its_parameter", modifies_its_parameter, dim3(1), dim3(64), 0, 100, out.data());
  for (int i = 0; i < 64; ++i) CHECK(out[i] == 100 + i);
}

TEST_CASE("sim: math intrinsics, bf16/f16 and min/max compile and compute", "[sim]") {
  const int threads = 7;
  std::vector<float> in = {-2.5f, -0.75f, -0.1f, 0.0f, 0.3f, 0.9f, 4.0f};
  std::vector<float> out(8 * threads, NAN);
  launch("math_intrinsics", math_intrinsics, dim3(1), dim3(threads), 0, in.data(), out.data());
  for (int t = 0; t < threads; ++t) {
    const double x = in[t];
    const float* o = &out[8 * t];
    CHECK(o[0] == Approx(std::exp(x)).epsilon(1e-6));
    CHECK(o[1] == Approx(std::log(std::fabs(x) + 1.0)).epsilon(1e-6));
    CHECK(o[2] == Approx(1.0 / std::sqrt(std::fabs(x) + 1.0)).epsilon(1e-6));
    CHECK(o[3] == Approx(x / 3.0).epsilon(1e-6));
    CHECK(o[4] == static_cast<float>(std::min(1.0, std::max(0.0, x))));
    CHECK(o[5] == Approx(std::max(x, 0.25) + std::min(3, t)).epsilon(1e-6));
    CHECK(o[6] == Approx(2.0 * x).epsilon(1e-2).margin(1e-3));
    CHECK(o[7] == Approx(std::tanh(x) + std::erf(x)).epsilon(1e-6));
  }
}

TEST_CASE("sim: runtime layer copies through exact-size device allocations", "[sim]") {
  namespace rt = petal::kernels::sim_impl;
  const size_t n = 1001;
  std::vector<float> host(n), back(n, 0.0f);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i) * 0.5f - 7.0f;
  auto* a = static_cast<float*>(rt::rt_malloc(n * sizeof(float)));
  auto* b = static_cast<float*>(rt::rt_malloc(n * sizeof(float)));
  CHECK(reinterpret_cast<uintptr_t>(a) % 256 == 0);
  rt::rt_memcpy_h2d(a, host.data(), n * sizeof(float));
  rt::rt_memset(b, 0, n * sizeof(float));
  rt::rt_memcpy_d2d(b, a, (n - 1) * sizeof(float));
  rt::rt_synchronize();
  rt::rt_memcpy_d2h(back.data(), b, n * sizeof(float));
  for (size_t i = 0; i + 1 < n; ++i) CHECK(back[i] == host[i]);
  CHECK(back[n - 1] == 0.0f);
  rt::rt_free(a);
  rt::rt_free(b);

  // GEMM goes to the CPU backend: C = A(2x3) @ B(3x2).
  std::vector<float> A = {1, 2, 3, 4, 5, 6}, B = {7, 8, 9, 10, 11, 12}, C(4, -1.0f);
  petal::kernels::GemmArgs g;
  g.m = 2;
  g.n = 2;
  g.k = 3;
  g.a = A.data();
  g.lda = 3;
  g.b = B.data();
  g.ldb = 2;
  g.c = C.data();
  g.ldc = 2;
  rt::rt_gemm(g);
  CHECK(C == std::vector<float>{58, 64, 139, 154});
}
