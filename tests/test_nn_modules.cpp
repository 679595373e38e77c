// nn layers against float64 references written as naive loops, gradient checks of the
// functional forms, dropout/drop-path train vs eval behaviour, and the initializers.
#include <cmath>
#include <vector>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::random_input;
namespace F = petal::nn::functional;

namespace {

std::vector<double> host(const Tensor& t) { return t.tolist<double>(); }

Tensor from_host(const std::vector<double>& v, const Shape& s) { return tensor(v, s, TensorOptions(DType::f64)); }

// y[n, o] = sum_i x[n, i] w[o, i] + b[o]
Tensor linear_ref(const Tensor& x, const Tensor& w, const Tensor& b) {
  int64_t in = w.size(1), out = w.size(0), n = x.numel() / in;
  auto X = host(x), W = host(w), Bv = host(b);
  std::vector<double> y(static_cast<size_t>(n * out));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = Bv[o];
      for (int64_t i = 0; i < in; ++i) s += X[r * in + i] * W[o * in + i];
      y[r * out + o] = s;
    }
  Shape shape = x.shape();
  shape.back() = out;
  return from_host(y, shape);
}

Tensor layer_norm_ref(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  int64_t D = x.size(-1), n = x.numel() / D;
  auto X = host(x), W = host(w), Bv = host(b);
  std::vector<double> y(X.size());
  for (int64_t r = 0; r < n; ++r) {
    double mu = 0, var = 0;
    for (int64_t i = 0; i < D; ++i) mu += X[r * D + i];
    mu /= D;
    for (int64_t i = 0; i < D; ++i) var += (X[r * D + i] - mu) * (X[r * D + i] - mu);
    var /= D;
    for (int64_t i = 0; i < D; ++i) y[r * D + i] = (X[r * D + i] - mu) / std::sqrt(var + eps) * W[i] + Bv[i];
  }
  return from_host(y, x.shape());
}

// Self-attention of x [B, S, D] with timm's qkv layout.
Tensor attention_ref(const Tensor& x, int64_t H, const Tensor& wqkv, const Tensor& bqkv, const Tensor& wp,
                     const Tensor& bp) {
  const int64_t B = x.size(0), S = x.size(1), D = x.size(2), d = D / H;
  auto qkv = host(linear_ref(x, wqkv, bqkv));  // [B, S, 3D]; q at [0, D), k at [D, 2D), v at [2D, 3D)
  std::vector<double> o(static_cast<size_t>(B * S * D));
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i) {
        std::vector<double> s(static_cast<size_t>(S));
        double mx = -1e300;
        for (int64_t j = 0; j < S; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < d; ++c)
            acc += qkv[(b * S + i) * 3 * D + h * d + c] * qkv[(b * S + j) * 3 * D + D + h * d + c];
          s[j] = acc * scale;
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (auto& v : s) z += (v = std::exp(v - mx));
        for (int64_t c = 0; c < d; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < S; ++j) acc += s[j] / z * qkv[(b * S + j) * 3 * D + 2 * D + h * d + c];
          o[(b * S + i) * D + h * d + c] = acc;
        }
      }
  return linear_ref(from_host(o, {B, S, D}), wp, bp);
}

double cross_entropy_ref(const Tensor& logits, const std::vector<int64_t>& target, double eps) {
  const int64_t N = logits.size(0), C = logits.size(1);
  auto L = host(logits);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    double mx = -1e300;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, L[n * C + c]);
    double z = 0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(L[n * C + c] - mx);
    double lse = mx + std::log(z);
    for (int64_t c = 0; c < C; ++c) {
      double q = (c == target[n] ? 1.0 - eps : 0.0) + eps / C;
      total += -q * (L[n * C + c] - lse);
    }
  }
  return total / N;
}

}  // namespace

TEST_CASE("nn::Linear matches a float64 reference, any input strides", "[nn]") {
  manual_seed(1);
  nn::Linear lin(7, 5);
  lin.to(DType::f64);
  REQUIRE(lin.weight.shape() == Shape{5, 7});
  REQUIRE(lin.bias.shape() == Shape{5});
  Tensor x = random_input({3, 4, 7}, 11);
  check_close(lin(x), linear_ref(x, lin.weight, lin.bias), 1e-12, "linear 3-D");
  Tensor xn = petal::testing::non_contiguous_copy(random_input({6, 7}, 12));
  REQUIRE_FALSE(xn.is_contiguous());
  check_close(lin(xn), linear_ref(xn.contiguous(), lin.weight, lin.bias), 1e-12, "linear non-contiguous");
  // float32 model against the same reference
  nn::Linear l32(7, 5);
  Tensor x32 = x.to(DType::f32);
  check_close(l32(x32), linear_ref(x, l32.weight.to(DType::f64), l32.bias.to(DType::f64)), -1, "linear f32");
  // PyTorch default init bound 1/sqrt(in)
  double bound = 1.0 / std::sqrt(7.0);
  for (double v : host(l32.weight)) REQUIRE(std::abs(v) <= bound);
  CHECK_THROWS_AS(lin(random_input({3, 6}, 1)), Error);
}

TEST_CASE("nn::functional::linear gradcheck", "[nn][grad]") {
  REQUIRE(gradcheck([](const std::vector<Tensor>& in) { return F::linear(in[0], in[1], in[2]); },
                    {random_input({2, 3, 4}, 1), random_input({5, 4}, 2), random_input({5}, 3)}));
}

TEST_CASE("nn::LayerNorm matches a float64 reference and gradchecks", "[nn][grad]") {
  nn::LayerNorm ln(9, 1e-5);
  ln.to(DType::f64);
  {
    NoGradGuard ng;
    ln.weight.copy_(random_input({9}, 5));
    ln.bias.copy_(random_input({9}, 6));
  }
  Tensor x = add(mul(random_input({2, 7, 9}, 7), 3.0), 1.5);
  check_close(ln(x), layer_norm_ref(x, ln.weight, ln.bias, 1e-5), 1e-10, "layer_norm");
  Tensor xn = petal::testing::non_contiguous_copy(random_input({5, 9}, 8));
  check_close(ln(xn), layer_norm_ref(xn.contiguous(), ln.weight, ln.bias, 1e-5), 1e-10, "layer_norm strided");
  nn::LayerNorm l32(9, 1e-6);
  check_close(l32(x.to(DType::f32)), layer_norm_ref(x, ones({9}, DType::f64), zeros({9}, DType::f64), 1e-6), -1,
              "layer_norm f32");
  REQUIRE(gradcheck(
      [](const std::vector<Tensor>& in) { return F::layer_norm(in[0], in[1], in[2], 1e-5); },
      {random_input({3, 6}, 9), random_input({6}, 10), random_input({6}, 11)}));
  CHECK_THROWS_AS(ln(random_input({2, 8}, 1)), Error);
}

TEST_CASE("nn::MultiheadAttention matches a float64 reference", "[nn]") {
  manual_seed(3);
  nn::MultiheadAttention attn(12, 3);
  attn.to(DType::f64);
  REQUIRE(attn.qkv->weight.shape() == Shape{36, 12});
  REQUIRE(attn.proj->weight.shape() == Shape{12, 12});
  {
    // Larger weights than the .02 init so the softmax is far from uniform.
    NoGradGuard ng;
    attn.qkv->weight.copy_(mul(random_input({36, 12}, 21), 0.5));
    attn.qkv->bias.copy_(random_input({36}, 22));
  }
  Tensor x = random_input({2, 7, 12}, 23);
  Tensor expected = attention_ref(x, 3, attn.qkv->weight, attn.qkv->bias, attn.proj->weight, attn.proj->bias);
  check_close(attn(x), expected, 1e-10, "attention");
  attn.eval();
  check_close(attn(x), expected, 1e-10, "attention eval");
  nn::MultiheadAttention a32(12, 3);
  {
    NoGradGuard ng;
    for (auto& [name, p] : attn.named_parameters()) a32.get_tensor(name).copy_(p);
  }
  check_close(a32(x.to(DType::f32)), expected, -1, "attention f32");
  CHECK_THROWS_AS(nn::MultiheadAttention(10, 3), Error);
}

TEST_CASE("scaled_dot_product_attention gradcheck", "[nn][grad]") {
  REQUIRE(gradcheck(
      [](const std::vector<Tensor>& in) { return F::scaled_dot_product_attention(in[0], in[1], in[2]); },
      {random_input({2, 3, 4}, 31), random_input({2, 5, 4}, 32), random_input({2, 5, 3}, 33)}));
}

TEST_CASE("CrossEntropyLoss with label smoothing matches a float64 reference", "[nn][grad]") {
  Tensor logits = mul(random_input({7, 5}, 41), 2.0);
  std::vector<int64_t> target{0, 4, 2, 2, 1, 3, 4};
  Tensor t = tensor(target, {7});
  for (double eps : {0.0, 0.1, 0.35}) {
    nn::CrossEntropyLoss loss(eps);
    Tensor l = loss(logits, t);
    REQUIRE(l.numel() == 1);
    CHECK(l.item() == Approx(cross_entropy_ref(logits, target, eps)).epsilon(1e-12));
    Tensor l32 = loss(logits.to(DType::f32), t);
    CHECK(l32.item() == Approx(cross_entropy_ref(logits, target, eps)).epsilon(1e-5));
    REQUIRE(gradcheck([&](const std::vector<Tensor>& in) { return loss(in[0], t); }, {random_input({7, 5}, 42)}));
  }
  CHECK_THROWS_AS(nn::CrossEntropyLoss()(logits, tensor(std::vector<int64_t>{0, 1}, {2})), Error);
}

TEST_CASE("PatchConv2d equals a stride-P convolution", "[nn][grad]") {
  const int64_t B = 2, C = 3, H = 8, W = 12, P = 4, D = 5;
  manual_seed(5);
  nn::PatchConv2d conv(C, D, P);
  conv.to(DType::f64);
  REQUIRE(conv.weight.shape() == Shape{D, C, P, P});
  Tensor x = random_input({B, C, H, W}, 51);
  auto X = host(x), Wt = host(conv.weight), Bv = host(conv.bias);
  const int64_t h = H / P, w = W / P;
  std::vector<double> y(static_cast<size_t>(B * h * w * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        for (int64_t d = 0; d < D; ++d) {
          double s = Bv[d];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t u = 0; u < P; ++u)
              for (int64_t v = 0; v < P; ++v)
                s += X[((b * C + c) * H + i * P + u) * W + j * P + v] * Wt[((d * C + c) * P + u) * P + v];
          y[((b * h + i) * w + j) * D + d] = s;
        }
  check_close(conv(x), from_host(y, {B, h * w, D}), 1e-12, "patch conv");
  CHECK_THROWS_AS(conv(random_input({1, 3, 9, 8}, 1)), Error);
  REQUIRE(gradcheck([](const std::vector<Tensor>& in) { return F::patch_conv2d(in[0], in[1], in[2], 2); },
                    {random_input({1, 2, 4, 2}, 52), random_input({3, 2, 2, 2}, 53), random_input({3}, 54)}));
}

TEST_CASE("Dropout: identity in eval, Bernoulli mask scaled by 1/keep in training", "[nn]") {
  manual_seed(7);
  nn::Dropout drop(0.25);
  Tensor x = add(rand({64, 63}), 0.5);  // strictly positive
  drop.eval();
  REQUIRE(drop(x).is_same(x));
  drop.train();
  Tensor y = drop(x);
  auto X = host(x), Y = host(y);
  int64_t zeros_count = 0;
  for (size_t i = 0; i < X.size(); ++i) {
    if (Y[i] == 0.0) {
      ++zeros_count;
    } else {
      REQUIRE(Y[i] == Approx(X[i] / 0.75).epsilon(1e-6));
    }
  }
  double frac = static_cast<double>(zeros_count) / static_cast<double>(X.size());
  CHECK(frac > 0.2);
  CHECK(frac < 0.3);
  // Two draws differ (the generator advances).
  CHECK_FALSE(allclose(drop(x), y));
}

TEST_CASE("DropPath drops whole samples in training only", "[nn]") {
  manual_seed(8);
  nn::DropPath dp(0.5);
  Tensor x = add(rand({200, 3, 4}), 0.5);
  dp.eval();
  REQUIRE(dp(x).is_same(x));
  dp.train();
  auto X = host(x), Y = host(dp(x));
  int dropped = 0;
  for (int64_t b = 0; b < 200; ++b) {
    bool zero = Y[b * 12] == 0.0;
    dropped += zero;
    for (int64_t i = 0; i < 12; ++i) {
      if (zero) {
        REQUIRE(Y[b * 12 + i] == 0.0);
      } else {
        REQUIRE(Y[b * 12 + i] == Approx(X[b * 12 + i] * 2.0).epsilon(1e-6));
      }
    }
  }
  CHECK(dropped > 70);
  CHECK(dropped < 130);
  nn::DropPath none(0.0);
  REQUIRE(none(x).is_same(x));
}

TEST_CASE("TransformerLayer wires residuals for pre-norm and post-norm orders", "[nn]") {
  Tensor x = random_input({2, 5, 8}, 61);
  for (bool pre : {true, false}) {
    nn::TransformerLayerOptions o;
    o.dim = 8;
    o.heads = 2;
    o.mlp_ratio = 2.0;
    o.activation = pre ? "gelu" : "relu";
    o.drop_path = 0.3;  // inactive in eval
    o.operation_order = pre ? std::vector<std::string>{"norm", "self_attn", "norm", "ffn"}
                            : std::vector<std::string>{"self_attn", "norm", "ffn", "norm"};
    manual_seed(9);
    nn::TransformerLayer layer(o);
    layer.to(DType::f64);
    layer.eval();
    REQUIRE(layer.pre_norm() == pre);
    REQUIRE(layer.norms.size() == 2);
    REQUIRE(layer.mlp->fc1->weight.shape() == Shape{16, 8});
    auto& n1 = *layer.norms[0];
    auto& n2 = *layer.norms[1];
    Tensor expected;
    if (pre) {
      Tensor h = add(x, layer.attn->forward(n1(x)));
      expected = add(h, layer.mlp->forward(n2(h)));
    } else {
      Tensor h = n1(add(x, layer.attn->forward(x)));
      expected = n2(add(h, layer.mlp->forward(h)));
    }
    check_close(layer(x), expected, 1e-12, pre ? "pre-norm" : "post-norm");
    std::vector<std::string> names;
    for (auto& [n, p] : layer.named_parameters()) names.push_back(n);
    std::vector<std::string> expected_names =
        pre ? std::vector<std::string>{"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                       "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                       "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"}
            : std::vector<std::string>{"attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                                       "norm1.weight", "norm1.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                                       "mlp.fc2.weight", "mlp.fc2.bias", "norm2.weight", "norm2.bias"};
    REQUIRE(names == expected_names);
  }
  nn::TransformerLayerOptions bad;
  bad.dim = 8;
  bad.heads = 2;
  bad.operation_order = {"norm", "self_attn", "norm"};
  CHECK_THROWS_AS(nn::TransformerLayer(bad), Error);
  bad.operation_order = {"norm", "cross_attn", "ffn"};
  CHECK_THROWS_AS(nn::TransformerLayer(bad), Error);
}

TEST_CASE("init: normal quantile, truncated normal, kaiming bounds, seeding", "[nn][init]") {
  for (double p : {1e-12, 1e-5, 0.01, 0.3, 0.5, 0.77, 0.99, 1 - 1e-9}) {
    double x = nn::init::normal_quantile(p);
    CHECK(0.5 * std::erfc(-x / std::sqrt(2.0)) == Approx(p).epsilon(1e-9));
  }
  manual_seed(10);
  Tensor t = empty({100, 100});
  nn::init::trunc_normal_(t, 0.0, 0.02);
  auto v = host(t);
  double mean = 0, sq = 0;
  for (double e : v) {
    mean += e;
    sq += e * e;
  }
  mean /= v.size();
  double std = std::sqrt(sq / v.size() - mean * mean);
  CHECK(std::abs(mean) < 1e-3);
  CHECK(std == Approx(0.02).epsilon(0.03));
  // Narrow bounds are respected and the mass follows the truncated distribution.
  nn::init::trunc_normal_(t, 1.0, 1.0, 0.5, 1.2);
  double lo = 2, hi = -2;
  for (double e : host(t)) {
    lo = std::min(lo, e);
    hi = std::max(hi, e);
  }
  CHECK(lo >= 0.5);
  CHECK(hi <= 1.2);
  CHECK(lo < 0.51);
  CHECK(hi > 1.19);
  // Same seed, same values.
  manual_seed(11);
  Tensor a = empty({7, 3});
  nn::init::trunc_normal_(a, 0, 1);
  manual_seed(11);
  Tensor b = empty({7, 3});
  nn::init::trunc_normal_(b, 0, 1);
  REQUIRE(allclose(a, b, 0, 0));
  Tensor k = empty({4, 3, 2, 2});
  nn::init::kaiming_uniform_(k, std::sqrt(5.0));
  for (double e : host(k)) REQUIRE(std::abs(e) <= 1.0 / std::sqrt(12.0));
  CHECK(nn::init::fan_in_and_fan_out(k) == std::make_pair<int64_t, int64_t>(12, 16));
}
