// data::Rng helpers: unbiased integers, normals, and stream derivation.
#include <petal/data/rng.h>

#include <cmath>

#include <petal/error.h>

namespace petal::data {

int64_t Rng::randint(int64_t lo, int64_t hi) {
  PETAL_CHECK(lo < hi, "Rng::randint: empty range [", lo, ", ", hi, ")");
  const uint64_t range = static_cast<uint64_t>(hi - lo);
  // Rejection sampling: draws in the incomplete top bucket would favour small values.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
  uint64_t x;
  do {
    x = next_u64();
  } while (x >= limit);
  return lo + static_cast<int64_t>(x % range);
}

double Rng::normal() {
  double u1 = uniform();
  double u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

Rng Rng::derive(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  // Fold each index through a fresh SplitMix64 step so nearby (seed, a, b, c) tuples give
  // unrelated streams.
  Rng r(seed);
  uint64_t h = r.next_u64();
  for (uint64_t v : {a, b, c}) {
    Rng m(h ^ (v * 0xd1b54a32d192ed03ULL));
    h = m.next_u64();
  }
  return Rng(h);
}

}  // namespace petal::data
