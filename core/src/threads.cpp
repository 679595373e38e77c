// petal::set_num_threads / get_num_threads (OpenMP and OpenBLAS) and the OpenMP wait policy
// the process started with (set by libpetal_openmp_env, core/openmp_env/).
#include <petal/error.h>
#include <petal/threads.h>

#include <omp.h>

extern "C" void openblas_set_num_threads(int num_threads);
extern "C" const char* petal_openmp_env_state();

namespace petal {

void set_num_threads(int n) {
  PETAL_CHECK(n >= 1, "set_num_threads: the number of threads must be at least 1, got ", n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

std::string openmp_wait_policy() { return petal_openmp_env_state(); }

}  // namespace petal
