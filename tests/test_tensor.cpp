// Tensor core: factories, views (strides, sharing, errors), copies across dtypes,
// printing, RNG determinism, error messages.
#include "testing.h"

using namespace petal;
using petal::testing::check_close;

TEST_CASE("factories fill shapes and values", "[tensor]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Tensor z = zeros({2, 3}, TensorOptions(DType::f32, Device(dev)));
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.device() == Device(dev));
  CHECK(sum(z).item() == 0.0);
  Tensor o = ones({7}, TensorOptions(DType::f64, Device(dev)));
  CHECK(sum(o).item() == 7.0);
  Tensor f = full({3, 1}, 2.5, TensorOptions(DType::f32, Device(dev)));
  CHECK(f.tolist<float>() == std::vector<float>{2.5f, 2.5f, 2.5f});
  Tensor a = arange(5);
  CHECK(a.dtype() == DType::i64);
  CHECK(a.tolist<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  Tensor a2 = arange(1.0, 2.0, 0.25, TensorOptions(DType::f32));
  CHECK(a2.tolist<float>() == std::vector<float>{1.0f, 1.25f, 1.5f, 1.75f});
  Tensor l = linspace(0, 1, 5, TensorOptions(DType::f64));
  CHECK(l.tolist<double>() == std::vector<double>{0, 0.25, 0.5, 0.75, 1});
  Tensor t = tensor({1.f, 2.f, 3.f, 4.f}, {2, 2});
  CHECK(t.select(1, 1).tolist<float>() == std::vector<float>{2.f, 4.f});
  CHECK(scalar_tensor(3.0).dim() == 0);
  CHECK(scalar_tensor(3.0).item() == 3.0);
}

TEST_CASE("views share storage and compute strides", "[tensor]") {
  Tensor x = arange(0.0, 24.0, 1.0, TensorOptions(DType::f32)).view({2, 3, 4});
  CHECK(x.strides() == Shape{12, 4, 1});
  Tensor p = x.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK_FALSE(p.is_contiguous());
  CHECK(p.contiguous().is_contiguous());
  CHECK(p.contiguous().select(0, 1).select(0, 1).tolist<float>() == std::vector<float>{13, 17, 21});
  Tensor tr = x.transpose(0, 1);
  CHECK(tr.shape() == Shape{3, 2, 4});
  // narrow/slice/select alias the same memory
  Tensor n = x.narrow(2, 1, 2);
  CHECK(n.shape() == Shape{2, 3, 2});
  {
    NoGradGuard ng;
    n.fill_(-1);
  }
  CHECK(x.select(0, 0).select(0, 0).tolist<float>() == std::vector<float>{0, -1, -1, 3});
  Tensor s = arange(10.0).to(DType::f32).slice(0, 1, 9, 3);
  CHECK(s.tolist<float>() == std::vector<float>{1, 4, 7});
  // expand gives stride 0
  Tensor e = tensor({1.f, 2.f, 3.f}).view({3, 1}).expand({3, 4});
  CHECK(e.strides() == Shape{1, 0});
  CHECK(sum(e).item() == 24.0);
  // view of a non-contiguous tensor fails; reshape copies
  CHECK_THROWS_WITH(p.view({-1}), Catch::Contains("view") && Catch::Contains("reshape"));
  CHECK(p.reshape({-1}).numel() == 24);
  CHECK(x.view({4, -1}).shape() == Shape{4, 6});
  CHECK(x.unsqueeze(1).shape() == Shape{2, 1, 3, 4});
  CHECK(x.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
  CHECK(x.unsqueeze(1).squeeze(1).shape() == x.shape());
  CHECK(x.flatten(1).shape() == Shape{2, 12});
  // a view splitting a dim of a transposed tensor keeps strides
  Tensor tt = arange(0.0, 12.0).view({3, 4}).t();  // [4, 3] strides [1, 4]
  CHECK(tt.view({2, 2, 3}).strides() == Shape{2, 1, 4});
}

TEST_CASE("view and shape errors name the op and shapes", "[tensor]") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH(x.view({4, 2}), Catch::Contains("view") && Catch::Contains("[4, 2]"));
  CHECK_THROWS_WITH(x.select(1, 3), Catch::Contains("select") && Catch::Contains("out of range"));
  CHECK_THROWS_WITH(x.narrow(0, 1, 2), Catch::Contains("narrow"));
  CHECK_THROWS_WITH(x.expand({3, 3}), Catch::Contains("expand"));
  CHECK_THROWS_WITH(x.permute({0, 0}), Catch::Contains("permute"));
  CHECK_THROWS_WITH(x.transpose(0, 2), Catch::Contains("transpose") && Catch::Contains("out of range"));
  CHECK_THROWS_WITH(add(zeros({2, 3}), zeros({4})), Catch::Contains("add") && Catch::Contains("[2, 3]") &&
                                                         Catch::Contains("[4]"));
  CHECK_THROWS_WITH(Device("tpu"), Catch::Contains("tpu"));
  CHECK_THROWS_WITH(x.item(), Catch::Contains("item") && Catch::Contains("[2, 3]"));
  CHECK_THROWS_WITH(Tensor().shape(), Catch::Contains("undefined"));
}

TEST_CASE("dtype conversion round trips and rounds like CUDA", "[tensor]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Tensor x = tensor({1.0f, -2.5f, 3.140625f, 65504.f, 1e-8f, 0.1f}).to(Device(dev));
  for (DType dt : {DType::f64, DType::bf16, DType::f16, DType::f32}) {
    Tensor y = x.to(dt).to(DType::f32).cpu();
    std::vector<float> v = y.tolist<float>();
    CHECK(v[0] == 1.0f);
    CHECK(v[1] == -2.5f);
    if (dt == DType::bf16) CHECK(v[5] == petal::bf16_bits_to_float(0x3dcd));  // 0.1 -> 0.10009765625
    if (dt == DType::f16) {
      CHECK(v[3] == 65504.f);
      CHECK(v[5] == petal::f16_bits_to_float(0x2e66));
    }
  }
  Tensor i = tensor({1.7f, -1.7f, 2.0f}).to(DType::i64);
  CHECK(i.tolist<int64_t>() == std::vector<int64_t>{1, -1, 2});
  Tensor b = tensor({0.f, 2.f}).to(DType::b8);
  CHECK(b.tolist<int>() == std::vector<int>{0, 1});
  CHECK(petal::float_to_f16_bits(1e6f) == 0x7c00);
  CHECK(petal::f16_bits_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(petal::float_to_f16_bits(std::ldexp(1.0f, -24)) == 0x0001);
}

TEST_CASE("copy_ handles strides, broadcasts and devices", "[tensor]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  Tensor src = petal::testing::random_input({5, 7}, 1, DType::f32, Device(dev));
  Tensor dst = zeros({7, 5}, TensorOptions(DType::f64, Device(dev)));
  dst.copy_(src.t());
  check_close(dst, src.t().to(kCPU, DType::f64), 0.0, "transposed copy");
  Tensor row = petal::testing::random_input({7}, 2, DType::f32, Device(dev));
  Tensor m = empty({3, 7}, TensorOptions(DType::f32, Device(dev)));
  m.copy_(row);
  check_close(m.select(0, 2), row.to(kCPU, DType::f64), 0.0, "broadcast copy");
  Tensor host = m.cpu();
  CHECK(host.device() == kCPU);
  CHECK_THROWS_WITH(m.copy_(zeros({2, 7})), Catch::Contains("copy_"));
}

TEST_CASE("random numbers are seeded and distributed", "[tensor][random]") {
  manual_seed(123);
  Tensor a = randn({10000});
  manual_seed(123);
  Tensor b = randn({10000});
  CHECK(a.tolist<float>() == b.tolist<float>());
  Tensor c = randn({10000});
  CHECK(a.tolist<float>() != c.tolist<float>());
  double m = mean(a).item(), v = var(a, {0}).item();
  CHECK(std::fabs(m) < 0.05);
  CHECK(std::fabs(v - 1.0) < 0.05);
  Tensor u = rand({10000}, TensorOptions(DType::f64));
  CHECK(min(u).item() >= 0.0);
  CHECK(max(u).item() < 1.0);
  CHECK(std::fabs(mean(u).item() - 0.5) < 0.02);
  Tensor r = randint(3, 7, {1000});
  CHECK(min(r).item() == 3);
  CHECK(max(r).item() == 6);
  // Same numbers on every backend.
  for (const auto& dev : petal::testing::test_devices()) {
    manual_seed(77);
    Tensor x = randn({33}, TensorOptions(DType::f64, Device(dev)));
    manual_seed(77);
    Tensor y = randn({33}, TensorOptions(DType::f64));
    check_close(x, y, 1e-12, "randn on " + dev);
  }
}

TEST_CASE("printing looks like PyTorch", "[tensor]") {
  CHECK(tensor({1.f, 2.f, 3.f}).to_string() == "tensor([1., 2., 3.])");
  CHECK(arange(3).to_string() == "tensor([0, 1, 2])");
  CHECK(tensor({1.5f, -2.25f}).to_string() == "tensor([ 1.5000, -2.2500])");
  CHECK(tensor({0.5f}, {}, TensorOptions(DType::f64)).view({1, 1}).to_string() == "tensor([[0.5000]], dtype=float64)");
  Tensor g = tensor({1.f, 2.f}).requires_grad_();
  CHECK(g.to_string() == "tensor([1., 2.], requires_grad=True)");
  CHECK(mul(g, 2.0).to_string().find("grad_fn=<mulBackward>") != std::string::npos);
  std::ostringstream os;
  os << tensor({1.f, 2.f, 3.f, 4.f}, {2, 2});
  CHECK(os.str() == "tensor([[1., 2.],\n        [3., 4.]])");
  CHECK(gt(tensor({1.f, 3.f}), 2.0).to_string() == "tensor([False,  True])");
}
