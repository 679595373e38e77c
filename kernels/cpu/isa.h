// One source, two instruction sets, for the CPU backend's hot loops.
//
// petal is built for the baseline x86-64 ISA (SSE2), so an installed library starts on any
// x86-64 machine. A hot loop that pays for wider vectors is written once as an always-inline
// template and instantiated twice: a plain wrapper (baseline) and a wrapper carrying
// PETAL_CPU_AVX512 (AVX-512 F/BW/VL/DQ + FMA + F16C), into which the compiler inlines and
// vectorizes the same body with zmm registers. The caller picks one per call:
//
//   template <typename T> PETAL_CPU_INLINE void scale_row(T* y, const T* x, float s, int64_t n) {...}
//   PETAL_CPU_AVX512 void scale_row_avx512(float* y, const float* x, float s, int64_t n) { scale_row(y, x, s, n); }
//   void scale_row_baseline(float* y, const float* x, float s, int64_t n) { scale_row(y, x, s, n); }
//   ... if (cpu::avx512_enabled()) scale_row_avx512(...); else scale_row_baseline(...);
//
// Only the wrappers carry the attribute; everything they inline stays default-ISA out of line,
// so no AVX-512 code can be reached on a CPU without it (the ODR trap of compiling whole
// translation units with -mavx512f). Both variants compute the same thing; tests run each op
// under both (set_cpu_isa), compared with the float64 reference.
#pragma once

namespace petal::kernels::cpu {

enum class CpuIsa { baseline, avx512 };

/// The ISA the hot loops use: avx512 when the CPU and OS support AVX-512 F/BW/VL/DQ, FMA and
/// F16C and the build has the variants, unless PETAL_CPU_ISA=baseline is set in the
/// environment (read once) or set_cpu_isa(baseline) was called.
CpuIsa cpu_isa();
/// Whether the variants were compiled in and the CPU runs them (independent of overrides).
bool cpu_supports_avx512();
/// Forces an ISA (tests, benchmarks); avx512 on a CPU without it stays baseline. Returns the
/// previous one.
CpuIsa set_cpu_isa(CpuIsa isa);
inline bool avx512_enabled() { return cpu_isa() == CpuIsa::avx512; }
const char* cpu_isa_name(CpuIsa isa);

}  // namespace petal::kernels::cpu

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PETAL_CPU_HAVE_AVX512_VARIANTS 1
#define PETAL_CPU_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#else
#define PETAL_CPU_HAVE_AVX512_VARIANTS 0
#define PETAL_CPU_AVX512
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PETAL_CPU_INLINE inline __attribute__((always_inline))
#else
#define PETAL_CPU_INLINE inline
#endif
