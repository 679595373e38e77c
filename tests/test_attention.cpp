// scaled_dot_product_attention against a float64 reference written as plain loops
// (scores, stable softmax, weighted sum; and the backward from the same probabilities):
// odd sequence lengths (1, 7, 33, 197 on cpu; small ones on sim), S_q != S_kv, head dims
// up to 128, strided q/k/v (permuted views of a fused [B, S, 3, H, Dh] projection, and
// gapped copies), f32/f64/bf16, the kernels called directly on poisoned outputs, float64
// gradchecks on the CPU, and CUDA gradients against the CPU's. The cpu cases run with the
// oneDNN GEMMs on and off (kernels/cpu/attention.cpp: bf16 operands through oneDNN or widened
// per GEMM into sgemm; f32 through oneDNN f32 or OpenBLAS) and under both ISA variants (the
// softmax rows).
#include <cmath>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/gemm_onednn.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::random_input;

namespace {

struct Case {
  int64_t B, H, Sq, Skv, Dh;
};

std::string case_str(const Case& c) {
  return "B " + std::to_string(c.B) + " H " + std::to_string(c.H) + " Sq " + std::to_string(c.Sq) + " Skv " +
         std::to_string(c.Skv) + " Dh " + std::to_string(c.Dh);
}

// Plain float64 attention. Returns out [B, H, Sq, Dh]; with dout defined also fills dq, dk, dv.
struct Reference {
  Tensor out, dq, dk, dv;
};

Reference reference(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, double scale,
                    const Tensor& dout_in = Tensor()) {
  Tensor q = q_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor k = k_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor v = v_in.detach().to(kCPU, DType::f64).contiguous();
  const int64_t B = q.shape()[0], H = q.shape()[1], Sq = q.shape()[2], Skv = k.shape()[2], Dh = q.shape()[3];
  Reference r;
  r.out = zeros({B, H, Sq, Dh}, TensorOptions(DType::f64));
  const bool grads = dout_in.defined();
  Tensor dout = grads ? dout_in.detach().to(kCPU, DType::f64).contiguous() : Tensor();
  if (grads) {
    r.dq = zeros(q.shape(), TensorOptions(DType::f64));
    r.dk = zeros(k.shape(), TensorOptions(DType::f64));
    r.dv = zeros(v.shape(), TensorOptions(DType::f64));
  }
  const double *Q = q.data<double>(), *K = k.data<double>(), *V = v.data<double>();
  double* O = r.out.data<double>();
  std::vector<double> p(Skv), dp(Skv);
  for (int64_t bh = 0; bh < B * H; ++bh) {
    for (int64_t i = 0; i < Sq; ++i) {
      const double* qi = Q + (bh * Sq + i) * Dh;
      double mx = -INFINITY;
      for (int64_t j = 0; j < Skv; ++j) {
        double s = 0;
        for (int64_t d = 0; d < Dh; ++d) s += qi[d] * K[(bh * Skv + j) * Dh + d];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < Skv; ++j) sum += (p[j] = std::exp(p[j] - mx));
      for (int64_t j = 0; j < Skv; ++j) p[j] /= sum;
      double* oi = O + (bh * Sq + i) * Dh;
      for (int64_t j = 0; j < Skv; ++j)
        for (int64_t d = 0; d < Dh; ++d) oi[d] += p[j] * V[(bh * Skv + j) * Dh + d];
      if (!grads) continue;
      // dP = dO V^T; dS = P (dP - sum_j P dP); dQ = dS K scale; dK = dS^T Q scale; dV = P^T dO.
      const double* doi = dout.data<double>() + (bh * Sq + i) * Dh;
      double rowdot = 0;
      for (int64_t j = 0; j < Skv; ++j) {
        dp[j] = 0;
        for (int64_t d = 0; d < Dh; ++d) dp[j] += doi[d] * V[(bh * Skv + j) * Dh + d];
        rowdot += p[j] * dp[j];
      }
      for (int64_t j = 0; j < Skv; ++j) {
        const double ds = p[j] * (dp[j] - rowdot) * scale;
        for (int64_t d = 0; d < Dh; ++d) {
          r.dq.data<double>()[(bh * Sq + i) * Dh + d] += ds * K[(bh * Skv + j) * Dh + d];
          r.dk.data<double>()[(bh * Skv + j) * Dh + d] += ds * qi[d];
          r.dv.data<double>()[(bh * Skv + j) * Dh + d] += p[j] * doi[d];
        }
      }
    }
  }
  return r;
}

// q, k, v as permuted views of one fused projection [B, S, 3, H, Dh] (S_q == S_kv).
std::vector<Tensor> fused_qkv_views(const Case& c, uint64_t seed, DType dt, Device d) {
  Tensor qkv = random_input({c.B, c.Sq, 3, c.H, c.Dh}, seed, dt, d);
  Tensor p = qkv.permute({2, 0, 3, 1, 4});  // [3, B, H, S, Dh], no copy
  return {p.select(0, 0), p.select(0, 1), p.select(0, 2)};
}

// The cpu configurations a case runs under: oneDNN GEMMs on (when built) and off, times each
// ISA variant; one default run elsewhere.
struct CpuMode {
  bool onednn;
  std::string isa;
};
std::vector<CpuMode> modes_for(const std::string& dev) {
  if (dev != "cpu") return {{kernels::cpu::onednn_gemm_enabled(), "baseline"}};
  std::vector<CpuMode> out;
  for (bool onednn : {true, false}) {
    if (onednn && !kernels::cpu::onednn_built()) continue;
    for (const std::string& isa : petal::testing::test_cpu_isas()) out.push_back({onednn, isa});
  }
  return out;
}

// Applies a CpuMode for its lifetime.
class ScopedCpuMode {
 public:
  explicit ScopedCpuMode(const CpuMode& m) : isa_(m.isa), was_(kernels::cpu::onednn_gemm_enabled()) {
    kernels::cpu::set_onednn_gemm_enabled(m.onednn);
  }
  ~ScopedCpuMode() { kernels::cpu::set_onednn_gemm_enabled(was_); }
  ScopedCpuMode(const ScopedCpuMode&) = delete;
  ScopedCpuMode& operator=(const ScopedCpuMode&) = delete;

 private:
  petal::testing::ScopedCpuIsa isa_;
  bool was_;
};

std::string mode_str(const CpuMode& m) { return std::string(m.onednn ? "oneDNN" : "no oneDNN") + ", " + m.isa; }

// bf16 tolerances. The output's default (tolerance_for(bf16) = 1.6e-2) covers the bf16
// rounding of P before P V: each P_j is off by at most 2^-9 relative, so out moves by at most
// 2^-9 sum_j P_j |v_j| <= 2^-9 max|v| (about 8e-3 for N(0, 1) values below 4), plus the output
// rounding 2^-9; the gradients (3e-2) likewise absorb the rounding of P and dS before their
// GEMMs (the same per-element 2^-9 on dS, whose products sum over S_kv or S_q terms).
double grad_tol(DType dt) { return dt == DType::bf16 ? 3e-2 : (dt == DType::f32 ? 3e-5 : 1e-11); }

std::vector<Case> cases_for(const std::string& dev) {
  if (dev == "sim") return {{1, 1, 1, 1, 4}, {1, 2, 7, 7, 8}, {2, 2, 17, 17, 16}, {1, 2, 5, 9, 16}, {1, 1, 3, 6, 72}};
  return {{1, 1, 1, 1, 4},    {2, 3, 7, 7, 8},     {1, 2, 33, 33, 16}, {2, 2, 197, 197, 64},
          {1, 2, 5, 9, 16},   {2, 1, 13, 4, 32},   {1, 1, 17, 19, 128}, {1, 1, 9, 3, 200}};
}

}  // namespace

TEST_CASE("scaled_dot_product_attention matches a float64 reference", "[attention]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  Device d(dev);
  uint64_t seed = 10;
  for (const Case& c : cases_for(dev)) {
    if (c.Dh > 128 && !d.is_cpu()) continue;
    INFO(case_str(c) << " dtype " << dtype_name(dt) << " on " << dev);
    Tensor q = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d);
    Tensor k = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d);
    Tensor v = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d);
    const Tensor ref = reference(q, k, v, 1.0 / std::sqrt(double(c.Dh))).out, ref03 = reference(q, k, v, 0.3).out;
    for (const CpuMode& mode : modes_for(dev)) {
      ScopedCpuMode scoped(mode);
      INFO(mode_str(mode));
      Tensor out = scaled_dot_product_attention(q, k, v);
      CHECK(out.dtype() == dt);
      CHECK(out.shape() == Shape{c.B, c.H, c.Sq, c.Dh});
      CHECK(out.is_contiguous());
      check_close(out, ref, -1, "out");
      // An explicit scale.
      check_close(scaled_dot_product_attention(q, k, v, 0.3), ref03, -1, "out, scale 0.3");
    }
  }
}

TEST_CASE("scaled_dot_product_attention reads strided q/k/v in place", "[attention]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  Device d(dev);
  const std::vector<Case> cases =
      dev == "sim" ? std::vector<Case>{{2, 2, 9, 9, 8}} : std::vector<Case>{{2, 3, 7, 7, 8}, {2, 3, 197, 197, 64}};
  for (const Case& c : cases) {
    INFO(case_str(c) << " dtype " << dtype_name(dt) << " on " << dev);
    std::vector<Tensor> qkv = fused_qkv_views(c, 70, dt, d);
    for (const Tensor& t : qkv) CHECK(!t.is_contiguous());
    Tensor w = random_input({c.B, c.H, c.Sq, c.Dh}, 71, dt, d);
    Reference ref = reference(qkv[0], qkv[1], qkv[2], 1.0 / std::sqrt(double(c.Dh)), w);
    for (const CpuMode& mode : modes_for(dev)) {
      ScopedCpuMode scoped(mode);
      INFO(mode_str(mode));
      Tensor q = qkv[0].detach().requires_grad_(), k = qkv[1].detach().requires_grad_(),
             v = qkv[2].detach().requires_grad_();
      Tensor out = scaled_dot_product_attention(q, k, v);
      check_close(out, ref.out, -1, "out");
      sum(mul(out, w)).backward();
      check_close(q.grad(), ref.dq, grad_tol(dt), "dq");
      check_close(k.grad(), ref.dk, grad_tol(dt), "dk");
      check_close(v.grad(), ref.dv, grad_tol(dt), "dv");
      // Gapped / transposed copies (the last dim may lose its unit stride: then it is copied).
      Tensor qn = petal::testing::non_contiguous_copy(qkv[0]), kn = petal::testing::non_contiguous_copy(qkv[1]);
      check_close(scaled_dot_product_attention(qn, kn, qkv[2]), ref.out, -1, "non-contiguous copies");
    }
  }
}

TEST_CASE("scaled_dot_product_attention gradients match the float64 reference", "[attention]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  Device d(dev);
  uint64_t seed = 200;
  for (const Case& c : cases_for(dev)) {
    if (c.Dh > 128 && !d.is_cpu()) continue;
    INFO(case_str(c) << " dtype " << dtype_name(dt) << " on " << dev);
    Tensor q = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d).requires_grad_();
    Tensor k = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d).requires_grad_();
    Tensor v = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d).requires_grad_();
    Tensor w = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d);
    Reference ref = reference(q, k, v, 1.0 / std::sqrt(double(c.Dh)), w);
    for (const CpuMode& mode : modes_for(dev)) {
      ScopedCpuMode scoped(mode);
      INFO(mode_str(mode));
      for (Tensor* t : {&q, &k, &v}) t->zero_grad();
      sum(mul(scaled_dot_product_attention(q, k, v), w)).backward();
      check_close(q.grad(), ref.dq, grad_tol(dt), "dq");
      check_close(k.grad(), ref.dk, grad_tol(dt), "dk");
      check_close(v.grad(), ref.dv, grad_tol(dt), "dv");
    }
  }
}

TEST_CASE("attention kernels write every element", "[attention]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  Device d(dev);
  for (const Case& c : std::vector<Case>{{1, 3, 11, 13, 12}, {1, 1, 35, 17, 64}}) {
    INFO(case_str(c) << " dtype " << dtype_name(dt) << " on " << dev);
    const DType st = dt == DType::f64 ? DType::f64 : DType::f32;
    Tensor q = random_input({c.B, c.H, c.Sq, c.Dh}, 1, dt, d), k = random_input({c.B, c.H, c.Skv, c.Dh}, 2, dt, d),
           v = random_input({c.B, c.H, c.Skv, c.Dh}, 3, dt, d), dout = random_input({c.B, c.H, c.Sq, c.Dh}, 4, dt, d);
    Tensor out = empty(q.shape(), TensorOptions(dt, d)), lse = empty({c.B, c.H, c.Sq}, TensorOptions(st, d));
    Tensor dq = empty(q.shape(), TensorOptions(dt, d)), dk = empty(k.shape(), TensorOptions(dt, d)),
           dv = empty(v.shape(), TensorOptions(dt, d));
    kernels::AttentionArgs a;
    a.dtype = dt;
    a.batch = c.B;
    a.heads = c.H;
    a.seq_q = c.Sq;
    a.seq_kv = c.Skv;
    a.head_dim = c.Dh;
    a.scale = 0.25;
    a.q = q.data_ptr();
    a.k = k.data_ptr();
    a.v = v.data_ptr();
    for (int i = 0; i < 3; ++i) {
      a.q_strides[i] = q.strides()[i];
      a.k_strides[i] = k.strides()[i];
      a.v_strides[i] = v.strides()[i];
    }
    a.out = out.data_ptr();
    a.lse = lse.data_ptr();
    auto& backend = kernels::backend_for(d);
    Reference ref = reference(q, k, v, 0.25, dout);
    // lse = log sum_j exp(s_j), from the float64 scores.
    Tensor qd = q.to(kCPU, DType::f64), kd = k.to(kCPU, DType::f64);
    Tensor scores = mul(matmul(qd, kd.transpose(2, 3)), 0.25);
    Tensor mx = max(scores, 3, true);
    Tensor lse_ref = add(log(sum(exp(sub(scores, mx)), {3}, true)), mx).reshape({c.B, c.H, c.Sq});
    for (const CpuMode& mode : modes_for(dev)) {
      ScopedCpuMode scoped(mode);
      INFO(mode_str(mode));
      for (Tensor* t : {&out, &lse, &dq, &dk, &dv}) petal::testing::poison(*t);
      backend.attention_forward(a);
      check_close(out, ref.out, -1, "out");
      check_close(lse, lse_ref, -1, "lse");
      backend.attention_backward(a, dout.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr());
      check_close(dq, ref.dq, grad_tol(dt), "dq");
      check_close(dk, ref.dk, grad_tol(dt), "dk");
      check_close(dv, ref.dv, grad_tol(dt), "dv");
    }
  }
}

TEST_CASE("scaled_dot_product_attention gradcheck in float64", "[attention][grad]") {
  using V = std::vector<Tensor>;
  Tensor q = random_input({1, 2, 5, 4}, 50), k = random_input({1, 2, 7, 4}, 51), v = random_input({1, 2, 7, 4}, 52);
  CHECK(gradcheck([](const V& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); }, {q, k, v}));
  CHECK(gradcheck([](const V& x) { return scaled_dot_product_attention(x[0], x[1], x[2], 0.7); }, {q, k, v}));
  // Strided views of one fused projection.
  Tensor qkv = random_input({2, 3, 3, 2, 4}, 53);
  CHECK(gradcheck(
      [](const V& x) {
        Tensor p = x[0].permute({2, 0, 3, 1, 4});
        return scaled_dot_product_attention(p.select(0, 0), p.select(0, 1), p.select(0, 2));
      },
      {qkv}));
}

TEST_CASE("scaled_dot_product_attention gradients on cuda match the cpu", "[attention][cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  const Device gpu("cuda");
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : std::vector<Case>{{2, 3, 197, 197, 64}, {1, 2, 33, 65, 128}, {2, 2, 7, 7, 8}}) {
      INFO(case_str(c) << " dtype " << dtype_name(dt));
      std::vector<Tensor> cpu_in, gpu_in;
      for (uint64_t i = 0; i < 3; ++i) {
        Tensor t = random_input({c.B, c.H, i == 0 ? c.Sq : c.Skv, c.Dh}, 90 + i, dt);
        cpu_in.push_back(t.clone().requires_grad_());
        gpu_in.push_back(t.to(gpu).requires_grad_());
      }
      Tensor w = random_input({c.B, c.H, c.Sq, c.Dh}, 99, dt);
      Tensor oc = scaled_dot_product_attention(cpu_in[0], cpu_in[1], cpu_in[2]);
      Tensor og = scaled_dot_product_attention(gpu_in[0], gpu_in[1], gpu_in[2]);
      sum(mul(oc, w)).backward();
      sum(mul(og, w.to(gpu))).backward();
      check_close(og, oc.detach().to(DType::f64), -1, "out");
      for (int i = 0; i < 3; ++i) check_close(gpu_in[i].grad(), cpu_in[i].grad().to(DType::f64), grad_tol(dt), "grad");
    }
  }
}

TEST_CASE("scaled_dot_product_attention errors name the op and shapes", "[attention]") {
  Tensor q = random_input({1, 2, 5, 4}, 1, DType::f32), k = random_input({1, 2, 7, 4}, 2, DType::f32);
  Tensor k3 = random_input({1, 2, 7, 3}, 3, DType::f32);
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k3, k3),
                    Catch::Contains("scaled_dot_product_attention") && Catch::Contains("[1, 2, 7, 3]"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, k.to(DType::f64)),
                    Catch::Contains("scaled_dot_product_attention") && Catch::Contains("float64"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q.reshape({2, 5, 4}), k, k),
                    Catch::Contains("scaled_dot_product_attention") && Catch::Contains("[2, 5, 4]"));
  Tensor i = arange(int64_t(40)).reshape({1, 2, 5, 4});
  CHECK_THROWS_WITH(scaled_dot_product_attention(i, i, i), Catch::Contains("scaled_dot_product_attention"));
}
