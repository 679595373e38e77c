// Independent check of the fragment layouts the simulator uses for the PTX wrappers
// (petal::kernels::ptx::layout in kernels/cuda/ptx.cuh) against CuTe's, evaluated on the host:
// - mma.m16n8k16: MMA_Traits<SM80_16x8x16_F32BF16BF16F32_TN> and <..._F32F16F16F32_TN>;
//   ALayout/BLayout/CLayout map (thread, value) to an index of the column-major (M,K) / (N,K)
//   / (M,N) tile, compared with mma_a/b/c_row_col(lane, value).
// - ldmatrix: Copy_Traits<SM75_U32x{1,2,4}_LDSM_N> (no .trans) and <SM75_U16x{2,4,8}_LDSM_T>
//   (x1/x2/x4 .trans); their layouts map (thread, bit) to a bit of the source: 8x8 b16
//   matrices of 1024 bits, rows of 128 bits. DstLayout(lane, 32 j + 16 e) must be element
//   ldmatrix_row_col(lane, e) of matrix j (and the 16 bits contiguous); SrcLayout(lane, 0)
//   must be the row ldmatrix_source(lane) names, for the lanes whose address is read.
// Every mapping is also checked to be a bijection onto the tile. Prints each mismatch as
// "MISMATCH <wrapper> ..." and exits 1 if there is any. --plant-transposed-a swaps row and
// column of the A fragment, which must make the check fail (a ctest expects the mismatches).
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>

#include <cute/atom/copy_traits_sm75.hpp>
#include <cute/atom/mma_traits_sm80.hpp>
#include <cute/layout.hpp>

#include "kernels/cuda/ptx.cuh"

namespace {

namespace layout = petal::kernels::ptx::layout;

int g_checked = 0, g_mismatches = 0;
std::map<std::string, int> g_mismatches_of;  // per wrapper, for the summary
bool g_transpose_a = false;

void report(const std::string& wrapper, int lane, int value, const char* what, int p0, int p1, int c0, int c1) {
  ++g_checked;
  if (p0 == c0 && p1 == c1) return;
  ++g_mismatches_of[wrapper];
  if (++g_mismatches <= 20)
    std::printf("MISMATCH %s lane %d value %d: %s petal (%d, %d) cute (%d, %d)\n", wrapper.c_str(), lane, value, what,
                p0, p1, c0, c1);
}

void check_bijective(const std::string& wrapper, const std::set<std::pair<int, int>>& hit, size_t expected) {
  ++g_checked;
  if (hit.size() != expected) {
    ++g_mismatches;
    ++g_mismatches_of[wrapper];
    std::printf("MISMATCH %s: the fragment covers %zu of %zu elements\n", wrapper.c_str(), hit.size(), expected);
  }
}

template <class Traits>
void check_mma(const std::string& name) {
  using namespace cute;
  static_assert(size<0>(typename Traits::Shape_MNK{}) == 16 && size<1>(typename Traits::Shape_MNK{}) == 8 &&
                    size<2>(typename Traits::Shape_MNK{}) == 16,
                "an m16n8k16 atom");
  static_assert(std::is_same_v<typename Traits::ValTypeC, float> && std::is_same_v<typename Traits::ValTypeD, float>,
                "f32 accumulators");
  static_assert(size(typename Traits::ThrID{}) == 32, "one warp");
  const auto a = typename Traits::ALayout{};
  const auto b = typename Traits::BLayout{};
  const auto c = typename Traits::CLayout{};
  static_assert(size<1>(decltype(a){}) == 8 && size<1>(decltype(b){}) == 4 && size<1>(decltype(c){}) == 4,
                "8 A, 4 B and 4 C values per thread");
  std::set<std::pair<int, int>> ha, hb, hc;
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 8; ++i) {
      const int idx = a(lane, i);  // (M16, K16) column-major
      auto p = layout::mma_a_row_col(lane, i);
      if (g_transpose_a) std::swap(p.row, p.col);
      report("mma_a_" + name, lane, i, "(m, k)", p.row, p.col, idx % 16, idx / 16);
      ha.insert({p.row, p.col});
    }
    for (int i = 0; i < 4; ++i) {
      const int idx = b(lane, i);  // (N8, K16) column-major
      const auto p = layout::mma_b_row_col(lane, i);
      report("mma_b_" + name, lane, i, "(k, n)", p.row, p.col, idx / 8, idx % 8);
      hb.insert({p.row, p.col});
    }
    for (int i = 0; i < 4; ++i) {
      const int idx = c(lane, i);  // (M16, N8) column-major
      const auto p = layout::mma_c_row_col(lane, i);
      report("mma_c_" + name, lane, i, "(m, n)", p.row, p.col, idx % 16, idx / 16);
      hc.insert({p.row, p.col});
    }
  }
  check_bijective("mma_a_" + name, ha, 256);
  check_bijective("mma_b_" + name, hb, 128);
  check_bijective("mma_c_" + name, hc, 128);
}

template <class Traits>
void check_ldmatrix(const std::string& name, int count, bool trans) {
  using namespace cute;
  const auto src = typename Traits::SrcLayout{};
  const auto dst = typename Traits::DstLayout{};
  static_assert(size(typename Traits::ThrID{}) == 32, "one warp");
  if (static_cast<int>(size<1>(dst)) != 32 * count) {
    ++g_mismatches;
    ++g_mismatches_of[name];
    std::printf("MISMATCH %s: %d destination bits per thread, expected %d\n", name.c_str(), int(size<1>(dst)),
                32 * count);
    return;
  }
  std::set<std::pair<int, int>> hit;
  for (int lane = 0; lane < 32; ++lane) {
    if (lane < 8 * count) {
      const int bit = src(lane, 0);
      const auto p = layout::ldmatrix_source(lane);
      report(name + "_src", lane, 0, "(matrix, row)", p.matrix, p.row, bit / 1024, bit % 1024 / 128);
      for (int b = 0; b < 128; ++b)  // one whole 16-byte row from this lane's address
        report(name + "_src_row", lane, b, "(bit, 0)", bit + b, 0, src(lane, b), 0);
    }
    for (int j = 0; j < count; ++j)
      for (int e = 0; e < 2; ++e) {
        const int v = 32 * j + 16 * e;
        const int bit = dst(lane, v);
        const auto p = layout::ldmatrix_row_col(lane, e, trans);
        report(name + "_dst", lane, v, "(matrix, row, col) as matrix*64 + row*8 + col", j * 64 + p.row * 8 + p.col, 0,
               bit / 1024 * 64 + bit % 1024 / 128 * 8 + bit % 128 / 16, 0);
        for (int b = 1; b < 16; ++b) report(name + "_dst_bits", lane, v + b, "(bit, 0)", bit + b, 0, dst(lane, v + b), 0);
        hit.insert({j, p.row * 8 + p.col});
      }
  }
  check_bijective(name, hit, static_cast<size_t>(64 * count));
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--plant-transposed-a") == 0) {
      g_transpose_a = true;
    } else {
      std::fprintf(stderr, "usage: %s [--plant-transposed-a]\n", argv[0]);
      return 2;
    }
  }
  using namespace cute;
  check_mma<MMA_Traits<SM80_16x8x16_F32BF16BF16F32_TN>>("bf16");
  check_mma<MMA_Traits<SM80_16x8x16_F32F16F16F32_TN>>("f16");
  check_ldmatrix<Copy_Traits<SM75_U32x1_LDSM_N>>("ldmatrix_x1", 1, false);
  check_ldmatrix<Copy_Traits<SM75_U32x2_LDSM_N>>("ldmatrix_x2", 2, false);
  check_ldmatrix<Copy_Traits<SM75_U32x4_LDSM_N>>("ldmatrix_x4", 4, false);
  check_ldmatrix<Copy_Traits<SM75_U16x2_LDSM_T>>("ldmatrix_x1_trans", 1, true);
  check_ldmatrix<Copy_Traits<SM75_U16x4_LDSM_T>>("ldmatrix_x2_trans", 2, true);
  check_ldmatrix<Copy_Traits<SM75_U16x8_LDSM_T>>("ldmatrix_x4_trans", 4, true);
  for (const auto& [wrapper, n] : g_mismatches_of) std::printf("MISMATCHES %s: %d\n", wrapper.c_str(), n);
  std::printf("ptx layouts vs CuTe: %d mappings checked, %d mismatches: %s\n", g_checked, g_mismatches,
              g_mismatches == 0 ? "OK" : "FAILED");
  return g_mismatches == 0 && g_checked > 0 ? 0 : 1;
}
