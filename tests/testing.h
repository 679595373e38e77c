// Shared test helpers: the backends to run on, seeded random inputs, poisoning,
// comparison against float64 references by normalized error with dtype-derived
// tolerances (printing the first mismatches), and a float64 finite-difference gradcheck.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <petal/petal.h>

namespace petal::testing {

/// Devices every op test runs on: "cpu", plus "sim" when built, plus "cuda" when a GPU
/// is present. Use with GENERATE: `auto dev = GENERATE(from_range(test_devices()));`
std::vector<std::string> test_devices();

/// Relative tolerance for comparing a result of dtype against a float64 reference.
double tolerance_for(DType dtype);

/// Fills t (any device) with a NaN-like poison so unwritten elements fail comparisons.
void poison(Tensor& t);

/// Random float64 tensor on the CPU, values in roughly N(0,1) (seeded from `seed`).
Tensor random_input(const Shape& shape, uint64_t seed, DType dtype = DType::f64, Device device = kCPU);

/// A non-contiguous tensor with the same values as t: t's data stored transposed or with
/// gaps, exposed through a strided view. Handy to test "any strides".
Tensor non_contiguous_copy(const Tensor& t);

/// Compares actual (any device/dtype) with expected (float64 CPU) by normalized error
/// max|a-e| / max(1, max|e|) <= tol (tol < 0: tolerance_for(actual.dtype())). On failure prints
/// the first mismatches (index, expected, actual) via Catch2 and fails the test.
void check_close(const Tensor& actual, const Tensor& expected, double tol = -1.0, const std::string& what = "");

/// Normalized error as used by check_close.
double normalized_error(const Tensor& actual, const Tensor& expected);

/// Finite-difference gradient check in float64 on the CPU: f maps the inputs (which get
/// requires_grad) to a tensor; compares autograd gradients of sum(f * w) (w random) with
/// central differences. Returns true on success and reports failures via Catch2.
bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
               double eps = 1e-6, double atol = 1e-5, double rtol = 1e-4);

/// The CPU instruction sets the CPU backend's two-variant hot loops (kernels/cpu/isa.h) can
/// run here: "baseline", plus "avx512" when this CPU has it. Use with GENERATE and
/// ScopedCpuIsa so a cpu test covers both variants.
std::vector<std::string> test_cpu_isas();

/// Selects the CPU ISA ("baseline" or "avx512") for its lifetime, then restores the previous.
class ScopedCpuIsa {
 public:
  explicit ScopedCpuIsa(const std::string& isa);
  ~ScopedCpuIsa();
  ScopedCpuIsa(const ScopedCpuIsa&) = delete;
  ScopedCpuIsa& operator=(const ScopedCpuIsa&) = delete;

 private:
  int previous_;
};

/// True when the "cuda" device is usable; tests labelled [cuda] call SKIP_CUDA_IF_UNAVAILABLE().
bool cuda_available();

}  // namespace petal::testing

/// Skips (exit code 4, reported as skipped by ctest) when no GPU is present.
#define SKIP_CUDA_IF_UNAVAILABLE()                                   \
  do {                                                                \
    if (!::petal::testing::cuda_available()) {                        \
      WARN("skipped: no usable CUDA GPU");                            \
      std::exit(4);                                                   \
    }                                                                 \
  } while (0)
