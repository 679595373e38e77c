// Element types of petal tensors, their sizes and names, and the conversions between
// them. bf16 and f16 reuse CUDA's storage formats (round-to-nearest-even on conversion).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>

namespace petal {

/// Element type of a tensor.
enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8, b8 };

constexpr DType kFloat32 = DType::f32;
constexpr DType kFloat64 = DType::f64;
constexpr DType kBFloat16 = DType::bf16;
constexpr DType kFloat16 = DType::f16;
constexpr DType kInt32 = DType::i32;
constexpr DType kInt64 = DType::i64;
constexpr DType kUInt8 = DType::u8;
constexpr DType kBool = DType::b8;
// libtorch's shorter names.
constexpr DType kFloat = DType::f32;
constexpr DType kDouble = DType::f64;
constexpr DType kHalf = DType::f16;
constexpr DType kInt = DType::i32;
constexpr DType kLong = DType::i64;
constexpr DType kByte = DType::u8;

/// Bytes per element.
inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: case DType::i32: return 4;
    case DType::f64: case DType::i64: return 8;
    case DType::bf16: case DType::f16: return 2;
    case DType::u8: case DType::b8: return 1;
  }
  return 0;
}

/// Name as PyTorch prints it ("float32", "int64", ...).
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::b8: return "bool";
  }
  return "?";
}

inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16;
}
inline bool is_integral(DType t) { return !is_floating(t); }

/// Result type of a binary op on a and b (PyTorch's category ordering, simplified:
/// bool < u8 < i32 < i64 < f16/bf16 < f32 < f64; f16 with bf16 gives f32).
inline DType promote_types(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType t) {
    switch (t) {
      case DType::b8: return 0;
      case DType::u8: return 1;
      case DType::i32: return 2;
      case DType::i64: return 3;
      case DType::f16: case DType::bf16: return 4;
      case DType::f32: return 5;
      case DType::f64: return 6;
    }
    return 0;
  };
  if (rank(a) == 4 && rank(b) == 4) return DType::f32;
  return rank(a) >= rank(b) ? a : b;
}

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// bf16/f16 scalar conversions on the host (bit-exact with CUDA's __float2bfloat16_rn
// and __float2half_rn for finite values, NaN preserved).
inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_bits_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t float_to_f16_bits(float f);
float f16_bits_to_float(uint16_t h);

}  // namespace petal
