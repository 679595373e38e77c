// Attention dropout (seeded Philox4x32-10, kernels/philox.h) and the deterministic dQ mode of
// scaled_dot_product_attention, on every backend:
// - Philox4x32-10 against Random123's published known-answer vectors;
// - the keep mask the kernels apply (read back through q = k = 0, v = I) is exactly the Philox
//   mask computed here, on cpu, sim (scalar f32 kernels and bf16 flash kernels) and cuda, and
//   its keep rate is 1 - p;
// - forward and backward with dropout (and causal / key padding) against a float64 reference
//   using that mask, at odd lengths, f32/f64/bf16/f16; a float64 finite-difference gradcheck
//   with a fixed seed; dropout_p = 0 is bit-identical to no dropout;
// - deterministic dQ (use_deterministic_algorithms / AttentionArgs::deterministic): the flash
//   backward twice under different simulator schedule seeds is bit-identical, and matches
//   the reference.
#include <petal/device.h>
#include <petal/random.h>

#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/philox.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::random_input;

// Defined only when petal is built with the simulator.
namespace petal::kernels::sim_impl {
std::vector<std::string> launched_kernel_names() __attribute__((weak));
}
namespace petal::sim {
void set_schedule_seed(uint64_t seed) __attribute__((weak));
}

namespace {

struct Case {
  int64_t B, H, Sq, Skv, Dh;
};

std::string case_str(const Case& c) {
  return "B " + std::to_string(c.B) + " H " + std::to_string(c.H) + " Sq " + std::to_string(c.Sq) + " Skv " +
         std::to_string(c.Skv) + " Dh " + std::to_string(c.Dh);
}

// keep / (1 - p) (or 0) for every [B*H, S_q, S_kv] element: the mask a draw with (seed, offset
// 0) must give, computed element by element from the Philox definition.
std::vector<double> dropout_factors(uint64_t seed, double p, int64_t pairs, int64_t sq, int64_t skv) {
  std::vector<double> f(static_cast<size_t>(pairs * sq * skv));
  const uint32_t threshold = kernels::attention_dropout_threshold(p);
  int64_t disagree = 0;  // with the kernels' helper
  for (int64_t bh = 0; bh < pairs; ++bh)
    for (int64_t i = 0; i < sq; ++i)
      for (int64_t j = 0; j < skv; ++j) {
        const uint64_t counter = static_cast<uint64_t>((bh * sq + i) * ((skv + 3) / 4) + j / 4);
        const bool keep = kernels::philox4x32(seed, counter).v[j % 4] >= threshold;
        disagree += keep != kernels::attention_dropout_keep(seed, 0, threshold, bh, sq, skv, i, j);
        f[(bh * sq + i) * skv + j] = keep ? 1.0 / (1.0 - p) : 0.0;
      }
  CHECK(disagree == 0);
  return f;
}

struct Reference {
  Tensor out, dq, dk, dv;
};

// Plain float64 attention with dropout factors F (empty: none), an optional key padding
// (keys >= valid_keys excluded) and causal: P = softmax(scores), P' = P F, out = P' V;
// dP' = dO V^T, dS = P (F dP' - sum_j P' dP'), dQ = dS K scale, dK = dS^T Q scale, dV = P'^T dO.
Reference reference(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& dout_in, double scale,
                    const std::vector<double>& F, bool causal, int64_t valid_keys) {
  Tensor q = q_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor k = k_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor v = v_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor dout = dout_in.detach().to(kCPU, DType::f64).contiguous();
  const int64_t B = q.shape()[0], H = q.shape()[1], Sq = q.shape()[2], Skv = k.shape()[2], Dh = q.shape()[3];
  const TensorOptions f64(DType::f64);
  Reference r{zeros({B, H, Sq, Dh}, f64), zeros(q.shape(), f64), zeros(k.shape(), f64), zeros(v.shape(), f64)};
  const double *Q = q.data<double>(), *K = k.data<double>(), *V = v.data<double>(), *dO = dout.data<double>();
  std::vector<double> p(Skv), dp(Skv);
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < Sq; ++i) {
      const double* qi = Q + (bh * Sq + i) * Dh;
      double mx = -INFINITY;
      for (int64_t j = 0; j < Skv; ++j) {
        double s = 0;
        for (int64_t d = 0; d < Dh; ++d) s += qi[d] * K[(bh * Skv + j) * Dh + d];
        p[j] = (causal && j > i) || j >= valid_keys ? -INFINITY : s * scale;
        mx = std::max(mx, p[j]);
      }
      if (mx == -INFINITY) continue;
      double sum = 0;
      for (int64_t j = 0; j < Skv; ++j) sum += (p[j] = std::exp(p[j] - mx));
      for (int64_t j = 0; j < Skv; ++j) p[j] /= sum;
      const double* f = F.empty() ? nullptr : F.data() + (bh * Sq + i) * Skv;
      double* oi = r.out.data<double>() + (bh * Sq + i) * Dh;
      const double* doi = dO + (bh * Sq + i) * Dh;
      double rowdot = 0;
      for (int64_t j = 0; j < Skv; ++j) {
        const double pd = p[j] * (f ? f[j] : 1.0);
        dp[j] = 0;
        for (int64_t d = 0; d < Dh; ++d) {
          oi[d] += pd * V[(bh * Skv + j) * Dh + d];
          dp[j] += doi[d] * V[(bh * Skv + j) * Dh + d];
        }
        rowdot += pd * dp[j];
      }
      for (int64_t j = 0; j < Skv; ++j) {
        const double fj = f ? f[j] : 1.0;
        const double ds = p[j] * (fj * dp[j] - rowdot) * scale;
        for (int64_t d = 0; d < Dh; ++d) {
          r.dq.data<double>()[(bh * Sq + i) * Dh + d] += ds * K[(bh * Skv + j) * Dh + d];
          r.dk.data<double>()[(bh * Skv + j) * Dh + d] += ds * qi[d];
          r.dv.data<double>()[(bh * Skv + j) * Dh + d] += p[j] * fj * doi[d];
        }
      }
    }
  return r;
}

double out_tol(DType dt) {
  return dt == DType::f64 ? 1e-11 : dt == DType::f32 ? 1e-5 : dt == DType::bf16 ? 1.2e-2 : 1.5e-3;
}
double grad_tol(DType dt) {
  return dt == DType::f64 ? 1e-10 : dt == DType::f32 ? 3e-5 : dt == DType::bf16 ? 1.8e-2 : 2.2e-3;
}

// The keep mask (1 kept, 0 dropped) the op applies on device d in dtype dt: with q = k = 0 the
// weights are 1 / S_kv, and v = I (Dh = S_kv) puts weight j of row i into out[i, j].
std::vector<uint8_t> applied_mask(const Device& d, DType dt, uint64_t seed, double p, const Case& c) {
  REQUIRE(c.Dh == c.Skv);
  Tensor q = zeros({c.B, c.H, c.Sq, c.Dh}, TensorOptions(dt, d));
  Tensor k = zeros({c.B, c.H, c.Skv, c.Dh}, TensorOptions(dt, d));
  std::vector<double> eye(static_cast<size_t>(c.Skv * c.Skv), 0.0);
  for (int64_t j = 0; j < c.Skv; ++j) eye[j * c.Skv + j] = 1.0;
  Tensor v = tensor(eye, {1, 1, c.Skv, c.Skv}, TensorOptions(DType::f64))
                 .expand({c.B, c.H, c.Skv, c.Skv})
                 .contiguous()
                 .to(d, dt);
  manual_seed(seed);
  Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), false, -1.0, p).to(kCPU, DType::f64).contiguous();
  std::vector<uint8_t> keep(static_cast<size_t>(out.numel()));
  const double kept_value = 1.0 / (static_cast<double>(c.Skv) * (1.0 - p));
  const double tol = dt == DType::bf16 ? 1e-2 : 1e-5;
  for (int64_t e = 0; e < out.numel(); ++e) {
    const double x = out.data<double>()[e];
    keep[e] = x != 0.0;
    if (x != 0.0 && std::abs(x - kept_value) > tol * kept_value) {
      FAIL_CHECK("kept weight " << e << " is " << x << ", expected " << kept_value);
      break;
    }
  }
  return keep;
}

std::set<std::string> sim_launched() {
  std::set<std::string> s;
  if (&kernels::sim_impl::launched_kernel_names != nullptr)
    for (const std::string& n : kernels::sim_impl::launched_kernel_names()) s.insert(n);
  return s;
}

}  // namespace

TEST_CASE("Philox4x32-10 matches Random123's known-answer vectors", "[random][philox]") {
  // (counter c0..c3, key k0 k1, expected output), hex words as printed in the vector files:
  // the first three from Random123's tests/kat_vectors (DEShawResearch/random123), the others
  // from the examples/kat_vectors of the Random123 manual's repository.
  struct Kat {
    uint32_t c[4], k[2], out[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
      {{1, 0, 0, 0}, {1, 0}, {0xac08141bu, 0xdfc5ccbeu, 0x79c07a47u, 0xa7f66093u}},
      {{0, 0, 0, 0xffffffffu}, {0, 0xffffffffu}, {0x9f18bb20u, 0x62161056u, 0x7ea8c028u, 0x4c01fc6eu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0, 0x80000000u},
       {0x63675d2cu, 0x422d7c4du, 0x3145d30du, 0x3bce33a4u}},
  };
  for (const Kat& t : kats) {
    const kernels::Philox4 r = kernels::philox4x32_10(t.c[0], t.c[1], t.c[2], t.c[3], t.k[0], t.k[1]);
    INFO("counter " << std::hex << t.c[0] << " " << t.c[1] << " " << t.c[2] << " " << t.c[3] << " key " << t.k[0]
                    << " " << t.k[1]);
    for (int i = 0; i < 4; ++i) CHECK(r.v[i] == t.out[i]);
  }
  // petal's (seed, counter) form is the same function with counter (lo, hi, 0, 0), key = seed.
  const kernels::Philox4 a = kernels::philox4x32(0x299f31d0a4093822ull, 0x85a308d3243f6a88ull);
  const kernels::Philox4 b = kernels::philox4x32_10(0x243f6a88u, 0x85a308d3u, 0, 0, 0xa4093822u, 0x299f31d0u);
  CHECK(std::memcmp(&a, &b, sizeof a) == 0);
}

TEST_CASE("attention dropout applies the Philox mask on every backend; keep rate 1 - p", "[attention][dropout]") {
  const uint64_t seed = 2024;
  const double p = 0.3;
  // Odd lengths; Dh = S_kv = 24 is flash-eligible for bf16 on sim/cuda (f32 takes the scalar kernels).
  const Case c{2, 3, 37, 24, 24};
  const std::vector<double> ref = dropout_factors(seed, p, c.B * c.H, c.Sq, c.Skv);
  std::vector<uint8_t> cpu_mask;
  for (const std::string& dev : petal::testing::test_devices())
    for (DType dt : {DType::f32, DType::bf16}) {
      INFO(case_str(c) << " dtype " << dtype_name(dt) << " on " << dev);
      const std::vector<uint8_t> mask = applied_mask(Device(dev), dt, seed, p, c);
      REQUIRE(mask.size() == ref.size());
      int64_t mismatches = 0;
      for (size_t e = 0; e < mask.size(); ++e) mismatches += mask[e] != (ref[e] != 0.0);
      CHECK(mismatches == 0);
      if (cpu_mask.empty())
        cpu_mask = mask;
      else
        CHECK(mask == cpu_mask);  // the same elements dropped as on the cpu, bit for bit
    }
  // The keep rate over 65,536 weights, within 5 standard deviations.
  const Case big{4, 4, 64, 64, 64};
  for (double pp : {0.1, 0.3, 0.5}) {
    const std::vector<uint8_t> mask = applied_mask(kCPU, DType::f32, 99, pp, big);
    double kept = 0;
    for (uint8_t m : mask) kept += m;
    const double n = static_cast<double>(mask.size()), rate = kept / n;
    INFO("p " << pp << " keep rate " << rate);
    CHECK(std::abs(rate - (1.0 - pp)) < 5.0 * std::sqrt(pp * (1.0 - pp) / n));
  }
}

TEST_CASE("attention dropout forward and backward match the float64 reference", "[attention][dropout][flash]") {
  struct DropCase {
    Case c;
    bool causal;
    int64_t padded_keys;  // last keys excluded by a bool key-padding mask
    double p;
  };
  const std::vector<DropCase> cases = {
      {{1, 2, 33, 47, 16}, false, 0, 0.2}, {{2, 1, 19, 65, 32}, true, 0, 0.4}, {{1, 1, 7, 70, 64}, false, 5, 0.1},
      {{1, 1, 66, 9, 8}, true, 0, 0.5}};
  for (const std::string& dev : petal::testing::test_devices())
    for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
      const Device d(dev);
      uint64_t seed = 800;
      for (const DropCase& m : cases) {
        const Case& c = m.c;
        INFO(case_str(c) << (m.causal ? " causal" : "") << " padded " << m.padded_keys << " p " << m.p << " dtype "
                         << dtype_name(dt) << " on " << dev);
        Tensor q = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d).requires_grad_();
        Tensor k = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d).requires_grad_();
        Tensor v = random_input({c.B, c.H, c.Skv, c.Dh}, seed++, dt, d).requires_grad_();
        Tensor w = random_input({c.B, c.H, c.Sq, c.Dh}, seed++, dt, d);
        Tensor mask;
        if (m.padded_keys > 0)
          mask = lt(arange(c.Skv).to(d), static_cast<double>(c.Skv - m.padded_keys)).reshape({1, 1, 1, c.Skv});
        const uint64_t drop_seed = 31 + seed;
        manual_seed(drop_seed);
        Tensor out = scaled_dot_product_attention(q, k, v, mask, m.causal, -1.0, m.p);
        CHECK(default_generator().offset == kernels::attention_dropout_counters(c.B * c.H, c.Sq, c.Skv));
        const Reference ref = reference(q, k, v, w, 1.0 / std::sqrt(double(c.Dh)),
                                        dropout_factors(drop_seed, m.p, c.B * c.H, c.Sq, c.Skv), m.causal,
                                        c.Skv - m.padded_keys);
        check_close(out, ref.out, out_tol(dt), "out");
        manual_seed(12345);  // the backward regenerates the mask from the saved seed, not the generator
        sum(mul(out, w)).backward();
        check_close(q.grad(), ref.dq, grad_tol(dt), "dq");
        check_close(k.grad(), ref.dk, grad_tol(dt), "dk");
        check_close(v.grad(), ref.dv, grad_tol(dt), "dv");
      }
    }
  if (&kernels::sim_impl::launched_kernel_names != nullptr) {
    const std::set<std::string> launched = sim_launched();
    CHECK(launched.count("flash_attention_forward_kernel") == 1);  // bf16/f16 cases took the flash kernels
  }
}

TEST_CASE("attention dropout gradcheck in float64 with a fixed seed", "[attention][dropout][grad]") {
  using V = std::vector<Tensor>;
  Tensor q = random_input({1, 2, 5, 8}, 61), k = random_input({1, 2, 7, 8}, 62), v = random_input({1, 2, 7, 8}, 63);
  const auto f = [](bool causal) {
    return [causal](const V& x) {
      manual_seed(7);  // every evaluation draws the same mask
      return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), causal, -1.0, 0.35);
    };
  };
  CHECK(gradcheck(f(false), {q, k, v}));
  CHECK(gradcheck(f(true), {q, k, v}));
  // The mask takes effect: some weights were dropped.
  CHECK(petal::testing::normalized_error(f(false)({q, k, v}), scaled_dot_product_attention(q, k, v)) > 1e-3);
}

TEST_CASE("attention dropout_p = 0 is no dropout; bad dropout_p is refused", "[attention][dropout]") {
  for (const std::string& dev : petal::testing::test_devices())
    for (DType dt : {DType::f32, DType::bf16}) {
      INFO(dtype_name(dt) << " on " << dev);
      const Device d(dev);
      Tensor q = random_input({1, 2, 13, 16}, 71, dt, d), k = random_input({1, 2, 21, 16}, 72, dt, d);
      manual_seed(5);
      const uint64_t before = default_generator().offset;
      Tensor a = scaled_dot_product_attention(q, k, k, Tensor(), true, -1.0, 0.0);
      CHECK(default_generator().offset == before);  // no counters reserved
      check_close(a, scaled_dot_product_attention(q, k, k, Tensor(), true), 0.0, "p = 0");
    }
  Tensor q = random_input({1, 1, 3, 8}, 1, DType::f32);
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, q, q, Tensor(), false, -1.0, 1.0), Catch::Contains("dropout_p"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, q, q, Tensor(), false, -1.0, -0.1), Catch::Contains("dropout_p"));
}

TEST_CASE("deterministic dQ: the flash backward is bit-identical across schedules and matches the reference",
          "[attention][flash][deterministic]") {
  for (const std::string& dev : petal::testing::test_devices()) {
    if (dev == "cpu") continue;  // the cpu kernels have no atomics (always deterministic)
    const Device d(dev);
    struct DetCase {
      Case c;
      bool causal;
      double p;
    };
    // Several 64-key blocks add into each dQ row; causal blocks skip leading query tiles.
    for (const DetCase& m : {DetCase{{1, 2, 70, 197, 64}, false, 0.0}, DetCase{{1, 1, 150, 150, 32}, true, 0.0},
                             DetCase{{1, 1, 65, 130, 128}, true, 0.25}})
      for (DType dt : {DType::bf16, DType::f16}) {
        const Case& c = m.c;
        INFO(case_str(c) << (m.causal ? " causal" : "") << " p " << m.p << " dtype " << dtype_name(dt) << " on "
                         << dev);
        Tensor q = random_input({c.B, c.H, c.Sq, c.Dh}, 901, dt, d), k = random_input({c.B, c.H, c.Skv, c.Dh}, 902, dt, d),
               v = random_input({c.B, c.H, c.Skv, c.Dh}, 903, dt, d), dout = random_input(q.shape(), 904, dt, d);
        const TensorOptions o(dt, d);
        Tensor out = empty(q.shape(), o), lse = empty({c.B, c.H, c.Sq}, TensorOptions(DType::f32, d));
        kernels::AttentionArgs a;
        a.dtype = dt;
        a.batch = c.B;
        a.heads = c.H;
        a.seq_q = c.Sq;
        a.seq_kv = c.Skv;
        a.head_dim = c.Dh;
        a.scale = 1.0 / std::sqrt(double(c.Dh));
        a.q = q.data_ptr();
        a.k = k.data_ptr();
        a.v = v.data_ptr();
        for (int i = 0; i < 3; ++i) {
          a.q_strides[i] = q.strides()[i];
          a.k_strides[i] = k.strides()[i];
          a.v_strides[i] = v.strides()[i];
        }
        a.causal = m.causal;
        a.dropout_p = m.p;
        a.dropout_seed = 17;
        a.out = out.data_ptr();
        a.lse = lse.data_ptr();
        a.deterministic = true;
        auto& backend = kernels::backend_for(d);
        backend.attention_forward(a);
        std::vector<Tensor> runs[2];
        for (int run = 0; run < 2; ++run) {
          if (dev == "sim" && &petal::sim::set_schedule_seed != nullptr) petal::sim::set_schedule_seed(run == 0 ? 3 : 11);
          Tensor dq = empty(q.shape(), o), dk = empty(k.shape(), o), dv = empty(v.shape(), o);
          for (Tensor* t : {&dq, &dk, &dv}) petal::testing::poison(*t);
          backend.attention_backward(a, dout.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr());
          runs[run] = {dq.to(kCPU), dk.to(kCPU), dv.to(kCPU)};
        }
        for (int i = 0; i < 3; ++i) {
          const Tensor &x = runs[0][i], &y = runs[1][i];
          CHECK(std::memcmp(x.data_ptr(), y.data_ptr(), static_cast<size_t>(x.numel()) * 2) == 0);
        }
        const std::vector<double> F = m.p > 0 ? dropout_factors(17, m.p, c.B * c.H, c.Sq, c.Skv) : std::vector<double>();
        const Reference ref = reference(q, k, v, dout, a.scale, F, m.causal, c.Skv);
        check_close(out, ref.out, out_tol(dt), "out");
        check_close(runs[0][0], ref.dq, grad_tol(dt), "dq");
        check_close(runs[0][1], ref.dk, grad_tol(dt), "dk");
        check_close(runs[0][2], ref.dv, grad_tol(dt), "dv");
      }
    if (dev == "sim" && &kernels::sim_impl::launched_kernel_names != nullptr)
      CHECK(sim_launched().count("flash_attention_backward_dq_reduce_kernel") == 1);
    // Through the op: use_deterministic_algorithms selects the same path.
    Tensor q = random_input({1, 2, 40, 32}, 911, DType::bf16, d).requires_grad_();
    Tensor k = random_input({1, 2, 100, 32}, 912, DType::bf16, d).requires_grad_();
    Tensor w = random_input({1, 2, 40, 32}, 913, DType::bf16, d);
    use_deterministic_algorithms(true);
    CHECK(are_deterministic_algorithms_enabled());
    Tensor o = scaled_dot_product_attention(q, k, k);
    use_deterministic_algorithms(false);  // the mode at the forward decides the backward
    sum(mul(o, w)).backward();
    Tensor dq_det = q.grad().to(kCPU, DType::f64);
    const Reference ref = reference(q, k, k, w, 1.0 / std::sqrt(32.0), {}, false, 100);
    check_close(dq_det, ref.dq, grad_tol(DType::bf16), "dq through the op");
  }
}
