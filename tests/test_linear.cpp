// fused_linear (act(x W^T + b), the op nn::Linear and the MLP's fc1 + GELU run on) against a
// float64 loop, forward and the dx/dweight/dbias of sum(y * dy), on every backend: dtypes,
// the three activations, with and without bias, odd sizes, leading dims, non-contiguous
// inputs, empty extents; the backend kernels called directly on poisoned outputs (aux holds
// the pre-activation); finite differences on cpu and on sim; and the cuBLASLt epilogue
// choice and its fallback (kernels/cuda/gemm_epilogue.h), which need no GPU. CPU cases run
// under both ISA variants of the epilogue row kernels (kernels/cpu/isa.h), and the bias
// gradient is checked to be bit-identical for 1 and 2 threads.
#include <cmath>
#include <cstring>

#include "kernels/backend.h"
#include "kernels/cuda/gemm_epilogue.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

namespace {

double gelu_ref(const std::string& act, double x) {
  if (act == "gelu") return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  const double c = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
}

double gelu_grad_ref(const std::string& act, double x) {
  if (act == "gelu") return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
  const double c = std::sqrt(2.0 / M_PI);
  const double t = std::tanh(c * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x);
}

struct LinearRef {
  Tensor y, pre, dx, dweight, dbias;
};

// y[r, j] = act(b[j] + sum_i x[r, i] w[j, i]) over x seen as [M, K], and the gradients of sum(y * dy).
LinearRef ref_linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Tensor& dy_in,
                     const std::string& act) {
  const int64_t N = w_in.size(0), K = w_in.size(1);
  int64_t M = 1;
  for (int64_t d = 0; d + 1 < x_in.dim(); ++d) M *= x_in.size(d);
  Tensor x = x_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor w = w_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor dy = dy_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor b = b_in.defined() ? b_in.detach().to(kCPU, DType::f64).contiguous() : Tensor();
  Shape y_shape = x_in.shape();
  y_shape.back() = N;
  LinearRef r;
  r.y = zeros(y_shape, DType::f64);
  r.pre = zeros(y_shape, DType::f64);
  r.dx = zeros(x_in.shape(), DType::f64);
  r.dweight = zeros({N, K}, DType::f64);
  r.dbias = zeros({N}, DType::f64);
  const double *px = x.data<double>(), *pw = w.data<double>(), *pdy = dy.data<double>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < N; ++j) {
      double acc = b.defined() ? b.data<double>()[j] : 0.0;
      for (int64_t i = 0; i < K; ++i) acc += px[m * K + i] * pw[j * K + i];
      const int64_t o = m * N + j;
      r.pre.data<double>()[o] = acc;
      r.y.data<double>()[o] = act == "none" ? acc : gelu_ref(act, acc);
      const double dpre = pdy[o] * (act == "none" ? 1.0 : gelu_grad_ref(act, acc));
      r.dbias.data<double>()[j] += dpre;
      for (int64_t i = 0; i < K; ++i) {
        r.dx.data<double>()[m * K + i] += dpre * pw[j * K + i];
        r.dweight.data<double>()[j * K + i] += dpre * px[m * K + i];
      }
    }
  return r;
}

}  // namespace

TEST_CASE("fused_linear matches a float64 loop, forward and backward", "[linear]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto isa = GENERATE(from_range(petal::testing::test_cpu_isas()));
  if (dev != "cpu" && isa != "baseline") return;  // the ISA variants are the cpu backend's
  petal::testing::ScopedCpuIsa guard(isa);
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16, DType::f16);
  auto act = GENERATE(std::string("none"), std::string("gelu"), std::string("gelu_tanh"));
  auto with_bias = GENERATE(true, false);
  struct Geometry {
    Shape x;
    int64_t N;
  };
  // n % 8 == 0 and not (the GELU_AUX epilogue's condition), K = 1, leading dims; on cpu also
  // rows with vector tails (37 = 2 * 16 + 5) over several bias-gradient row blocks (m = 150).
  std::vector<Geometry> cases = {{{5, 7}, 3}, {{1, 1}, 1}, {{33, 16}, 24}, {{2, 3, 9}, 16}, {{4, 1}, 5}};
  if (dev == "cpu") cases.push_back({{150, 6}, 37});
  uint64_t seed = 900;
  for (const auto& g : cases) {
    const Device d(dev);
    const int64_t K = g.x.back();
    Tensor x = random_input(g.x, seed++, dt, d);
    Tensor w = random_input({g.N, K}, seed++, dt, d);
    Tensor b = with_bias ? random_input({g.N}, seed++, dt, d) : Tensor();
    if (seed % 2 == 0) x = non_contiguous_copy(x);
    x.requires_grad_();
    w.requires_grad_();
    if (with_bias) b.requires_grad_();
    Shape y_shape = g.x;
    y_shape.back() = g.N;
    Tensor dy = random_input(y_shape, seed++, dt, d);
    INFO("x " << shape_str(x.shape()) << " weight " << shape_str(w.shape()) << " " << dtype_name(dt) << " " << act
              << " on " << dev << " (" << isa << ")" << (with_bias ? " with bias" : "")
              << (x.is_contiguous() ? "" : " non-contiguous x"));
    const LinearRef ref = ref_linear(x, w, b, dy, act);
    Tensor y = fused_linear(x, w, b, act);
    CHECK(y.shape() == y_shape);
    CHECK(y.dtype() == dt);
    check_close(y, ref.y, -1, "y");
    y.backward(dy);
    check_close(x.grad(), ref.dx, -1, "dx");
    check_close(w.grad(), ref.dweight, -1, "dweight");
    if (with_bias) check_close(b.grad(), ref.dbias, -1, "dbias");
  }
}

TEST_CASE("fused_linear with empty extents", "[linear]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto act = GENERATE(std::string("none"), std::string("gelu"));
  const Device d(dev);
  SECTION("k = 0: y = act(bias), dweight empty, dbias = sum dy * act'(bias)") {
    Tensor x = zeros({4, 0}, TensorOptions(DType::f32, d)).requires_grad_();
    Tensor w = zeros({3, 0}, TensorOptions(DType::f32, d)).requires_grad_();
    Tensor b = random_input({3}, 5, DType::f32, d).requires_grad_();
    Tensor dy = random_input({4, 3}, 6, DType::f32, d);
    const LinearRef ref = ref_linear(x, w, b, dy, act);
    Tensor y = fused_linear(x, w, b, act);
    check_close(y, ref.y, -1, "y");
    y.backward(dy);
    check_close(b.grad(), ref.dbias, -1, "dbias");
    CHECK(w.grad().numel() == 0);
  }
  SECTION("m = 0: empty output, zero dweight and dbias") {
    Tensor x = zeros({0, 5}, TensorOptions(DType::f32, d)).requires_grad_();
    Tensor w = random_input({3, 5}, 7, DType::f32, d).requires_grad_();
    Tensor b = random_input({3}, 8, DType::f32, d).requires_grad_();
    Tensor y = fused_linear(x, w, b, act);
    CHECK(y.shape() == (Shape{0, 3}));
    y.backward(zeros({0, 3}, TensorOptions(DType::f32, d)));
    check_close(w.grad(), zeros({3, 5}, DType::f64), 0.0, "dweight");
    check_close(b.grad(), zeros({3}, DType::f64), 0.0, "dbias");
  }
}

TEST_CASE("linear kernels write y and the pre-activation into poisoned outputs", "[linear]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto isa = GENERATE(from_range(petal::testing::test_cpu_isas()));
  if (dev != "cpu" && isa != "baseline") return;
  petal::testing::ScopedCpuIsa guard(isa);
  auto dt = GENERATE(DType::f32, DType::bf16);
  auto act = GENERATE(kernels::LinearActivation::GeluErf, kernels::LinearActivation::GeluTanh);
  const Device d(dev);
  const int64_t M = 9, K = 6, N = dev == "cpu" ? 21 : 16;
  Tensor x = random_input({M, K}, 21, dt, d), w = random_input({N, K}, 22, dt, d), b = random_input({N}, 23, dt, d);
  const std::string name = act == kernels::LinearActivation::GeluErf ? "gelu" : "gelu_tanh";
  const LinearRef ref = ref_linear(x, w, b, zeros({M, N}, DType::f64), name);
  Tensor y = empty({M, N}, TensorOptions(dt, d)), aux = empty({M, N}, TensorOptions(dt, d));
  petal::testing::poison(y);
  petal::testing::poison(aux);
  kernels::LinearArgs a;
  a.dtype = dt;
  a.m = M;
  a.n = N;
  a.k = K;
  a.x = x.data_ptr();
  a.w = w.data_ptr();
  a.bias = b.data_ptr();
  a.y = y.data_ptr();
  a.aux = aux.data_ptr();
  a.act = act;
  kernels::backend_for(d).linear_forward(a);
  check_close(y, ref.y, -1, "y");
  check_close(aux, ref.pre, -1, "aux (pre-activation)");
  // Backward with only dbias wanted (no dW GEMM to carry a BGRADB epilogue): the reduction.
  Tensor dy = random_input({M, N}, 24, dt, d);
  const LinearRef ref2 = ref_linear(x, w, b, dy, name);
  Tensor db = empty({N}, TensorOptions(dt, d));
  petal::testing::poison(db);
  kernels::backend_for(d).linear_backward(a, dy.data_ptr(), nullptr, nullptr, db.data_ptr());
  check_close(db, ref2.dbias, -1, "dbias alone");
}

TEST_CASE("cpu linear bias gradient: same bits for 1 and 2 threads, both ISAs, matches float64", "[linear]") {
  // The dGELU pass and the bias column sums run as one pass over row blocks fixed by m; the
  // blocks' double partials are added in block order, so the thread count cannot change them.
  auto isa = GENERATE(from_range(petal::testing::test_cpu_isas()));
  petal::testing::ScopedCpuIsa guard(isa);
  auto dt = GENERATE(DType::f32, DType::bf16);
  auto act = GENERATE(kernels::LinearActivation::None, kernels::LinearActivation::GeluErf,
                      kernels::LinearActivation::GeluTanh);
  const int64_t M = 1500, K = 3, N = 45;  // 24 row blocks of 64: parallel at 2 threads
  Tensor x = random_input({M, K}, 61, dt), w = random_input({N, K}, 62, dt), b = random_input({N}, 63, dt);
  Tensor dy = random_input({M, N}, 64, dt);
  const std::string name = act == kernels::LinearActivation::None
                               ? "none"
                               : (act == kernels::LinearActivation::GeluErf ? "gelu" : "gelu_tanh");
  const LinearRef ref = ref_linear(x, w, b, dy, name);
  Tensor y = empty({M, N}, TensorOptions(dt)), aux = empty({M, N}, TensorOptions(dt));
  kernels::LinearArgs a;
  a.dtype = dt;
  a.m = M;
  a.n = N;
  a.k = K;
  a.x = x.data_ptr();
  a.w = w.data_ptr();
  a.bias = b.data_ptr();
  a.y = y.data_ptr();
  a.aux = aux.data_ptr();
  a.act = act;
  kernels::backend_for(kCPU).linear_forward(a);
  INFO(dtype_name(dt) << " " << name << " (" << isa << ")");
  std::vector<Tensor> db;
  const int threads_before = get_num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    db.push_back(empty({N}, TensorOptions(dt)));
    petal::testing::poison(db.back());
    kernels::backend_for(kCPU).linear_backward(a, dy.data_ptr(), nullptr, nullptr, db.back().data_ptr());
  }
  set_num_threads(threads_before);
  check_close(db[0], ref.dbias, -1, "dbias");
  CHECK(std::memcmp(db[0].data_ptr(), db[1].data_ptr(), static_cast<size_t>(N) * dtype_size(dt)) == 0);
}

TEST_CASE("fused_linear gradients (finite differences) on cpu and sim", "[linear][grad]") {
  using V = std::vector<Tensor>;
  auto act = GENERATE(std::string("none"), std::string("gelu"), std::string("gelu_tanh"));
  std::vector<std::string> devices{"cpu"};
  if (sim::is_available()) devices.push_back("sim");
  for (const auto& dev : devices) {
    INFO(act << " on " << dev);
    const Device d(dev);
    CHECK(gradcheck(
        [&](const V& v) { return fused_linear(v[0].to(d), v[1].to(d), v[2].to(d), act).to(kCPU); },
        {random_input({3, 4}, 80), random_input({5, 4}, 81), random_input({5}, 82)}));
    CHECK(gradcheck([&](const V& v) { return fused_linear(v[0].to(d).transpose(0, 1), v[1].to(d), Tensor(), act).to(kCPU); },
                    {random_input({3, 2}, 83), random_input({2, 3}, 84)}));
  }
}

TEST_CASE("fused_linear errors name the op and shapes", "[linear]") {
  Tensor x = random_input({4, 6}, 1, DType::f32), w = random_input({3, 5}, 2, DType::f32);
  CHECK_THROWS_WITH(fused_linear(x, w, Tensor()),
                    Catch::Contains("linear") && Catch::Contains("[4, 6]") && Catch::Contains("[3, 5]"));
  Tensor w6 = random_input({3, 6}, 3, DType::f32);
  CHECK_THROWS_WITH(fused_linear(x, w6, random_input({4}, 4, DType::f32)),
                    Catch::Contains("linear") && Catch::Contains("bias") && Catch::Contains("[4]"));
  CHECK_THROWS_WITH(fused_linear(x, w6, Tensor(), "relu"), Catch::Contains("fused_linear") && Catch::Contains("relu"));
  CHECK_THROWS_WITH(fused_linear(x, random_input({3, 6}, 5, DType::f64), Tensor()),
                    Catch::Contains("linear") && Catch::Contains("dtype"));
}

TEST_CASE("cuBLASLt epilogue choice and fallback for the fused linear (no GPU needed)", "[linear]") {
  using kernels::GemmEpilogue;
  using kernels::LinearActivation;
  alignas(16) static unsigned char buffer[64];
  kernels::LinearArgs a;
  a.dtype = DType::bf16;
  a.m = 50432;
  a.n = 3072;
  a.k = 768;
  a.bias = buffer;
  a.aux = buffer + 16;
  auto plan = [&](LinearActivation act, bool lt = true) {
    a.act = act;
    return kernels::linear_forward_plan(a, lt);
  };
  SECTION("Linear with bias: the BIAS epilogue, nothing after the GEMM") {
    const auto p = plan(LinearActivation::None);
    CHECK(p.epilogue == GemmEpilogue::Bias);
    CHECK_FALSE(p.gemm_into_aux);
    CHECK_FALSE(p.kernel());
  }
  SECTION("Linear without bias: a plain GEMM") {
    a.bias = nullptr;
    const auto p = plan(LinearActivation::None);
    CHECK(p.epilogue == GemmEpilogue::None);
    CHECK_FALSE(p.kernel());
  }
  SECTION("tanh GELU: GELU_AUX_BIAS (GELU_AUX without bias), nothing after") {
    auto p = plan(LinearActivation::GeluTanh);
    CHECK(p.epilogue == GemmEpilogue::GeluAuxBias);
    CHECK_FALSE(p.kernel());
    a.bias = nullptr;
    p = plan(LinearActivation::GeluTanh);
    CHECK(p.epilogue == GemmEpilogue::GeluAux);
    CHECK_FALSE(p.kernel());
  }
  SECTION("erf GELU: cuBLASLt's GELU is the tanh form, so BIAS into aux and petal's GELU kernel") {
    auto p = plan(LinearActivation::GeluErf);
    CHECK(p.epilogue == GemmEpilogue::Bias);
    CHECK(p.gemm_into_aux);
    CHECK(p.kernel_applies_act);
    CHECK_FALSE(p.kernel_adds_bias);
    a.bias = nullptr;
    p = plan(LinearActivation::GeluErf);
    CHECK(p.epilogue == GemmEpilogue::None);
    CHECK(p.gemm_into_aux);
    CHECK(p.kernel_applies_act);
  }
  SECTION("no epilogue where cuBLASLt cannot take one: the fallback (plain GEMM, then the kernel)") {
    const auto check_fallback = [&](const kernels::LinearForwardPlan& p, LinearActivation act) {
      CHECK(p.epilogue == GemmEpilogue::None);
      CHECK(p.gemm_into_aux == (act != LinearActivation::None));
      CHECK(p.kernel_applies_act == (act != LinearActivation::None));
      CHECK(p.kernel_adds_bias == (a.bias != nullptr));
    };
    for (auto act : {LinearActivation::None, LinearActivation::GeluErf, LinearActivation::GeluTanh}) {
      INFO("activation " << int(act));
      check_fallback(plan(act, false), act);  // the simulator (no cuBLASLt)
      a.dtype = DType::f64;                   // cuBLAS only
      check_fallback(plan(act), act);
      a.dtype = DType::bf16;
      a.bias = buffer + 2;  // a misaligned bias vector
      check_fallback(plan(act), act);
      a.bias = buffer;
    }
    a.n = 3070;  // aux leading dimension not a multiple of 8
    check_fallback(plan(LinearActivation::GeluTanh), LinearActivation::GeluTanh);
    a.n = 3072;
    a.aux = buffer + 8;  // misaligned aux
    check_fallback(plan(LinearActivation::GeluTanh), LinearActivation::GeluTanh);
    // The fallback runs when cuBLASLt reports no algorithm for the epilogue (rt_gemm_epilogue false).
    a.aux = buffer + 16;
    for (auto act : {LinearActivation::None, LinearActivation::GeluErf, LinearActivation::GeluTanh}) {
      a.act = act;
      check_fallback(kernels::linear_forward_fallback(a), act);
    }
  }
  SECTION("backward: BGRADB on the dW GEMM when there is one, else the column reduction") {
    void* db = buffer + 32;
    a.act = LinearActivation::None;
    auto p = kernels::linear_backward_plan(a, true, true, db);
    CHECK(p.dw_bgradb);
    CHECK_FALSE(p.reduce_bias);
    CHECK_FALSE(p.act_kernel);
    a.act = LinearActivation::GeluErf;
    p = kernels::linear_backward_plan(a, true, true, db);
    CHECK(p.dw_bgradb);
    CHECK(p.act_kernel);
    p = kernels::linear_backward_plan(a, true, false, db);  // frozen weight: no dW GEMM
    CHECK_FALSE(p.dw_bgradb);
    CHECK(p.reduce_bias);
    p = kernels::linear_backward_plan(a, false, true, db);  // simulator
    CHECK_FALSE(p.dw_bgradb);
    CHECK(p.reduce_bias);
    a.dtype = DType::f64;
    p = kernels::linear_backward_plan(a, true, true, db);
    CHECK_FALSE(p.dw_bgradb);
    CHECK(p.reduce_bias);
    a.dtype = DType::f32;
    p = kernels::linear_backward_plan(a, true, true, nullptr);  // no bias
    CHECK_FALSE(p.dw_bgradb);
    CHECK_FALSE(p.reduce_bias);
    p = kernels::linear_backward_plan(a, true, true, buffer + 4);  // misaligned bias gradient
    CHECK_FALSE(p.dw_bgradb);
    CHECK(p.reduce_bias);
  }
}

TEST_CASE("cuda: fused_linear through the cuBLASLt epilogues matches float64", "[cuda]") {
  SKIP_CUDA_IF_UNAVAILABLE();
  // Aligned, n % 8 == 0: BIAS, GELU_AUX_BIAS and (erf) BIAS + GELU kernel forward, BGRADB backward
  // (or their fallbacks where cuBLASLt has no algorithm: the results must agree either way).
  const Device d("cuda");
  uint64_t seed = 1200;
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (const std::string act : {"none", "gelu", "gelu_tanh"})
      for (bool with_bias : {true, false}) {
        INFO(dtype_name(dt) << " " << act << (with_bias ? " with bias" : ""));
        Tensor x = random_input({2, 32, 256}, seed++, dt, d).requires_grad_();
        Tensor w = random_input({512, 256}, seed++, dt, d).requires_grad_();
        Tensor b = with_bias ? random_input({512}, seed++, dt, d).requires_grad_() : Tensor();
        Tensor dy = random_input({2, 32, 512}, seed++, dt, d);
        const LinearRef ref = ref_linear(x, w, b, dy, act);
        Tensor y = fused_linear(x, w, b, act);
        check_close(y, ref.y, -1, "y");
        y.backward(dy);
        check_close(x.grad(), ref.dx, -1, "dx");
        check_close(w.grad(), ref.dweight, -1, "dweight");
        if (with_bias) check_close(b.grad(), ref.dbias, -1, "dbias");
      }
}
