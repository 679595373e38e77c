// The CPU ISA switch of kernels/cpu/isa.h: detection, the override, and that a function
// carrying PETAL_CPU_AVX512 runs (and equals its baseline twin) where the CPU has AVX-512.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/isa.h"
#include "testing.h"

namespace {

template <typename T>
PETAL_CPU_INLINE void saxpy(T a, const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a * x[i] + y[i];
}
PETAL_CPU_AVX512 void saxpy_avx512(double a, const double* x, double* y, int64_t n) { saxpy(a, x, y, n); }
void saxpy_baseline(double a, const double* x, double* y, int64_t n) { saxpy(a, x, y, n); }

}  // namespace

using namespace petal::kernels::cpu;

TEST_CASE("cpu isa: set_cpu_isa switches and restores; avx512 only where supported", "[cpu_isa]") {
  const CpuIsa start = cpu_isa();
  {
    petal::testing::ScopedCpuIsa base("baseline");
    CHECK(cpu_isa() == CpuIsa::baseline);
    CHECK_FALSE(avx512_enabled());
    {
      petal::testing::ScopedCpuIsa wide("avx512");
      CHECK(avx512_enabled() == cpu_supports_avx512());
    }
    CHECK(cpu_isa() == CpuIsa::baseline);
  }
  CHECK(cpu_isa() == start);
  CHECK(std::string(cpu_isa_name(CpuIsa::avx512)) == "avx512");
  CHECK(petal::testing::test_cpu_isas().front() == "baseline");
  CHECK(petal::testing::test_cpu_isas().size() == (cpu_supports_avx512() ? 2u : 1u));
}

TEST_CASE("cpu isa: the AVX-512 twin of a loop computes what the baseline one does", "[cpu_isa]") {
  const int64_t n = 1003;  // a vector tail on both widths
  std::vector<double> x(n), y0(n), y1(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::sin(0.37 * static_cast<double>(i));
    y0[i] = y1[i] = std::cos(0.11 * static_cast<double>(i));
  }
  saxpy_baseline(1.5, x.data(), y0.data(), n);
  if (!cpu_supports_avx512()) {
    WARN("this CPU has no AVX-512: only the baseline loop ran");
    return;
  }
  saxpy_avx512(1.5, x.data(), y1.data(), n);
  // The AVX-512 twin may contract a*x+y into one FMA (one rounding instead of two).
  for (int64_t i = 0; i < n; ++i) REQUIRE(std::abs(y1[i] - y0[i]) <= 4e-16 * (std::abs(y0[i]) + 1.0));
}
