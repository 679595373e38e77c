// TEMPORARY (must be empty and deleted before landing): throwing placeholders for the fused
// kernels declared in backend.h whose CPU implementation is being written in
// kernels/cpu/<family>.cpp. Each family's author deletes its block here.
#include <petal/error.h>

#include "kernels/cpu/cpu_backend.h"

namespace petal::kernels {


}  // namespace petal::kernels
