// The thin runtime layer between the CUDA backend's host code and the device: memory,
// copies, synchronization and GEMM. Two implementations share these declarations:
// kernels/cuda/runtime.cpp (CUDA runtime + cuBLASLt, a compute and a copy stream per device)
// and kernels/sim/runtime_sim.cpp (host memory, synchronous kernels, GEMM on the CPU backend,
// asynchronous copies modelled by a deferred copy queue).
// Kernel launches go through PETAL_LAUNCH in common.cuh, not through this layer.
#pragma once
#include <cstddef>
#include <memory>

#include "kernels/backend.h"
#include "kernels/cuda/gemm_epilogue.h"

#ifdef PETAL_SIM_COMPILE
#define PETAL_CUDA_NS sim_impl
#else
#define PETAL_CUDA_NS cuda_impl
#endif

namespace petal::kernels::PETAL_CUDA_NS {

void* rt_malloc(size_t nbytes);
void rt_free(void* p);
void rt_memcpy_h2d(void* dst, const void* src, size_t n);
void rt_memcpy_d2h(void* dst, const void* src, size_t n);
void rt_memcpy_d2d(void* dst, const void* src, size_t n);
void rt_memset(void* dst, int value, size_t n);
/// Waits for all work of the device (compute and copy streams) and releases what finished
/// asynchronous copies held.
void rt_synchronize();
/// Page-locked host memory (cudaHostAlloc, portable to every device); rt_host_free frees it.
void* rt_host_alloc(size_t n);
void rt_host_free(void* p);
/// Host->device copy from pinned src that returns at once: on the copy stream, after the
/// compute stream's earlier work (dst may still be in use there), followed by
/// an event the compute stream waits on; keep_alive is held until that event has completed.
void rt_memcpy_h2d_async(void* dst, const void* src, size_t n, std::shared_ptr<const void> keep_alive);
/// A new allocation of n bytes made on the copy stream (stream-ordered there, so the copy need
/// not wait for the compute stream) and filled from pinned src as rt_memcpy_h2d_async does;
/// freed by rt_free like any other allocation.
void* rt_malloc_h2d_async(const void* src, size_t n, std::shared_ptr<const void> keep_alive);
void rt_gemm(const GemmArgs& args);
/// The GEMM (batch 1, k > 0, f32/bf16/f16) with a cuBLASLt epilogue: bias is the bias vector
/// (Bias, GeluAuxBias) or receives the bias gradient (BGradB), aux [m, n] with leading
/// dimension aux_ld receives the pre-activation (GeluAux*). Returns false, having done
/// nothing, when the epilogue cannot run (no cuBLASLt algorithm for it, or the simulator,
/// which has no cuBLASLt): the caller then runs the plain GEMM and its own kernels.
/// Epilogues: bias (Bias, GeluAuxBias, DGeluBGrad: the bias gradient) and aux (the GELU input,
/// written by GeluAux*, read by DGelu*) as in gemm_epilogue.h.
bool rt_gemm_epilogue(const GemmArgs& args, GemmEpilogue epilogue, void* bias, void* aux, int64_t aux_ld);
/// Whether epilogues are worth planning (rt_gemm_epilogue may return true): on cuda always; on
/// the simulator only under the test hook sim::set_lt_epilogues (kernels/sim/sim.h).
bool rt_lt_epilogues();

#ifdef PETAL_SIM_COMPILE
/// The simulator's copy stream: an asynchronous copy runs only once the compute stream has
/// waited for it, at the compute stream's next operation (every CudaBackend method calls
/// this first), or at rt_synchronize. So a missing wait reads stale (poisoned) memory and a
/// source freed too early is read after its release (poisoned, and reported by ASan).
void rt_sim_run_waited_copies();
/// Planted bug for tests: asynchronous copies are issued without the compute stream's wait
/// (the test then reads stale data); tests find it by name.
void set_skip_copy_wait_for_testing(bool skip);
#endif

}  // namespace petal::kernels::PETAL_CUDA_NS

#ifndef PETAL_SIM_COMPILE
#include <cuda_runtime_api.h>

// CUDA-only part of the layer (no simulator counterpart: the simulator has one device
// and runs everything synchronously).
namespace petal::kernels::cuda_impl {

/// Number of usable CUDA devices; 0 when there is no GPU or no working driver (never throws).
int rt_device_count();
/// Makes `device` current on this thread (cheap when it already is).
void rt_set_device(int device);
/// The compute stream of the current device (created on first use, non-blocking).
cudaStream_t rt_current_stream();
/// Allows TF32 tensor-core math for float32 GEMMs (default off; env PETAL_CUDA_TF32=1 turns it on).
void rt_set_allow_tf32(bool allow);
bool rt_allow_tf32();

}  // namespace petal::kernels::cuda_impl
#endif
