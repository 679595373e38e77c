// TEMPORARY (must be empty and deleted before landing): throwing placeholders for the fused
// kernels declared in backend.h whose CUDA implementation is being written in
// kernels/cuda/<family>.cu. Each family's author deletes its block here.
#include <petal/error.h>

#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {


}  // namespace petal::kernels::PETAL_CUDA_NS
