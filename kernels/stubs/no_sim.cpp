// Used when petal is built without the SIMT simulator: device 'sim' is unavailable.
#include "kernels/backend.h"

namespace petal::kernels {
Backend* sim_backend() { return nullptr; }
}  // namespace petal::kernels
