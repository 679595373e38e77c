// The vit_flowers training and prediction flow (the seed's train.py / predict.py), as a
// library the command-line program and the end-to-end test share:
//   train():   data (a flower_photos-style folder, or synthetic flowers generated first),
//              the seed's stratified 80/20 split and transforms, a ViT, SGD/AdamW with the
//              seed's cosine LambdaLR, per-epoch train/val loss and accuracy, best/last
//              checkpoints and class_indices.json (written atomically; stale temporaries of
//              killed runs removed); --resume checks that the checkpoint's classes, model and
//              optimizer state fit this run and warns about changed settings;
//   predict(): rebuilds the model from a checkpoint's own config and ranks the classes.
#pragma once
#include <cmath>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <petal/petal.h>

namespace vit_flowers {

struct TrainConfig {
  // ---- data
  std::string data_dir;                ///< ImageFolder root; empty: synthetic flowers
  int64_t synthetic_per_class = 100;   ///< images per class when generating
  int64_t synthetic_size = 0;          ///< generated image size; 0: img_size * 5 / 4
  std::string synthetic_format = "jpg";  ///< "jpg" (like flower_photos) or "png"
  double val_ratio = 0.2;              ///< the seed's read_split_data(val_rate=0.2)
  double min_crop_scale = 0.08;        ///< RandomResizedCrop scale lower bound
  int workers = 2;                     ///< DataLoader threads
  int64_t max_image_pixels = petal::data::kDefaultMaxImagePixels;  ///< decompression-bomb limit; <= 0: none
  // ---- model
  std::string model = "vit_base";      ///< vit_tiny|vit_small|vit_base|seed_vit_b16 (or a full preset name)
  int64_t img_size = 224;
  int64_t patch_size = 0;              ///< 0: the preset's (16)
  int64_t width = 0, depth = 0, heads = 0;  ///< 0: the preset's
  double drop_path = 0.0;
  std::string weights;                 ///< pretrained timm safetensors to start from
  double min_weights_matched = 0.5;    ///< refuse --weights matching fewer of the model's tensors
  bool freeze_layers = false;          ///< train only the head (the seed's default with weights)
  // ---- optimisation
  int64_t epochs = 10;
  int64_t batch_size = 8;
  std::string optimizer = "sgd";       ///< "sgd" or "adamw"
  double lr = 0.001;
  double lrf = 0.01;                   ///< final lr factor of the cosine schedule
  double momentum = 0.9;
  double weight_decay = 5e-5;
  double label_smoothing = 0.0;
  double clip_grad = 0.0;              ///< max global grad norm; 0: off
  int64_t warmup_epochs = 0;           ///< linear warmup epochs before the cosine
  // ---- run
  std::string device = "cpu";          ///< cpu | sim | cuda[:N] | auto (cuda when usable)
  std::string amp = "auto";            ///< off | bf16 | auto (bf16 on cuda and on bf16/AMX CPUs with oneDNN; see docs/mixed_precision.md)
  std::string out_dir = "runs/vit_flowers";
  std::string resume;                  ///< checkpoint to resume from
  uint64_t seed = 0;
  bool progress = true;                ///< per-batch progress lines
  int progress_tty = -1;               ///< progress redrawn in place: 1 yes, 0 no, -1 when the log is a terminal
  int64_t log_every = 0;               ///< read loss/accuracy from the device every N steps; 0: 10 on a terminal, else a tenth of a pass
  std::string work_flow = "train:1,val:1";  ///< the seed's Runner workflow (workflow.h)
  bool plots = true;                   ///< draw curves.png after every epoch
  int64_t cache_mb = 1024;             ///< in-memory cache of decoded images (MiB); 0: off
  int64_t cache_short_side = 0;        ///< cached images are shrunk so their shorter side is at most this; 0: as decoded
  bool distributed = false;            ///< data-parallel over petal::distributed's ranks (init() first)
};

/// One training epoch (a row of metrics.csv). epoch counts from 0 here; values a row does
/// not have (no val pass after that epoch in the workflow) are NaN.
struct EpochStats {
  int64_t epoch = 0;
  double lr = 0, train_loss = NAN, train_acc = NAN, val_loss = NAN, val_acc = NAN, seconds = 0;
  double images_per_s = NAN;  ///< training images per second of the train pass
};

struct TrainResult {
  std::vector<EpochStats> history;
  double best_val_acc = 0;
  int64_t best_epoch = -1;
  std::string best_checkpoint, last_checkpoint, class_indices, metrics_csv, curves_png;
  bool interrupted = false;  ///< stopped by Ctrl-C (checkpoint-last holds the place to --resume)
  std::vector<std::string> classes;
  int64_t train_images = 0, val_images = 0;
};

/// The ViT configuration a TrainConfig asks for (preset + overrides), for num_classes.
petal::nn::ViTConfig model_config(const TrainConfig& config, int64_t num_classes);

/// "auto" -> cuda when a GPU is usable, else cpu; other names as petal::Device parses them.
petal::Device resolve_device(const std::string& name);

/// Runs the whole training flow, printing progress to log.
TrainResult train(const TrainConfig& config, std::ostream& log);

/// Ranked classes (name, probability) for one image, best first. Refuses non-finite weights
/// and non-finite logits, naming the checkpoint.
std::vector<std::pair<std::string, double>> predict(const std::string& checkpoint, const std::string& image,
                                                     const std::string& class_indices = "", int64_t top_k = 5,
                                                     const std::string& device = "cpu",
                                                     int64_t max_image_pixels = petal::data::kDefaultMaxImagePixels);

/// A model loaded from a checkpoint once, for classifying many images (predict --image DIR).
class Predictor {
 public:
  Predictor(const std::string& checkpoint, const std::string& class_indices = "", const std::string& device = "cpu",
            int64_t max_image_pixels = petal::data::kDefaultMaxImagePixels);
  ~Predictor();
  const std::vector<std::string>& classes() const;
  /// Ranked classes of a decoded uint8 [H, W, 3] image (`image` names it in errors).
  std::vector<std::pair<std::string, double>> classify(const petal::Tensor& decoded, const std::string& image,
                                                       int64_t top_k = 5) const;
  std::vector<std::pair<std::string, double>> classify_file(const std::string& image, int64_t top_k = 5) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// ViTConfig <-> JSON text (stored in checkpoints so predict needs no flags); `where` names
/// the file and entry in errors.
std::string config_to_json(const petal::nn::ViTConfig& c);
petal::nn::ViTConfig config_from_json(const std::string& json, const std::string& where = "model config");

/// class_indices.json as the seed writes it: {"0": "daisy", ...}.
void write_class_indices(const std::string& path, const std::vector<std::string>& classes);
std::vector<std::string> read_class_indices(const std::string& path);

}  // namespace vit_flowers
