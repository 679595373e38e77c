// TEMPORARY (must be empty and deleted before landing): throwing placeholders for the fused
// kernels declared in backend.h whose CPU implementation is being written in
// kernels/cpu/<family>.cpp. Each family's author deletes its block here.
#include <petal/error.h>

#include "kernels/cpu/cpu_backend.h"

namespace petal::kernels {

// ---- layernorm (kernels/cpu/layernorm.cpp)
void CpuBackend::layer_norm_forward(void*, void*, void*, const void*, const void*, const void*, DType, int64_t, int64_t,
                                    double) {
  PETAL_FAIL("layer_norm_forward: not implemented on cpu yet");
}
void CpuBackend::layer_norm_backward(void*, void*, void*, const void*, const void*, const void*, const void*,
                                     const void*, DType, int64_t, int64_t) {
  PETAL_FAIL("layer_norm_backward: not implemented on cpu yet");
}
// ---- cross_entropy (kernels/cpu/cross_entropy.cpp)
void CpuBackend::cross_entropy_forward(void*, void*, const void*, const int64_t*, DType, int64_t, int64_t, double,
                                       int64_t) {
  PETAL_FAIL("cross_entropy_forward: not implemented on cpu yet");
}
void CpuBackend::cross_entropy_backward(void*, const void*, const void*, const void*, const int64_t*, DType, int64_t,
                                        int64_t, double, int64_t) {
  PETAL_FAIL("cross_entropy_backward: not implemented on cpu yet");
}
// ---- attention (kernels/cpu/attention.cpp)
void CpuBackend::attention_forward(const AttentionArgs&) { PETAL_FAIL("attention_forward: not implemented on cpu yet"); }
void CpuBackend::attention_backward(const AttentionArgs&, const void*, void*, void*, void*) {
  PETAL_FAIL("attention_backward: not implemented on cpu yet");
}
// ---- patch_embed (kernels/cpu/patch_embed.cpp)
void CpuBackend::patch_unfold(void*, const void*, DType, int64_t, int64_t, int64_t, int64_t, int64_t) {
  PETAL_FAIL("patch_unfold: not implemented on cpu yet");
}
void CpuBackend::patch_fold(void*, const void*, DType, int64_t, int64_t, int64_t, int64_t, int64_t) {
  PETAL_FAIL("patch_fold: not implemented on cpu yet");
}
// ---- optimizer (kernels/cpu/optimizer.cpp)
void CpuBackend::adamw_update(void*, const void*, void*, void*, void*, DType, int64_t, const AdamWArgs&) {
  PETAL_FAIL("adamw_update: not implemented on cpu yet");
}
void CpuBackend::sgd_update(void*, const void*, void*, DType, int64_t, const SgdArgs&) {
  PETAL_FAIL("sgd_update: not implemented on cpu yet");
}

}  // namespace petal::kernels
