// Counter-based random numbers (Philox4x32-10). Element i of a draw with (seed, offset)
// is a pure function of (seed, offset + i/4, i%4), so every backend produces the same
// numbers for the same seed, and a draw costs no sequential state beyond the offset.
#pragma once
#include <cstdint>

namespace petal {

/// Seeds the global generator (the one behind randn/rand/randint/dropout).
void manual_seed(uint64_t seed);

/// Generator state: a seed and a counter offset advanced by every draw.
struct Generator {
  uint64_t seed = 0x5eed;
  uint64_t offset = 0;
  /// Reserves n counters (in units of 4 numbers) and returns the first.
  uint64_t advance(uint64_t numel) {
    uint64_t o = offset;
    offset += (numel + 3) / 4;
    return o;
  }
};

/// The global default generator.
Generator& default_generator();

}  // namespace petal
