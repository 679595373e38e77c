// Patch extraction for a conv with kernel = stride = patch P (the ViT patch embedding):
// x [B, C, H, W] -> patches [B, (H/P)*(W/P), C*P*P] with each patch in (c, i, j) order,
// the layout of a [D, C, P, P] weight, so the conv becomes one cuBLAS GEMM (core/ops).
// Patches do not overlap, so patch_fold (the adjoint, for dx) is the inverse permutation.
// One thread per element of the written tensor (grid-stride), so writes are coalesced
// and reads come in P-element runs; pure data movement, templated on the element width.
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

struct PatchGeometry {
  int64_t batch, channels, height, width, patch, grid_h, grid_w;
};

template <typename U>
static __global__ void patch_unfold_kernel(U* patches, const U* x, PatchGeometry g) {
  const int64_t n = g.batch * g.channels * g.height * g.width;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    int64_t t = k;
    const int64_t j = t % g.patch;
    t /= g.patch;
    const int64_t i = t % g.patch;
    t /= g.patch;
    const int64_t c = t % g.channels;
    t /= g.channels;
    const int64_t pw = t % g.grid_w;
    t /= g.grid_w;
    const int64_t ph = t % g.grid_h;
    const int64_t b = t / g.grid_h;
    patches[k] = x[((b * g.channels + c) * g.height + ph * g.patch + i) * g.width + pw * g.patch + j];
  }
}

template <typename U>
static __global__ void patch_fold_kernel(U* x, const U* patches, PatchGeometry g) {
  const int64_t n = g.batch * g.channels * g.height * g.width;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    int64_t t = k;
    const int64_t w = t % g.width;
    t /= g.width;
    const int64_t h = t % g.height;
    t /= g.height;
    const int64_t c = t % g.channels;
    const int64_t b = t / g.channels;
    const int64_t ph = h / g.patch, i = h % g.patch, pw = w / g.patch, j = w % g.patch;
    x[k] = patches[(((b * g.grid_h + ph) * g.grid_w + pw) * g.channels + c) * g.patch * g.patch + i * g.patch + j];
  }
}

}  // namespace

void CudaBackend::patch_unfold(void* patches, const void* x, DType dtype, int64_t batch, int64_t channels,
                               int64_t height, int64_t width, int64_t patch) {
  const int64_t n = batch * channels * height * width;
  if (n == 0) return;
  Stream stream = activate();
  const PatchGeometry g{batch, channels, height, width, patch, height / patch, width / patch};
  dispatch_bits(dtype, [&](auto tag) {
    using U = typename decltype(tag)::type;
    PETAL_LAUNCH(patch_unfold_kernel<U>, grid_for(n), kBlockSize, 0, stream, static_cast<U*>(patches),
                 static_cast<const U*>(x), g);
  });
}

void CudaBackend::patch_fold(void* x, const void* patches, DType dtype, int64_t batch, int64_t channels,
                             int64_t height, int64_t width, int64_t patch) {
  const int64_t n = batch * channels * height * width;
  if (n == 0) return;
  Stream stream = activate();
  const PatchGeometry g{batch, channels, height, width, patch, height / patch, width / patch};
  dispatch_bits(dtype, [&](auto tag) {
    using U = typename decltype(tag)::type;
    PETAL_LAUNCH(patch_fold_kernel<U>, grid_for(n), kBlockSize, 0, stream, static_cast<U*>(x),
                 static_cast<const U*>(patches), g);
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
