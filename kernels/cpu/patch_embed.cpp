// CPU patch extraction for a conv with kernel = stride = patch P (the ViT patch
// embedding): x [B, C, H, W] -> patches [B, (H/P)*(W/P), C*P*P] with each patch in
// (c, i, j) order, the layout of a [D, C, P, P] weight, so the conv becomes one GEMM.
// Patches do not overlap, so patch_fold (the adjoint, used for dx) is the inverse
// permutation: every x element receives exactly one patch element, nothing accumulates.
// Both move P-element runs (one image row inside one patch) with memcpy; OpenMP splits
// the (batch, patch row) pairs. Pure data movement: dispatched on the element width.
#include <cstring>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

// Calls run(patch_ptr, x_ptr, bytes) for every P-element run, unfold order.
template <typename Run>
void for_each_patch_run(int64_t batch, int64_t channels, int64_t height, int64_t width, int64_t patch,
                        size_t elem, Run&& run) {
  const int64_t gh = height / patch, gw = width / patch;
  const int64_t patch_len = channels * patch * patch;
  const size_t run_bytes = static_cast<size_t>(patch) * elem;
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, gw * patch_len));
  parallel_for(batch * gh, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t bp = r0; bp < r1; ++bp) {
      const int64_t b = bp / gh, ph = bp % gh;
      for (int64_t pw = 0; pw < gw; ++pw) {
        const int64_t token = (b * gh + ph) * gw + pw;
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t i = 0; i < patch; ++i) {
            const int64_t p_off = token * patch_len + (c * patch + i) * patch;
            const int64_t x_off = ((b * channels + c) * height + ph * patch + i) * width + pw * patch;
            run(static_cast<size_t>(p_off) * elem, static_cast<size_t>(x_off) * elem, run_bytes);
          }
      }
    }
  });
}

}  // namespace

void CpuBackend::patch_unfold(void* patches, const void* x, DType dtype, int64_t batch, int64_t channels,
                              int64_t height, int64_t width, int64_t patch) {
  if (batch == 0 || channels == 0 || height == 0 || width == 0) return;
  char* dst = static_cast<char*>(patches);
  const char* src = static_cast<const char*>(x);
  for_each_patch_run(batch, channels, height, width, patch, dtype_size(dtype),
                     [&](size_t p_off, size_t x_off, size_t n) { std::memcpy(dst + p_off, src + x_off, n); });
}

void CpuBackend::patch_fold(void* x, const void* patches, DType dtype, int64_t batch, int64_t channels,
                            int64_t height, int64_t width, int64_t patch) {
  if (batch == 0 || channels == 0 || height == 0 || width == 0) return;
  char* dst = static_cast<char*>(x);
  const char* src = static_cast<const char*>(patches);
  for_each_patch_run(batch, channels, height, width, patch, dtype_size(dtype),
                     [&](size_t p_off, size_t x_off, size_t n) { std::memcpy(dst + x_off, src + p_off, n); });
}

}  // namespace petal::kernels
