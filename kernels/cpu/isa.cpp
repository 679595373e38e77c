// CPU ISA selection for the two-variant hot loops (kernels/cpu/isa.h).
#include "kernels/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace petal::kernels::cpu {

namespace {

bool detect_avx512() {
#if PETAL_CPU_HAVE_AVX512_VARIANTS
  // __builtin_cpu_supports reads CPUID and checks the OS enabled the zmm/opmask state (XCR0).
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

CpuIsa initial_isa() {
  if (!cpu_supports_avx512()) return CpuIsa::baseline;
  const char* env = std::getenv("PETAL_CPU_ISA");
  if (env != nullptr && (std::strcmp(env, "baseline") == 0 || std::strcmp(env, "sse2") == 0)) return CpuIsa::baseline;
  return CpuIsa::avx512;
}

std::atomic<int>& isa_state() {
  static std::atomic<int> state{static_cast<int>(initial_isa())};
  return state;
}

}  // namespace

bool cpu_supports_avx512() {
  static const bool supported = detect_avx512();
  return supported;
}

CpuIsa cpu_isa() { return static_cast<CpuIsa>(isa_state().load(std::memory_order_relaxed)); }

CpuIsa set_cpu_isa(CpuIsa isa) {
  if (isa == CpuIsa::avx512 && !cpu_supports_avx512()) isa = CpuIsa::baseline;
  return static_cast<CpuIsa>(isa_state().exchange(static_cast<int>(isa)));
}

const char* cpu_isa_name(CpuIsa isa) { return isa == CpuIsa::avx512 ? "avx512" : "baseline"; }

}  // namespace petal::kernels::cpu
