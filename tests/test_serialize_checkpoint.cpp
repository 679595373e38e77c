// Training checkpoints: a run interrupted by save/load (into freshly built, differently
// seeded objects, with the global generator disturbed) continues with bit-identical losses
// and weights, for AdamW and SGD (momentum, nesterov) with a warmup-cosine schedule and
// dropout/drop-path drawing from the generator; the file's contents (epoch, RNG, extra
// strings, exact doubles); and load errors that name the missing/unexpected keys.
#include <petal/nn.h>
#include <petal/nn/checkpoint.h>
#include <petal/optim.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "testing.h"

using namespace petal;
using Catch::Matchers::Contains;

namespace {

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name)
      : path((std::filesystem::temp_directory_path() /
              ("petal_test_checkpoint_" + std::to_string(::getpid()) + "_" + name))
                 .string()) {}
  ~TempFile() { std::remove(path.c_str()); }
};

nn::ViTConfig tiny_config(int64_t depth = 2) {
  nn::ViTConfig c = nn::ViTConfig::vit_tiny_patch16_224(3);
  c.img_size = 16;
  c.patch_size = 8;
  c.width = 8;
  c.depth = depth;
  c.heads = 2;
  c.drop_rate = 0.1;        // dropout and drop-path draw from the global generator,
  c.drop_path_rate = 0.2;   // so resuming needs its state
  return c;
}

// A training run: model, optimizer (AdamW with weight-decay groups, or SGD), schedule.
struct Run {
  std::shared_ptr<nn::ViT> model;
  std::unique_ptr<optim::Optimizer> optimizer;
  std::unique_ptr<optim::LambdaLR> schedule;

  Run(uint64_t seed, const std::string& kind, int64_t depth = 2) {
    manual_seed(seed);
    model = std::make_shared<nn::ViT>(tiny_config(depth));
    auto groups = optim::weight_decay_groups(model->named_parameters(), 0.05, model->no_weight_decay());
    if (kind == "adamw") {
      optim::AdamWOptions o;
      o.lr = 1e-2;
      optimizer = std::make_unique<optim::AdamW>(groups, o);
    } else {
      optim::SGDOptions o;
      o.lr = 5e-2;
      o.momentum = 0.9;
      o.nesterov = true;
      optimizer = std::make_unique<optim::SGD>(groups, o);
    }
    schedule = std::make_unique<optim::LambdaLR>(*optimizer, optim::warmup_cosine_lf(2, 6, 0.1));
  }

  // One step on a batch drawn from the global generator; returns the loss.
  double step() {
    Tensor images = randn({4, 3, 16, 16});
    Tensor labels = randint(0, 3, {4});
    optimizer->zero_grad();
    Tensor loss = nn::CrossEntropyLoss(0.1)(model->forward(images), labels);
    loss.backward();
    optimizer->step();
    schedule->step();
    return loss.item<double>();
  }
};

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.detach().cpu().contiguous(), cb = b.detach().cpu().contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(ca.numel()) * ca.element_size()) == 0;
}

}  // namespace

TEST_CASE("checkpoint resume is bit-exact", "[serialize][checkpoint]") {
  const std::string kind = GENERATE(std::string("adamw"), std::string("sgd"));
  INFO("optimizer " << kind);
  TempFile file("resume_" + kind + ".safetensors");

  // Uninterrupted: six steps.
  Run straight(1, kind);
  std::vector<double> expected;
  for (int i = 0; i < 6; ++i) expected.push_back(straight.step());

  // Interrupted after three steps.
  Generator saved_rng;
  {
    Run first(1, kind);
    for (int i = 0; i < 3; ++i) CHECK(first.step() == expected[i]);
    nn::save_checkpoint(file.path, *first.model, first.optimizer.get(), first.schedule.get(), 3,
                        {{"best_acc", "0.25"}});
    saved_rng = default_generator();
  }
  Run resumed(77, kind);  // other initial weights
  randn({123});           // and a disturbed generator
  nn::CheckpointInfo info = nn::load_checkpoint(file.path, *resumed.model, resumed.optimizer.get(),
                                                resumed.schedule.get());
  CHECK(info.epoch == 3);
  CHECK(info.extra.at("best_acc") == "0.25");
  CHECK(resumed.schedule->last_epoch() == 3);
  CHECK(default_generator().seed == saved_rng.seed);
  CHECK(default_generator().offset == saved_rng.offset);
  for (int i = 3; i < 6; ++i) {
    INFO("step " << i);
    CHECK(resumed.step() == expected[i]);  // bit-exact, not approximately
  }
  for (const auto& [name, p] : straight.model->named_parameters()) {
    INFO(name);
    CHECK(same_bits(resumed.model->get_tensor(name), p));
  }
  for (size_t g = 0; g < straight.optimizer->param_groups().size(); ++g)
    CHECK(resumed.optimizer->param_groups()[g].lr() == straight.optimizer->param_groups()[g].lr());
  auto s1 = straight.optimizer->state_dict(), s2 = resumed.optimizer->state_dict();
  CHECK(s1.scalars == s2.scalars);
  REQUIRE(s1.tensors.size() == s2.tensors.size());
  for (const auto& [k, t] : s1.tensors) {
    INFO(k);
    CHECK(same_bits(s2.tensors.at(k), t));
  }
}

TEST_CASE("checkpoint file holds the model and optimizer and schedule and epoch and RNG and extras", "[serialize][checkpoint]") {
  TempFile file("contents.safetensors");
  Run run(5, "adamw");
  run.step();
  run.step();
  manual_seed(0xfeedfacecafebeefULL);
  randn({9});
  const Generator rng = default_generator();
  nn::save_checkpoint(file.path, *run.model, run.optimizer.get(), run.schedule.get(), 2, {{"note", "a b=c"}});

  nn::TrainingCheckpoint c = nn::read_checkpoint(file.path);
  CHECK(c.epoch == 2);
  CHECK(c.rng.seed == 0xfeedfacecafebeefULL);
  CHECK(c.rng.offset == rng.offset);
  CHECK(c.extra.at("note") == "a b=c");
  REQUIRE(c.has_optimizer);
  REQUIRE(c.has_schedule);
  CHECK(c.schedule == run.schedule->state_dict());
  optim::OptimizerState os = run.optimizer->state_dict();
  CHECK(c.optimizer.scalars == os.scalars);  // doubles exact through the text metadata
  CHECK(c.optimizer.tensors.size() == os.tensors.size());
  CHECK(c.optimizer.tensors.count("state.0.exp_avg") == 1);
  CHECK(c.model.size() == run.model->state_dict().size());
  for (const auto& [k, t] : run.model->state_dict()) CHECK(same_bits(c.model.at(k), t));
  // The raw file: prefixed tensor keys and the format marker.
  SafetensorsContents raw = load_safetensors_contents(file.path);
  CHECK(raw.tensors.count("model.blocks.1.attn.qkv.weight") == 1);
  CHECK(raw.tensors.count("optim.state.0.exp_avg_sq") == 1);
  CHECK(raw.metadata.at("petal.checkpoint") == "1");
  CHECK(raw.metadata.at("epoch") == "2");

  // Restoring without the optimizer/schedule, and without touching the generator.
  Run other(6, "adamw");
  manual_seed(3);
  nn::CheckpointInfo info = nn::load_checkpoint(file.path, *other.model, nullptr, nullptr, /*restore_rng=*/false);
  CHECK(info.rng.seed == rng.seed);
  CHECK(default_generator().seed == 3);
  for (const auto& [k, t] : run.model->state_dict()) CHECK(same_bits(other.model->get_tensor(k), t));

  // A checkpoint without optimizer state round-trips too.
  nn::save_checkpoint(file.path, *run.model, nullptr, nullptr, 9);
  nn::TrainingCheckpoint bare = nn::read_checkpoint(file.path);
  CHECK_FALSE(bare.has_optimizer);
  CHECK_FALSE(bare.has_schedule);
  CHECK(bare.epoch == 9);
}

TEST_CASE("load_checkpoint errors name the problem and change nothing", "[serialize][checkpoint]") {
  TempFile file("errors.safetensors");
  Run run(7, "adamw");
  run.step();
  nn::save_checkpoint(file.path, *run.model, run.optimizer.get(), run.schedule.get(), 1);

  SECTION("a model with another depth") {
    Run deeper(8, "adamw", 3);
    nn::StateDict before;
    for (const auto& [k, v] : deeper.model->state_dict()) before.insert(k, v.clone());
    try {
      nn::load_checkpoint(file.path, *deeper.model, deeper.optimizer.get(), deeper.schedule.get());
      FAIL("no error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(file.path) != std::string::npos);
      CHECK(msg.find("missing key 'model.blocks.2.attn.qkv.weight'") != std::string::npos);
      CHECK(msg.find("missing key 'model.blocks.2.mlp.fc2.bias'") != std::string::npos);
    }
    for (const auto& [k, v] : before) CHECK(same_bits(deeper.model->get_tensor(k), v));
  }
  SECTION("a key removed from the file") {
    nn::TrainingCheckpoint c = nn::read_checkpoint(file.path);
    c.model.erase("norm.weight");
    c.model["extra_token"] = zeros({1, 1, 8});
    nn::write_checkpoint(file.path, c);
    Run other(9, "adamw");
    CHECK_THROWS_WITH(nn::load_checkpoint(file.path, *other.model, other.optimizer.get(), other.schedule.get()),
                      Contains("missing key 'model.norm.weight'") && Contains("unexpected key 'model.extra_token'"));
  }
  SECTION("optimizer state requested from a checkpoint without one") {
    nn::save_checkpoint(file.path, *run.model, nullptr, nullptr, 1);
    Run other(10, "adamw");
    CHECK_THROWS_WITH(nn::load_checkpoint(file.path, *other.model, other.optimizer.get(), other.schedule.get()),
                      Contains("no optimizer state") && Contains("no schedule state"));
  }
  SECTION("an optimizer with another group layout is rolled back") {
    Run other(11, "adamw");
    std::vector<Tensor> all = other.model->parameters();
    optim::AdamW single(all, optim::AdamWOptions{});  // one group instead of two
    const auto before = single.state_dict();
    CHECK_THROWS_WITH(nn::load_checkpoint(file.path, *other.model, &single, nullptr), Contains(file.path));
    CHECK(single.state_dict().scalars == before.scalars);
  }
  SECTION("a plain weights file is not a checkpoint") {
    save_safetensors(file.path, {{"w", ones({2})}});
    CHECK_THROWS_WITH(nn::read_checkpoint(file.path), Contains("not a petal training checkpoint") && Contains(file.path));
  }
}

TEST_CASE("read_checkpoint refuses a negative epoch, non-finite tensors and incomplete optimizer state",
          "[serialize][checkpoint][bad_inputs]") {
  TempFile file("bad_entries.safetensors");
  Run run(12, "adamw");
  run.step();
  nn::save_checkpoint(file.path, *run.model, run.optimizer.get(), run.schedule.get(), 1);
  SafetensorsContents raw = load_safetensors_contents(file.path);
  REQUIRE(raw.tensors.count("optim.state.3.exp_avg_sq"));
  auto rewrite = [&](const std::function<void(SafetensorsContents&)>& edit) {
    SafetensorsContents c = raw;
    edit(c);
    save_safetensors(file.path, c.tensors, c.metadata);
  };
  CHECK_NOTHROW(nn::read_checkpoint(file.path));

  rewrite([](SafetensorsContents& c) { c.metadata["epoch"] = "-5"; });
  CHECK_THROWS_WITH(nn::read_checkpoint(file.path), Contains(file.path) && Contains("'epoch' = -5 is negative"));
  rewrite([](SafetensorsContents& c) { c.metadata["optim.param_groups.0.lr"] = "0.0.1"; });
  CHECK_THROWS_WITH(nn::read_checkpoint(file.path),
                    Contains(file.path) && Contains("'optim.param_groups.0.lr' = '0.0.1' is not a number"));
  rewrite([](SafetensorsContents& c) { c.tensors.erase("optim.state.3.exp_avg_sq"); });
  CHECK_THROWS_WITH(nn::read_checkpoint(file.path),
                    Contains(file.path) && Contains("missing tensor 'optim.state.3.exp_avg_sq'"));
  rewrite([](SafetensorsContents& c) { c.metadata.erase("optim.state.5.step"); });
  CHECK_THROWS_WITH(nn::read_checkpoint(file.path), Contains("missing entry 'optim.state.5.step'"));
  rewrite([](SafetensorsContents& c) {
    Tensor w = c.tensors.at("model.norm.weight").clone();
    w.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
    c.tensors["model.norm.weight"] = w;
  });
  CHECK_THROWS_WITH(nn::read_checkpoint(file.path), Contains(file.path) && Contains("'model.norm.weight'") &&
                                                        Contains("non-finite") && Contains("flat index 3"));
  // Nothing of the model changes when a load is refused.
  Run other(13, "adamw");
  const Tensor before = other.model->get_tensor("norm.weight").clone();
  CHECK_THROWS(nn::load_checkpoint(file.path, *other.model, other.optimizer.get(), other.schedule.get()));
  CHECK(same_bits(other.model->get_tensor("norm.weight"), before));
}
