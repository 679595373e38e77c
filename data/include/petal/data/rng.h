// data::Rng: the small, explicitly seeded generator behind every random choice of the
// data pipeline (shuffles, splits, random crops and flips, synthetic images). It is
// SplitMix64 (a 64-bit counter passed through a strong mixer), so a stream is a pure
// function of its seed on every platform and standard library, and independent streams
// are made cheaply by mixing a seed with indices (Rng::derive). The DataLoader gives each
// sample its own stream derived from (seed, epoch, sample index), which is what makes
// its output independent of the number of worker threads.
#pragma once
#include <cstdint>

namespace petal::data {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}

  /// The next 64 random bits.
  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [lo, hi) (lo < hi), without modulo bias.
  int64_t randint(int64_t lo, int64_t hi);
  /// Standard normal (Box-Muller).
  double normal();

  /// A stream seeded by mixing seed with up to three indices (e.g. seed, epoch, sample).
  static Rng derive(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0);

 private:
  uint64_t state_;
};

}  // namespace petal::data
