// The thin runtime layer between the CUDA backend's host code and the device: memory,
// copies, synchronization and GEMM. Two implementations share these declarations:
// kernels/cuda/runtime.cpp (CUDA runtime + cuBLASLt, one stream per device) and
// kernels/sim/runtime_sim.cpp (host memory, synchronous, GEMM on the CPU backend).
// Kernel launches go through PETAL_LAUNCH in common.cuh, not through this layer.
#pragma once
#include <cstddef>

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
void rt_synchronize();
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
