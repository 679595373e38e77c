// fused_mlp (fc2(act(fc1(x))), the op nn's FFN runs on when no dropout sits between) against a
// float64 loop composed from fc1, GELU and fc2, forward and the dx/dW1/db1/dW2/db2 of
// sum(y * dy), on every backend (f32, bf16, f16, f64; odd sizes, leading dims, non-contiguous
// input, with and without biases); equal to two fused_linear calls; empty extents; finite
// differences in f64 on cpu and sim; errors; and the cuda backward's DGELU_BGRAD plan and its
// fallbacks without a GPU: the plan itself (kernels/cuda/gemm_epilogue.h), and kernels/cuda/
// mlp.cu on the simulator with its cuBLASLt stand-in emulating the epilogue, or declining it
// as cuBLASLt does when it has no algorithm.
#include <cmath>

#include "kernels/backend.h"
#include "kernels/cuda/gemm_epilogue.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

// Defined only when petal is built with the simulator (kernels/sim/sim.h, same declarations).
namespace petal::sim {
enum class LtEpilogues { Off, Emulate, Decline };
void set_lt_epilogues(LtEpilogues mode) __attribute__((weak));
LtEpilogues lt_epilogues() __attribute__((weak));
uint64_t lt_epilogues_emulated() __attribute__((weak));
}  // namespace petal::sim

namespace {

double act_ref(const std::string& act, double x) {
  if (act == "none") return x;
  if (act == "gelu") return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  const double c = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
}

double act_grad_ref(const std::string& act, double x) {
  if (act == "none") return 1.0;
  if (act == "gelu") return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
  const double c = std::sqrt(2.0 / M_PI);
  const double t = std::tanh(c * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x);
}

struct MlpRef {
  Tensor y, dx, dw1, db1, dw2, db2;
};

Tensor f64_cpu(const Tensor& t) { return t.defined() ? t.detach().to(kCPU, DType::f64).contiguous() : Tensor(); }

// pre = x W1^T + b1, hidden = act(pre), y = hidden W2^T + b2 over x seen as [M, K]; and the
// gradients of sum(y * dy): dhidden = dy W2, dpre = dhidden * act'(pre), dx = dpre W1,
// dW1 = dpre^T x, db1 = sum dpre, dW2 = dy^T hidden, db2 = sum dy.
MlpRef ref_mlp(const Tensor& x_in, const Tensor& w1_in, const Tensor& b1_in, const Tensor& w2_in, const Tensor& b2_in,
               const Tensor& dy_in, const std::string& act) {
  const int64_t H = w1_in.size(0), K = w1_in.size(1), N = w2_in.size(0);
  int64_t M = 1;
  for (int64_t d = 0; d + 1 < x_in.dim(); ++d) M *= x_in.size(d);
  const Tensor x = f64_cpu(x_in), w1 = f64_cpu(w1_in), w2 = f64_cpu(w2_in), dy = f64_cpu(dy_in);
  const Tensor b1 = f64_cpu(b1_in), b2 = f64_cpu(b2_in);
  const double *px = x.data<double>(), *pw1 = w1.data<double>(), *pw2 = w2.data<double>(), *pdy = dy.data<double>();
  Shape y_shape = x_in.shape();
  y_shape.back() = N;
  MlpRef r;
  r.y = zeros(y_shape, DType::f64);
  r.dx = zeros(x_in.shape(), DType::f64);
  r.dw1 = zeros({H, K}, DType::f64);
  r.db1 = zeros({H}, DType::f64);
  r.dw2 = zeros({N, H}, DType::f64);
  r.db2 = zeros({N}, DType::f64);
  double *py = r.y.data<double>(), *pdx = r.dx.data<double>(), *pdw1 = r.dw1.data<double>();
  double *pdb1 = r.db1.data<double>(), *pdw2 = r.dw2.data<double>(), *pdb2 = r.db2.data<double>();
  std::vector<double> pre(static_cast<size_t>(H)), hidden(static_cast<size_t>(H));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t j = 0; j < H; ++j) {
      double acc = b1.defined() ? b1.data<double>()[j] : 0.0;
      for (int64_t i = 0; i < K; ++i) acc += px[m * K + i] * pw1[j * K + i];
      pre[j] = acc;
      hidden[j] = act_ref(act, acc);
    }
    for (int64_t o = 0; o < N; ++o) {
      double acc = b2.defined() ? b2.data<double>()[o] : 0.0;
      for (int64_t j = 0; j < H; ++j) acc += hidden[j] * pw2[o * H + j];
      py[m * N + o] = acc;
      const double g = pdy[m * N + o];
      pdb2[o] += g;
      for (int64_t j = 0; j < H; ++j) pdw2[o * H + j] += g * hidden[j];
    }
    for (int64_t j = 0; j < H; ++j) {
      double dh = 0.0;
      for (int64_t o = 0; o < N; ++o) dh += pdy[m * N + o] * pw2[o * H + j];
      const double dpre = dh * act_grad_ref(act, pre[j]);
      pdb1[j] += dpre;
      for (int64_t i = 0; i < K; ++i) {
        pdx[m * K + i] += dpre * pw1[j * K + i];
        pdw1[j * K + i] += dpre * px[m * K + i];
      }
    }
  }
  return r;
}

struct Geometry {
  Shape x;
  int64_t H, N;
};

// Runs fused_mlp forward and backward and checks every output against ref_mlp. The two GEMMs
// round the hidden activation to the dtype between them: tolerance twice the dtype's.
void check_mlp(const Device& d, DType dt, const std::string& act, bool with_bias, const Geometry& g, uint64_t seed,
               bool non_contiguous) {
  const int64_t K = g.x.back();
  Tensor x = random_input(g.x, seed++, dt, d);
  Tensor w1 = random_input({g.H, K}, seed++, dt, d), w2 = random_input({g.N, g.H}, seed++, dt, d);
  Tensor b1 = with_bias ? random_input({g.H}, seed++, dt, d) : Tensor();
  Tensor b2 = with_bias ? random_input({g.N}, seed++, dt, d) : Tensor();
  if (non_contiguous) x = non_contiguous_copy(x);
  for (Tensor* t : {&x, &w1, &w2, &b1, &b2})
    if (t->defined()) t->requires_grad_();
  Shape y_shape = g.x;
  y_shape.back() = g.N;
  Tensor dy = random_input(y_shape, seed++, dt, d);
  INFO("x " << shape_str(x.shape()) << " hidden " << g.H << " out " << g.N << " " << dtype_name(dt) << " " << act
            << " on " << d.str() << (with_bias ? " with biases" : "") << (x.is_contiguous() ? "" : " non-contiguous x"));
  const MlpRef ref = ref_mlp(x, w1, b1, w2, b2, dy, act);
  Tensor y = fused_mlp(x, w1, b1, w2, b2, act);
  CHECK(y.shape() == y_shape);
  CHECK(y.dtype() == dt);
  const double tol = 2 * petal::testing::tolerance_for(dt);
  check_close(y, ref.y, tol, "y");
  y.backward(dy);
  check_close(x.grad(), ref.dx, tol, "dx");
  check_close(w1.grad(), ref.dw1, tol, "dW1");
  check_close(w2.grad(), ref.dw2, tol, "dW2");
  if (with_bias) {
    check_close(b1.grad(), ref.db1, tol, "db1");
    check_close(b2.grad(), ref.db2, tol, "db2");
  }
}

// Odd sizes, K = 1, leading dims, hidden % 8 == 0 (the DGELU aux condition) and not.
const std::vector<Geometry> kGeometries = {{{5, 7}, 9, 3}, {{1, 1}, 1, 1}, {{2, 3, 8}, 16, 8}, {{4, 5}, 24, 6}};

/// Sets the simulator's cuBLASLt stand-in for its scope (kernels/sim/sim.h).
class ScopedLtEpilogues {
 public:
  explicit ScopedLtEpilogues(sim::LtEpilogues mode) : previous_(sim::lt_epilogues()) { sim::set_lt_epilogues(mode); }
  ~ScopedLtEpilogues() { sim::set_lt_epilogues(previous_); }

 private:
  sim::LtEpilogues previous_;
};

bool sim_hook_available() { return sim::is_available() && &sim::set_lt_epilogues != nullptr; }

}  // namespace

TEST_CASE("fused_mlp matches a float64 fc1 -> GELU -> fc2, forward and backward", "[mlp]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::bf16, DType::f64, DType::f16);
  auto act = GENERATE(std::string("gelu"), std::string("gelu_tanh"), std::string("none"));
  auto with_bias = GENERATE(true, false);
  const Device d(dev);
  const std::vector<std::string> isas = dev == "cpu" ? petal::testing::test_cpu_isas() : std::vector<std::string>{""};
  for (const auto& isa : isas) {
    std::unique_ptr<petal::testing::ScopedCpuIsa> guard;
    if (!isa.empty()) guard = std::make_unique<petal::testing::ScopedCpuIsa>(isa);
    INFO("cpu isa " << isa);
    uint64_t seed = 3100;
    for (const auto& g : kGeometries) {
      check_mlp(d, dt, act, with_bias, g, seed, seed % 3 == 0);
      seed += 10;
    }
  }
}

TEST_CASE("fused_mlp equals two fused_linear calls (cpu and the simulator)", "[mlp]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  if (dev == "cuda") return;  // on cuda the backward's epilogue rounds differently (the [cuda] case below)
  auto dt = GENERATE(DType::f32, DType::bf16);
  auto act = GENERATE(std::string("gelu"), std::string("gelu_tanh"));
  const Device d(dev);
  Tensor x = random_input({3, 5, 6}, 41, dt, d);
  Tensor w1 = random_input({16, 6}, 42, dt, d), b1 = random_input({16}, 43, dt, d);
  Tensor w2 = random_input({7, 16}, 44, dt, d), b2 = random_input({7}, 45, dt, d);
  Tensor dy = random_input({3, 5, 7}, 46, dt, d);
  std::vector<Tensor> fused = {x.detach(), w1.detach(), b1.detach(), w2.detach(), b2.detach()};
  std::vector<Tensor> split = {x.detach(), w1.detach(), b1.detach(), w2.detach(), b2.detach()};
  for (auto* v : {&fused, &split})
    for (auto& t : *v) t.requires_grad_();
  Tensor y = fused_mlp(fused[0], fused[1], fused[2], fused[3], fused[4], act);
  Tensor y2 = fused_linear(fused_linear(split[0], split[1], split[2], act), split[3], split[4]);
  check_close(y, y2.to(DType::f64), 0.0, "y");
  y.backward(dy);
  y2.backward(dy);
  const char* names[] = {"dx", "dW1", "db1", "dW2", "db2"};
  for (size_t i = 0; i < fused.size(); ++i) check_close(fused[i].grad(), split[i].grad().to(DType::f64), 0.0, names[i]);
}

TEST_CASE("fused_mlp with empty extents", "[mlp]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  const TensorOptions f32(DType::f32, d);
  SECTION("m = 0: empty output, zero weight and bias gradients") {
    Tensor x = zeros({0, 5}, f32).requires_grad_();
    Tensor w1 = random_input({8, 5}, 1, DType::f32, d).requires_grad_(), b1 = random_input({8}, 2, DType::f32, d);
    Tensor w2 = random_input({3, 8}, 3, DType::f32, d).requires_grad_(), b2 = random_input({3}, 4, DType::f32, d);
    b1.requires_grad_();
    b2.requires_grad_();
    Tensor y = fused_mlp(x, w1, b1, w2, b2, "gelu_tanh");
    CHECK(y.shape() == (Shape{0, 3}));
    y.backward(zeros({0, 3}, f32));
    check_close(w1.grad(), zeros({8, 5}, DType::f64), 0.0, "dW1");
    check_close(b1.grad(), zeros({8}, DType::f64), 0.0, "db1");
    check_close(w2.grad(), zeros({3, 8}, DType::f64), 0.0, "dW2");
    check_close(b2.grad(), zeros({3}, DType::f64), 0.0, "db2");
  }
  SECTION("k = 0: hidden = gelu(b1)") {
    Tensor x = zeros({4, 0}, f32).requires_grad_();
    Tensor w1 = zeros({8, 0}, f32).requires_grad_(), b1 = random_input({8}, 5, DType::f32, d).requires_grad_();
    Tensor w2 = random_input({3, 8}, 6, DType::f32, d).requires_grad_(), b2 = random_input({3}, 7, DType::f32, d);
    b2.requires_grad_();
    Tensor dy = random_input({4, 3}, 8, DType::f32, d);
    const MlpRef ref = ref_mlp(x, w1, b1, w2, b2, dy, "gelu");
    Tensor y = fused_mlp(x, w1, b1, w2, b2, "gelu");
    check_close(y, ref.y, -1, "y");
    y.backward(dy);
    check_close(b1.grad(), ref.db1, -1, "db1");
    check_close(w2.grad(), ref.dw2, -1, "dW2");
    check_close(b2.grad(), ref.db2, -1, "db2");
  }
}

TEST_CASE("fused_mlp gradients (finite differences) on cpu and sim", "[mlp][grad]") {
  using V = std::vector<Tensor>;
  auto act = GENERATE(std::string("gelu"), std::string("gelu_tanh"), std::string("none"));
  std::vector<std::string> devices{"cpu"};
  if (sim::is_available()) devices.push_back("sim");
  for (const auto& dev : devices) {
    INFO(act << " on " << dev);
    const Device d(dev);
    CHECK(gradcheck(
        [&](const V& v) { return fused_mlp(v[0].to(d), v[1].to(d), v[2].to(d), v[3].to(d), v[4].to(d), act).to(kCPU); },
        {random_input({3, 4}, 90), random_input({5, 4}, 91), random_input({5}, 92), random_input({2, 5}, 93),
         random_input({2}, 94)}));
    CHECK(gradcheck(
        [&](const V& v) {
          return fused_mlp(v[0].to(d).transpose(0, 1), v[1].to(d), Tensor(), v[2].to(d), Tensor(), act).to(kCPU);
        },
        {random_input({3, 2}, 95), random_input({4, 3}, 96), random_input({3, 4}, 97)}));
  }
}

TEST_CASE("fused_mlp errors name the op, the operand and the shapes", "[mlp]") {
  Tensor x = random_input({4, 6}, 1, DType::f32);
  Tensor w1 = random_input({8, 6}, 2, DType::f32), w2 = random_input({3, 8}, 3, DType::f32);
  CHECK_THROWS_WITH(fused_mlp(x, random_input({8, 5}, 4, DType::f32), Tensor(), w2, Tensor()),
                    Catch::Contains("fused_mlp") && Catch::Contains("[4, 6]") && Catch::Contains("[8, 5]"));
  CHECK_THROWS_WITH(fused_mlp(x, w1, Tensor(), random_input({3, 7}, 5, DType::f32), Tensor()),
                    Catch::Contains("fused_mlp") && Catch::Contains("fc2 weight") && Catch::Contains("[3, 7]"));
  CHECK_THROWS_WITH(fused_mlp(x, w1, random_input({7}, 6, DType::f32), w2, Tensor()),
                    Catch::Contains("fc1 bias") && Catch::Contains("[7]"));
  CHECK_THROWS_WITH(fused_mlp(x, w1, Tensor(), w2, random_input({8}, 7, DType::f32)),
                    Catch::Contains("fc2 bias") && Catch::Contains("[8]"));
  CHECK_THROWS_WITH(fused_mlp(x, w1, Tensor(), w2, Tensor(), "relu"),
                    Catch::Contains("fused_mlp") && Catch::Contains("relu"));
  CHECK_THROWS_WITH(fused_mlp(x, w1, Tensor(), random_input({3, 8}, 8, DType::f64), Tensor()),
                    Catch::Contains("fc2 weight") && Catch::Contains("dtype"));
  CHECK_THROWS_WITH(fused_mlp(x, random_input({8, 6, 1}, 9, DType::f32), Tensor(), w2, Tensor()),
                    Catch::Contains("fc1 weight") && Catch::Contains("[8, 6, 1]"));
}

TEST_CASE("cuBLASLt DGELU_BGRAD plan of the fused MLP backward and its fallbacks (no GPU needed)", "[mlp]") {
  using kernels::GemmEpilogue;
  using kernels::LinearActivation;
  alignas(16) static unsigned char buffer[64];
  kernels::MlpArgs a;
  a.dtype = DType::bf16;
  a.m = 50432;
  a.k = 768;
  a.h = 3072;
  a.n = 768;
  a.aux = buffer;
  a.act = LinearActivation::GeluTanh;
  void* db1 = buffer + 32;
  SECTION("tanh GELU, aligned, h % 8 == 0: DGELU_BGRAD (DGELU without fc1 bias)") {
    CHECK(kernels::mlp_backward_plan(a, true, db1).dhidden_epilogue == GemmEpilogue::DGeluBGrad);
    CHECK(kernels::mlp_backward_plan(a, true, nullptr).dhidden_epilogue == GemmEpilogue::DGelu);
    a.dtype = DType::f32;
    CHECK(kernels::mlp_backward_plan(a, true, db1).dhidden_epilogue == GemmEpilogue::DGeluBGrad);
    a.dtype = DType::f16;
    CHECK(kernels::mlp_backward_plan(a, true, db1).dhidden_epilogue == GemmEpilogue::DGeluBGrad);
  }
  SECTION("everything cuBLASLt cannot take falls back to the composed fused Linears") {
    const auto composed = [&](const void* bias_grad) {
      return kernels::mlp_backward_plan(a, true, bias_grad).dhidden_epilogue == GemmEpilogue::None;
    };
    CHECK(kernels::mlp_backward_plan(a, false, db1).dhidden_epilogue == GemmEpilogue::None);  // the simulator
    a.act = LinearActivation::GeluErf;  // cuBLASLt's GELU is the tanh form
    CHECK(composed(db1));
    a.act = LinearActivation::None;  // no activation gradient to fuse
    CHECK(composed(db1));
    a.act = LinearActivation::GeluTanh;
    a.dtype = DType::f64;  // cuBLAS only
    CHECK(composed(db1));
    a.dtype = DType::bf16;
    CHECK(composed(buffer + 34));  // misaligned bias gradient
    a.h = 3070;                    // aux leading dimension not a multiple of 8
    CHECK(composed(db1));
    a.h = 3072;
    a.aux = buffer + 8;  // misaligned aux
    CHECK(composed(db1));
    a.aux = nullptr;
    CHECK(composed(db1));
    a.aux = buffer;
    CHECK_FALSE(composed(db1));  // and back to the epilogue
  }
  SECTION("the epilogues' bias and aux operands (runtime.cpp sets pointers and types from these)") {
    CHECK(kernels::epilogue_uses_bias(GemmEpilogue::DGeluBGrad));
    CHECK(kernels::epilogue_uses_aux(GemmEpilogue::DGeluBGrad));
    CHECK_FALSE(kernels::epilogue_uses_bias(GemmEpilogue::DGelu));
    CHECK(kernels::epilogue_uses_aux(GemmEpilogue::DGelu));
    CHECK(kernels::epilogue_uses_bias(GemmEpilogue::BGradB));
    CHECK_FALSE(kernels::epilogue_uses_aux(GemmEpilogue::BGradB));
    CHECK(kernels::epilogue_uses_bias(GemmEpilogue::GeluAuxBias));
    CHECK(kernels::epilogue_uses_aux(GemmEpilogue::GeluAuxBias));
    CHECK_FALSE(kernels::epilogue_uses_bias(GemmEpilogue::GeluAux));
    CHECK(kernels::epilogue_uses_bias(GemmEpilogue::Bias));
    CHECK_FALSE(kernels::epilogue_uses_aux(GemmEpilogue::Bias));
    CHECK_FALSE(kernels::epilogue_uses_bias(GemmEpilogue::None));
    CHECK_FALSE(kernels::epilogue_uses_aux(GemmEpilogue::None));
    CHECK(std::string(kernels::gemm_epilogue_name(GemmEpilogue::DGeluBGrad)) == "dgelu_bgrad");
  }
}

TEST_CASE("the cuda MLP backward's epilogue path and its runtime fallback, on the simulator", "[mlp]") {
  if (!sim_hook_available()) {
    WARN("no simulator in this build");
    return;
  }
  // Emulate: mlp.cu plans DGELU(_BGRAD) as on a GPU and the stand-in computes it (the
  // orchestration: which GEMM, operands, leading dimensions, what fc1's backward still does).
  // Decline: planned, then refused as when cuBLASLt has no algorithm (plain GEMM + fc1's
  // linear_backward). Either way the results match the float64 reference.
  auto mode = GENERATE(sim::LtEpilogues::Emulate, sim::LtEpilogues::Decline);
  auto dt = GENERATE(DType::f32, DType::bf16);
  auto with_bias = GENERATE(true, false);
  const Device d("sim");
  ScopedLtEpilogues hook(mode);
  const bool emulate = mode == sim::LtEpilogues::Emulate;
  INFO((emulate ? "emulated epilogue" : "declined epilogue"));
  uint64_t seed = 5100;
  for (const Geometry& g : {Geometry{{2, 3, 8}, 16, 8}, Geometry{{5, 7}, 24, 3}}) {
    const uint64_t before = sim::lt_epilogues_emulated();
    check_mlp(d, dt, "gelu_tanh", with_bias, g, seed, seed % 20 == 0);
    CHECK(sim::lt_epilogues_emulated() - before == (emulate ? 1u : 0u));
    seed += 10;
  }
  // What the plan declines never reaches the epilogue: erf GELU, f64, h % 8 != 0.
  const uint64_t before = sim::lt_epilogues_emulated();
  check_mlp(d, dt, "gelu", with_bias, {{5, 7}, 16, 3}, seed, false);
  check_mlp(d, DType::f64, "gelu_tanh", with_bias, {{5, 7}, 16, 3}, seed + 10, false);
  check_mlp(d, dt, "gelu_tanh", with_bias, {{5, 7}, 12, 3}, seed + 20, false);
  CHECK(sim::lt_epilogues_emulated() == before);
}

TEST_CASE("cuda: fused_mlp through cuBLASLt's DGELU_BGRAD matches float64", "[cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  // Aligned, hidden % 8 == 0: forward GELU_AUX_BIAS (tanh) / BIAS + GELU kernel (erf) and BIAS;
  // backward BGRADB on dW2, DGELU_BGRAD (tanh; DGELU without biases) on dhidden, or the
  // composition (erf, or where cuBLASLt has no algorithm): the results must agree either way.
  const Device d("cuda");
  uint64_t seed = 7100;
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (const std::string act : {"gelu_tanh", "gelu"})
      for (bool with_bias : {true, false}) {
        check_mlp(d, dt, act, with_bias, {{2, 32, 256}, 1024, 256}, seed, false);
        seed += 10;
      }
  check_mlp(d, DType::bf16, "gelu_tanh", true, {{3, 7, 40}, 72, 24}, seed, true);  // odd m, small
}
