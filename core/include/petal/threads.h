// The number of CPU threads petal uses, and its OpenMP defaults.
//
// petal's CPU kernels run on OpenMP (libgomp) and OpenBLAS. libgomp's default is to keep
// idle threads spinning for a while after each parallel region, which on a machine whose
// cores are shared with other processes makes small steps many times slower. So unless the
// environment sets OMP_WAIT_POLICY or GOMP_SPINCOUNT, a program linked with petal starts
// with OMP_WAIT_POLICY=PASSIVE (idle threads sleep): a tiny library (libpetal_openmp_env)
// that initializes before libgomp sets it. Set OMP_WAIT_POLICY=ACTIVE to get spinning back
// (a little faster on an otherwise idle machine). See docs/core.md ("Threads").
#pragma once
#include <string>

namespace petal {

/// Sets the number of threads of petal's CPU kernels (OpenMP and OpenBLAS), as
/// torch::set_num_threads; n >= 1. Applies to the calling thread's later parallel regions
/// (OpenMP's rule) and to OpenBLAS globally.
void set_num_threads(int n);
/// The number of threads petal's CPU kernels use (omp_get_max_threads()).
int get_num_threads();

/// The OpenMP wait policy this process started with: "passive (petal's default)", or the
/// environment's own setting ("OMP_WAIT_POLICY=active", "GOMP_SPINCOUNT=1000", ...).
std::string openmp_wait_policy();

}  // namespace petal
