// ldmatrix.m8n8.{x1,x2,x4}{,.trans}.b16 in the simulator: 32 rows of 8 distinct b16 values in
// shared memory, each lane passing the address of a row chosen by a seeded permutation; every
// lane's result registers are compared with the PTX ISA's rule, restated here on its own:
// lane l supplies the address of row l % 8 of matrix l / 8, and lane l receives, in register
// j, elements (row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1) of matrix j (low half first);
// .trans delivers the transposed matrices. Also: a misaligned row address is an error.
#include "testing.h"

#include "kernels/cuda/ptx.cuh"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using petal::sim::launch;
namespace ptx = petal::kernels::ptx;

// rows: 32 rows x 8 values; perm: which row lane l addresses; out: per variant 32 lanes x 4 registers.
__global__ void ldmatrix_all_variants(const uint16_t* rows, const int* perm, uint32_t* out) {
  __shared__ __align__(16) uint16_t s[32 * 8];
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = 0; i < 8; ++i) s[lane * 8 + i] = rows[lane * 8 + i];
  __syncthreads();
  const uint16_t* row = s + perm[lane] * 8;
  uint32_t r1[1], r2[2], r4[4];
  uint32_t* o = out + lane * 4;
  ptx::ldmatrix_x1(r1, row);
  o[0] = r1[0];
  o += 128;
  ptx::ldmatrix_x2(r2, row);
  o[0] = r2[0], o[1] = r2[1];
  o += 128;
  ptx::ldmatrix_x4(r4, row);
  for (int j = 0; j < 4; ++j) o[j] = r4[j];
  o += 128;
  ptx::ldmatrix_x1_trans(r1, row);
  o[0] = r1[0];
  o += 128;
  ptx::ldmatrix_x2_trans(r2, row);
  o[0] = r2[0], o[1] = r2[1];
  o += 128;
  ptx::ldmatrix_x4_trans(r4, row);
  for (int j = 0; j < 4; ++j) o[j] = r4[j];
}

__global__ void ldmatrix_misaligned(uint32_t* out) {
  __shared__ __align__(16) uint16_t s[33 * 8];
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = 0; i < 8; ++i) s[lane * 8 + i] = static_cast<uint16_t>(i);
  __syncthreads();
  uint32_t r[4];
  ptx::ldmatrix_x4(r, s + lane * 8 + (lane == 9 ? 4 : 0));  // lane 9: 8 bytes off
  out[lane] = r[0];
}

}  // namespace

TEST_CASE("sim ptx: ldmatrix x1/x2/x4 and .trans deliver the PTX ISA's fragments", "[sim][ptx]") {
  const uint64_t seed = GENERATE(1u, 2u, 3u);
  petal::sim::set_schedule_seed(seed);
  std::vector<uint16_t> rows(32 * 8);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint16_t>(0x1000 + 37 * i);  // distinct
  std::vector<int> perm(32);
  for (int i = 0; i < 32; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), std::mt19937(static_cast<unsigned>(seed)));
  std::vector<uint32_t> out(6 * 128, 0xdeadbeefu);  // poison
  launch("ldmatrix_all_variants", ldmatrix_all_variants, dim3(1), dim3(32), 0, rows.data(), perm.data(), out.data());

  const int counts[6] = {1, 2, 4, 1, 2, 4};
  int bad = 0;
  for (int v = 0; v < 6; ++v) {
    const bool trans = v >= 3;
    for (int l = 0; l < 32; ++l)
      for (int j = 0; j < counts[v]; ++j) {
        // Element (r, c) of matrix j is value c of the row addressed by lane 8 j + r.
        auto element = [&](int r, int c) { return rows[perm[8 * j + r] * 8 + c]; };
        const int r = trans ? 2 * (l % 4) : l / 4, c = trans ? l / 4 : 2 * (l % 4);
        const uint16_t lo = element(r, c), hi = trans ? element(r + 1, c) : element(r, c + 1);
        const uint32_t expected = lo | static_cast<uint32_t>(hi) << 16;
        const uint32_t got = out[v * 128 + l * 4 + j];
        if (got != expected) {
          if (bad < 5)
            UNSCOPED_INFO("variant " << v << " lane " << l << " register " << j << ": expected 0x" << std::hex
                                     << expected << ", got 0x" << got);
          ++bad;
        }
      }
  }
  CHECK(bad == 0);
}

TEST_CASE("sim ptx: ldmatrix with a row address that is not 16-byte aligned is an error", "[sim][ptx]") {
  std::vector<uint32_t> out(32, 0);
  std::string msg;
  try {
    launch("ldmatrix_misaligned", ldmatrix_misaligned, dim3(1), dim3(32), 0, out.data());
  } catch (const petal::Error& e) {
    msg = e.what();
  }
  INFO(msg);
  CHECK(msg.find("ldmatrix.sync.aligned.m8n8.x4") != std::string::npos);
  CHECK(msg.find("16-byte aligned") != std::string::npos);
  CHECK(msg.find("thread (9,0,0)") != std::string::npos);
  CHECK(msg.find("test_ptx_ldmatrix.cpp") != std::string::npos);
}
