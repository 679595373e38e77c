// autocast (core/include/petal/autocast.h): the table's dtype decisions at the op layer,
// results and gradients against float64 references of the same math on the values the
// low-precision kernels saw (every device), the parameter cast cache (one cast per
// parameter, reused across forwards and backwards, dropped on in-place writes and at the
// guard's exit), f32 master weights (a thousand updates below a bf16 ulp move the bf16
// cast as in f32), and f16 with the GradScaler (underflowing gradients recovered, inf/NaN
// steps skipped, growth and backoff).
#include <cmath>
#include <vector>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::random_input;

namespace {

// t rounded to dtype and back to f64 on the CPU (what a kernel of that dtype reads).
Tensor rounded(const Tensor& t, DType dtype) { return t.detach().to(dtype).to(kCPU, DType::f64); }

Tensor param_on(const Shape& shape, uint64_t seed, Device d, double scale = 1.0) {
  Tensor p = mul(random_input(shape, seed, DType::f64), scale).to(d, DType::f32);
  p.requires_grad_();
  return p;
}

}  // namespace

TEST_CASE("autocast's table decides the compute dtype of each op", "[autocast]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  const TensorOptions f32(DType::f32, d);
  Tensor a = randn({4, 6}, f32), b = randn({6, 5}, f32), h = randn({4, 6}, f32).to(DType::bf16);
  Tensor w = ones({6}, f32), bias = zeros({6}, f32);
  Tensor target = tensor(std::vector<int64_t>{0, 1, 2, 3}, {4}).to(d);
  CHECK(matmul(a, b).dtype() == DType::f32);  // no guard: nothing changes
  CHECK_FALSE(is_autocast_enabled(d.type));
  {
    autocast ac(d, DType::bf16);
    CHECK(is_autocast_enabled(d.type));
    CHECK(get_autocast_dtype(d.type) == DType::bf16);
    CHECK(matmul(a, b).dtype() == DType::bf16);
    CHECK(nn::functional::linear(a, b.t(), Tensor()).dtype() == DType::bf16);
    // f32 math and parameters, output in the autocast dtype (for the Linear after it), from
    // a bf16 or an f32 input.
    CHECK(layer_norm(h, w, bias).dtype() == DType::bf16);
    CHECK(layer_norm(a, w, bias).dtype() == DType::bf16);
    CHECK(softmax(h, -1).dtype() == DType::f32);
    CHECK(log_softmax(h, 0).dtype() == DType::f32);
    CHECK(cross_entropy(h.narrow(1, 0, 5), target).dtype() == DType::f32);
    CHECK(sum(h).dtype() == DType::f32);
    CHECK(mean(h, {1}).dtype() == DType::f32);
    CHECK(var(h, {1}).dtype() == DType::f32);
    CHECK(relu(h).dtype() == DType::bf16);                                   // not in the table
    CHECK(matmul(a.to(DType::f64), b.to(DType::f64)).dtype() == DType::f64);  // f64 never cast
    {
      autocast off(d, DType::bf16, false);
      CHECK(matmul(a, b).dtype() == DType::f32);
    }
    CHECK(matmul(a, b).dtype() == DType::bf16);
    {
      autocast half(d, DType::f16);
      CHECK(matmul(a, b).dtype() == DType::f16);
      CHECK(matmul(h, h.t()).dtype() == DType::f16);  // the other 16-bit type is cast too
    }
  }
  CHECK_FALSE(is_autocast_enabled(d.type));
  CHECK(matmul(a, b).dtype() == DType::f32);
  // A guard for another device type leaves this device's ops alone.
  {
    autocast other(d.is_cpu() ? Device("sim") : kCPU, DType::bf16);
    CHECK(matmul(a, b).dtype() == DType::f32);
  }
  CHECK_THROWS_WITH(autocast(d, DType::f32), Catch::Contains("bfloat16 or float16"));
  CHECK(autocast_policy("matmul") == CastPolicy::LowerPrecision);
  CHECK(autocast_policy("scaled_dot_product_attention") == CastPolicy::LowerPrecision);
  CHECK(autocast_policy("patch_embed") == CastPolicy::LowerPrecision);
  CHECK(autocast_policy("layer_norm") == CastPolicy::Float32);
  CHECK(autocast_policy("gelu") == CastPolicy::None);
}

TEST_CASE("autocast GEMM-like ops match float64 on the rounded inputs, gradients arrive in f32", "[autocast]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto low = GENERATE(DType::bf16, DType::f16);
  Device d(dev);
  INFO("device " << dev << " dtype " << dtype_name(low));
  const double tol = low == DType::bf16 ? 2e-2 : 3e-3;

  SECTION("linear: x W^T + b") {
    Tensor x = param_on({7, 33}, 1, d), weight = param_on({5, 33}, 2, d, 0.2), bias = param_on({5}, 3, d);
    Tensor gy = random_input({7, 5}, 4, DType::f64);
    Tensor y;
    {
      autocast ac(d, low);
      y = nn::functional::linear(x, weight, bias);
    }
    CHECK(y.dtype() == low);
    y.backward(gy.to(d, low));
    for (const Tensor* p : {&x, &weight, &bias}) {
      REQUIRE(p->grad().defined());
      CHECK(p->grad().dtype() == DType::f32);
    }
    // float64 reference on the values the low-precision GEMM read.
    Tensor xr = rounded(x, low), wr = rounded(weight, low), br = rounded(bias, low), gr = rounded(gy, low);
    check_close(y, add(matmul(xr, wr.t()), br), tol, "y");
    check_close(x.grad(), matmul(gr, wr), tol, "dx");
    check_close(weight.grad(), matmul(gr.t(), xr), tol, "dweight");
    check_close(bias.grad(), sum(gr, {0}), tol, "dbias");
  }
  SECTION("a low-precision output feeding an f32 consumer (the residual add)") {
    // add(f32, bf16) promotes to f32 and hands the GEMM's backward an f32 gradient.
    Tensor x = param_on({6, 16}, 12, d), weight = param_on({16, 16}, 13, d, 0.25);
    Tensor gy = random_input({6, 16}, 14, DType::f64);
    Tensor y;
    {
      autocast ac(d, low);
      y = add(x, nn::functional::linear(x, weight, Tensor()));
    }
    CHECK(y.dtype() == DType::f32);
    y.backward(gy.to(d, DType::f32));
    Tensor xr = rounded(x, low), wr = rounded(weight, low), gr = rounded(gy, low);
    check_close(y, add(x.detach().to(kCPU, DType::f64), matmul(xr, wr.t())), tol, "y");
    check_close(weight.grad(), matmul(gr.t(), xr), tol, "dweight");
    check_close(x.grad(), add(gy, matmul(gr, wr)), tol, "dx");
  }
  SECTION("patch_embed") {
    Tensor x = param_on({2, 3, 8, 8}, 5, d), weight = param_on({6, 3, 4, 4}, 6, d, 0.2), bias = param_on({6}, 7, d);
    Tensor gy = random_input({2, 4, 6}, 8, DType::f64);
    Tensor y;
    {
      autocast ac(d, low);
      y = patch_embed(x, weight, bias);
    }
    CHECK(y.dtype() == low);
    y.backward(gy.to(d, low));
    CHECK(weight.grad().dtype() == DType::f32);
    Tensor xr = rounded(x, low), wr = rounded(weight, low), br = rounded(bias, low);
    Tensor ref = patch_embed(xr, wr, br);
    check_close(y, ref, tol, "y");
    Tensor xr2 = xr.clone().requires_grad_(), wr2 = wr.clone().requires_grad_();
    patch_embed(xr2, wr2, br).backward(rounded(gy, low));
    check_close(weight.grad(), wr2.grad(), tol, "dweight");
    check_close(x.grad(), xr2.grad(), tol, "dx");
  }
  SECTION("scaled_dot_product_attention") {
    Tensor q = param_on({1, 2, 7, 8}, 9, d), k = param_on({1, 2, 7, 8}, 10, d), v = param_on({1, 2, 7, 8}, 11, d);
    Tensor o;
    {
      autocast ac(d, low);
      o = scaled_dot_product_attention(q, k, v);
    }
    CHECK(o.dtype() == low);
    Tensor ref = scaled_dot_product_attention(rounded(q, low), rounded(k, low), rounded(v, low));
    check_close(o, ref, tol, "out");
    sum(mul(o.to(DType::f32), 1.0)).backward();
    CHECK(q.grad().dtype() == DType::f32);
  }
}

TEST_CASE("autocast f32 ops take 16-bit inputs and compute in f32", "[autocast]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  Tensor x64 = random_input({5, 33}, 20, DType::f64);
  Tensor xb = x64.to(d, DType::bf16);
  Tensor xr = rounded(x64, DType::bf16);
  Tensor w = param_on({33}, 21, d), b = param_on({33}, 22, d);
  autocast ac(d, DType::bf16);
  // Results in f32 accuracy against float64 on the bf16 input: the op did not round to bf16.
  // layer_norm computes in f32 and writes bf16: one final rounding (half a bf16 ulp) only.
  const Tensor ln = layer_norm(xb, w, b);
  CHECK(ln.dtype() == DType::bf16);
  CHECK(petal::testing::normalized_error(
            ln, layer_norm(xr, w.detach().to(kCPU, DType::f64), b.detach().to(kCPU, DType::f64))) <= 4e-3);
  check_close(softmax(xb, -1), softmax(xr, -1), 1e-5, "softmax");
  check_close(sum(xb, {1}), sum(xr, {1}), 1e-5, "sum");
  Tensor target = tensor(std::vector<int64_t>{3, 0, 32, 7, 1}, {5});
  check_close(cross_entropy(xb, target.to(d)), cross_entropy(xr, target), 1e-5, "cross_entropy");
}

TEST_CASE("autocast casts each parameter once per step and reuses the cast", "[autocast]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  Tensor weight = param_on({5, 8}, 30, d, 0.3);
  Tensor x = random_input({3, 8}, 31, DType::f32, d);
  clear_autocast_cache();
  Tensor first_grad;
  {
    autocast ac(d, DType::bf16);
    Tensor y1 = nn::functional::linear(x, weight, Tensor());
    Tensor y2 = nn::functional::linear(x, weight, Tensor());
    CHECK(autocast_cache_size() == 1);  // weight cast once (x is not a parameter)
    CHECK(allclose(y1, y2, 0, 0));
    // Two backward passes through the one cached cast (gradient accumulation).
    sum(y1.to(DType::f32)).backward();
    first_grad = weight.grad().clone();
    sum(y2.to(DType::f32)).backward();
    check_close(weight.grad(), mul(first_grad.to(kCPU, DType::f64), 2.0), 1e-6, "accumulated grad");
    // Another forward and backward after those passes still works.
    Tensor y3 = nn::functional::linear(x, weight, Tensor());
    sum(y3.to(DType::f32)).backward();
    check_close(weight.grad(), mul(first_grad.to(kCPU, DType::f64), 3.0), 1e-6, "third grad");
    // An in-place write to the parameter drops its cast: the next op sees the new values.
    {
      NoGradGuard ng;
      weight.mul_(-1.0);
    }
    CHECK(autocast_cache_size() == 0);
    Tensor y4 = nn::functional::linear(x, weight, Tensor());
    check_close(y4, mul(y1.to(kCPU, DType::f64), -1.0), 1e-6, "after the in-place write");
    // Under no_grad a cast without a graph is made; with grad on again it is replaced.
    {
      NoGradGuard ng;
      nn::functional::linear(x, weight, Tensor());
    }
    weight.zero_grad();
    Tensor y5 = nn::functional::linear(x, weight, Tensor());
    sum(y5.to(DType::f32)).backward();
    REQUIRE(weight.grad().defined());
    check_close(weight.grad(), first_grad.to(kCPU, DType::f64), 1e-6, "grad after a no_grad forward");
  }
  CHECK(autocast_cache_size() == 0);  // cleared at the guard's exit
}

TEST_CASE("f32 master weights: a thousand updates below a bf16 ulp move the bf16 cast", "[autocast]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  const int64_t steps = 1000;
  const double lr = 1e-4;  // 1e-4 per step: far under half a bf16 ulp of 1 (2^-8)
  Tensor x = ones({1, 8}, TensorOptions(DType::f32, d));
  Tensor w = ones({8, 1}, TensorOptions(DType::f32, d)).requires_grad_();
  optim::SGD opt({w}, optim::SGDOptions{lr});
  Tensor y;
  {
    autocast ac(d, DType::bf16);  // one guard over all steps: each step's write drops the cast
    for (int64_t s = 0; s < steps; ++s) {
      opt.zero_grad();
      sum(matmul(x, w)).backward();  // d/dw = 1 exactly
      opt.step();
    }
    y = matmul(x, w);  // the forward reads the current bf16 cast
  }
  // The f32 master moved by steps * lr = 0.1 (the f32 rounding of 1000 subtractions stays
  // under 1000 * 3e-8); a bf16 master would not have moved at all.
  const double expected = 1.0 - static_cast<double>(steps) * lr;
  check_close(w, full({8, 1}, expected, TensorOptions(DType::f64)), 5e-5, "master weight");
  const double cast = bf16_bits_to_float(float_to_bf16_bits(static_cast<float>(expected)));
  check_close(y, full({1, 1}, 8.0 * cast, TensorOptions(DType::f64)), 1e-6, "output from the bf16 cast");
  // The same updates on a bf16 weight are lost (the comparison this test guards against).
  Tensor wb = ones({8, 1}, TensorOptions(DType::bf16, d)).requires_grad_();
  optim::SGD opt_b({wb}, optim::SGDOptions{lr});
  for (int64_t s = 0; s < 50; ++s) {
    opt_b.zero_grad();
    sum(matmul(x.to(DType::bf16), wb)).backward();
    opt_b.step();
  }
  CHECK(wb.to(kCPU, DType::f64).tolist<double>()[0] == 1.0);
}

TEST_CASE("f16 autocast with GradScaler recovers gradients that underflow in f16", "[autocast][grad_scaler]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  // dW = x^T dY with x = 1e-4 and dY = 1e-5: 4e-9 for 4 rows, under half of f16's smallest
  // subnormal (6e-8), so it rounds to 0 in f16 unless the loss is scaled.
  const int64_t rows = 4;
  Tensor x = full({rows, 3}, 1e-4, TensorOptions(DType::f32, d));
  auto grad_of_w = [&](optim::GradScaler* scaler) {
    Tensor w = ones({3, 2}, TensorOptions(DType::f32, d)).requires_grad_();
    optim::SGD opt({w}, optim::SGDOptions{0.0});
    Tensor loss;
    {
      autocast ac(d, DType::f16);
      loss = mul(sum(matmul(x, w)), 1e-5);
    }
    CHECK(loss.dtype() == DType::f32);
    (scaler ? scaler->scale(loss) : loss).backward();
    if (scaler) scaler->unscale_(opt);
    return w.grad();
  };
  Tensor plain = grad_of_w(nullptr);
  CHECK(plain.dtype() == DType::f32);
  CHECK(sum(abs(plain)).item<double>() == 0.0);  // flushed to zero in f16
  optim::GradScaler scaler;
  Tensor recovered = grad_of_w(&scaler);
  check_close(mul(recovered, 1e9), full({3, 2}, static_cast<double>(rows), TensorOptions(DType::f64)), 2e-3,
              "unscaled gradient");
}

TEST_CASE("GradScaler: scale, unscale_, inf/NaN skip, growth and backoff", "[grad_scaler]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Device d(dev);
  Tensor w = param_on({7}, 40, d);
  Tensor w2 = param_on({3, 5}, 41, d);
  optim::SGD opt({w, w2}, optim::SGDOptions{0.5});
  optim::GradScalerOptions o;
  o.init_scale = 1024.0;
  o.growth_interval = 3;
  optim::GradScaler scaler(o);
  CHECK(scaler.get_scale() == 1024.0);
  CHECK(scaler.scale(scalar_tensor(2.0, TensorOptions(DType::bf16, d))).item<double>() == 2048.0);

  auto set_grads = [&](double bad) {
    Tensor g = mul(random_input({7}, 42, DType::f64), 1024.0).to(d, DType::f32);
    if (bad != 0.0) {
      Tensor host = g.cpu();
      host.data<float>()[3] = static_cast<float>(bad);
      g = host.to(d);
    }
    w.set_grad(g);
    w2.set_grad(mul(ones({3, 5}, TensorOptions(DType::f32, d)), 1024.0));
  };
  // A clean step: unscale_ divides by the scale, the optimizer steps.
  set_grads(0.0);
  Tensor before = w.detach().clone();
  scaler.unscale_(opt);
  check_close(w.grad(), random_input({7}, 42, DType::f64), 1e-6, "unscaled");
  CHECK_THROWS_WITH(scaler.unscale_(opt), Catch::Contains("already called"));
  CHECK(scaler.step(opt));
  check_close(w, sub(before.to(kCPU, DType::f64), mul(random_input({7}, 42, DType::f64), 0.5)), 1e-6, "stepped");
  CHECK_THROWS_WITH(scaler.step(opt), Catch::Contains("already called"));
  scaler.update();
  CHECK(scaler.get_scale() == 1024.0);
  CHECK(scaler.growth_tracker() == 1);
  // inf and NaN: the step is skipped and the scale backs off.
  for (double bad : {INFINITY, -INFINITY, NAN}) {
    set_grads(bad);
    Tensor kept = w.detach().clone(), kept2 = w2.detach().clone();
    const double scale_before = scaler.get_scale();
    CHECK_FALSE(scaler.step(opt));
    CHECK(allclose(w, kept, 0, 0));
    CHECK(allclose(w2, kept2, 0, 0));
    scaler.update();
    CHECK(scaler.get_scale() == scale_before * 0.5);
    CHECK(scaler.growth_tracker() == 0);
  }
  // growth_interval clean steps in a row double the scale.
  const double low = scaler.get_scale();
  for (int i = 0; i < 3; ++i) {
    set_grads(0.0);
    w.set_grad(mul(w.grad(), low / 1024.0));
    w2.set_grad(mul(w2.grad(), low / 1024.0));
    CHECK(scaler.step(opt));
    scaler.update();
  }
  CHECK(scaler.get_scale() == low * 2.0);
  CHECK(scaler.growth_tracker() == 0);
  // state_dict round trip; a disabled scaler passes through.
  optim::GradScaler restored;
  restored.load_state_dict(scaler.state_dict());
  CHECK(restored.get_scale() == scaler.get_scale());
  optim::GradScalerOptions off;
  off.enabled = false;
  optim::GradScaler disabled(off);
  Tensor loss = scalar_tensor(3.0, TensorOptions(DType::f32, d));
  CHECK(disabled.scale(loss).is_same(loss));
  CHECK_THROWS_WITH(optim::GradScaler(optim::GradScalerOptions{0.0}), Catch::Contains("init_scale"));
}
