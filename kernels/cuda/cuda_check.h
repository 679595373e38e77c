// Error checking for CUDA runtime calls (host code of the real CUDA build only): every
// call goes through CUDA_CHECK, which throws petal::Error naming the call, the op it
// served, and the file and line.
#pragma once
#include <cuda_runtime_api.h>

#include <petal/error.h>

namespace petal::kernels::cuda_impl {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* op, const char* file, int line) {
  PETAL_FAIL("cuda: ", call, " failed in ", op, ": ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") at ",
             file, ":", line);
}

}  // namespace petal::kernels::cuda_impl

/// CUDA_CHECK("allocate", cudaMallocAsync(&p, n, s)): throws petal::Error on failure.
#define CUDA_CHECK(op, call)                                                                     \
  do {                                                                                           \
    cudaError_t petal_cuda_err_ = (call);                                                        \
    if (petal_cuda_err_ != cudaSuccess)                                                          \
      ::petal::kernels::cuda_impl::throw_cuda_error(petal_cuda_err_, #call, op, __FILE__, __LINE__); \
  } while (0)
