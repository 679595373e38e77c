// cross_entropy against a plain float64 reference of torch.nn.functional.cross_entropy
// (loss = (1 - s) nll + s mean_c(-log p_c), mean over rows whose target != ignore_index)
// and its gradient (p - q) / count on every backend: dtypes, odd sizes, non-contiguous
// logits, label smoothing, ignore_index (also one that is a valid class), the kernels on
// poisoned outputs, large logits, the composed nn::functional version, errors, gradchecks.
#include <cmath>

#include <petal/nn/functional.h>

#include "kernels/backend.h"
#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::gradcheck;
using petal::testing::non_contiguous_copy;
using petal::testing::random_input;

namespace {

// Targets in [0, classes) from a seeded LCG; every `ignore_every`-th row (if > 0) gets ignore.
Tensor make_targets(int64_t rows, int64_t classes, uint64_t seed, int64_t ignore_every, int64_t ignore) {
  std::vector<int64_t> t(static_cast<size_t>(rows));
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t r = 0; r < rows; ++r) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    t[r] = static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(classes));
    if (ignore_every > 0 && r % ignore_every == 1) t[r] = ignore;
  }
  return tensor(t, {rows});
}

Tensor scalar64(double v) { return full({}, v, DType::f64); }

struct CrossEntropyRef {
  double loss = 0;
  Tensor row_loss, lse, grad;  // grad of the mean loss w.r.t. the logits
};

CrossEntropyRef ref_cross_entropy(const Tensor& logits_in, const Tensor& target_in, double s, int64_t ignore) {
  Tensor x = logits_in.detach().to(kCPU, DType::f64).contiguous();
  Tensor target = target_in.to(kCPU).contiguous();
  const int64_t N = x.size(0), C = x.size(1);
  CrossEntropyRef r;
  r.row_loss = zeros({N}, DType::f64);
  r.lse = zeros({N}, DType::f64);
  r.grad = zeros({N, C}, DType::f64);
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) count += target.data<int64_t>()[i] != ignore;
  for (int64_t i = 0; i < N; ++i) {
    const double* row = x.data<double>() + i * C;
    double mx = -INFINITY;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, row[c]);
    double se = 0;
    for (int64_t c = 0; c < C; ++c) se += std::exp(row[c] - mx);
    const double lse = mx + std::log(se);
    r.lse.data<double>()[i] = lse;
    const int64_t t = target.data<int64_t>()[i];
    if (t == ignore) continue;
    double smooth = 0;  // mean_c(-log p_c)
    for (int64_t c = 0; c < C; ++c) smooth += -(row[c] - lse) / C;
    const double nll = -(row[t] - lse);
    r.row_loss.data<double>()[i] = (1 - s) * nll + s * smooth;
    r.loss += r.row_loss.data<double>()[i] / count;
    for (int64_t c = 0; c < C; ++c) {
      const double q = (c == t ? 1 - s : 0.0) + s / C;
      r.grad.data<double>()[i * C + c] = (std::exp(row[c] - lse) - q) / count;
    }
  }
  return r;
}

}  // namespace

TEST_CASE("cross_entropy matches float64 references, loss and gradient", "[cross_entropy]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64, DType::bf16);
  auto smoothing = GENERATE(0.0, 0.1, 1.0);
  auto noncontig = GENERATE(false, true);
  const std::vector<Shape> shapes = {{1, 1}, {7, 5}, {13, 97}, {3, 1025}, {16, 10}};
  uint64_t seed = 200;
  for (const Shape& shape : shapes) {
    for (int64_t ignore : {int64_t(-100), int64_t(3)}) {
      const Device d(dev);
      Tensor x = mul(random_input(shape, seed++, dt, d), 3.0);
      if (noncontig) x = non_contiguous_copy(x);
      x.requires_grad_();
      Tensor target = make_targets(shape[0], shape[1], seed++, ignore == -100 ? 3 : 0, ignore).to(d);
      INFO("shape " << shape_str(shape) << " dtype " << dtype_name(dt) << " on " << dev << " smoothing "
                    << smoothing << " ignore_index " << ignore << (noncontig ? " non-contiguous" : ""));
      const CrossEntropyRef ref = ref_cross_entropy(x, target, smoothing, ignore);
      Tensor loss = cross_entropy(x, target, smoothing, ignore);
      CHECK(loss.dim() == 0);
      CHECK(loss.dtype() == dt);
      check_close(loss, scalar64(ref.loss), -1, "loss");
      loss.backward();
      check_close(x.grad(), ref.grad, -1, "grad");
    }
  }
}

TEST_CASE("cross_entropy kernels write every element", "[cross_entropy]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto dt = GENERATE(DType::f32, DType::f64);
  const Device d(dev);
  const DType st = dt == DType::f64 ? DType::f64 : DType::f32;
  const int64_t rows = 11, classes = 37;
  Tensor x = mul(random_input({rows, classes}, 5, dt, d), 4.0);
  Tensor target = make_targets(rows, classes, 6, 4, -1).to(d);
  const CrossEntropyRef ref = ref_cross_entropy(x, target, 0.2, -1);
  Tensor loss = empty({rows}, TensorOptions(st, d)), lse = empty({rows}, TensorOptions(st, d));
  petal::testing::poison(loss);
  petal::testing::poison(lse);
  auto& be = kernels::backend_for(d);
  be.cross_entropy_forward(loss.data_ptr(), lse.data_ptr(), x.data_ptr(), target.data<int64_t>(), dt, rows, classes,
                           0.2, -1);
  check_close(loss, ref.row_loss, -1, "row loss");
  check_close(lse, ref.lse, -1, "lse");
  // grad_loss = 1 per row: the reference gradient times count.
  int64_t count = 0;
  for (int64_t t : target.cpu().tolist<int64_t>()) count += t != -1;
  Tensor grad_loss = full({rows}, 1.0, TensorOptions(st, d));
  Tensor grad = empty({rows, classes}, TensorOptions(dt, d));
  petal::testing::poison(grad);
  be.cross_entropy_backward(grad.data_ptr(), grad_loss.data_ptr(), x.data_ptr(), lse.data_ptr(),
                            target.data<int64_t>(), dt, rows, classes, 0.2, -1);
  check_close(grad, mul(ref.grad, static_cast<double>(count)), -1, "grad");
}

TEST_CASE("cross_entropy is stable for large logits and agrees with the composed version", "[cross_entropy]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  Tensor x = tensor({1000.f, 999.f, -1000.f, 0.f, -1e4f, 2.f, 50.f, 1.f}, {2, 4}).to(d);
  Tensor target = tensor(std::vector<int64_t>{1, 3}, {2}).to(d);
  const CrossEntropyRef ref = ref_cross_entropy(x, target, 0.0, -100);
  check_close(cross_entropy(x, target), scalar64(ref.loss), -1, "large logits");
  Tensor y = random_input({9, 6}, 77, DType::f64, d);
  Tensor t = make_targets(9, 6, 78, 0, -100).to(d);
  check_close(cross_entropy(y, t, 0.3), nn::functional::cross_entropy(y, t, 0.3).to(kCPU), 1e-12, "composed");
}

TEST_CASE("cross_entropy with every row ignored is NaN, as torch", "[cross_entropy]") {
  Tensor x = random_input({3, 4}, 1, DType::f32);
  Tensor t = tensor(std::vector<int64_t>{-100, -100, -100}, {3});
  CHECK(std::isnan(cross_entropy(x, t).item<double>()));
}

TEST_CASE("cross_entropy errors name the op, shapes and bad targets", "[cross_entropy]") {
  Tensor x = random_input({3, 4}, 1, DType::f32);
  CHECK_THROWS_WITH(cross_entropy(x, tensor(std::vector<int64_t>{0, 4, 1}, {3})),
                    Catch::Contains("cross_entropy") && Catch::Contains("target[1] = 4") &&
                        Catch::Contains("4 classes"));
  CHECK_THROWS_WITH(cross_entropy(x, tensor(std::vector<int64_t>{0, 1}, {2})),
                    Catch::Contains("cross_entropy") && Catch::Contains("[2]") && Catch::Contains("[3, 4]"));
  CHECK_THROWS_WITH(cross_entropy(x.reshape({12}), tensor(std::vector<int64_t>{0}, {1})),
                    Catch::Contains("cross_entropy") && Catch::Contains("[12]"));
  CHECK_THROWS_WITH(cross_entropy(x, tensor(std::vector<int64_t>{0, 1, 2}, {3}).to(DType::i32)),
                    Catch::Contains("cross_entropy") && Catch::Contains("int32"));
  CHECK_THROWS_WITH(cross_entropy(x, tensor(std::vector<int64_t>{0, 1, 2}, {3}), 1.5),
                    Catch::Contains("label_smoothing"));
}

TEST_CASE("cross_entropy with targets on the device checks them there, reported at the next synchronization",
          "[cross_entropy]") {
  for (const auto& dev : petal::testing::test_devices()) {
    if (dev == "cpu") continue;
    INFO(dev);
    const Device d(dev);
    Tensor x = random_input({5, 4}, 3, DType::f32, d);
    // Valid targets with an ignored row: the same loss as with host targets, no error.
    const std::vector<int64_t> good = {0, 3, -100, 2, 1};
    Tensor t_host = tensor(good, {5});
    Tensor t_dev = t_host.to(d);
    petal::testing::check_close(cross_entropy(x, t_dev), cross_entropy(x, t_host), 1e-6, "device targets");
    // An out-of-range target: no error at the call (nothing waits for the device), the error
    // names the row at the next copy to the host, and the loss is NaN, not an out-of-bounds read.
    Tensor bad = tensor(std::vector<int64_t>{0, 3, -100, 7, 1}, {5}).to(d);
    Tensor loss = cross_entropy(x, bad);
    CHECK_THROWS_WITH(loss.item(), Catch::Contains("cross_entropy: target[3] = 7") &&
                                       Catch::Contains("4 classes") && Catch::Contains("next synchronization"));
    // Reported once; the loss itself is NaN.
    CHECK(std::isnan(loss.item()));
    // Negative targets other than ignore_index too.
    Tensor neg = tensor(std::vector<int64_t>{-3, 0, 1, 2, 3}, {5}).to(d);
    Tensor l2 = cross_entropy(x, neg);
    CHECK_THROWS_WITH(l2.to(kCPU), Catch::Contains("target[0] = -3"));
  }
}

TEST_CASE("cross_entropy gradients", "[cross_entropy][grad]") {
  using V = std::vector<Tensor>;
  Tensor x = random_input({6, 5}, 90);
  Tensor t = make_targets(6, 5, 91, 3, -100);
  for (double s : {0.0, 0.25}) {
    INFO("smoothing " << s);
    CHECK(gradcheck([t, s](const V& v) { return cross_entropy(v[0], t, s); }, {x}));
    Tensor t2 = make_targets(6, 5, 93, 0, -100);  // class 2 rows are ignored
    CHECK(gradcheck([t2, s](const V& v) { return cross_entropy(v[0].t(), t2, s, 2); }, {random_input({5, 6}, 92)}));
  }
}
