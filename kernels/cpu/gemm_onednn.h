// bf16 (and f32) GEMM on the CPU through oneDNN's matmul primitive (optional dependency: the build
// defines PETAL_WITH_ONEDNN when CMake found oneDNN, PETAL_ONEDNN=AUTO|ON|OFF). oneDNN
// multiplies bf16 operands with f32 accumulation on AVX512-BF16 or AMX-BF16 where the CPU
// has them (it is told it may use AMX: oneDNN 2.6 does not dispatch AMX unless asked), and
// rounds the result to bf16 once. CpuBackend::gemm (gemm.cpp) calls onednn_gemm first for
// bf16 and falls back to its widen-to-f32 sgemm path when it returns false. The attention
// kernel (attention.cpp) runs its per-(batch, head) products through OnednnGemm: bf16 inputs
// with f32 (or bf16) output, and f32 x f32 -> f32, one prepared primitive per layout reused
// on many pointers.
#pragma once
#include <memory>
#include <string>

#include "kernels/backend.h"

namespace petal::kernels::cpu {

/// C[b] = alpha op(A[b]) op(B[b]) + beta C[b] (the GemmArgs contract of kernels/backend.h)
/// through oneDNN; returns false, having written nothing, when it does not handle the
/// call: no oneDNN in this build, oneDNN turned off, a dtype other than bf16, k == 0, a
/// batch stride of 0 for C, or a layout oneDNN rejects. One primitive per problem
/// (shapes, strides, transposes, alpha, beta, dtype) is created once and cached.
bool onednn_gemm(const GemmArgs& g);

/// onednn_gemm with inputs of g.dtype and C of c_dtype: bf16 x bf16 -> bf16 or f32 (f32
/// accumulation, one rounding when C is bf16; beta reads C in its dtype), f32 x f32 -> f32.
/// Declines (false, nothing written) for other pairs (f16: oneDNN 2.6 has no f16 matmul
/// here) and in the cases onednn_gemm declines.
bool onednn_gemm_to(const GemmArgs& g, DType c_dtype);

/// A prepared onednn_gemm_to: the cached primitive of one layout (every GemmArgs field but the
/// three pointers, and c_dtype) bound to its own oneDNN memory objects and stream, so run()
/// costs only the product. Prepare once per thread (e.g. per OpenMP chunk) and run it on
/// many pointers; one OnednnGemm must not run on two threads at once, but several may share
/// the primitive (each run uses a scratchpad of the calling thread).
class OnednnGemm {
 public:
  OnednnGemm();
  ~OnednnGemm();
  OnednnGemm(OnednnGemm&&) noexcept;
  OnednnGemm& operator=(OnednnGemm&&) noexcept;
  OnednnGemm(const OnednnGemm&) = delete;
  OnednnGemm& operator=(const OnednnGemm&) = delete;

  /// Binds to the layout of g (its pointers are ignored) and C dtype; false, leaving ok()
  /// false, where onednn_gemm_to(g, c_dtype) would decline.
  bool prepare(const GemmArgs& g, DType c_dtype);
  bool ok() const { return impl_ != nullptr; }
  /// C = alpha op(A) op(B) + beta C on these operands, in the prepared layout.
  void run(const void* a, const void* b, void* c);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Whether onednn_gemm may run: built with oneDNN, and neither set_onednn_gemm_enabled(false)
/// nor the environment variable PETAL_ONEDNN=0 turned it off.
bool onednn_gemm_enabled();

/// Turns the oneDNN path on or off for this process (tests and benchmarks compare both).
/// Does nothing useful without oneDNN in the build.
void set_onednn_gemm_enabled(bool enabled);

/// Whether this build links oneDNN at all.
bool onednn_built();

/// The instruction set oneDNN dispatches to on this CPU ("avx512_core_amx",
/// "avx512_core_bf16", ...), or "none" without oneDNN.
std::string onednn_cpu_isa();

/// Whether bf16 GEMMs are fast on this CPU: onednn_gemm_enabled() and oneDNN dispatches to
/// native bf16 instructions (AVX512-BF16 or AMX-BF16), not to its f32 emulation. Without
/// it a bf16 GEMM costs more than the f32 one (vit_flowers' `--amp auto` asks this).
bool onednn_bf16_fast();

}  // namespace petal::kernels::cpu
