// Uses the installed headers and library: a tiny autograd computation.
#include <petal/petal.h>

#include <cstdio>

int main() {
  petal::Tensor x = petal::tensor({1.f, 2.f, 3.f}).requires_grad_();
  petal::Tensor y = petal::sum(petal::mul(x, x));
  y.backward();
  std::vector<float> g = x.grad().tolist<float>();
  std::printf("y = %g, grad = [%g, %g, %g]\n", y.item(), g[0], g[1], g[2]);
  return (y.item() == 14.0 && g[0] == 2.f && g[1] == 4.f && g[2] == 6.f) ? 0 : 1;
}
