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

/// Philox4x32-10 (Salmon et al., SC11; Random123's philox4x32 with 10 rounds): the 128-bit
/// counter ctr (word 0 lowest) under the 64-bit key (k0, k1). Each round multiplies words 0
/// and 2 by the Philox constants and mixes the high halves with words 3, 1 and the key; the
/// key is bumped by the Weyl constants between rounds.
PETAL_HD inline Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    uint32_t lo0, lo1;
    const uint32_t hi0 = philox_mulhi(0xD2511F53u, c0, &lo0);
    const uint32_t hi1 = philox_mulhi(0xCD9E8D57u, c2, &lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

/// petal's draws: counter (counter, 0) with the seed as key.
PETAL_HD inline Philox4 philox4x32(uint64_t seed, uint64_t counter) {
  return philox4x32_10(static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
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

/// Word w (0..3) of a block by selects, not an indexed load (no local-memory array on a GPU).
PETAL_HD inline uint32_t philox_pick(const Philox4& x, int w) {
  return w < 2 ? (w == 0 ? x.v[0] : x.v[1]) : (w == 2 ? x.v[2] : x.v[3]);
}

/// Attention dropout: each (pair, query i, key j) element of the [B*H, S_q, S_kv] weights
/// takes word j % 4 of counter offset + (pair * S_q + i) * ceil(S_kv / 4) + j / 4 (four
/// consecutive keys of one row share a counter), and is kept when that word is >= the
/// threshold, i.e. with probability 1 - threshold / 2^32 (threshold = p * 2^32 rounded
/// down). Integer comparisons only, so cpu, sim and cuda keep the same elements.
PETAL_HD inline uint32_t attention_dropout_threshold(double p) {
  const double t = p * 4294967296.0;
  return t <= 0.0 ? 0u : t >= 4294967295.0 ? 4294967295u : static_cast<uint32_t>(t);
}
/// Philox counters one attention dropout draw reserves for [B*H, S_q, S_kv].
PETAL_HD inline uint64_t attention_dropout_counters(int64_t pairs, int64_t seq_q, int64_t seq_kv) {
  return static_cast<uint64_t>(pairs * seq_q) * static_cast<uint64_t>((seq_kv + 3) / 4);
}
PETAL_HD inline bool attention_dropout_keep(uint64_t seed, uint64_t offset, uint32_t threshold, int64_t pair,
                                            int64_t seq_q, int64_t seq_kv, int64_t i, int64_t j) {
  const uint64_t counter =
      offset + static_cast<uint64_t>(pair * seq_q + i) * static_cast<uint64_t>((seq_kv + 3) / 4) +
      static_cast<uint64_t>(j / 4);
  return philox_pick(philox4x32(seed, counter), static_cast<int>(j % 4)) >= threshold;
}

}  // namespace petal::kernels
