// The simulator's block-level semantics: shared memory and __syncthreads give exact results,
// the schedule is shuffled reproducibly, and the planted barrier bugs
// (a thread skipping a barrier, an early return before one, threads at different barriers)
// are reported as petal::Error naming the kernel, block and thread. Planted data races
// (a missing barrier among them) are the race-detection build's: planted_bugs.cpp.
#include "testing.h"

#include "kernels/sim/sim_cuda.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <numeric>
#include <vector>

namespace {

using petal::sim::launch;

constexpr int kBlock = 128;

/// Values of a block reduction: integers (exact in float) that differ per element.
std::vector<float> reduction_input(int n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t s = seed;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<int>(s >> 40 & 1023) - 511);
  }
  return v;
}

std::vector<float> reference_block_sums(const std::vector<float>& in, int block) {
  std::vector<float> sums((in.size() + block - 1) / block, 0.0f);
  for (size_t i = 0; i < in.size(); ++i) sums[i / block] += in[i];
  return sums;
}

// Tree reduction in shared memory with the barriers it needs.
__global__ void block_sum(const float* in, float* out, int n) {
  PETAL_SHARED(float, buf, [kBlock]);
  const unsigned tid = threadIdx.x;
  const unsigned i = blockIdx.x * blockDim.x + tid;
  buf[tid] = i < static_cast<unsigned>(n) ? in[i] : 0.0f;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) buf[tid] += buf[tid + s];
    __syncthreads();
  }
  if (tid == 0) out[blockIdx.x] = buf[0];
}

// A thread that skips the barrier its block waits at (divergent barrier).
__global__ void skips_barrier(float* data) {
  PETAL_SHARED(float, buf, [kBlock]);
  buf[threadIdx.x] = data[threadIdx.x];
  if (threadIdx.x != 5) __syncthreads();
  data[threadIdx.x] = buf[threadIdx.x] + 1.0f;  // its own element: the bug is the barrier, not a race
}

// The classic early exit: threads past the end return before the block's barrier.
__global__ void early_return(const float* in, float* out, int n) {
  PETAL_SHARED(float, buf, [kBlock]);
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= static_cast<unsigned>(n)) return;
  buf[threadIdx.x] = in[i];
  __syncthreads();
  out[i] = buf[blockDim.x - 1 - threadIdx.x];
}

// Even and odd threads wait at two different __syncthreads calls.
__global__ void two_barriers(float* data) {
  PETAL_SHARED(float, buf, [kBlock]);
  buf[threadIdx.x] = data[threadIdx.x];
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  data[threadIdx.x] = buf[kBlock - 1 - threadIdx.x];
}

// Records the order in which the threads of each block run before and after a barrier.
__global__ void record_order(int* counters, int* order) {
  for (int phase = 0; phase < 2; ++phase) {
    const int p = 2 * static_cast<int>(blockIdx.x) + phase;
    const int slot = atomicAdd(&counters[p], 1);
    order[p * static_cast<int>(blockDim.x) + slot] = static_cast<int>(threadIdx.x);
    __syncthreads();
  }
}

__global__ void barrier_predicates(const int* flags, int* out) {
  const int f = flags[blockIdx.x * blockDim.x + threadIdx.x];
  const int count = __syncthreads_count(f);
  const int all = __syncthreads_and(f);
  const int any = __syncthreads_or(f);
  if (threadIdx.x == 0) {
    out[3 * blockIdx.x + 0] = count;
    out[3 * blockIdx.x + 1] = all;
    out[3 * blockIdx.x + 2] = any;
  }
}

__global__ void traps(int* data) {
  if (threadIdx.x == 3 && blockIdx.x == 1) __trap();
  data[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

__global__ void throws_from_kernel(int* data) {
  if (threadIdx.x == 7) throw std::runtime_error("thrown by a simulated thread");
  data[threadIdx.x] = 1;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const petal::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("sim: block reduction in shared memory is exact", "[sim]") {
  const int n = 1000;  // 8 blocks, the last one partial
  const auto in = reduction_input(n, 7);
  const auto expected = reference_block_sums(in, kBlock);
  for (int threads : {1, 3}) {
    petal::sim::set_host_threads(threads);
    for (uint64_t seed : {1u, 2u, 3u}) {
      petal::sim::set_schedule_seed(seed);
      std::vector<float> out(expected.size(), -12345.0f);
      launch("block_sum", block_sum, dim3(static_cast<unsigned>(expected.size())), dim3(kBlock), 0, in.data(),
             out.data(), n);
      INFO("host threads " << threads << ", seed " << seed);
      CHECK(out == expected);
    }
  }
  petal::sim::set_host_threads(0);
}

TEST_CASE("sim: the schedule is shuffled, and reproducible from its seed", "[sim]") {
  const int blocks = 3;
  auto run = [&](uint64_t seed) {
    petal::sim::set_schedule_seed(seed);
    std::vector<int> counters(2 * blocks, 0), order(2 * blocks * kBlock, -1);
    launch("record_order", record_order, dim3(blocks), dim3(kBlock), 0, counters.data(), order.data());
    return order;
  };
  const auto a = run(42), b = run(42), c = run(43);
  CHECK(a == b);
  CHECK(a != c);
  // Each phase of each block ran every thread once, in an order that is not the thread order.
  std::vector<int> identity(kBlock);
  std::iota(identity.begin(), identity.end(), 0);
  for (int p = 0; p < 2 * blocks; ++p) {
    std::vector<int> phase(a.begin() + p * kBlock, a.begin() + (p + 1) * kBlock);
    CHECK(phase != identity);
    std::sort(phase.begin(), phase.end());
    CHECK(phase == identity);
  }
}

TEST_CASE("sim: a thread that skips a barrier is reported", "[sim]") {
  std::vector<float> data(kBlock, 1.0f);
  const std::string msg = message_of([&] { launch("skips_barrier", skips_barrier, dim3(1), dim3(kBlock), 0, data.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'skips_barrier'") != std::string::npos);
  CHECK(msg.find("block (0,0,0)") != std::string::npos);
  CHECK(msg.find("thread (5,0,0)") != std::string::npos);
  CHECK(msg.find("__syncthreads") != std::string::npos);
}

TEST_CASE("sim: an early return before a barrier is reported", "[sim]") {
  const int n = 200;  // the second block has 56 live threads and 72 that return at once
  std::vector<float> in(n, 2.0f), out(n, 0.0f);
  const std::string msg = message_of(
      [&] { launch("early_return", early_return, dim3(2), dim3(kBlock), 0, in.data(), out.data(), n); });
  INFO(msg);
  CHECK(msg.find("kernel 'early_return'") != std::string::npos);
  CHECK(msg.find("block (1,0,0)") != std::string::npos);
  CHECK(msg.find("returned while") != std::string::npos);
  CHECK(msg.find("test_sim_barriers.cpp:") != std::string::npos);  // names the barrier's line
  // With a grid that covers n exactly, the same kernel is correct.
  std::vector<float> in2(2 * kBlock), out2(2 * kBlock, 0.0f);
  std::iota(in2.begin(), in2.end(), 0.0f);
  launch("early_return", early_return, dim3(2), dim3(kBlock), 0, in2.data(), out2.data(), 2 * kBlock);
  CHECK(out2[0] == in2[kBlock - 1]);
  CHECK(out2[kBlock] == in2[2 * kBlock - 1]);
}

TEST_CASE("sim: threads waiting at different barriers are reported", "[sim]") {
  std::vector<float> data(kBlock, 1.0f);
  const std::string msg = message_of([&] { launch("two_barriers", two_barriers, dim3(1), dim3(kBlock), 0, data.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'two_barriers'") != std::string::npos);
  CHECK(msg.find("divergent barrier") != std::string::npos);
}

TEST_CASE("sim: the simulator keeps working after a reported bug", "[sim]") {
  std::vector<float> data(kBlock, 1.0f);
  CHECK_THROWS_AS(launch("skips_barrier", skips_barrier, dim3(1), dim3(kBlock), 0, data.data()), petal::Error);
  const auto in = reduction_input(kBlock * 3, 3);
  std::vector<float> out(3, 0.0f);
  launch("block_sum", block_sum, dim3(3), dim3(kBlock), 0, in.data(), out.data(), kBlock * 3);
  CHECK(out == reference_block_sums(in, kBlock));
}

TEST_CASE("sim: __syncthreads_count/and/or", "[sim]") {
  const int blocks = 3, threads = 96;
  std::vector<int> flags(blocks * threads);
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) flags[b * threads + t] = b == 0 ? 1 : (b == 1 ? (t % 7 == 0) : 0);
  std::vector<int> out(3 * blocks, -1);
  launch("barrier_predicates", barrier_predicates, dim3(blocks), dim3(threads), 0, flags.data(), out.data());
  CHECK(out == std::vector<int>{threads, 1, 1, (threads + 6) / 7, 0, 1, 0, 0, 0});
}

TEST_CASE("sim: __trap and exceptions stop the launch with the kernel named", "[sim]") {
  std::vector<int> data(4 * 32, 0);
  const std::string msg = message_of([&] { launch("traps", traps, dim3(4), dim3(32), 0, data.data()); });
  INFO(msg);
  CHECK(msg.find("kernel 'traps' block (1,0,0)") != std::string::npos);
  CHECK(msg.find("thread (3,0,0) called __trap()") != std::string::npos);
  CHECK_THROWS_WITH(launch("throws_from_kernel", throws_from_kernel, dim3(1), dim3(32), 0, data.data()),
                    "thrown by a simulated thread");
}

TEST_CASE("sim: invalid launch configurations are rejected", "[sim]") {
  std::vector<float> data(kBlock, 1.0f);
  CHECK_THROWS_AS(launch("block_sum", block_sum, dim3(1), dim3(2048), 0, data.data(), data.data(), 1), petal::Error);
  CHECK_THROWS_AS(launch("block_sum", block_sum, dim3(0), dim3(32), 0, data.data(), data.data(), 1), petal::Error);
}
