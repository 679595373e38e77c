// End-to-end: the vit_flowers program's own training flow (examples/vit_flowers/trainer.cpp
// is compiled into this test) on a tiny generated flower set: a 16-pixel, two-block, 48-wide ViT
// must learn (training loss falls, validation accuracy clearly above the 20% of chance),
// write its checkpoints and class index, predict from the best checkpoint alone, and
// resume from the last checkpoint. Then the refusals: a resume with another model, optimizer
// or class list, checkpoint entries that are not numbers or JSON, changed settings (warned),
// a dead writer's temporary (removed), logits that overflow, pretrained files that match nothing.
#include <cmath>
#include <filesystem>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

// The program's flow, not a copy of it (every examples/vit_flowers source but main.cpp).
#include "examples/vit_flowers/interrupt.cpp"  // NOLINT
#include "examples/vit_flowers/metrics.cpp"    // NOLINT
#include "examples/vit_flowers/plot.cpp"       // NOLINT
#include "examples/vit_flowers/predict.cpp"    // NOLINT
#include "examples/vit_flowers/progress.cpp"   // NOLINT
#include "examples/vit_flowers/trainer.cpp"    // NOLINT
#include "examples/vit_flowers/workflow.cpp"   // NOLINT
#include "testing.h"
#include "vit_flowers_testing.h"

namespace fs = std::filesystem;

namespace {

using vit_flowers_testing::TempDir;
using vit_flowers_testing::tiny_config;

}  // namespace

TEST_CASE("vit_flowers trains a tiny ViT on synthetic flowers, predicts and resumes", "[vit_flowers][e2e]") {
  TempDir out("train1");
  vit_flowers::TrainConfig config = tiny_config(out.path);
  std::ostringstream log;
  vit_flowers::TrainResult r = vit_flowers::train(config, log);
  INFO(log.str());
  REQUIRE(r.history.size() == 10);
  CHECK(r.train_images == 5 * 32);
  CHECK(r.val_images == 5 * 8);
  for (const auto& e : r.history) {
    REQUIRE(std::isfinite(e.train_loss));
    REQUIRE(std::isfinite(e.val_loss));
  }
  // It learns: loss falls well below its start, and validation accuracy beats chance (0.2).
  CHECK(r.history.back().train_loss < 0.75 * r.history.front().train_loss);
  CHECK(r.history.back().train_acc > 0.45);
  CHECK(r.best_val_acc >= 0.45);

  REQUIRE(fs::exists(r.best_checkpoint));
  REQUIRE(fs::exists(r.last_checkpoint));
  CHECK(vit_flowers::read_class_indices(r.class_indices) == petal::data::flower_classes());

  // predict rebuilds the model from the checkpoint alone.
  const std::string image = out.path + "/synthetic_flowers/sunflowers/sunflowers_00000.png";
  auto ranked = vit_flowers::predict(r.best_checkpoint, image, r.class_indices, 5);
  REQUIRE(ranked.size() == 5);
  double total = 0;
  for (size_t i = 0; i < ranked.size(); ++i) {
    total += ranked[i].second;
    if (i) CHECK(ranked[i - 1].second >= ranked[i].second);
  }
  CHECK(total == Approx(1.0).epsilon(1e-5));
  CHECK(vit_flowers::predict(r.best_checkpoint, image, "", 2).size() == 2);
  CHECK_THROWS_WITH(vit_flowers::predict(r.best_checkpoint, out.path + "/missing.jpg"), Catch::Contains("missing.jpg"));

  // Resuming the last checkpoint with more epochs continues where it stopped.
  config.epochs = 11;
  config.resume = r.last_checkpoint;
  std::ostringstream log2;
  vit_flowers::TrainResult r2 = vit_flowers::train(config, log2);
  INFO(log2.str());
  REQUIRE(r2.history.size() == 1);
  CHECK(r2.history[0].epoch == 10);
  CHECK(std::isfinite(r2.history[0].train_loss));
}

TEST_CASE("vit_flowers model config survives JSON and bad options are named", "[vit_flowers]") {
  vit_flowers::TrainConfig c;
  c.model = "seed_vit_b16";
  c.img_size = 32;
  c.patch_size = 8;
  c.width = 24;
  c.depth = 2;
  c.heads = 3;
  petal::nn::ViTConfig mc = vit_flowers::model_config(c, 5);
  petal::nn::ViTConfig back = vit_flowers::config_from_json(vit_flowers::config_to_json(mc));
  CHECK(back.img_size == 32);
  CHECK(back.patch_size == 8);
  CHECK(back.width == 24);
  CHECK(back.operation_order == mc.operation_order);
  CHECK(back.class_token_first == mc.class_token_first);
  CHECK(back.activation == mc.activation);
  CHECK(back.patch_norm == mc.patch_norm);
  c.img_size = 30;
  CHECK_THROWS_WITH(vit_flowers::model_config(c, 5), Catch::Contains("multiple of the patch size"));
  c.img_size = 32;
  c.model = "vit_huge";
  CHECK_THROWS_WITH(vit_flowers::model_config(c, 5), Catch::Contains("vit_huge"));
  CHECK_THROWS_WITH(vit_flowers::config_from_json("{\"img_size\": 3}"), Catch::Contains("incomplete"));
}

TEST_CASE("vit_flowers refuses bad resumes, bad weights and non-finite predictions", "[vit_flowers][bad_inputs]") {
  TempDir out("train2");
  vit_flowers::TrainConfig config = tiny_config(out.path);
  config.synthetic_per_class = 10;
  config.width = 24;
  config.depth = 1;
  config.heads = 2;
  config.epochs = 1;
  std::ostringstream log;
  vit_flowers::TrainResult r = vit_flowers::train(config, log);
  REQUIRE(r.history.size() == 1);
  const std::string ck = r.last_checkpoint;
  const petal::SafetensorsContents saved = petal::load_safetensors_contents(ck);
  auto edited = [&](const std::string& name, const std::function<void(petal::SafetensorsContents&)>& edit) {
    petal::SafetensorsContents c = saved;
    edit(c);
    const std::string path = out.path + "/" + name;
    petal::save_safetensors(path, c.tensors, c.metadata);
    return path;
  };
  auto resume = [&](vit_flowers::TrainConfig c, const std::string& from, std::ostringstream& l) {
    c.resume = from;
    c.epochs = std::max<int64_t>(c.epochs, 2);
    return vit_flowers::train(c, l);
  };
  std::ostringstream sink;

  // Another model (same shapes, other head count), another optimizer, other classes.
  vit_flowers::TrainConfig other = config;
  other.heads = 3;
  CHECK_THROWS_WITH(resume(other, ck, sink), Catch::Contains(ck) && Catch::Contains("another model"));
  other = config;
  other.optimizer = "sgd";
  CHECK_THROWS_WITH(resume(other, ck, sink), Catch::Contains(ck) && Catch::Contains("trained with adamw"));
  const std::string renamed = edited("renamed.safetensors", [](petal::SafetensorsContents& c) {
    c.metadata["extra.classes"] = R"(["a","b","c","d","e"])";
  });
  CHECK_THROWS_WITH(resume(config, renamed, sink), Catch::Contains(renamed) && Catch::Contains("trained on classes"));
  const std::string garbage = edited("garbage.safetensors", [](petal::SafetensorsContents& c) {
    c.metadata["extra.classes"] = "[1, 2";
    c.metadata["extra.best_val_acc"] = "0.5x";
  });
  CHECK_THROWS_WITH(resume(config, garbage, sink), Catch::Contains(garbage) && Catch::Contains("entry 'classes'"));
  CHECK_THROWS_WITH(vit_flowers::predict(garbage, out.path + "/synthetic_flowers/daisy/daisy_00000.png"),
                    Catch::Contains(garbage) && Catch::Contains("entry 'classes'"));
  const std::string bad_number = edited("number.safetensors", [](petal::SafetensorsContents& c) {
    c.metadata["extra.best_val_acc"] = "0.5x";
  });
  CHECK_THROWS_WITH(resume(config, bad_number, sink),
                    Catch::Contains(bad_number) && Catch::Contains("'extra.best_val_acc' = '0.5x'"));

  // Changed settings that alter the numbers: warned about; a dead writer's temporary is removed.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  REQUIRE(::waitpid(child, nullptr, 0) == child);
  const std::string stale = ck + ".tmp." + std::to_string(child);
  petal::write_file_atomic(stale, "partial checkpoint");
  std::ostringstream warned;
  vit_flowers::TrainConfig changed = config;
  changed.lr = 0.5;
  vit_flowers::TrainResult r2 = resume(changed, ck, warned);
  INFO(warned.str());
  CHECK(r2.history.size() == 1);
  CHECK(warned.str().find("epochs was 1, now 2") != std::string::npos);
  CHECK(warned.str().find("lr was 0.003, now 0.5 (ignored") != std::string::npos);
  CHECK(warned.str().find("removed " + stale) != std::string::npos);
  CHECK(!fs::exists(stale));

  // Finite but huge weights overflow the logits: predict refuses instead of printing nan.
  const std::string huge = edited("huge.safetensors", [](petal::SafetensorsContents& c) {
    petal::Tensor w = c.tensors.at("model.head.weight").clone();
    for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = 3e38f;
    c.tensors["model.head.weight"] = w;
  });
  CHECK_THROWS_WITH(vit_flowers::predict(huge, out.path + "/synthetic_flowers/daisy/daisy_00000.png"),
                    Catch::Contains(huge) && Catch::Contains("non-finite logits"));

  // Pretrained weights that match nothing are refused, listing what did not match.
  const std::string unrelated = out.path + "/unrelated.safetensors";
  petal::save_safetensors(unrelated, {{"encoder.layer.0.weight", petal::ones({4, 4})}});
  vit_flowers::TrainConfig with_weights = config;
  with_weights.weights = unrelated;
  CHECK_THROWS_WITH(vit_flowers::train(with_weights, sink),
                    Catch::Contains(unrelated) && Catch::Contains("only 0 of the model's") &&
                        Catch::Contains("encoder.layer.0.weight"));
}

// The same run (data, seed, schedule) in f32 and then under bf16 autocast.
struct F32AndBf16 {
  vit_flowers::TrainResult f32, bf16;
  std::string log32, log16;
};
F32AndBf16 train_f32_and_bf16(vit_flowers::TrainConfig config) {
  F32AndBf16 r;
  std::ostringstream log32, log16;
  config.amp = "off";
  r.f32 = vit_flowers::train(config, log32);
  config.out_dir += "/amp";
  config.amp = "bf16";
  r.bf16 = vit_flowers::train(config, log16);
  r.log32 = log32.str();
  r.log16 = log16.str();
  return r;
}

TEST_CASE("vit_flowers --amp bf16 trains the synthetic flowers to f32's accuracy band", "[vit_flowers][e2e][autocast]") {
  // The same run (data, seed, schedule) in f32 and with bf16 autocast: both learn, and
  // the bf16 run lands in the f32 run's band (bf16 rounding perturbs the trajectory).
  TempDir out("train3");
  vit_flowers::TrainConfig config = tiny_config(out.path);
  config.epochs = 8;
  const auto [f32, bf16, log32, log16] = train_f32_and_bf16(config);
  INFO("f32 run:\n" << log32 << "bf16 run:\n" << log16);
  CHECK(log16.find("bf16 autocast") != std::string::npos);
  REQUIRE(bf16.history.size() == 8);
  for (const auto& e : bf16.history) REQUIRE(std::isfinite(e.train_loss));
  CHECK(bf16.history.back().train_loss < 0.75 * bf16.history.front().train_loss);
  CHECK(bf16.best_val_acc >= 0.45);
  CHECK(std::fabs(bf16.best_val_acc - f32.best_val_acc) <= 0.15);
  CHECK(std::fabs(bf16.history.back().train_loss - f32.history.back().train_loss) <=
        0.25 * f32.history.back().train_loss + 0.05);
  config.amp = "fp8";
  std::ostringstream refused;
  CHECK_THROWS_WITH(vit_flowers::train(config, refused), Catch::Contains("--amp"));
}

TEST_CASE("vit_flowers --amp bf16 on sim trains like f32 on sim", "[vit_flowers][e2e][autocast][sim][long_e2e]") {
  // The CUDA kernels (executed by the simulator) under bf16 autocast: the flash attention,
  // the bf16 GEMMs, the casts, LayerNorm and cross-entropy taking bf16; the cpu case's data
  // and schedule.
  TempDir out("train4");
  vit_flowers::TrainConfig config = tiny_config(out.path);
  config.device = "sim";
  config.epochs = 8;
  const auto [f32, bf16, log32, log16] = train_f32_and_bf16(config);
  INFO("f32 run:\n" << log32 << "bf16 run:\n" << log16);
  CHECK(log16.find("on sim, bf16 autocast") != std::string::npos);
  REQUIRE(bf16.history.size() == 8);
  for (const auto& e : bf16.history) REQUIRE(std::isfinite(e.train_loss));
  CHECK(f32.history.back().train_loss < 0.85 * f32.history.front().train_loss);
  CHECK(bf16.history.back().train_loss < 0.85 * bf16.history.front().train_loss);
  CHECK(std::fabs(bf16.best_val_acc - f32.best_val_acc) <= 0.2);
  CHECK(std::fabs(bf16.history.back().train_loss - f32.history.back().train_loss) <=
        0.25 * f32.history.back().train_loss + 0.05);
}
