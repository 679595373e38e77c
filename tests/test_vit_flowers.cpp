// End-to-end: the vit_flowers program's own training flow (examples/vit_flowers/trainer.cpp
// is compiled into this test) on a tiny generated flower set: a 16-pixel, two-block, 48-wide ViT
// must learn (training loss falls, validation accuracy clearly above the 20% of chance),
// write its checkpoints and class index, predict from the best checkpoint alone, and
// resume from the last checkpoint.
#include <cmath>
#include <filesystem>
#include <sstream>
#include <unistd.h>

#include "examples/vit_flowers/trainer.cpp"  // NOLINT: the program's flow, not a copy of it
#include "testing.h"

namespace fs = std::filesystem;

namespace {

vit_flowers::TrainConfig tiny_config(const std::string& out) {
  vit_flowers::TrainConfig c;
  c.synthetic_per_class = 40;
  c.synthetic_size = 20;
  c.synthetic_format = "png";  // stb's JPEG encoder trips the UBSan build
  c.model = "vit_tiny";
  c.img_size = 16;
  c.patch_size = 4;
  c.width = 48;
  c.depth = 2;
  c.heads = 3;
  c.epochs = 10;
  c.batch_size = 16;
  c.optimizer = "adamw";
  c.lr = 3e-3;
  c.weight_decay = 0.01;
  c.min_crop_scale = 0.5;
  c.workers = 2;
  c.out_dir = out;
  c.seed = 1;
  c.progress = false;
  return c;
}

struct TempOut {
  std::string path;
  TempOut() {
    path = (fs::temp_directory_path() / ("petal_test_vit_flowers_" + std::to_string(::getpid()))).string();
    fs::remove_all(path);
  }
  ~TempOut() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

TEST_CASE("vit_flowers trains a tiny ViT on synthetic flowers, predicts and resumes", "[vit_flowers][e2e]") {
  TempOut out;
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
