// Strided copy with dtype conversion, and fill. The contiguous same-dtype case is a memcpy;
// everything else runs through the N-ary strided row loop (loops.h: dims coalesced, rows
// split over OpenMP when large). Inside a row:
//   - same dtype: the bits move as they are (memcpy for unit-stride rows, else a loop over
//     the 1/2/4/8-byte words), never through a float round trip;
//   - bf16 <-> f32 unit-stride rows (autocast's casts): two-variant converters (isa.h), the
//     widening a 16-bit shift, the narrowing round-to-nearest-even with NaN kept quiet (the
//     bits of float_to_bf16_bits);
//   - any other pair: load/store through the compute type.
// fill writes a value's bit pattern: memset when every byte is equal (0.0, 0), else words.
#include <cstring>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

template <size_t Bytes>
struct Word;
template <>
struct Word<1> {
  using type = uint8_t;
};
template <>
struct Word<2> {
  using type = uint16_t;
};
template <>
struct Word<4> {
  using type = uint32_t;
};
template <>
struct Word<8> {
  using type = uint64_t;
};

PETAL_CPU_INLINE void bf16_to_f32_row(float* __restrict dst, const uint16_t* __restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = static_cast<uint32_t>(src[i]) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    dst[i] = f;
  }
}

PETAL_CPU_INLINE void f32_to_bf16_row(uint16_t* __restrict dst, const float* __restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &src[i], 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    dst[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

void bf16_to_f32_baseline(float* dst, const uint16_t* src, int64_t n) { bf16_to_f32_row(dst, src, n); }
PETAL_CPU_AVX512 void bf16_to_f32_avx512(float* dst, const uint16_t* src, int64_t n) { bf16_to_f32_row(dst, src, n); }
void f32_to_bf16_baseline(uint16_t* dst, const float* src, int64_t n) { f32_to_bf16_row(dst, src, n); }
PETAL_CPU_AVX512 void f32_to_bf16_avx512(uint16_t* dst, const float* src, int64_t n) { f32_to_bf16_row(dst, src, n); }

// Same-dtype copy: words of the element's size.
template <typename U>
void copy_bits(const View& dst, const View& src) {
  const View* views[2] = {&dst, &src};
  U* d = static_cast<U*>(dst.data);
  const U* s = static_cast<const U*>(src.data);
  for_each_row<2>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
    U* dp = d + off[0];
    const U* sp = s + off[1];
    if (inc[0] == 1 && inc[1] == 1) {
      std::memcpy(dp, sp, static_cast<size_t>(n) * sizeof(U));
    } else if (inc[0] == 1) {
      for (int64_t i = 0; i < n; ++i) dp[i] = sp[i * inc[1]];
    } else {
      for (int64_t i = 0; i < n; ++i) dp[i * inc[0]] = sp[i * inc[1]];
    }
  });
}

}  // namespace

void CpuBackend::copy(const View& dst, const View& src) {
  if (dst.dtype == src.dtype && dst.is_contiguous() && src.is_contiguous() && src.numel() == dst.numel()) {
    bool src_broadcast = false;
    for (int i = 0; i < src.ndim; ++i)
      if (src.strides[i] == 0 && src.shape[i] > 1) src_broadcast = true;
    if (!src_broadcast) {
      std::memcpy(dst.data, src.data, static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype));
      return;
    }
  }
  if (dst.dtype == src.dtype) {
    switch (dtype_size(dst.dtype)) {
      case 1: copy_bits<Word<1>::type>(dst, src); return;
      case 2: copy_bits<Word<2>::type>(dst, src); return;
      case 4: copy_bits<Word<4>::type>(dst, src); return;
      default: copy_bits<Word<8>::type>(dst, src); return;
    }
  }
  const View* views[2] = {&dst, &src};
  const bool avx512 = avx512_enabled();
  if (dst.dtype == DType::f32 && src.dtype == DType::bf16) {
    float* d = static_cast<float*>(dst.data);
    const uint16_t* s = static_cast<const uint16_t*>(src.data);
    for_each_row<2>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
      if (inc[0] == 1 && inc[1] == 1) {
        (avx512 ? bf16_to_f32_avx512 : bf16_to_f32_baseline)(d + off[0], s + off[1], n);
      } else {
        for (int64_t i = 0; i < n; ++i) d[off[0] + i * inc[0]] = bf16_bits_to_float(s[off[1] + i * inc[1]]);
      }
    });
    return;
  }
  if (dst.dtype == DType::bf16 && src.dtype == DType::f32) {
    uint16_t* d = static_cast<uint16_t*>(dst.data);
    const float* s = static_cast<const float*>(src.data);
    for_each_row<2>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
      if (inc[0] == 1 && inc[1] == 1) {
        (avx512 ? f32_to_bf16_avx512 : f32_to_bf16_baseline)(d + off[0], s + off[1], n);
      } else {
        for (int64_t i = 0; i < n; ++i) d[off[0] + i * inc[0]] = float_to_bf16_bits(s[off[1] + i * inc[1]]);
      }
    });
    return;
  }
  dispatch_all(dst.dtype, [&](auto dt) {
    using D = typename decltype(dt)::type;
    dispatch_all(src.dtype, [&](auto st) {
      using S = typename decltype(st)::type;
      D* d = static_cast<D*>(dst.data);
      const S* s = static_cast<const S*>(src.data);
      for_each_row<2>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
        D* dp = d + off[0];
        const S* sp = s + off[1];
        if (inc[0] == 1 && inc[1] == 1) {
          for (int64_t i = 0; i < n; ++i) dp[i] = store<D>(load(sp[i]));
        } else {
          for (int64_t i = 0; i < n; ++i) dp[i * inc[0]] = store<D>(load(sp[i * inc[1]]));
        }
      });
    });
  });
}

namespace {

template <typename U>
void fill_bits(const View& dst, U pattern) {
  const View* views[1] = {&dst};
  U* d = static_cast<U*>(dst.data);
  unsigned char bytes[sizeof(U)];
  std::memcpy(bytes, &pattern, sizeof(U));
  bool uniform = true;
  for (size_t i = 1; i < sizeof(U); ++i) uniform = uniform && bytes[i] == bytes[0];
  for_each_row<1>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
    U* dp = d + off[0];
    if (inc[0] == 1 && uniform) {
      std::memset(dp, bytes[0], static_cast<size_t>(n) * sizeof(U));
    } else if (inc[0] == 1) {
      for (int64_t i = 0; i < n; ++i) dp[i] = pattern;
    } else {
      for (int64_t i = 0; i < n; ++i) dp[i * inc[0]] = pattern;
    }
  });
}

}  // namespace

void CpuBackend::fill(const View& dst, double value) {
  dispatch_all(dst.dtype, [&](auto dt) {
    using D = typename decltype(dt)::type;
    const D v = store<D>(value);
    typename Word<sizeof(D)>::type pattern;
    static_assert(sizeof(pattern) == sizeof(D), "element and word sizes");
    std::memcpy(&pattern, &v, sizeof(D));
    fill_bits(dst, pattern);
  });
}

}  // namespace petal::kernels
