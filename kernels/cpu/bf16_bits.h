// bf16 <-> f32 as plain integer bit operations, for the CPU's vectorized row kernels
// (kernels/cpu/isa.h): the same results as petal::float_to_bf16_bits / bf16_bits_to_float
// (core/include/petal/dtype.h) - round to nearest even, a NaN stays a NaN with its sign and
// top payload bits and the quiet bit set - but branch-free, so a loop over them vectorizes.
// row_load / row_store read and write f32 or bf16 row elements as float.
#pragma once
#include <cstdint>

#include "kernels/cpu/gelu.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels::cpu {

PETAL_CPU_INLINE float bf16_to_float_vec(uint16_t b) { return bits_as_float(static_cast<uint32_t>(b) << 16); }

PETAL_CPU_INLINE uint16_t float_to_bf16_vec(float f) {
  const uint32_t u = float_as_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

PETAL_CPU_INLINE float row_load(float v) { return v; }
PETAL_CPU_INLINE float row_load(bf16_t v) { return bf16_to_float_vec(v.bits); }

template <typename T>
PETAL_CPU_INLINE T row_store(float v) {
  if constexpr (std::is_same_v<T, bf16_t>) {
    return bf16_t{float_to_bf16_vec(v)};
  } else {
    return v;
  }
}

}  // namespace petal::kernels::cpu
