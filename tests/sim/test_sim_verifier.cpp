// The simulator as a verifier (docs/simulator.md, "What the simulator catches"): memory no
// kernel wrote reads as poison (static shared memory per block, dynamic shared memory, device
// allocations), divergent barriers reached through a helper, warp intrinsics naming exited
// lanes, launch limits of the target GPUs (__launch_bounds__, the 48 KiB dynamic shared
// memory opt-in, grid dimensions), and spin-waits that can never end. Each planted bug must be
// reported with the kernel named, deterministically, whatever the schedule seed.
#include "testing.h"

#include "kernels/sim/sim_cuda.h"

#include "kernels/cuda/runtime.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

using petal::sim::launch;

constexpr int kThreads = 64;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const petal::Error& e) {
    return e.what();
  }
  return "";
}

// Only block 0 writes its shared array; every block reads it back.
__global__ void shared_written_by_block0(float* out) {
  PETAL_SHARED(float, buf, [kThreads]);
  if (blockIdx.x == 0) buf[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = buf[threadIdx.x];
}

// Reads the dynamic shared memory that nobody wrote.
__global__ void reads_unwritten_dynamic_shared(float* out) {
  PETAL_DYNAMIC_SHARED(float, buf);
  out[threadIdx.x] = buf[threadIdx.x];
}

// A helper with a barrier, called from two branches: threads of one block wait at the same
// __syncthreads line, reached from different places. The engine tells the two apart by the
// return addresses above the helper; a helper that the compiler inlines into both branches
// leaves no such trace (docs/simulator.md), hence __noinline__ here.
__device__ __noinline__ void helper_with_barrier(float* buf, float v) {
  buf[threadIdx.x] = v;
  __syncthreads();
}
__global__ void divergent_through_helper(float* out) {
  PETAL_SHARED(float, buf, [kThreads]);
  // Different work after each call, so the compiler cannot merge the two calls into one.
  if (threadIdx.x < 32) {
    helper_with_barrier(buf, 1.0f);
    out[threadIdx.x] = buf[(threadIdx.x + 1) % blockDim.x] + 1.0f;
  } else {
    helper_with_barrier(buf, 2.0f);
    out[threadIdx.x] = buf[(threadIdx.x + 3) % blockDim.x] * 2.0f;
  }
}
// The same helper called once by every thread is correct.
__global__ void uniform_through_helper(float* out) {
  PETAL_SHARED(float, buf, [kThreads]);
  for (int i = 0; i < 3; ++i) helper_with_barrier(buf, static_cast<float>(threadIdx.x + i));
  out[threadIdx.x] = buf[(threadIdx.x + 1) % blockDim.x];
}

// Lanes 16..31 return, then lanes 0..15 shuffle with the full mask (undefined on a GPU).
__global__ void full_mask_after_exit(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<float>(threadIdx.x), 1);
}
// The same with the mask of the lanes that remain is correct.
__global__ void active_mask_after_exit(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, static_cast<float>(threadIdx.x), 1);
}

// Lanes 0..15 shuffle, lanes 16..31 vote, all with the full mask: a mismatch naming both.
__global__ void mismatched_intrinsics(float* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<float>(threadIdx.x), 1);
  else
    out[threadIdx.x] = static_cast<float>(__ballot_sync(0xffffffffu, 1));
}

constexpr unsigned kBound = 128;
__global__ void __launch_bounds__(kBound) bounded_kernel(float* out) { out[threadIdx.x] = 1.0f; }

__global__ void uses_dynamic_shared(float* out) {
  PETAL_DYNAMIC_SHARED(float, buf);
  buf[threadIdx.x] = 3.0f;
  __syncthreads();
  out[threadIdx.x] = buf[threadIdx.x];
}

// Thread 0 waits for a flag that thread 1 sets only after a barrier thread 0 never reaches.
__global__ void spin_forever(int* flag, float* out) {
  if (threadIdx.x == 0) {
    while (atomicAdd(flag, 0) == 0) {
    }
    out[0] = 1.0f;
  } else {
    __syncthreads();
    if (threadIdx.x == 1) atomicExch(flag, 1);
  }
}
// Thread 0 waits for thread 1, which gets to run because the atomic is a scheduling point.
__global__ void spin_until_set(int* flag, float* out) {
  if (threadIdx.x == 0) {
    while (atomicAdd(flag, 0) == 0) __nanosleep(100);
    out[0] = 1.0f;
  } else if (threadIdx.x == 1) {
    atomicExch(flag, 1);
  }
}

}  // namespace

TEST_CASE("sim: static shared memory is fresh and poisoned for every block and launch", "[sim]") {
  for (uint64_t seed : {1u, 2u, 3u}) {
    petal::sim::set_schedule_seed(seed);
    for (int launch_index = 0; launch_index < 2; ++launch_index) {  // the second launch sees no leftovers
      std::vector<float> out(3 * kThreads, 0.0f);
      launch("shared_written_by_block0", shared_written_by_block0, dim3(3), dim3(kThreads), 0, out.data());
      for (int i = 0; i < kThreads; ++i) CHECK(out[i] == static_cast<float>(i));
      for (int i = kThreads; i < 3 * kThreads; ++i) CHECK(std::isnan(out[i]));
    }
  }
}

TEST_CASE("sim: dynamic shared memory and device allocations start as poison", "[sim]") {
  std::vector<float> out(32, 0.0f);
  launch("reads_unwritten_dynamic_shared", reads_unwritten_dynamic_shared, dim3(1), dim3(32), 32 * sizeof(float),
         out.data());
  for (float v : out) CHECK(std::isnan(v));
  namespace rt = petal::kernels::sim_impl;
  auto* p = static_cast<float*>(rt::rt_malloc(37 * sizeof(float)));
  std::vector<float> host(37, 0.0f);
  rt::rt_memcpy_d2h(host.data(), p, host.size() * sizeof(float));
  rt::rt_free(p);
  for (float v : host) CHECK(std::isnan(v));
}

TEST_CASE("sim: a divergent barrier reached through a helper is reported", "[sim]") {
  std::vector<float> out(kThreads, 0.0f);
  for (uint64_t seed : {1u, 2u, 3u}) {
    petal::sim::set_schedule_seed(seed);
    const std::string msg = message_of(
        [&] { launch("divergent_through_helper", divergent_through_helper, dim3(1), dim3(kThreads), 0, out.data()); });
    INFO(msg);
    CHECK(msg.find("kernel 'divergent_through_helper'") != std::string::npos);
    CHECK(msg.find("divergent barrier") != std::string::npos);
    CHECK(msg.find("different chain of calls") != std::string::npos);
  }
  launch("uniform_through_helper", uniform_through_helper, dim3(2), dim3(kThreads), 0, out.data());
  for (int i = 0; i < kThreads; ++i) CHECK(out[i] == static_cast<float>((i + 1) % kThreads + 2));
}

TEST_CASE("sim: a warp intrinsic whose mask names an exited lane is reported", "[sim]") {
  std::vector<float> out(32, -1.0f);
  const std::string msg =
      message_of([&] { launch("full_mask_after_exit", full_mask_after_exit, dim3(1), dim3(32), 0, out.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'full_mask_after_exit'") != std::string::npos);
  CHECK(msg.find("has already exited") != std::string::npos);
  CHECK(msg.find("__shfl_xor_sync") != std::string::npos);
  launch("active_mask_after_exit", active_mask_after_exit, dim3(1), dim3(32), 0, out.data());
  for (int i = 0; i < 16; ++i) CHECK(out[i] == static_cast<float>(i ^ 1));
}

TEST_CASE("sim: a warp intrinsic mismatch names both threads, their intrinsics and masks", "[sim]") {
  std::vector<float> out(32, -1.0f);
  for (uint64_t seed : {1u, 2u, 3u}) {
    petal::sim::set_schedule_seed(seed);
    const std::string msg =
        message_of([&] { launch("mismatched_intrinsics", mismatched_intrinsics, dim3(1), dim3(32), 0, out.data()); });
    INFO(msg);
    CHECK(msg.find("kernel 'mismatched_intrinsics'") != std::string::npos);
    CHECK(msg.find("mismatch") != std::string::npos);
    CHECK(msg.find("waits at __shfl_xor_sync (mask 0xffffffff)") != std::string::npos);
    CHECK(msg.find("waits at __ballot_sync (mask 0xffffffff)") != std::string::npos);
  }
}

TEST_CASE("sim: a launch over the kernel's __launch_bounds__ is refused", "[sim]") {
  std::vector<float> out(256, 0.0f);
  const std::string msg = message_of([&] {
    petal::sim::launch_bounded("bounded_kernel", bounded_kernel, kBound, dim3(1), dim3(256), 0, out.data());
  });
  INFO(msg);
  CHECK(msg.find("kernel 'bounded_kernel'") != std::string::npos);
  CHECK(msg.find("__launch_bounds__") != std::string::npos);
  petal::sim::launch_bounded("bounded_kernel", bounded_kernel, kBound, dim3(2), dim3(kBound), 0, out.data());
  CHECK(out[kBound - 1] == 1.0f);
}

TEST_CASE("sim: dynamic shared memory over 48 KiB needs the opt-in, within the target's maximum", "[sim]") {
  std::vector<float> out(32, 0.0f);
  const size_t big = 64 * 1024;
  std::string msg = message_of(
      [&] { launch("uses_dynamic_shared", uses_dynamic_shared, dim3(1), dim3(32), big, out.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'uses_dynamic_shared'") != std::string::npos);
  CHECK(msg.find("opt-in") != std::string::npos);
  // 48 KiB exactly needs no opt-in.
  launch("uses_dynamic_shared", uses_dynamic_shared, dim3(1), dim3(32), size_t{48} * 1024, out.data());
  // sm_80 (the default target) allows 163 KiB per block, sm_90 227 KiB.
  CHECK(petal::sim::target_arch() == 80);
  msg = message_of([&] { petal::sim::opt_in_dynamic_shared_memory("uses_dynamic_shared", uses_dynamic_shared, 200 * 1024); });
  CHECK(msg.find("sm_80") != std::string::npos);
  petal::sim::opt_in_dynamic_shared_memory("uses_dynamic_shared", uses_dynamic_shared, big);
  launch("uses_dynamic_shared", uses_dynamic_shared, dim3(1), dim3(32), big, out.data());
  CHECK(out[31] == 3.0f);
  // More than opted in is refused again.
  CHECK_THROWS_AS(launch("uses_dynamic_shared", uses_dynamic_shared, dim3(1), dim3(32), big + 16, out.data()),
                  petal::Error);
  petal::sim::set_target_arch(90);
  petal::sim::opt_in_dynamic_shared_memory("uses_dynamic_shared", uses_dynamic_shared, 200 * 1024);
  launch("uses_dynamic_shared", uses_dynamic_shared, dim3(1), dim3(32), 200 * 1024, out.data());
  petal::sim::set_target_arch(80);
}

TEST_CASE("sim: grid dimensions beyond the GPU's limits are refused", "[sim]") {
  std::vector<float> out(32, 0.0f);
  CHECK_THROWS_WITH(launch("uses_dynamic_shared", uses_dynamic_shared, dim3(1, 65536), dim3(32), 0, out.data()),
                    Catch::Contains("grid.y/z <= 65535"));
  CHECK_THROWS_WITH(launch("uses_dynamic_shared", uses_dynamic_shared, dim3(2147483648u), dim3(32), 0, out.data()),
                    Catch::Contains("grid.x <= 2^31-1"));
}

TEST_CASE("sim: a spin-wait that can never end is reported as a hang; one that can, ends", "[sim]") {
  const uint64_t saved = petal::sim::hang_limit();
  petal::sim::set_hang_limit(20000);
  std::vector<float> out(1, 0.0f);
  std::vector<int> flag(1, 0);
  const std::string msg = message_of(
      [&] { launch("spin_forever", spin_forever, dim3(1), dim3(kThreads), 0, flag.data(), out.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'spin_forever'") != std::string::npos);
  CHECK(msg.find("no progress") != std::string::npos);
  CHECK(msg.find("spins in atomicAdd at tests/sim/test_sim_verifier.cpp:") != std::string::npos);
  CHECK(msg.find("waits at __syncthreads") != std::string::npos);
  petal::sim::set_hang_limit(saved);
  for (uint64_t seed : {1u, 2u, 3u}) {
    petal::sim::set_schedule_seed(seed);
    flag[0] = 0;
    out[0] = 0.0f;
    launch("spin_until_set", spin_until_set, dim3(1), dim3(kThreads), 0, flag.data(), out.data());
    CHECK(out[0] == 1.0f);
  }
}
