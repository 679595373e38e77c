// Planted kernel bugs that end a process, one per run: `petal_sim_planted <kind>`.
// - Races on shared memory (kinds race_*): each kernel computes the right answer under most
//   schedules, so only the race-detection build (PETAL_SANITIZE=thread) can flag them; there
//   ThreadSanitizer must report a data race naming the kernel (the fiber's name) and both
//   source lines, for every schedule seed (ctest runs each under several PETAL_SIM_SEED).
// - misaligned_float4: a float4 load from an address 4 bytes past 16-byte alignment; UBSan's
//   alignment check (on in every sim build) must stop it, and the engine names the kernel.
// - `clean` runs the corrected version of every race kernel: no report, exit code 0.
// The ctest entries are in tests/sim/CMakeLists.txt.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/sim/sim_cuda.h"

namespace {

constexpr int kThreads = 64;

// 1. Tree reduction with the barrier inside the loop removed: the next level reads a partial
//    sum another thread may not have written yet.
__global__ void race_tree_reduction(const float* in, float* out, int planted) {
  PETAL_SHARED(float, buf, [kThreads]);
  const unsigned tid = threadIdx.x;
  buf[tid] = in[tid];
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) buf[tid] += buf[tid + s];
    if (!planted) __syncthreads();
  }
  if (tid == 0) out[0] = buf[0];
}

// 2. The barrier between the loads into shared memory and their first use removed.
__global__ void race_missing_barrier_after_loads(const float* in, float* out, int planted) {
  PETAL_SHARED(float, buf, [kThreads]);
  const unsigned tid = threadIdx.x;
  buf[tid] = in[tid];
  if (!planted) __syncthreads();
  out[tid] = buf[(tid + 1) % blockDim.x] + buf[(tid + blockDim.x - 1) % blockDim.x];
}

// 3. A warp-synchronous tail (the last 32 partial sums folded by one warp) without __syncwarp
//    between the steps: lanes of a warp are not lock-step on Volta and later.
__global__ void race_warp_tail(const float* in, float* out, int planted) {
  PETAL_SHARED(float, buf, [kThreads]);
  const unsigned tid = threadIdx.x;
  buf[tid] = in[tid];
  __syncthreads();
  if (tid < 32) {
    buf[tid] += buf[tid + 32];
    if (!planted) __syncwarp();
    for (unsigned s = 16; s > 0; s >>= 1) {
      float v = 0.0f;
      if (tid < s) v = buf[tid + s];
      if (!planted) __syncwarp();
      if (tid < s) buf[tid] += v;
      if (!planted) __syncwarp();
    }
  }
  if (tid == 0) out[0] = buf[0];
}

// 4. Each thread reads its neighbour's element with no barrier after the writes.
__global__ void race_neighbour_read(const float* in, float* out, int planted) {
  PETAL_SHARED(float, buf, [kThreads]);
  const unsigned tid = threadIdx.x;
  buf[tid] = in[tid] * 2.0f;
  if (!planted) __syncthreads();
  out[tid] = buf[tid ^ 1u];
}

// 5. A shared counter incremented with a plain read-modify-write instead of atomicAdd.
__global__ void race_shared_counter(const float* in, float* out, int planted) {
  PETAL_SHARED(int, counter, [1]);
  if (threadIdx.x == 0) counter[0] = 0;
  __syncthreads();
  if (in[threadIdx.x] > 0.0f) {
    if (planted)
      counter[0] = counter[0] + 1;
    else
      atomicAdd(&counter[0], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) out[0] = static_cast<float>(counter[0]);
}

// 6. A transient value: thread 0 stores a scratch value into a slot, then overwrites it with
//    the final one; thread 1 reads the slot in the same barrier interval.
__global__ void race_transient_write(const float* in, float* out, int planted) {
  PETAL_SHARED(float, slot, [1]);
  if (threadIdx.x == 0) {
    slot[0] = -1.0f;  // scratch
    slot[0] = in[0];  // final
  }
  if (!planted) __syncthreads();
  if (threadIdx.x == 1) out[0] = slot[0];
  __syncthreads();
}

// 7. Producer/consumer through a flag in shared memory with no barrier or atomic: the consumer
//    polls a plain flag once (reads the data if set, else its own fallback).
__global__ void race_producer_consumer(const float* in, float* out, int planted) {
  PETAL_SHARED(float, data, [1]);
  PETAL_SHARED(int, ready, [1]);
  if (threadIdx.x == 0) ready[0] = 0;
  __syncthreads();
  if (threadIdx.x == 0) {
    data[0] = in[0];
    ready[0] = 1;
  }
  if (!planted) __syncthreads();
  if (threadIdx.x == 1) out[0] = ready[0] ? data[0] : in[0];
  __syncthreads();
}

__global__ void misaligned_float4(const float* in, float* out, int offset) {
  const float4 v = *reinterpret_cast<const float4*>(in + offset);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

using Kernel = void (*)(const float*, float*, int);
struct Planted {
  const char* kind;
  const char* kernel_name;
  Kernel kernel;
};
const Planted kRaces[] = {
    {"race_tree_reduction", "race_tree_reduction", race_tree_reduction},
    {"race_missing_barrier_after_loads", "race_missing_barrier_after_loads", race_missing_barrier_after_loads},
    {"race_warp_tail", "race_warp_tail", race_warp_tail},
    {"race_neighbour_read", "race_neighbour_read", race_neighbour_read},
    {"race_shared_counter", "race_shared_counter", race_shared_counter},
    {"race_transient_write", "race_transient_write", race_transient_write},
    {"race_producer_consumer", "race_producer_consumer", race_producer_consumer},
};

}  // namespace

int main(int argc, char** argv) {
  const std::string kind = argc > 1 ? argv[1] : "clean";
  std::vector<float> in(kThreads + 8), out(kThreads, NAN);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(static_cast<int>(i % 7) - 2);
  try {
    if (kind == "misaligned_float4") {
      // in.data() is 16-byte aligned (operator new); +1 float is not.
      petal::sim::launch("misaligned_float4", misaligned_float4, dim3(1), dim3(32), 0,
                         static_cast<const float*>(in.data()), out.data(), 1);
      std::printf("petal_sim_planted %s: no error detected\n", kind.c_str());
      return 1;
    }
    bool found = false;
    for (const Planted& p : kRaces) {
      const bool clean = kind == "clean";
      if (!clean && kind != p.kind) continue;
      found = true;
      petal::sim::launch(p.kernel_name, p.kernel, dim3(2), dim3(kThreads), 0, static_cast<const float*>(in.data()),
                         out.data(), clean ? 0 : 1);
    }
    if (!found) {
      std::fprintf(stderr, "petal_sim_planted: unknown kind '%s'\n", kind.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::printf("petal_sim_planted %s: %s\n", kind.c_str(), e.what());
    return 3;
  }
  std::printf("petal_sim_planted %s: finished (seed %llu)\n", kind.c_str(),
              static_cast<unsigned long long>(petal::sim::schedule_seed()));
  return 0;
}
