// Philox4x32-10 counter-based generator shared by every backend (host and device code),
// so that a (seed, counter) pair gives the same four 32-bit words everywhere.
#pragma once
#include <cstdint>

#if defined(__CUDACC__) || defined(PETAL_SIM_COMPILE)
#define PETAL_HD __host__ __device__
#else
#define PETAL_HD
#endif

namespace petal::kernels {

struct Philox4 {
  uint32_t v[4];
};

PETAL_HD inline uint32_t philox_mulhi(uint32_t a, uint32_t b, uint32_t* lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *lo = static_cast<uint32_t>(p);
  return static_cast<uint32_t>(p >> 32);
}

/// Ten rounds of Philox4x32 on counter (c0..c3) with key (k0, k1).
PETAL_HD inline Philox4 philox4x32(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t lo0, lo1;
    uint32_t hi0 = philox_mulhi(0xD2511F53u, c0, &lo0);
    uint32_t hi1 = philox_mulhi(0xCD9E8D57u, c2, &lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

/// Uniform in [0, 1) with 24 random bits (exactly representable in float).
PETAL_HD inline float philox_uniform(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }

/// Element i of a draw: word i%4 of block offset + i/4.
PETAL_HD inline uint32_t philox_word(uint64_t seed, uint64_t offset, uint64_t i) {
  return philox4x32(seed, offset + i / 4).v[i % 4];
}

/// Standard normal for element i: Box-Muller on the word pair (2j, 2j+1) of its block,
/// cos branch for even i, sin branch for odd i. Computed in double so backends agree.
PETAL_HD inline double philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  Philox4 w = philox4x32(seed, offset + i / 4);
  int lane = static_cast<int>(i % 4);
  int base = lane & ~1;
  double u1 = (static_cast<double>(w.v[base] >> 8) + 1.0) * (1.0 / 16777216.0);  // (0, 1]
  double u2 = static_cast<double>(w.v[base + 1] >> 8) * (1.0 / 16777216.0);
  double r = ::sqrt(-2.0 * ::log(u1));
  double theta = 6.283185307179586 * u2;
  return (lane & 1) ? r * ::sin(theta) : r * ::cos(theta);
}

}  // namespace petal::kernels
