// Used when petal is built without the CUDA backend: CUDA devices are unavailable.
#include <petal/device.h>

#include "kernels/backend.h"

namespace petal {
namespace cuda {
bool is_available() { return false; }
int device_count() { return 0; }
}  // namespace cuda
namespace kernels {
Backend* cuda_backend(int) { return nullptr; }
void cuda_apply_matmul_precision(bool) {}
}  // namespace kernels
}  // namespace petal
