// A two-layer MLP written by hand with matmul/relu and trained with a hand-written SGD
// loop on random data: the smallest complete use of petal's tensors and autograd.
// Usage: mlp_example [device] [steps]   (device: cpu, sim, cuda; default cpu)
#include <petal/petal.h>

#include <cmath>
#include <cstdio>
#include <string>

using namespace petal;

int main(int argc, char** argv) {
  try {
    Device device(argc > 1 ? argv[1] : "cpu");
    int steps = argc > 2 ? std::stoi(argv[2]) : 200;
    manual_seed(0);
    const int64_t n = 256, in = 16, hidden = 64, out = 4;
    TensorOptions opts(DType::f32, device);

    // A random "teacher" network labels random inputs; the student learns to match it.
    Tensor x = randn({n, in}, opts);
    Tensor teacher = randn({in, out}, opts);
    Tensor y = tanh(matmul(x, teacher));

    Tensor w1 = mul(randn({in, hidden}, opts), 1.0 / std::sqrt(double(in))).requires_grad_();
    Tensor b1 = zeros({hidden}, opts).requires_grad_();
    Tensor w2 = mul(randn({hidden, out}, opts), 1.0 / std::sqrt(double(hidden))).requires_grad_();
    Tensor b2 = zeros({out}, opts).requires_grad_();
    const double lr = 0.1;

    double first = 0, last = 0;
    for (int step = 0; step < steps; ++step) {
      Tensor h = relu(matmul(x, w1) + b1);
      Tensor pred = matmul(h, w2) + b2;
      Tensor loss = mean(square(pred - y));
      for (Tensor* p : {&w1, &b1, &w2, &b2}) p->zero_grad();
      loss.backward();
      {
        NoGradGuard no_grad;
        for (Tensor* p : {&w1, &b1, &w2, &b2}) p->sub_(mul(p->grad(), lr));
      }
      double l = loss.item();
      if (step == 0) first = l;
      last = l;
      if (step % 20 == 0 || step == steps - 1) std::printf("step %4d  loss %.6f\n", step, l);
    }
    std::printf("loss %.6f -> %.6f on %s\n", first, last, device.str().c_str());
    return last < first ? 0 : 1;
  } catch (const petal::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
