// The SIMT simulator's host-side interface: the kernel launch used by the CUDA sources when
// they are compiled for the device "sim", and the knobs tests and tools turn (schedule seed,
// host threads). The CUDA built-ins that kernel code uses (threadIdx, __syncthreads,
// __shfl_sync, ...) live in sim_cuda.h; the engine behind both is engine.cpp.
// How it works and what it cannot catch: docs/simulator.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include <vector_types.h>

// AddressSanitizer does not instrument thread_local variables, so in an ASan build __shared__
// variables are plain statics (instrumented, overflows reported) and the simulator runs one
// block at a time on one host thread. Otherwise they are thread_local and blocks run in
// parallel on several host threads.
#if defined(__SANITIZE_ADDRESS__)
#define PETAL_SIM_STATIC_SHARED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PETAL_SIM_STATIC_SHARED 1
#endif
#endif

namespace petal::sim {

/// Seeds the shuffling of the order in which the threads of a block run between barriers,
/// and restarts the launch counter, so the schedules that follow are reproducible.
/// The initial seed comes from the environment variable PETAL_SIM_SEED (default 1).
void set_schedule_seed(uint64_t seed);
/// The current schedule seed.
uint64_t schedule_seed();

/// Number of host (OS) threads the blocks of a launch are spread over; n <= 0 restores the
/// default (PETAL_SIM_THREADS from the environment, else the hardware concurrency).
/// ASan and TSan builds always use one thread (see PETAL_SIM_STATIC_SHARED, docs/simulator.md).
void set_host_threads(int n);
/// The number of host threads a launch with enough blocks would use.
int host_threads();

/// Bytes of stack of each simulated thread (a fiber). Kernels with large local arrays may
/// need more: PETAL_SIM_STACK_KB in the environment overrides it.
size_t fiber_stack_bytes();

/// The GPU architecture whose launch limits the simulator enforces: 80 (sm_80, the default,
/// the stricter of petal's targets: 163 KiB of shared memory per block) or 90 (227 KiB).
/// PETAL_SIM_ARCH in the environment sets the initial value.
void set_target_arch(int sm);
int target_arch();
/// Most dynamic shared memory a kernel may opt in to on the target architecture.
size_t max_dynamic_shared_memory_optin();

/// Scheduling points (atomics, __nanosleep) a block may go through without progress (a barrier
/// release, a warp rendezvous, a thread exit, an atomic that changed memory) before it is
/// reported as a hang. PETAL_SIM_HANG_EVENTS sets the initial value (default 4194304).
void set_hang_limit(uint64_t events);
uint64_t hang_limit();

/// Counters since the start of the process (for benchmarks and docs, not for tests of results).
struct Stats {
  uint64_t launches = 0;
  uint64_t blocks = 0;
  uint64_t threads = 0;
  uint64_t switches = 0;  // fiber resumptions (a thread running until it blocks or ends)
};
Stats stats();

/// Test hook for the cuda backend's cuBLASLt epilogue paths, which otherwise only run on a GPU.
/// Off (the default): the simulator has no cuBLASLt, so kernels/cuda/*.cu plan no epilogue.
/// Emulate: kernels/cuda/mlp.cu plans its epilogues as on a GPU and rt_gemm_epilogue computes
/// DGELU / DGELU_BGRAD (what cuBLASLt documents: D = (A B) * gelu_tanh'(aux), bias = the row
/// sums of D) on the CPU backend; other epilogues are declined. Decline: planned as on a GPU,
/// then every epilogue is declined, as when cuBLASLt has no algorithm for the problem.
enum class LtEpilogues { Off, Emulate, Decline };
void set_lt_epilogues(LtEpilogues mode);
LtEpilogues lt_epilogues();
/// How many epilogue GEMMs the emulation has computed since the start of the process.
uint64_t lt_epilogues_emulated();

namespace detail {
/// Type-erased launch: runs body(payload) once per simulated thread of grid x block.
void launch_erased(const char* kernel_name, const void* kernel_id, dim3 grid, dim3 block, size_t dynamic_smem_bytes,
                   unsigned max_threads, void (*body)(void*), void* payload);
void opt_in_dynamic_shared_memory(const void* kernel_id, const char* kernel_name, size_t bytes);

template <typename... KArgs, typename... Args>
void launch_impl(const char* kernel_name, void (*kernel)(KArgs...), unsigned max_threads, dim3 grid, dim3 block,
                 size_t dynamic_smem_bytes, Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args), "petal::sim::launch: wrong number of kernel arguments");
  using Pack = std::tuple<std::decay_t<KArgs>...>;
  struct Payload {
    void (*kernel)(KArgs...);
    Pack args;
  };
  Payload payload{kernel, Pack(std::forward<Args>(args)...)};
  launch_erased(
      kernel_name, reinterpret_cast<const void*>(kernel), grid, block, dynamic_smem_bytes, max_threads,
      [](void* raw) {
        auto* p = static_cast<Payload*>(raw);
        std::apply(p->kernel, p->args);  // copies each argument into the kernel's parameters
      },
      &payload);
}
}  // namespace detail

/// Lets kernel use up to `bytes` of dynamic shared memory (over the default 48 KiB), as
/// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) does on a
/// GPU; a launch over 48 KiB without it fails. Throws when bytes exceed the target's maximum.
template <typename... KArgs>
void opt_in_dynamic_shared_memory(const char* kernel_name, void (*kernel)(KArgs...), size_t bytes) {
  detail::opt_in_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), kernel_name, bytes);
}

/// Runs kernel over grid x block simulated threads with dynamic_smem_bytes of dynamic shared
/// memory and returns when the whole grid has finished. Arguments are converted to the
/// kernel's parameter types once; every thread receives its own copy, as on a GPU.
/// Throws petal::Error naming the kernel, block and thread when the simulator detects a bug
/// (a thread leaving while others wait at a barrier, divergent barriers, warp intrinsics
/// whose lanes do not match their mask, ...), and rethrows what a kernel throws.
template <typename... KArgs, typename... Args>
void launch(const char* kernel_name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t dynamic_smem_bytes,
            Args&&... args) {
  detail::launch_impl(kernel_name, kernel, 1024u, grid, block, dynamic_smem_bytes, std::forward<Args>(args)...);
}

/// launch() for a kernel declared with __launch_bounds__(max_threads): a block of more threads
/// fails as it would on a GPU (the simulator cannot read the attribute, so the launch passes it).
template <typename... KArgs, typename... Args>
void launch_bounded(const char* kernel_name, void (*kernel)(KArgs...), unsigned max_threads, dim3 grid, dim3 block,
                    size_t dynamic_smem_bytes, Args&&... args) {
  detail::launch_impl(kernel_name, kernel, max_threads, grid, block, dynamic_smem_bytes, std::forward<Args>(args)...);
}

}  // namespace petal::sim
