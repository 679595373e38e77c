// Shared by the vit_flowers tests (test_vit_flowers.cpp, test_vit_flowers_outputs.cpp): the
// tiny synthetic-flowers training configurations and a scratch directory removed at scope exit.
// Include after the vit_flowers headers (or sources).
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

namespace vit_flowers_testing {

/// The tiny run that must learn: 200 generated 20-px flowers (160 train, 40 val) at 16 px,
/// a two-block, 48-wide ViT with patch 4, AdamW, 10 epochs of batch 16, two loader workers.
inline vit_flowers::TrainConfig tiny_config(const std::string& out) {
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

/// A smaller run for the output and run-control tests, where learning is not the point:
/// 50 images (40 train, 10 val), one 24-wide block, 3 epochs of batch 10, one worker.
inline vit_flowers::TrainConfig small_config(const std::string& out) {
  vit_flowers::TrainConfig c = tiny_config(out);
  c.synthetic_per_class = 10;
  c.width = 24;
  c.depth = 1;
  c.heads = 2;
  c.epochs = 3;
  c.batch_size = 10;
  c.min_crop_scale = vit_flowers::TrainConfig{}.min_crop_scale;
  c.workers = 1;
  c.seed = 3;
  return c;
}

/// An empty directory under the temp dir, named by tag and the process id; removed with its
/// contents at scope exit.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag) {
    namespace fs = std::filesystem;
    path = (fs::temp_directory_path() / ("petal_test_vf_" + tag + "_" + std::to_string(::getpid()))).string();
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace vit_flowers_testing
