// The autograd engine: accumulation, retain_graph, freed graphs, NoGradGuard, long
// chains (no recursion), views in the graph, detach, gradients of shared inputs.
#include "testing.h"

using namespace petal;
using petal::testing::check_close;

TEST_CASE("gradients accumulate into leaves across backward calls", "[autograd]") {
  Tensor x = tensor({1.f, 2.f, 3.f}).requires_grad_();
  Tensor y = sum(mul(x, x));
  y.backward(Tensor(), /*retain_graph=*/true);
  CHECK(x.grad().tolist<float>() == std::vector<float>{2, 4, 6});
  y.backward();
  CHECK(x.grad().tolist<float>() == std::vector<float>{4, 8, 12});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a second backward through a freed graph is a clear error", "[autograd]") {
  Tensor x = tensor({1.f, 2.f}).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward();
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("second time") && Catch::Contains("retain_graph"));
}

TEST_CASE("backward needs a scalar or an explicit gradient", "[autograd]") {
  Tensor x = tensor({1.f, 2.f}).requires_grad_();
  Tensor y = mul(x, 3.0);
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("scalar"));
  y.backward(tensor({1.f, 10.f}));
  CHECK(x.grad().tolist<float>() == std::vector<float>{3, 30});
  CHECK_THROWS_WITH(sum(zeros({2})).backward(), Catch::Contains("does not require grad"));
}

TEST_CASE("NoGradGuard and detach stop the graph", "[autograd]") {
  Tensor x = tensor({1.f, 2.f}).requires_grad_();
  {
    NoGradGuard ng;
    Tensor y = mul(x, 2.0);
    CHECK_FALSE(y.requires_grad());
    CHECK(grad_enabled() == false);
  }
  CHECK(grad_enabled());
  Tensor z = mul(x.detach(), 2.0);
  CHECK_FALSE(z.requires_grad());
  CHECK(x.is_leaf());
  CHECK_FALSE(mul(x, 2.0).is_leaf());
}

TEST_CASE("a 10000-op chain runs backward without deep recursion", "[autograd]") {
  Tensor x = tensor({0.5f}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 10000; ++i) y = add(y, 0.0001);
  sum(y).backward();
  CHECK(x.grad().item() == 1.0);
  // and destroying the chain does not blow the stack either
  y = Tensor();
}

TEST_CASE("shared inputs and views receive summed gradients", "[autograd]") {
  Tensor x = petal::testing::random_input({3, 4}, 3).requires_grad_();
  Tensor y = add(mul(x, x), x.t().contiguous().t());
  Tensor loss = sum(mul(y, x.select(0, 1)));  // broadcast a view of x
  loss.backward();
  // d/dx of sum((x^2 + x) * x[1]) : elementwise part (2x+1)*x[1] plus column sums into row 1
  Tensor expected;
  {
    NoGradGuard ng;
    Tensor xd = x.detach();
    expected = mul(add(mul(xd, 2.0), 1.0), xd.select(0, 1));
    Tensor extra = sum(add(mul(xd, xd), xd), {0});
    expected.select(0, 1).add_(extra);
  }
  check_close(x.grad(), expected, 1e-12, "grad");
  petal::testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        const Tensor& a = in[0];
        return mul(add(mul(a, a), a.t().contiguous().t()), a.select(0, 1).unsqueeze(0).expand({3, 4}));
      },
      {x.detach()});
}

TEST_CASE("view ops have gradients", "[autograd][grad]") {
  Tensor x = petal::testing::random_input({2, 3, 4}, 9);
  using petal::testing::gradcheck;
  gradcheck([](const std::vector<Tensor>& in) { return in[0].permute({2, 0, 1}); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return in[0].reshape({4, 6}); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return in[0].transpose(0, 2).reshape({-1}); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return in[0].narrow(2, 1, 2); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return in[0].slice(1, 0, 3, 2); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return in[0].select(1, 2); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return in[0].unsqueeze(1).expand({2, 5, 3, 4}); }, {x});
  gradcheck([](const std::vector<Tensor>& in) { return in[0].to(DType::f32).to(DType::f64); }, {x}, 1e-3, 1e-3, 1e-3);
  gradcheck([](const std::vector<Tensor>& in) { return in[0].clone().flatten(); }, {x});
}
