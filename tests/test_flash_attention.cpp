// The bf16/f16 attention path (on sim and cuda: the tensor-core flash kernels of
// kernels/cuda/flash_attention.cu; on cpu: the CPU kernels in float) against a float64
// reference written as plain loops: out, the saved log-sum-exp, dq, dk, dv, on the kernels
// called directly with poisoned outputs, at a ViT-like shape (S = 197, Dh = 64, batch
// reduced), odd lengths (1, 7, 19, 33, 65, 129, 130), head dims 32/40/64/128, S_q != S_kv, and
// through the op with the packed [B, S, 3, H, Dh] qkv views read in place. Then is_causal and
// attn_mask (bool key padding, a 2-d bool mask with a fully masked row, a floating additive
// mask) on every backend and dtype (f32/f64 take attention.cu's kernels on sim/cuda), forward
// and backward. Inputs are seeded random; tolerances are those of the element type (the
// operands and P / dS are rounded to it, accumulation is in f32).
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::random_input;

// Defined only when petal is built with the simulator (kernels/cuda/backend.cu).
namespace petal::kernels::sim_impl {
std::vector<std::string> launched_kernel_names() __attribute__((weak));
}

namespace {

struct Case {
  int64_t B, H, Sq, Skv, Dh;
};

std::string case_str(const Case& c) {
  return "B " + std::to_string(c.B) + " H " + std::to_string(c.H) + " Sq " + std::to_string(c.Sq) + " Skv " +
         std::to_string(c.Skv) + " Dh " + std::to_string(c.Dh);
}

struct Reference {
  Tensor out, lse, dq, dk, dv;
};

// Plain float64 attention on contiguous copies: scores (+ mask, a float64 [B, H, S_q, S_kv]
// tensor, and -inf above the diagonal when causal), stable softmax, weighted sum; the
// backward from the same probabilities. A row with every score -inf has P = 0, lse = -inf.
Reference reference(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& dout_in, double scale,
                    const Tensor& mask_in = Tensor(), bool causal = false) {
  Tensor q = q_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor k = k_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor v = v_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor dout = dout_in.detach().to(kCPU, DType::f64).contiguous();
  const int64_t B = q.shape()[0], H = q.shape()[1], Sq = q.shape()[2], Skv = k.shape()[2], Dh = q.shape()[3];
  const TensorOptions f64(DType::f64);
  Reference r{zeros({B, H, Sq, Dh}, f64), zeros({B, H, Sq}, f64), zeros(q.shape(), f64), zeros(k.shape(), f64),
              zeros(v.shape(), f64)};
  const double *Q = q.data<double>(), *K = k.data<double>(), *V = v.data<double>(), *dO = dout.data<double>();
  Tensor mask = mask_in.defined() ? mask_in.to(kCPU, DType::f64).contiguous() : Tensor();
  std::vector<double> p(Skv), dp(Skv);
  for (int64_t bh = 0; bh < B * H; ++bh) {
    for (int64_t i = 0; i < Sq; ++i) {
      const double* qi = Q + (bh * Sq + i) * Dh;
      double mx = -INFINITY;
      for (int64_t j = 0; j < Skv; ++j) {
        double s = 0;
        for (int64_t d = 0; d < Dh; ++d) s += qi[d] * K[(bh * Skv + j) * Dh + d];
        p[j] = s * scale;
        if (mask.defined()) p[j] += mask.data<double>()[(bh * Sq + i) * Skv + j];
        if (causal && j > i) p[j] = -INFINITY;
        mx = std::max(mx, p[j]);
      }
      if (mx == -INFINITY) {  // no key left: out and gradients stay 0
        r.lse.data<double>()[bh * Sq + i] = -INFINITY;
        continue;
      }
      double sum = 0;
      for (int64_t j = 0; j < Skv; ++j) sum += (p[j] = std::exp(p[j] - mx));
      r.lse.data<double>()[bh * Sq + i] = mx + std::log(sum);
      for (int64_t j = 0; j < Skv; ++j) p[j] /= sum;
      double* oi = r.out.data<double>() + (bh * Sq + i) * Dh;
      for (int64_t j = 0; j < Skv; ++j)
        for (int64_t d = 0; d < Dh; ++d) oi[d] += p[j] * V[(bh * Skv + j) * Dh + d];
      // dP = dO V^T; dS = P (dP - sum_j P dP); dQ = dS K scale; dK = dS^T Q scale; dV = P^T dO.
      const double* doi = dO + (bh * Sq + i) * Dh;
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

kernels::AttentionArgs make_args(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  kernels::AttentionArgs a;
  a.dtype = q.dtype();
  a.batch = q.shape()[0];
  a.heads = q.shape()[1];
  a.seq_q = q.shape()[2];
  a.seq_kv = k.shape()[2];
  a.head_dim = q.shape()[3];
  a.scale = scale;
  a.q = q.data_ptr();
  a.k = k.data_ptr();
  a.v = v.data_ptr();
  for (int i = 0; i < 3; ++i) {
    a.q_strides[i] = q.strides()[i];
    a.k_strides[i] = k.strides()[i];
    a.v_strides[i] = v.strides()[i];
  }
  return a;
}

// Measured on sim and cpu: out <= 3e-3 (bf16) / 3.5e-4 (f16), gradients <= 3.8e-3 / 4.5e-4.
double out_tol(DType dt) { return dt == DType::bf16 ? 8e-3 : 1e-3; }
double grad_tol(DType dt) { return dt == DType::bf16 ? 1.2e-2 : 1.5e-3; }

std::vector<Case> flash_cases(const std::string& dev) {
  std::vector<Case> cases = {{1, 2, 197, 197, 64}, {1, 1, 33, 65, 32}, {2, 1, 7, 130, 128},
                             {1, 1, 65, 19, 40},   {1, 1, 1, 1, 16},   {1, 1, 129, 64, 128}};
  if (dev != "sim") cases.push_back({2, 3, 197, 197, 64});
  return cases;
}

std::set<std::string> sim_launched() {
  std::set<std::string> s;
  if (&kernels::sim_impl::launched_kernel_names != nullptr)
    for (const std::string& n : kernels::sim_impl::launched_kernel_names()) s.insert(n);
  return s;
}

}  // namespace

TEST_CASE("bf16/f16 attention kernels match a float64 reference (flash on sim/cuda)", "[attention][flash]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::bf16, DType::f16);
  Device d(dev);
  uint64_t seed = 400;
  for (const Case& c : flash_cases(dev)) {
    INFO(case_str(c) << " dtype " << dtype_name(dt) << " on " << dev);
    Tensor q = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d), k = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d),
           v = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d),
           dout = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d);
    const TensorOptions o(dt, d);
    Tensor out = empty(q.shape(), o), lse = empty({c.B, c.H, c.Sq}, TensorOptions(DType::f32, d));
    Tensor dq = empty(q.shape(), o), dk = empty(k.shape(), o), dv = empty(v.shape(), o);
    for (Tensor* t : {&out, &lse, &dq, &dk, &dv}) petal::testing::poison(*t);
    const double scale = 1.0 / std::sqrt(double(c.Dh));
    kernels::AttentionArgs a = make_args(q, k, v, scale);
    a.out = out.data_ptr();
    a.lse = lse.data_ptr();
    auto& backend = kernels::backend_for(d);
    backend.attention_forward(a);
    const Reference ref = reference(q, k, v, dout, scale);
    check_close(out, ref.out, out_tol(dt), "out");
    check_close(lse, ref.lse, 1e-6, "lse");
    backend.attention_backward(a, dout.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr());
    check_close(dq, ref.dq, grad_tol(dt), "dq");
    check_close(dk, ref.dk, grad_tol(dt), "dk");
    check_close(dv, ref.dv, grad_tol(dt), "dv");
  }
  if (dev == "sim" && &kernels::sim_impl::launched_kernel_names != nullptr) {
    // The shapes above are flash-eligible: the tensor-core kernels, not the scalar ones, ran.
    const std::set<std::string> launched = sim_launched();
    CHECK(launched.count("flash_attention_forward_kernel") == 1);
    CHECK(launched.count("flash_attention_backward_kernel") == 1);
    CHECK(launched.count("flash_attention_backward_prep_kernel") == 1);
    CHECK(launched.count("flash_attention_backward_dq_kernel") == 1);
  }
}

TEST_CASE("bf16/f16 attention reads the packed qkv projection in place", "[attention][flash]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::bf16, DType::f16);
  Device d(dev);
  const Case c = dev == "sim" ? Case{1, 2, 65, 65, 32} : Case{2, 3, 197, 197, 64};
  INFO(case_str(c) << " dtype " << dtype_name(dt) << " on " << dev);
  // [B, S, 3, H, Dh] -> three [B, H, S, Dh] views, no copy (S stride 3 H Dh).
  Tensor qkv = random_input({c.B, c.Sq, 3, c.H, c.Dh}, 91, dt, d).requires_grad_();
  Tensor p = qkv.permute({2, 0, 3, 1, 4});
  Tensor q = p.select(0, 0), k = p.select(0, 1), v = p.select(0, 2);
  CHECK(!q.is_contiguous());
  Tensor w = random_input({c.B, c.H, c.Sq, c.Dh}, 92, dt, d);
  Tensor out = scaled_dot_product_attention(q, k, v);
  const Reference ref = reference(q, k, v, w, 1.0 / std::sqrt(double(c.Dh)));
  check_close(out, ref.out, out_tol(dt), "out");
  sum(mul(out, w)).backward();
  Tensor g = qkv.grad().permute({2, 0, 3, 1, 4});
  check_close(g.select(0, 0), ref.dq, grad_tol(dt), "dq");
  check_close(g.select(0, 1), ref.dk, grad_tol(dt), "dk");
  check_close(g.select(0, 2), ref.dv, grad_tol(dt), "dv");
}

namespace {

enum class MaskKind { None, KeyPadding, Bool2dWithEmptyRow, Additive };

struct MaskCase {
  Case c;
  bool causal;
  MaskKind kind;
};

std::vector<MaskCase> mask_cases(const std::string& dev) {
  std::vector<MaskCase> cases = {
      {{1, 2, 65, 65, 32}, true, MaskKind::None},          {{1, 1, 33, 70, 64}, true, MaskKind::None},
      {{1, 1, 70, 33, 32}, true, MaskKind::None},          {{2, 1, 40, 50, 32}, false, MaskKind::KeyPadding},
      {{1, 2, 33, 40, 64}, true, MaskKind::Additive},      {{1, 1, 20, 24, 16}, false, MaskKind::Bool2dWithEmptyRow},
      {{1, 1, 9, 130, 128}, false, MaskKind::Additive},
  };
  if (dev != "sim") cases.push_back({{2, 2, 197, 197, 64}, true, MaskKind::KeyPadding});
  return cases;
}

// The mask handed to the op and the float64 [B, H, S_q, S_kv] additive mask it stands for.
std::pair<Tensor, Tensor> make_mask(const MaskCase& m, uint64_t seed) {
  const Case& c = m.c;
  const Shape full_shape{c.B, c.H, c.Sq, c.Skv};
  switch (m.kind) {
    case MaskKind::None: return {Tensor(), Tensor()};
    case MaskKind::KeyPadding: {  // batch b sees its first Skv - 7 (b + 1) keys
      std::vector<double> keep(static_cast<size_t>(c.B * c.Skv));
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t j = 0; j < c.Skv; ++j) keep[b * c.Skv + j] = j < c.Skv - 7 * (b + 1) ? 1.0 : 0.0;
      Tensor mb = ge(tensor(keep, {c.B, 1, 1, c.Skv}, TensorOptions(DType::f64)), 0.5);
      Tensor add = where(mb, zeros(mb.shape(), TensorOptions(DType::f64)), full(mb.shape(), -INFINITY, TensorOptions(DType::f64)));
      return {mb, add.expand(full_shape).contiguous()};
    }
    case MaskKind::Bool2dWithEmptyRow: {  // random, row 3 masked entirely
      Tensor r = random_input({c.Sq, c.Skv}, seed);
      for (int64_t j = 0; j < c.Skv; ++j) r.data<double>()[3 * c.Skv + j] = -5.0;
      Tensor mb = ge(r, -1.0);
      Tensor add = where(mb, zeros(mb.shape(), TensorOptions(DType::f64)), full_like(r, -INFINITY));
      return {mb, add.expand(full_shape).contiguous()};
    }
    case MaskKind::Additive: {  // values exact in f32, broadcast over the batch
      Tensor mf = mul(random_input({1, c.H, c.Sq, c.Skv}, seed, DType::f32), 2.0);
      return {mf, mf.to(DType::f64).expand(full_shape).contiguous()};
    }
  }
  return {Tensor(), Tensor()};
}

double mask_out_tol(DType dt) { return dt == DType::f64 ? 1e-11 : dt == DType::f32 ? 1e-5 : out_tol(dt); }
double mask_grad_tol(DType dt) { return dt == DType::f64 ? 1e-10 : dt == DType::f32 ? 3e-5 : grad_tol(dt); }

}  // namespace

TEST_CASE("attention with is_causal and attn_mask matches the float64 reference", "[attention][flash]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16, DType::f16);
  Device d(dev);
  uint64_t seed = 600;
  for (const MaskCase& m : mask_cases(dev)) {
    const Case& c = m.c;
    INFO(case_str(c) << (m.causal ? " causal" : "") << " mask kind " << static_cast<int>(m.kind) << " dtype "
                     << dtype_name(dt) << " on " << dev);
    Tensor q = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d).requires_grad_();
    Tensor k = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d).requires_grad_();
    Tensor v = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d).requires_grad_();
    Tensor w = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d);
    const auto mask = make_mask(m, seed++);
    Tensor out = scaled_dot_product_attention(q, k, v, mask.first.defined() ? mask.first.to(d) : Tensor(), m.causal);
    const Reference ref = reference(q, k, v, w, 1.0 / std::sqrt(double(c.Dh)), mask.second, m.causal);
    check_close(out, ref.out, mask_out_tol(dt), "out");
    sum(mul(out, w)).backward();
    check_close(q.grad(), ref.dq, mask_grad_tol(dt), "dq");
    check_close(k.grad(), ref.dk, mask_grad_tol(dt), "dk");
    check_close(v.grad(), ref.dv, mask_grad_tol(dt), "dv");
  }
}

TEST_CASE("attention masks: the empty mask and is_causal=false change nothing; bad masks are refused",
          "[attention]") {
  Tensor q = random_input({1, 2, 5, 8}, 1, DType::f32), k = random_input({1, 2, 7, 8}, 2, DType::f32);
  Tensor all = ge(random_input({5, 7}, 3), -100.0);  // every key takes part
  check_close(scaled_dot_product_attention(q, k, k, all, false), scaled_dot_product_attention(q, k, k), 1e-6,
              "all-true mask");
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, k, random_input({5, 6}, 4, DType::f32)),
                    Catch::Contains("attn_mask") && Catch::Contains("[5, 6]"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, k, arange(int64_t(35)).reshape({5, 7})),
                    Catch::Contains("attn_mask"));
}
