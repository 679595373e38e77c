// The cpu backend's bf16 GEMM through oneDNN (kernels/cpu/gemm_onednn.h) against a float64
// GEMM over the very bf16 values it reads: odd shapes, all four transposes, padded leading
// dimensions, alpha/beta, batches with interleaved and zero (broadcast) strides, the
// attention layout (heads interleaved in rows). The tolerance is one bf16 rounding of the
// output (accumulation is f32). Also: the switch off restores the widen-to-f32 path with the
// same results, and calls oneDNN does not take (C broadcast, other dtypes, k = 0) are left
// to the caller. Without oneDNN in the build, onednn_gemm declines and CpuBackend::gemm's
// fallback is checked on the same cases.
#include <cmath>
#include <cstring>

#include "kernels/backend.h"
#include "kernels/cpu/gemm_onednn.h"
#include "testing.h"

using namespace petal;
using petal::testing::normalized_error;
using petal::testing::poison;
using petal::testing::random_input;

namespace {

// One bf16 rounding of the result (unit roundoff 2^-8) on the normalized scale of
// check_close, plus room for f32 accumulation.
constexpr double kBf16OutputTol = 0.0040;

struct Case {
  int64_t batch, m, n, k;
  bool trans_a, trans_b;
  int64_t pad;           // extra elements per stored row
  bool share_a, share_b;  // batch stride 0
  double alpha, beta;
};

// C[b] = alpha op(A[b]) op(B[b]) + beta C[b] in float64 on the stored layouts of g.
void ref_gemm(const kernels::GemmArgs& g, const double* a, const double* b, double* c) {
  for (int64_t bi = 0; bi < g.batch; ++bi)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < g.k; ++p) {
          const double x = g.trans_a ? a[bi * g.stride_a + p * g.lda + i] : a[bi * g.stride_a + i * g.lda + p];
          const double y = g.trans_b ? b[bi * g.stride_b + j * g.ldb + p] : b[bi * g.stride_b + p * g.ldb + j];
          s += x * y;
        }
        double& o = c[bi * g.stride_c + i * g.ldc + j];
        o = g.alpha * s + (g.beta == 0.0 ? 0.0 : g.beta * o);
      }
}

// Runs one case through `run` (oneDNN directly, or the backend) and compares every
// element of C that the GEMM writes with the float64 result; returns run's answer.
template <typename Run>
bool check_case(const Case& t, uint64_t seed, Run&& run) {
  const int64_t a_rows = t.trans_a ? t.k : t.m, a_cols = t.trans_a ? t.m : t.k;
  const int64_t b_rows = t.trans_b ? t.n : t.k, b_cols = t.trans_b ? t.k : t.n;
  const int64_t nba = t.share_a ? 1 : t.batch, nbb = t.share_b ? 1 : t.batch;
  Tensor a = random_input({nba, a_rows, a_cols + t.pad}, seed, DType::bf16);
  Tensor b = random_input({nbb, b_rows, b_cols + t.pad}, seed + 1, DType::bf16);
  Tensor c = random_input({t.batch, t.m, t.n + t.pad}, seed + 2, DType::bf16);
  if (t.beta == 0.0) poison(c);  // beta = 0 must not read C
  kernels::GemmArgs g;
  g.dtype = DType::bf16;
  g.batch = t.batch, g.m = t.m, g.n = t.n, g.k = t.k;
  g.a = a.data_ptr(), g.lda = a_cols + t.pad, g.stride_a = t.share_a ? 0 : a_rows * g.lda, g.trans_a = t.trans_a;
  g.b = b.data_ptr(), g.ldb = b_cols + t.pad, g.stride_b = t.share_b ? 0 : b_rows * g.ldb, g.trans_b = t.trans_b;
  g.c = c.data_ptr(), g.ldc = t.n + t.pad, g.stride_c = t.m * g.ldc;
  g.alpha = t.alpha, g.beta = t.beta;
  Tensor a64 = a.to(kCPU, DType::f64), b64 = b.to(kCPU, DType::f64);
  Tensor expected = t.beta == 0.0 ? zeros(c.shape(), TensorOptions(DType::f64)) : c.to(kCPU, DType::f64);
  ref_gemm(g, a64.data<double>(), b64.data<double>(), expected.data<double>());
  const bool taken = run(g);
  INFO("batch " << t.batch << " m " << t.m << " n " << t.n << " k " << t.k << " trans " << t.trans_a << t.trans_b
                << " pad " << t.pad << " shared " << t.share_a << t.share_b << " alpha " << t.alpha << " beta "
                << t.beta);
  if (taken) {
    const double err = normalized_error(c.narrow(2, 0, t.n), expected.narrow(2, 0, t.n));
    CHECK(err <= kBf16OutputTol);
    if (t.pad > 0) {  // the padding of C is not written
      Tensor before = random_input({t.batch, t.m, t.n + t.pad}, seed + 2, DType::bf16);
      if (t.beta != 0.0)
        CHECK(normalized_error(c.narrow(2, t.n, t.pad), before.narrow(2, t.n, t.pad).to(kCPU, DType::f64)) == 0.0);
    }
  }
  return taken;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  const int64_t shapes[][4] = {{1, 1, 1, 1}, {1, 7, 5, 9}, {3, 33, 17, 65}, {2, 65, 192, 64}, {1, 130, 77, 300}};
  for (const auto& s : shapes)
    for (int tr = 0; tr < 4; ++tr) {
      Case c{s[0], s[1], s[2], s[3], (tr & 1) != 0, (tr & 2) != 0, tr == 3 ? 3 : (tr == 1 ? 1 : 0),
             false, false, tr == 2 ? 1.5 : 1.0, tr >= 2 ? 0.5 : 0.0};
      out.push_back(c);
    }
  out.push_back({4, 9, 11, 13, false, false, 2, true, false, 1.0, 0.0});  // one A for every batch entry
  out.push_back({4, 9, 11, 13, false, true, 0, false, true, 1.0, 1.0});   // one B (a weight)
  return out;
}

}  // namespace

TEST_CASE("oneDNN bf16 GEMM matches float64 on odd shapes, transposes, strides and batches", "[matmul][onednn]") {
  const bool built = kernels::cpu::onednn_built();
  if (!built) WARN("this build has no oneDNN: checking that it declines and the fallback instead");
  INFO("oneDNN ISA " << kernels::cpu::onednn_cpu_isa());
  uint64_t seed = 100;
  for (const Case& t : cases()) {
    const bool taken = check_case(t, seed += 10, [](const kernels::GemmArgs& g) { return kernels::cpu::onednn_gemm(g); });
    CHECK(taken == built);
    // The backend entry (oneDNN when built, else widen + sgemm) on the same case.
    check_case(t, seed + 5, [](const kernels::GemmArgs& g) {
      kernels::backend_for(kCPU).gemm(g);
      return true;
    });
  }
}

TEST_CASE("oneDNN bf16 GEMM reads attention's interleaved head layout", "[matmul][onednn]") {
  // q k^T per (batch, head) straight out of a fused [B, S, 3, H, Dh] qkv buffer: rows of
  // one head are 3 H Dh apart, consecutive heads Dh apart (batch stride < rows x ld).
  const int64_t B = 2, S = 17, H = 3, Dh = 8, ld = 3 * H * Dh;
  Tensor qkv = random_input({B, S, 3, H, Dh}, 7, DType::bf16);
  Tensor scores = empty({H, S, S}, TensorOptions(DType::bf16));
  Tensor q64 = qkv.to(kCPU, DType::f64);
  for (int64_t b = 0; b < B; ++b) {
    const char* base = static_cast<const char*>(qkv.data_ptr()) + b * S * ld * 2;
    kernels::GemmArgs g;
    g.dtype = DType::bf16;
    g.batch = H, g.m = S, g.n = S, g.k = Dh;
    g.a = base, g.lda = ld, g.stride_a = Dh;                                        // q of head h
    g.b = base + H * Dh * 2, g.ldb = ld, g.stride_b = Dh, g.trans_b = true;         // k of head h
    g.c = scores.data_ptr(), g.ldc = S, g.stride_c = S * S;
    g.alpha = 0.125;
    poison(scores);
    Tensor expected = zeros({H, S, S}, TensorOptions(DType::f64));
    ref_gemm(g, q64.data<double>() + b * S * ld, q64.data<double>() + b * S * ld + H * Dh, expected.data<double>());
    const bool taken = kernels::cpu::onednn_gemm(g);
    CHECK(taken == kernels::cpu::onednn_built());
    if (!taken) kernels::backend_for(kCPU).gemm(g);
    CHECK(normalized_error(scores, expected) <= kBf16OutputTol);
  }
}

TEST_CASE("oneDNN GEMM declines what it does not take and can be switched off", "[matmul][onednn]") {
  Tensor a = random_input({4, 6}, 1, DType::bf16), b = random_input({6, 5}, 2, DType::bf16);
  Tensor c = random_input({3, 4, 5}, 3, DType::bf16);
  kernels::GemmArgs g;
  g.dtype = DType::bf16;
  g.m = 4, g.n = 5, g.k = 6;
  g.a = a.data_ptr(), g.lda = 6, g.b = b.data_ptr(), g.ldb = 5, g.c = c.data_ptr(), g.ldc = 5;
  Tensor before = c.to(kCPU, DType::f64);
  {
    kernels::GemmArgs s = g;  // every batch entry writing the same C
    s.batch = 3, s.stride_c = 0;
    CHECK_FALSE(kernels::cpu::onednn_gemm(s));
    kernels::GemmArgs z = g;  // k = 0
    z.k = 0;
    CHECK_FALSE(kernels::cpu::onednn_gemm(z));
    kernels::GemmArgs f = g;  // not bf16
    f.dtype = DType::f16;
    CHECK_FALSE(kernels::cpu::onednn_gemm(f));
    CHECK(normalized_error(c, before) == 0.0);  // nothing was written
  }
  const bool was = kernels::cpu::onednn_gemm_enabled();
  kernels::cpu::set_onednn_gemm_enabled(false);
  CHECK_FALSE(kernels::cpu::onednn_gemm_enabled());
  CHECK_FALSE(kernels::cpu::onednn_gemm(g));
  // The fallback path gives the same product within bf16 rounding of either.
  kernels::backend_for(kCPU).gemm(g);
  Tensor fallback = c.narrow(0, 0, 1).to(kCPU, DType::f64).clone();
  kernels::cpu::set_onednn_gemm_enabled(was);
  kernels::backend_for(kCPU).gemm(g);
  CHECK(normalized_error(c.narrow(0, 0, 1), fallback) <= 2 * kBf16OutputTol);
  CHECK(kernels::cpu::onednn_gemm_enabled() == (kernels::cpu::onednn_built() && was));
  // "fast" (vit_flowers' --amp auto on cpu) only with oneDNN on and native bf16 instructions.
  const std::string isa = kernels::cpu::onednn_cpu_isa();
  CHECK(kernels::cpu::onednn_bf16_fast() ==
        (kernels::cpu::onednn_gemm_enabled() && (isa == "avx512_core_amx" || isa == "avx512_core_bf16")));
  kernels::cpu::set_onednn_gemm_enabled(false);
  CHECK_FALSE(kernels::cpu::onednn_bf16_fast());
  kernels::cpu::set_onednn_gemm_enabled(was);
}
