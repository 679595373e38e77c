// patch_embed (conv with kernel = stride = P) against a direct float64 convolution loop,
// forward and the dx/dweight/dbias of sum(y * dy), on every backend: dtypes, odd sizes
// (non-square images, P = 1, P = H), non-contiguous inputs, with and without bias; the
// unfold/fold kernels called directly on poisoned outputs; errors; float64 gradchecks.
#include "kernels/backend.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

namespace {

struct PatchEmbedRef {
  Tensor y, dx, dweight, dbias;
};

// Direct convolution: y[b, ph * gw + pw, d] = bias[d] + sum_{c,i,j} w[d,c,i,j] x[b,c,ph*P+i,pw*P+j],
// and the gradients of sum(y * dy) from the same loop nest.
PatchEmbedRef ref_patch_embed(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Tensor& dy_in) {
  Tensor x = x_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor w = w_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor dy = dy_in.detach().to(kCPU, DType::f64).contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), D = w.size(0), P = w.size(2);
  const int64_t gh = H / P, gw = W / P;
  PatchEmbedRef r;
  r.y = zeros({B, gh * gw, D}, DType::f64);
  r.dx = zeros(x.shape(), DType::f64);
  r.dweight = zeros(w.shape(), DType::f64);
  r.dbias = zeros({D}, DType::f64);
  auto X = [&](int64_t b, int64_t c, int64_t h, int64_t ww) { return ((b * C + c) * H + h) * W + ww; };
  auto Wt = [&](int64_t d, int64_t c, int64_t i, int64_t j) { return ((d * C + c) * P + i) * P + j; };
  const double *px = x.data<double>(), *pw = w.data<double>(), *pdy = dy.data<double>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t ph = 0; ph < gh; ++ph)
      for (int64_t qw = 0; qw < gw; ++qw)
        for (int64_t d = 0; d < D; ++d) {
          const int64_t o = (b * gh * gw + ph * gw + qw) * D + d;
          double acc = b_in.defined() ? b_in.detach().to(kCPU, DType::f64).data<double>()[d] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < P; ++i)
              for (int64_t j = 0; j < P; ++j) {
                const int64_t xi = X(b, c, ph * P + i, qw * P + j), wi = Wt(d, c, i, j);
                acc += pw[wi] * px[xi];
                r.dx.data<double>()[xi] += pdy[o] * pw[wi];
                r.dweight.data<double>()[wi] += pdy[o] * px[xi];
              }
          r.y.data<double>()[o] = acc;
          r.dbias.data<double>()[d] += pdy[o];
        }
  return r;
}

}  // namespace

TEST_CASE("patch_embed matches a direct float64 convolution, forward and backward", "[patch_embed]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto with_bias = GENERATE(true, false);
  auto noncontig = GENERATE(false, true);
  struct Geometry {
    int64_t B, C, H, W, D, P;
  };
  const std::vector<Geometry> cases = {
      {2, 3, 8, 8, 5, 4}, {1, 1, 7, 7, 3, 7}, {3, 2, 6, 9, 4, 3}, {1, 3, 4, 4, 1, 1}, {2, 1, 5, 10, 7, 5}};
  uint64_t seed = 300;
  for (const auto& g : cases) {
    const Device d(dev);
    Tensor x = random_input({g.B, g.C, g.H, g.W}, seed++, dt, d);
    Tensor w = random_input({g.D, g.C, g.P, g.P}, seed++, dt, d);
    Tensor b = with_bias ? random_input({g.D}, seed++, dt, d) : Tensor();
    if (noncontig) {
      x = non_contiguous_copy(x);
      w = non_contiguous_copy(w);
    }
    x.requires_grad_();
    w.requires_grad_();
    if (with_bias) b.requires_grad_();
    const int64_t L = (g.H / g.P) * (g.W / g.P);
    Tensor dy = random_input({g.B, L, g.D}, seed++, dt, d);
    INFO("x " << shape_str(x.shape()) << " weight " << shape_str(w.shape()) << " " << dtype_name(dt) << " on " << dev
              << (with_bias ? " with bias" : "") << (noncontig ? " non-contiguous" : ""));
    const PatchEmbedRef ref = ref_patch_embed(x, w, b, dy);
    Tensor y = patch_embed(x, w, b);
    CHECK(y.shape() == (Shape{g.B, L, g.D}));
    CHECK(y.dtype() == dt);
    check_close(y, ref.y, -1, "y");
    y.backward(dy);
    check_close(x.grad(), ref.dx, -1, "dx");
    check_close(w.grad(), ref.dweight, -1, "dweight");
    if (with_bias) check_close(b.grad(), ref.dbias, -1, "dbias");
  }
}

TEST_CASE("patch unfold and fold kernels write every element", "[patch_embed]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  const Device d(dev);
  const int64_t B = 2, C = 3, H = 6, W = 9, P = 3, L = (H / P) * (W / P), K = C * P * P;
  Tensor x = random_input({B, C, H, W}, 11, dt, d);
  // Reference unfold: a permuted view of x, copied.
  Tensor expected = x.to(kCPU, DType::f64)
                        .reshape({B, C, H / P, P, W / P, P})
                        .permute({0, 2, 4, 1, 3, 5})
                        .contiguous()
                        .reshape({B, L, K});
  Tensor patches = empty({B, L, K}, TensorOptions(dt, d));
  petal::testing::poison(patches);
  auto& be = kernels::backend_for(d);
  be.patch_unfold(patches.data_ptr(), x.data_ptr(), dt, B, C, H, W, P);
  check_close(patches, expected, 0.0, "unfold");
  Tensor back = empty({B, C, H, W}, TensorOptions(dt, d));
  petal::testing::poison(back);
  be.patch_fold(back.data_ptr(), patches.data_ptr(), dt, B, C, H, W, P);
  check_close(back, x.to(kCPU, DType::f64), 0.0, "fold");
}

TEST_CASE("patch_embed errors name the op and shapes", "[patch_embed]") {
  Tensor x = random_input({1, 3, 10, 8}, 1, DType::f32), w = random_input({4, 3, 4, 4}, 2, DType::f32);
  CHECK_THROWS_WITH(patch_embed(x, w, Tensor()), Catch::Contains("patch_embed") && Catch::Contains("[1, 3, 10, 8]") &&
                                                     Catch::Contains("not divisible") && Catch::Contains("4"));
  Tensor x8 = random_input({1, 3, 8, 8}, 1, DType::f32);
  CHECK_THROWS_WITH(patch_embed(x8, random_input({4, 2, 4, 4}, 2, DType::f32), Tensor()),
                    Catch::Contains("patch_embed") && Catch::Contains("[4, 2, 4, 4]") && Catch::Contains("channels"));
  CHECK_THROWS_WITH(patch_embed(x8, w, random_input({5}, 3, DType::f32)),
                    Catch::Contains("patch_embed") && Catch::Contains("bias") && Catch::Contains("[5]"));
  CHECK_THROWS_WITH(patch_embed(x8.reshape({3, 8, 8}), w, Tensor()),
                    Catch::Contains("patch_embed") && Catch::Contains("[3, 8, 8]"));
}

TEST_CASE("patch_embed gradients", "[patch_embed][grad]") {
  using V = std::vector<Tensor>;
  CHECK(gradcheck([](const V& v) { return patch_embed(v[0], v[1], v[2]); },
                  {random_input({2, 2, 4, 6}, 70), random_input({3, 2, 2, 2}, 71), random_input({3}, 72)}));
  CHECK(gradcheck([](const V& v) { return patch_embed(v[0].transpose(2, 3), v[1], Tensor()); },
                  {random_input({1, 2, 6, 3}, 73), random_input({2, 2, 3, 3}, 74)}));
}
