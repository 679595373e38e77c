// Optimizers against the torch update rules written out in plain double arithmetic over
// several steps, parameter groups, optimizer state round trips, LR schedules against their
// formulas, and clip_grad_norm.
#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::random_input;

namespace {

using Vec = std::vector<double>;

Tensor from_host(const Vec& v, DType dt) { return tensor(v, {static_cast<int64_t>(v.size())}, TensorOptions(dt)); }

// Gradient fed at step t (fixed, random, never zero).
Vec grad_at(int t, size_t n) { return random_input({static_cast<int64_t>(n)}, 100 + t).tolist<double>(); }

struct SGDRef {
  double lr, momentum, dampening, wd;
  bool nesterov;
  Vec buf;
  bool first = true;
  void step(Vec& p, const Vec& g_in) {
    if (buf.empty()) buf.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      double g = g_in[i] + wd * p[i];
      if (momentum != 0.0) {
        buf[i] = first ? g : momentum * buf[i] + (1 - dampening) * g;
        g = nesterov ? g + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * g;
    }
    first = false;
  }
};

struct AdamWRef {
  double lr, b1, b2, eps, wd;
  bool amsgrad;
  Vec m, v, vmax;
  int t = 0;
  void step(Vec& p, const Vec& g) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0), vmax.assign(p.size(), 0.0);
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      vmax[i] = std::max(vmax[i], v[i]);
      double second = amsgrad ? vmax[i] : v[i];
      double denom = std::sqrt(second) / std::sqrt(1 - std::pow(b2, t)) + eps;
      p[i] -= lr / (1 - std::pow(b1, t)) * m[i] / denom;
    }
  }
};

}  // namespace

TEST_CASE("SGD follows torch.optim.SGD over several steps", "[optim]") {
  struct Case {
    optim::SGDOptions o;
    const char* what;
  };
  std::vector<Case> cases{{{0.1, 0.0, 0.0, 0.0, false}, "plain"},
                          {{0.05, 0.9, 0.0, 0.0, false}, "momentum"},
                          {{0.05, 0.9, 0.3, 0.01, false}, "momentum+dampening+wd"},
                          {{0.02, 0.8, 0.0, 0.05, true}, "nesterov+wd"}};
  for (DType dt : {DType::f64, DType::f32}) {
    for (const auto& c : cases) {
      INFO(c.what << " " << dtype_name(dt));
      Vec p = random_input({7}, 1).tolist<double>();
      Tensor param = from_host(p, dt).requires_grad_();
      optim::SGD opt({param}, c.o);
      SGDRef ref{c.o.lr, c.o.momentum, c.o.dampening, c.o.weight_decay, c.o.nesterov, {}};
      for (int t = 0; t < 5; ++t) {
        Vec g = grad_at(t, 7);
        param.set_grad(from_host(g, dt));
        opt.step();
        ref.step(p, g);
        check_close(param, from_host(p, DType::f64), dt == DType::f64 ? 1e-12 : 1e-6, c.what);
      }
    }
  }
  CHECK_THROWS_AS(optim::SGD({from_host({1.0}, DType::f32)}, optim::SGDOptions{0.1, 0.0, 0.0, 0.0, true}), Error);
}

TEST_CASE("AdamW follows torch.optim.AdamW over several steps", "[optim]") {
  for (bool amsgrad : {false, true}) {
    for (DType dt : {DType::f64, DType::f32}) {
      INFO("amsgrad " << amsgrad << " " << dtype_name(dt));
      optim::AdamWOptions o;
      o.lr = 0.01;
      o.beta1 = 0.85;
      o.beta2 = 0.99;
      o.eps = 1e-6;
      o.weight_decay = 0.1;
      o.amsgrad = amsgrad;
      Vec p = random_input({9}, 2).tolist<double>();
      Tensor param = from_host(p, dt).requires_grad_();
      optim::AdamW opt({param}, o);
      AdamWRef ref{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, amsgrad, {}, {}, {}};
      for (int t = 0; t < 6; ++t) {
        // Shrinking gradients make v decrease, so amsgrad's max matters.
        Vec g = grad_at(t, 9);
        for (auto& e : g) e *= std::pow(0.3, t);
        param.set_grad(from_host(g, dt));
        opt.step();
        ref.step(p, g);
        check_close(param, from_host(p, DType::f64), dt == DType::f64 ? 1e-12 : 1e-6, "adamw");
      }
      REQUIRE(opt.state_dict().scalars.at("state.0.step") == 6.0);
    }
  }
}

TEST_CASE("parameter groups: own hyper-parameters, no decay on 1-D tensors, skipped params", "[optim]") {
  Tensor w = random_input({3, 4}, 3).to(DType::f32).requires_grad_();
  Tensor b = random_input({4}, 4).to(DType::f32).requires_grad_();
  Tensor pos = random_input({1, 2, 4}, 5).to(DType::f32).requires_grad_();
  Tensor frozen = random_input({2, 2}, 6).to(DType::f32);
  auto groups = optim::weight_decay_groups({{"fc.weight", w}, {"fc.bias", b}, {"pos_embed", pos}, {"frozen", frozen}},
                                           0.5, {"pos_embed"});
  REQUIRE(groups.size() == 2);
  REQUIRE(groups[0].get("weight_decay") == 0.0);
  REQUIRE(groups[0].params.size() == 2);
  REQUIRE(groups[1].get("weight_decay") == 0.5);
  REQUIRE(groups[1].params.size() == 1);
  REQUIRE(groups[1].params[0].is_same(w));
  groups[0].set_lr(0.5);  // own lr; group 1 takes the default
  optim::SGD opt(groups, optim::SGDOptions{0.1});
  REQUIRE(opt.param_groups()[1].lr() == 0.1);
  Vec w0 = w.tolist<double>(), b0 = b.tolist<double>();
  w.set_grad(ones({3, 4}));
  b.set_grad(ones({4}));
  // pos gets no gradient: it must stay untouched.
  Tensor pos_before = pos.detach().clone();
  opt.step();
  Vec w1 = w.tolist<double>(), b1 = b.tolist<double>();
  for (size_t i = 0; i < w0.size(); ++i) REQUIRE(w1[i] == Approx(w0[i] - 0.1 * (1.0 + 0.5 * w0[i])).epsilon(1e-6));
  for (size_t i = 0; i < b0.size(); ++i) REQUIRE(b1[i] == Approx(b0[i] - 0.5).epsilon(1e-6));
  REQUIRE(allclose(pos, pos_before, 0, 0));
  opt.zero_grad();
  REQUIRE_FALSE(w.grad().defined());
  CHECK_THROWS_AS(optim::SGD({w, w}, optim::SGDOptions{}), Error);
  CHECK_THROWS_AS(optim::SGD({optim::ParamGroup({b}, {{"betas", 1.0}})}, optim::SGDOptions{}), Error);
}

TEST_CASE("optimizer state_dict resumes exactly", "[optim]") {
  for (int which = 0; which < 2; ++which) {
    INFO((which ? "AdamW" : "SGD"));
    auto make = [&](std::vector<Tensor> ps) -> std::unique_ptr<optim::Optimizer> {
      std::vector<optim::ParamGroup> g{optim::ParamGroup({ps[0]}), optim::ParamGroup({ps[1]}, {{"lr", 0.02}})};
      if (which) return std::make_unique<optim::AdamW>(g, optim::AdamWOptions{});
      return std::make_unique<optim::SGD>(g, optim::SGDOptions{0.1, 0.9});
    };
    std::vector<Tensor> a{random_input({2, 3}, 7).requires_grad_(), random_input({5}, 8).requires_grad_()};
    auto opt_a = make(a);
    for (int t = 0; t < 3; ++t) {
      a[0].set_grad(random_input({2, 3}, 20 + t));
      a[1].set_grad(random_input({5}, 30 + t));
      opt_a->step();
    }
    // Resume into a fresh optimizer over copies of the parameters.
    std::vector<Tensor> b{a[0].detach().clone().requires_grad_(), a[1].detach().clone().requires_grad_()};
    auto opt_b = make(b);
    optim::OptimizerState st = opt_a->state_dict();
    REQUIRE(st.tensors.count(which ? "state.1.exp_avg_sq" : "state.1.momentum_buffer"));
    REQUIRE(st.scalars.at("param_groups.1.lr") == 0.02);
    opt_b->load_state_dict(st);
    for (int t = 3; t < 5; ++t) {
      for (auto* v : {&a, &b}) {
        (*v)[0].set_grad(random_input({2, 3}, 20 + t));
        (*v)[1].set_grad(random_input({5}, 30 + t));
      }
      opt_a->step();
      opt_b->step();
    }
    REQUIRE(allclose(a[0], b[0], 0, 0));
    REQUIRE(allclose(a[1], b[1], 0, 0));
    // A state for another layout is refused, naming the problem.
    std::vector<Tensor> c{random_input({3, 3}, 9).requires_grad_(), random_input({5}, 10).requires_grad_()};
    auto opt_c = make(c);
    try {
      opt_c->load_state_dict(st);
      FAIL("load_state_dict accepted a mismatched state");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("state.0.") != std::string::npos);
    }
  }
}

TEST_CASE("LambdaLR with the seed's cosine factor and warmup+cosine", "[optim][schedule]") {
  Tensor p = random_input({3}, 11).requires_grad_();
  optim::SGD opt({optim::ParamGroup({p}), optim::ParamGroup({random_input({2}, 12).requires_grad_()}, {{"lr", 0.5}})},
                 optim::SGDOptions{0.1});
  const int64_t epochs = 10;
  const double lrf = 0.01;
  optim::LambdaLR sched(opt, optim::cosine_lf(epochs, lrf));
  auto lf = [&](int64_t x) { return ((1 + std::cos(x * M_PI / epochs)) / 2) * (1 - lrf) + lrf; };
  for (int64_t e = 0; e <= epochs; ++e) {
    REQUIRE(sched.last_epoch() == e);
    REQUIRE(sched.get_last_lr()[0] == Approx(0.1 * lf(e)).epsilon(1e-12));
    REQUIRE(opt.param_groups()[1].lr() == Approx(0.5 * lf(e)).epsilon(1e-12));
    sched.step();
  }
  REQUIRE(optim::cosine_lf(epochs, lrf)(0) == 1.0);
  REQUIRE(optim::cosine_lf(epochs, lrf)(epochs) == Approx(lrf));
  // Resume the schedule.
  auto st = sched.state_dict();
  optim::SGD opt2({p}, optim::SGDOptions{0.3});
  optim::LambdaLR s1(opt2, optim::cosine_lf(epochs, lrf));
  for (int i = 0; i < 4; ++i) s1.step();
  optim::SGD opt3({p}, optim::SGDOptions{0.3});
  optim::LambdaLR s2(opt3, optim::cosine_lf(epochs, lrf));
  s2.load_state_dict(s1.state_dict());
  REQUIRE(s2.last_epoch() == 4);
  REQUIRE(opt3.param_groups()[0].lr() == Approx(0.3 * lf(4)));
  s2.step();
  REQUIRE(s2.get_last_lr()[0] == Approx(0.3 * lf(5)));
  CHECK_THROWS_AS(s2.load_state_dict(st), Error);  // two groups' state into one group

  auto wc = optim::warmup_cosine_lf(5, 25, 0.1, 0.2);
  for (int64_t x = 0; x < 5; ++x) CHECK(wc(x) == Approx(0.2 + 0.8 * x / 5.0));
  for (int64_t x = 5; x <= 25; ++x)
    CHECK(wc(x) == Approx(((1 + std::cos(M_PI * (x - 5) / 20.0)) / 2) * 0.9 + 0.1));
  CHECK(wc(40) == Approx(0.1));
  CHECK_THROWS_AS(optim::warmup_cosine_lf(5, 5, 0.1), Error);
}

TEST_CASE("clip_grad_norm: torch semantics", "[optim]") {
  Tensor a = random_input({4, 3}, 13).to(DType::f32).requires_grad_();
  Tensor b = random_input({5}, 14).to(DType::f32).requires_grad_();
  Tensor c = random_input({2}, 15).to(DType::f32).requires_grad_();  // no grad: skipped
  Vec ga = random_input({4, 3}, 16).tolist<double>(), gb = random_input({5}, 17).tolist<double>();
  auto set = [&] {
    a.set_grad(tensor(ga, {4, 3}, TensorOptions(DType::f32)));
    b.set_grad(tensor(gb, {5}, TensorOptions(DType::f32)));
  };
  double sq = 0, mx = 0, l1 = 0;
  for (const Vec* g : {&ga, &gb})
    for (double v : *g) sq += v * v, mx = std::max(mx, std::abs(v)), l1 += std::abs(v);
  double total = std::sqrt(sq);
  set();
  REQUIRE(optim::clip_grad_norm({a, b, c}, 1e6) == Approx(total).epsilon(1e-6));
  check_close(a.grad(), tensor(ga, {4, 3}, TensorOptions(DType::f64)), 1e-6, "unclipped");
  set();
  REQUIRE(optim::clip_grad_norm({a, b, c}, 0.5) == Approx(total).epsilon(1e-6));
  double coef = 0.5 / (total + 1e-6);
  Vec expected;
  for (double v : ga) expected.push_back(v * coef);
  check_close(a.grad(), tensor(expected, {4, 3}, TensorOptions(DType::f64)), 1e-6, "clipped");
  double after = 0;
  for (const auto& t : {a.grad(), b.grad()}) after += sum(square(t.to(DType::f64))).item();
  CHECK(std::sqrt(after) == Approx(0.5).epsilon(1e-5));
  set();
  REQUIRE(optim::clip_grad_norm({a, b}, 10.0, INFINITY) == Approx(mx).epsilon(1e-6));
  set();
  REQUIRE(optim::clip_grad_norm({a, b}, 100.0, 1.0) == Approx(l1).epsilon(1e-6));
  REQUIRE(optim::clip_grad_norm({c}, 1.0) == 0.0);
}

TEST_CASE("clip_grad_norm_ stays on the gradients' device and matches a float64 reference", "[optim]") {
  for (const auto& dev : petal::testing::test_devices()) {
    INFO(dev);
    const Device d(dev);
    std::vector<Tensor> params;
    std::vector<Vec> grads;
    double sq = 0;
    for (int i = 0; i < 5; ++i) {
      const Shape shape = {3 + i, 7};
      Tensor p = random_input(shape, 40 + i).to(d, DType::f32).requires_grad_();
      Vec g = random_input(shape, 60 + i).tolist<double>();
      for (double& v : g) v = static_cast<float>(v * 3.0);
      for (double v : g) sq += v * v;
      p.set_grad(tensor(g, shape, TensorOptions(DType::f32)).to(d));
      params.push_back(p);
      grads.push_back(g);
    }
    const double total = std::sqrt(sq);
    Tensor norm = optim::clip_grad_norm_(params, 1.0);
    CHECK(norm.dim() == 0);
    CHECK(norm.device() == d);
    CHECK(norm.item() == Approx(total).epsilon(1e-6));
    const double coef = 1.0 / (total + 1e-6);
    for (size_t i = 0; i < params.size(); ++i) {
      Vec expected;
      for (double v : grads[i]) expected.push_back(v * coef);
      check_close(params[i].grad(), tensor(expected, params[i].shape(), TensorOptions(DType::f64)), 1e-6, "clipped");
    }
  }
}

TEST_CASE("an optimizer built before Module::to keeps updating the moved parameters", "[optim][nn]") {
  for (const auto& dev : petal::testing::test_devices()) {
    INFO(dev);
    manual_seed(21);
    auto a = std::make_shared<nn::Linear>(4, 3);
    manual_seed(21);
    auto b = std::make_shared<nn::Linear>(4, 3);  // reference: stays on the cpu
    optim::SGD opt_a(a->parameters(), optim::SGDOptions{0.1, 0.9});
    optim::SGD opt_b(b->parameters(), optim::SGDOptions{0.1, 0.9});
    Tensor x = random_input({5, 4}, 22).to(DType::f32);
    for (int t = 0; t < 4; ++t) {
      if (t == 2) a->to(Device(dev));  // after the momentum buffers exist
      for (auto* m : {a.get(), b.get()}) {
        m->zero_grad();
        sum(square(m->forward(x.to(m->weight.device())))).backward();
      }
      opt_a.step();
      opt_b.step();
    }
    REQUIRE(a->weight.device() == Device(dev));
    check_close(a->weight, b->weight.to(DType::f64), 1e-6, "moved weight");
    REQUIRE(opt_a.state_dict().tensors.at("state.0.momentum_buffer").device() == Device(dev));
  }
}

TEST_CASE("multi-tensor SGD and AdamW match the per-parameter path bit for bit", "[optim]") {
  // Two groups, mixed dtypes in a group (the list splits per dtype), a non-contiguous
  // parameter view (composed path), a parameter without gradient on some steps.
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  auto adamw = GENERATE(false, true);
  Device d(dev);
  INFO("device " << dev << (adamw ? " AdamW" : " SGD"));
  auto make_params = [&] {
    std::vector<Tensor> ps;
    ps.push_back(random_input({33, 7}, 11, DType::f32, d).requires_grad_());
    ps.push_back(random_input({5}, 12, DType::f32, d).requires_grad_());
    ps.push_back(random_input({9}, 13, DType::f64, d).requires_grad_());
    ps.push_back(random_input({20000}, 14, DType::f32, d).requires_grad_());
    ps.push_back(random_input({6, 4}, 15, DType::f32, d).t().requires_grad_());  // a view leaf: composed path
    return ps;
  };
  std::vector<Tensor> a = make_params(), b = make_params();
  auto groups = [](const std::vector<Tensor>& ps) {
    return std::vector<optim::ParamGroup>{optim::ParamGroup({ps[0], ps[1], ps[2]}, {{"lr", 0.05}}),
                                          optim::ParamGroup({ps[3], ps[4]}, {{"weight_decay", 0.0}})};
  };
  std::unique_ptr<optim::Optimizer> multi, single;
  if (adamw) {
    optim::AdamWOptions o;
    o.lr = 0.01;
    o.amsgrad = true;
    multi = std::make_unique<optim::AdamW>(groups(a), o);
    o.multi_tensor = false;
    single = std::make_unique<optim::AdamW>(groups(b), o);
  } else {
    optim::SGDOptions o;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.weight_decay = 0.01;
    o.nesterov = true;
    multi = std::make_unique<optim::SGD>(groups(a), o);
    o.multi_tensor = false;
    single = std::make_unique<optim::SGD>(groups(b), o);
  }
  for (int t = 0; t < 4; ++t) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (i == 1 && t == 1) {  // no gradient this step
        a[i].zero_grad();
        b[i].zero_grad();
        continue;
      }
      Tensor g = random_input(a[i].shape(), 100 + 10 * i + t, a[i].dtype(), d);
      a[i].set_grad(g);
      b[i].set_grad(g.clone());
    }
    multi->step();
    single->step();
    for (size_t i = 0; i < a.size(); ++i) {
      INFO("parameter " << i << " step " << t);
      CHECK(max(abs(sub(a[i].detach().to(kCPU, DType::f64), b[i].detach().to(kCPU, DType::f64)))).item<double>() ==
            0.0);
    }
  }
  CHECK(multi->state_dict().tensors.size() == single->state_dict().tensors.size());
}
