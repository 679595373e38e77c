// TEMPORARY (must be empty and deleted before landing): throwing placeholders for the fused
// kernels declared in backend.h whose CUDA implementation is being written in
// kernels/cuda/<family>.cu. Each family's author deletes its block here.
#include <petal/error.h>

#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

// ---- layernorm (kernels/cuda/layernorm.cu)
void CudaBackend::layer_norm_forward(void*, void*, void*, const void*, const void*, const void*, DType, int64_t, int64_t,
                                    double) {
  PETAL_FAIL("layer_norm_forward: not implemented on cuda yet");
}
void CudaBackend::layer_norm_backward(void*, void*, void*, const void*, const void*, const void*, const void*,
                                     const void*, DType, int64_t, int64_t) {
  PETAL_FAIL("layer_norm_backward: not implemented on cuda yet");
}
// ---- cross_entropy (kernels/cuda/cross_entropy.cu)
void CudaBackend::cross_entropy_forward(void*, void*, const void*, const int64_t*, DType, int64_t, int64_t, double,
                                       int64_t) {
  PETAL_FAIL("cross_entropy_forward: not implemented on cuda yet");
}
void CudaBackend::cross_entropy_backward(void*, const void*, const void*, const void*, const int64_t*, DType, int64_t,
                                        int64_t, double, int64_t) {
  PETAL_FAIL("cross_entropy_backward: not implemented on cuda yet");
}
// ---- attention (kernels/cuda/attention.cu)
void CudaBackend::attention_forward(const AttentionArgs&) { PETAL_FAIL("attention_forward: not implemented on cuda yet"); }
void CudaBackend::attention_backward(const AttentionArgs&, const void*, void*, void*, void*) {
  PETAL_FAIL("attention_backward: not implemented on cuda yet");
}
// ---- patch_embed (kernels/cuda/patch_embed.cu)
void CudaBackend::patch_unfold(void*, const void*, DType, int64_t, int64_t, int64_t, int64_t, int64_t) {
  PETAL_FAIL("patch_unfold: not implemented on cuda yet");
}
void CudaBackend::patch_fold(void*, const void*, DType, int64_t, int64_t, int64_t, int64_t, int64_t) {
  PETAL_FAIL("patch_fold: not implemented on cuda yet");
}
// ---- optimizer (kernels/cuda/optimizer.cu)
void CudaBackend::adamw_update(void*, const void*, void*, void*, void*, DType, int64_t, const AdamWArgs&) {
  PETAL_FAIL("adamw_update: not implemented on cuda yet");
}
void CudaBackend::sgd_update(void*, const void*, void*, DType, int64_t, const SgdArgs&) {
  PETAL_FAIL("sgd_update: not implemented on cuda yet");
}

}  // namespace petal::kernels::PETAL_CUDA_NS
