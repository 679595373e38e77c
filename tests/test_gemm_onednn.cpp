// The cpu backend's bf16 GEMM through oneDNN (kernels/cpu/gemm_onednn.h) against a float64
// GEMM over the very bf16 values it reads: odd shapes, all four transposes, padded leading
// dimensions, alpha/beta, batches with interleaved and zero (broadcast) strides, the
// attention layout (heads interleaved in rows). The tolerance is one bf16 rounding of the
// output (accumulation is f32). Also: the switch off restores the widen-to-f32 path with the
// same results, and calls oneDNN does not take (C broadcast, other dtypes, k = 0) are left
// to the caller. Without oneDNN in the build, onednn_gemm declines and CpuBackend::gemm's
// fallback is checked on the same cases. The mixed-dtype entry (onednn_gemm_to: bf16 inputs
// with f32 output, f32 x f32 -> f32) and the prepared OnednnGemm (attention's per-pair GEMMs)
// on the same cases, the latter also run on several pointers and from two OpenMP threads at
// once on one shared primitive.
#include <cmath>
#include <cstring>
#include <thread>

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
// f32 output: only the f32 accumulation of k <= 300 products of N(0, 1) values (error about
// sqrt(k) 2^-24 |a||b| per element against sums of size sqrt(k)): tolerance_for(f32).
constexpr double kF32OutputTol = 1e-5;

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
bool check_case(const Case& t, uint64_t seed, Run&& run, DType in = DType::bf16, DType out = DType::bf16) {
  const int64_t a_rows = t.trans_a ? t.k : t.m, a_cols = t.trans_a ? t.m : t.k;
  const int64_t b_rows = t.trans_b ? t.n : t.k, b_cols = t.trans_b ? t.k : t.n;
  const int64_t nba = t.share_a ? 1 : t.batch, nbb = t.share_b ? 1 : t.batch;
  Tensor a = random_input({nba, a_rows, a_cols + t.pad}, seed, in);
  Tensor b = random_input({nbb, b_rows, b_cols + t.pad}, seed + 1, in);
  Tensor c = random_input({t.batch, t.m, t.n + t.pad}, seed + 2, out);
  if (t.beta == 0.0) poison(c);  // beta = 0 must not read C
  kernels::GemmArgs g;
  g.dtype = in;
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
                << t.beta << " " << dtype_name(in) << " -> " << dtype_name(out));
  if (taken) {
    const double err = normalized_error(c.narrow(2, 0, t.n), expected.narrow(2, 0, t.n));
    CHECK(err <= (out == DType::bf16 ? kBf16OutputTol : kF32OutputTol));
    if (t.pad > 0) {  // the padding of C is not written
      Tensor before = random_input({t.batch, t.m, t.n + t.pad}, seed + 2, out);
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

TEST_CASE("oneDNN mixed-dtype GEMM (bf16 -> f32, f32 -> f32) matches float64", "[matmul][onednn]") {
  const bool built = kernels::cpu::onednn_built();
  INFO("oneDNN ISA " << kernels::cpu::onednn_cpu_isa());
  uint64_t seed = 300;
  for (const auto& [in, out] : {std::pair{DType::bf16, DType::f32}, std::pair{DType::f32, DType::f32},
                                std::pair{DType::bf16, DType::bf16}}) {
    for (const Case& t : cases()) {
      CHECK(check_case(
                t, seed += 10, [out = out](const kernels::GemmArgs& g) { return kernels::cpu::onednn_gemm_to(g, out); },
                in, out) == built);
      // The prepared form on the same case, run twice on the same buffers (beta = 0 cases:
      // the second run must give the same C; beta != 0 would accumulate, so once).
      check_case(
          t, seed + 5,
          [out = out, beta = t.beta](const kernels::GemmArgs& g) {
            kernels::cpu::OnednnGemm op;
            if (!op.prepare(g, out)) return false;
            CHECK(op.ok());
            op.run(g.a, g.b, g.c);
            if (beta == 0.0) op.run(g.a, g.b, g.c);
            return true;
          },
          in, out);
    }
  }
}

TEST_CASE("oneDNN mixed-dtype GEMM declines what it does not take", "[matmul][onednn]") {
  Tensor a = random_input({4, 6}, 1, DType::bf16), b = random_input({6, 5}, 2, DType::bf16);
  Tensor c = random_input({3, 4, 5}, 3, DType::f32);
  kernels::GemmArgs g;
  g.dtype = DType::bf16;
  g.m = 4, g.n = 5, g.k = 6;
  g.a = a.data_ptr(), g.lda = 6, g.b = b.data_ptr(), g.ldb = 5, g.c = c.data_ptr(), g.ldc = 5;
  Tensor before = c.to(kCPU, DType::f64);
  kernels::cpu::OnednnGemm op;
  CHECK_FALSE(op.ok());
  CHECK_FALSE(kernels::cpu::onednn_gemm_to(g, DType::f16));  // bf16 -> f16
  CHECK_FALSE(op.prepare(g, DType::f16));
  kernels::GemmArgs h = g;  // f16 inputs (no f16 matmul in oneDNN 2.6 here) and f32 -> bf16
  h.dtype = DType::f16;
  CHECK_FALSE(kernels::cpu::onednn_gemm_to(h, DType::f32));
  h.dtype = DType::f32;
  CHECK_FALSE(kernels::cpu::onednn_gemm_to(h, DType::bf16));
  CHECK_FALSE(kernels::cpu::onednn_gemm_to(h, DType::f64));
  kernels::GemmArgs s = g;  // every batch entry writing the same C
  s.batch = 3, s.stride_c = 0;
  CHECK_FALSE(kernels::cpu::onednn_gemm_to(s, DType::f32));
  kernels::GemmArgs z = g;  // k = 0
  z.k = 0;
  CHECK_FALSE(op.prepare(z, DType::f32));
  CHECK_FALSE(op.ok());
  const bool was = kernels::cpu::onednn_gemm_enabled();
  kernels::cpu::set_onednn_gemm_enabled(false);
  CHECK_FALSE(kernels::cpu::onednn_gemm_to(g, DType::f32));
  CHECK_FALSE(op.prepare(g, DType::f32));
  kernels::cpu::set_onednn_gemm_enabled(was);
  CHECK(normalized_error(c, before) == 0.0);  // nothing was written
  // A successful prepare after a declined one (when built) binds the new layout.
  CHECK(op.prepare(g, DType::f32) == kernels::cpu::onednn_built());
  CHECK(op.ok() == kernels::cpu::onednn_built());
}

TEST_CASE("one prepared oneDNN primitive runs on two threads at once", "[matmul][onednn]") {
  if (!kernels::cpu::onednn_built()) {
    WARN("no oneDNN in this build");
    return;
  }
  // Attention's use: each thread prepares its own OnednnGemm of the same layout (one cached
  // primitive underneath) and runs it on its own pairs, concurrently.
  const int64_t pairs = 8, S = 33, Dh = 16;
  Tensor q = random_input({pairs, S, Dh}, 11, DType::bf16), k = random_input({pairs, S, Dh}, 12, DType::bf16);
  Tensor scores = empty({pairs, S, S}, TensorOptions(DType::f32));
  poison(scores);
  kernels::GemmArgs g;
  g.dtype = DType::bf16;
  g.m = S, g.n = S, g.k = Dh;
  g.lda = Dh, g.ldb = Dh, g.trans_b = true, g.ldc = S;
  g.alpha = 0.25;
  const auto* qp = static_cast<const uint16_t*>(q.data_ptr());
  const auto* kp = static_cast<const uint16_t*>(k.data_ptr());
  auto* sp = static_cast<float*>(scores.data_ptr());
  bool prepared[2] = {false, false};
  auto work = [&](int t) {
    kernels::cpu::OnednnGemm op;
    prepared[t] = op.prepare(g, DType::f32);
    for (int64_t p = t; p < pairs && prepared[t]; p += 2) op.run(qp + p * S * Dh, kp + p * S * Dh, sp + p * S * S);
  };
  std::thread other(work, 1);
  work(0);
  other.join();
  CHECK(prepared[0]);
  CHECK(prepared[1]);
  kernels::GemmArgs r = g;
  r.batch = pairs, r.stride_a = S * Dh, r.stride_b = S * Dh, r.stride_c = S * S;
  Tensor expected = zeros({pairs, S, S}, TensorOptions(DType::f64));
  Tensor q64 = q.to(kCPU, DType::f64), k64 = k.to(kCPU, DType::f64);
  ref_gemm(r, q64.data<double>(), k64.data<double>(), expected.data<double>());
  CHECK(normalized_error(scores, expected) <= kF32OutputTol);
}
