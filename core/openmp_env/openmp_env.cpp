// libpetal_openmp_env: sets petal's OpenMP default (OMP_WAIT_POLICY=PASSIVE) before libgomp
// reads its environment. libgomp parses OMP_* once, in its own ELF constructor, so libpetal
// (which needs libgomp, hence initializes after it) cannot do this itself. This library
// needs nothing but libc and is the last entry of libpetal's NEEDED list, after libgomp:
// glibc initializes objects that appear later in the breadth-first load order first, so its
// constructor runs before libgomp's. The ctest openmp_default_wait_policy_is_passive checks
// that it does. An environment that sets OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone.
#include <stdlib.h>
#include <string.h>

namespace {
char g_state[96] = "unset";

__attribute__((constructor)) void petal_openmp_env_init() {
  const char* policy = getenv("OMP_WAIT_POLICY");
  const char* spin = getenv("GOMP_SPINCOUNT");
  if (policy != nullptr) {
    strcpy(g_state, "OMP_WAIT_POLICY=");
    strncat(g_state, policy, sizeof(g_state) - strlen(g_state) - 1);
  } else if (spin != nullptr) {
    strcpy(g_state, "GOMP_SPINCOUNT=");
    strncat(g_state, spin, sizeof(g_state) - strlen(g_state) - 1);
  } else if (setenv("OMP_WAIT_POLICY", "PASSIVE", 0) == 0) {
    strcpy(g_state, "passive (petal's default)");
  } else {
    strcpy(g_state, "default (setenv failed)");
  }
}
}  // namespace

/// What the constructor found or did (for petal::openmp_wait_policy()).
extern "C" __attribute__((visibility("default"))) const char* petal_openmp_env_state() { return g_state; }
