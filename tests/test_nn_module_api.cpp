// nn::Module infrastructure: dotted names, buffers, modes, in-place dtype/device moves that
// keep handles valid, zero_grad, state_dict round trips and strict-load error reports.
#include <algorithm>
#include <string>
#include <vector>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
using petal::testing::random_input;

namespace {

// A small two-level model with a buffer.
class Block : public nn::Module {
 public:
  explicit Block(int64_t d) : Module("Block") {
    fc = register_module("fc", std::make_shared<nn::Linear>(d, d));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(d));
    scale = register_buffer("scale", full({d}, 2.0));
    scratch = register_buffer("scratch", zeros({1}), /*persistent=*/false);
  }
  Tensor forward(const Tensor& x) override { return mul(norm->forward(fc->forward(x)), scale); }
  std::shared_ptr<nn::Linear> fc;
  std::shared_ptr<nn::LayerNorm> norm;
  Tensor scale, scratch;
};

class Net : public nn::Module {
 public:
  Net() : Module("Net") {
    gain = register_parameter("gain", ones({1}));
    body = register_module("body", std::make_shared<nn::Sequential>());
    body->push_back(std::make_shared<Block>(4)).push_back(std::make_shared<nn::ReLU>());
    body->push_back(std::make_shared<Block>(4));
    drop = register_module("drop", std::make_shared<nn::Dropout>(0.5));
  }
  Tensor forward(const Tensor& x) override { return mul(drop->forward(body->forward(x)), gain); }
  Tensor gain;
  std::shared_ptr<nn::Sequential> body;
  std::shared_ptr<nn::Dropout> drop;
};

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& p : v) out.push_back(p.first);
  return out;
}

}  // namespace

TEST_CASE("Module: dotted names, buffers, children, lookups", "[nn][module]") {
  auto net = std::make_shared<Net>();
  std::vector<std::string> expected{"gain",           "body.0.fc.weight",   "body.0.fc.bias",
                                    "body.0.norm.weight", "body.0.norm.bias", "body.2.fc.weight",
                                    "body.2.fc.bias", "body.2.norm.weight", "body.2.norm.bias"};
  REQUIRE(names_of(net->named_parameters()) == expected);
  REQUIRE(names_of(net->named_parameters(false)) == std::vector<std::string>{"gain"});
  REQUIRE(names_of(net->named_buffers()) ==
          std::vector<std::string>{"body.0.scale", "body.0.scratch", "body.2.scale", "body.2.scratch"});
  auto sd = net->state_dict();
  // Own parameters, own buffers, then children (torch's order).
  std::vector<std::string> sd_expected{"gain",           "body.0.scale",       "body.0.fc.weight",
                                       "body.0.fc.bias", "body.0.norm.weight", "body.0.norm.bias",
                                       "body.2.scale",   "body.2.fc.weight",   "body.2.fc.bias",
                                       "body.2.norm.weight", "body.2.norm.bias"};
  REQUIRE(sd.keys() == sd_expected);  // non-persistent buffers left out
  REQUIRE(net->num_parameters() == 1 + 2 * (16 + 4 + 4 + 4));
  REQUIRE(net->get_tensor("body.2.fc.weight").is_same(std::dynamic_pointer_cast<Block>((*net->body)[2])->fc->weight));
  REQUIRE(net->get_submodule("body.0.norm")->type_name() == "LayerNorm");
  CHECK_THROWS_AS(net->get_tensor("body.1.fc.weight"), Error);
  CHECK_THROWS_AS(net->get_submodule("body.7"), Error);
  auto mods = net->named_modules();
  REQUIRE(mods.front().first.empty());
  REQUIRE(std::any_of(mods.begin(), mods.end(), [](auto& m) { return m.first == "body.2.fc"; }));
  for (auto& p : net->parameters()) REQUIRE(p.requires_grad());
  CHECK_THROWS_AS(nn::Module().forward(ones({1})), Error);
}

TEST_CASE("Module: train/eval propagate, requires_grad_, zero_grad", "[nn][module]") {
  auto net = std::make_shared<Net>();
  REQUIRE(net->drop->is_training());
  net->eval();
  REQUIRE_FALSE(net->is_training());
  REQUIRE_FALSE(net->drop->is_training());
  REQUIRE_FALSE((*net->body)[0]->is_training());
  net->train();
  REQUIRE((*net->body)[2]->get_submodule("fc")->is_training());

  net->eval();
  Tensor x = random_input({3, 4}, 1).to(DType::f32);
  sum(net->forward(x)).backward();
  for (auto& [name, p] : net->named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
  }
  net->zero_grad(false);
  for (auto& p : net->parameters()) REQUIRE(p.grad().defined());
  for (auto& p : net->parameters()) REQUIRE(sum(abs(p.grad())).item() == 0.0);
  net->zero_grad();
  for (auto& p : net->parameters()) REQUIRE_FALSE(p.grad().defined());
  net->requires_grad_(false);
  for (auto& p : net->parameters()) REQUIRE_FALSE(p.requires_grad());
}

TEST_CASE("Module::to keeps parameter handles valid", "[nn][module]") {
  manual_seed(2);
  auto net = std::make_shared<Net>();
  net->eval();
  Tensor w = net->get_tensor("body.0.fc.weight");  // a handle taken before the move
  Tensor x = random_input({2, 4}, 3);
  Tensor y32 = net->forward(x.to(DType::f32));
  sum(y32).backward();
  net->to(DType::f64);
  REQUIRE(w.dtype() == DType::f64);
  REQUIRE(w.requires_grad());
  REQUIRE(w.grad().dtype() == DType::f64);  // grads follow
  REQUIRE(net->get_tensor("body.0.scale").dtype() == DType::f64);
  check_close(net->forward(x), y32.to(DType::f64), 1e-5, "after to(f64)");
  for (const auto& dev : petal::testing::test_devices()) {
    if (dev == "cpu") continue;
    net->to(Device(dev));
    REQUIRE(w.device() == Device(dev));
    check_close(net->forward(x.to(Device(dev))), y32.to(DType::f64), 1e-5, "after to(" + dev + ")");
    net->to(kCPU);
    REQUIRE(w.device() == kCPU);
  }
}

TEST_CASE("state_dict round trip restores the outputs", "[nn][module]") {
  manual_seed(4);
  auto a = std::make_shared<Net>();
  manual_seed(5);
  auto b = std::make_shared<Net>();
  a->eval();
  b->eval();
  {
    NoGradGuard ng;
    a->get_tensor("body.2.scale").copy_(full({4}, -0.5));
  }
  Tensor x = random_input({3, 4}, 6).to(DType::f32);
  Tensor ya = a->forward(x);
  REQUIRE_FALSE(allclose(ya, b->forward(x)));
  b->load_state_dict(a->state_dict());
  REQUIRE(allclose(ya, b->forward(x), 0, 0));
  // Values were copied, not aliased.
  {
    NoGradGuard ng;
    a->get_tensor("gain").fill_(3.0);
  }
  REQUIRE(b->get_tensor("gain").item() == 1.0);
}

TEST_CASE("load_state_dict reports every bad key in one error", "[nn][module]") {
  auto net = std::make_shared<Net>();
  nn::StateDict sd = net->state_dict();
  nn::StateDict bad;
  for (const auto& [name, t] : sd) {
    if (name == "body.0.fc.bias" || name == "body.2.scale") continue;  // missing
    if (name == "body.2.fc.weight") {
      bad.insert(name, zeros({4, 5}));  // shape mismatch
    } else if (name == "body.0.norm.weight") {
      bad.insert(name, zeros({4}, DType::f64));  // dtype mismatch
    } else {
      bad.insert(name, t);
    }
  }
  bad.insert("body.9.fc.weight", zeros({1}));  // unexpected
  bad.insert("extra", zeros({2}));
  std::string msg;
  try {
    net->load_state_dict(bad);
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO(msg);
  REQUIRE_FALSE(msg.empty());
  for (const char* key : {"body.0.fc.bias", "body.2.scale", "body.9.fc.weight", "extra", "body.2.fc.weight",
                          "[4, 5]", "[4, 4]", "body.0.norm.weight", "float64", "missing", "unexpected"})
    CHECK(msg.find(key) != std::string::npos);
  // Nothing was copied by the failed load.
  REQUIRE(net->get_tensor("body.2.fc.weight").shape() == Shape{4, 4});

  // Non-strict: missing/unexpected are fine, shape errors are not.
  nn::StateDict partial;
  partial.insert("gain", full({1}, 7.0));
  partial.insert("not_there", zeros({3}));
  net->load_state_dict(partial, /*strict=*/false);
  REQUIRE(net->get_tensor("gain").item() == 7.0);
  partial.set("gain", zeros({2}));
  CHECK_THROWS_AS(net->load_state_dict(partial, false), Error);

  nn::StateDict d;
  d.insert("a", zeros({1}));
  CHECK_THROWS_AS(d.insert("a", zeros({1})), Error);
  CHECK_THROWS_AS(d.at("b"), Error);
  REQUIRE(d.erase("a"));
  REQUIRE(d.empty());
}

TEST_CASE("Sequential chains its modules", "[nn][module]") {
  manual_seed(12);
  auto l1 = std::make_shared<nn::Linear>(3, 6);
  auto l2 = std::make_shared<nn::Linear>(6, 2);
  nn::Sequential seq({l1, std::make_shared<nn::GELU>(), l2});
  REQUIRE(seq.size() == 3);
  Tensor x = randn({5, 3});
  REQUIRE(allclose(seq(x), l2->forward(gelu(l1->forward(x))), 0, 0));
  REQUIRE(names_of(seq.named_parameters()) ==
          std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK_THROWS_AS(nn::make_activation("swish"), Error);
  REQUIRE(seq.named_modules().size() == 4);  // a local module lists itself without owning
  REQUIRE(seq.named_modules()[0].second.get() == &seq);
}
