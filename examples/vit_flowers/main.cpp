// vit_flowers: train a Vision Transformer on flower_photos (or on generated flowers) and
// classify single images; petal's flagship program (the seed's train.py / predict.py).
//
//   vit_flowers train   [--data DIR] [--synthetic N_PER_CLASS] [--model NAME] [--img-size N]
//                       [--epochs E] [--batch-size B] [--lr LR] [--lrf F] [--optimizer sgd|adamw]
//                       [--weights FILE] [--freeze-layers] [--device cpu|sim|cuda] [--workers N]
//                       [--out DIR] [--resume CKPT] ...   (see --help)
//   vit_flowers predict --weights CKPT --image IMG|DIR [--out OUT.png] [--csv OUT.csv] [--top K] ...
//   vit_flowers synth   --out DIR [--per-class N] [--size S] [--seed S] [--format jpg|png]
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <string>

#include "interrupt.h"
#include "plot.h"
#include "predict.h"
#include "trainer.h"

namespace {

const char* kUsage = R"(usage:
  vit_flowers train [options]      train a ViT (on --data, or on generated flowers)
  vit_flowers predict --weights CKPT --image IMG|DIR [--out OUT.png] [--csv OUT.csv]
                      [--class-indices JSON] [--top K] [--device D] [--max-image-pixels N]
        one image: prints "daisy: 97.31%" and the ranking; --out writes the image with that title
        a folder:  classifies every image below it, writes --csv (path,class,confidence,top_k)
                   [predictions.csv]
  vit_flowers synth --out DIR [--per-class N] [--size S] [--seed S] [--format jpg|png]

train options (defaults: with --data, the seed's recipe; without, a small run that finishes
in a few minutes on a 2-core CPU):
  --data DIR             flower_photos-style folder: DIR/<class>/*.jpg
  --synthetic N          without --data: generate N images per class     [150]
  --synthetic-size S     generated image size                             [img-size * 5/4]
  --synthetic-format F   jpg | png                                        [jpg]
  --model NAME           vit_tiny | vit_small | vit_base | seed_vit_b16   [vit_base | vit_tiny]
  --img-size N           input size                                       [224 | 32]
  --patch-size N         patch size (overrides the preset's 16)           [16 | 4]
  --width N --depth N --heads N   override the preset's dimensions        [preset | 192, 4, 3]
  --drop-path R          stochastic depth rate                            [0]
  --epochs E                                                              [10]
  --batch-size B                                                          [8 | 32]
  --optimizer sgd|adamw                                                   [sgd | adamw]
  --lr LR                                                                 [0.001]
  --lrf F                final lr factor of the cosine schedule           [0.01]
  --momentum M           SGD momentum                                     [0.9]
  --weight-decay W                                                        [5e-5 | 0.05]
  --warmup-epochs N      linear warmup (then cosine, stepped per batch)   [0 | 1]
  --label-smoothing E                                                     [0 | 0.1]
  --clip-grad N          max global gradient norm, 0 = off                [0 | 1]
  --min-crop-scale S     RandomResizedCrop's smallest area fraction       [0.08 | 0.35]
  --val-ratio R          validation fraction per class                    [0.2]
  --weights FILE         pretrained timm vit_*_patch16_224 safetensors
  --freeze-layers        train only the classifier head
  --device D             cpu | sim | cuda[:N] | auto (cuda if usable)    [cpu]
  --amp M                off | bf16 | auto: bf16 autocast, f32 weights    [auto: cuda; cpu w/ oneDNN bf16]
  --workers N            data loader threads                              [2]
  --max-image-pixels N   refuse images of more pixels (decompression bombs); 0 = no limit [89478485]
  --out DIR              checkpoints, class_indices.json, generated data  [runs/vit_flowers]
  --resume CKPT          continue from a checkpoint-last.safetensors (also mid-epoch, after Ctrl-C:
                         the first Ctrl-C finishes the step, saves it and exits 130; a second aborts)
  --seed S                                                                [0]
  --quiet                no per-batch progress lines
  --log-every N          read loss/accuracy from the device every N steps  [10 on a terminal, else a tenth of a pass]
  --work-flow W          the seed's Runner workflow; epochs count train passes [train:1,val:1]
  --no-plots             do not draw curves.png
  --cache-mb M           in-memory cache of decoded images, MiB; 0 = off      [1024]
  --cache-short-side S   shrink cached images to this shorter side; 0 = as decoded [0]
  --distributed          data-parallel over the processes of mpirun -np N (docs/distributed.md):
                         --batch-size per process; only rank 0 writes outputs
)";

struct Args {
  std::map<std::string, std::string> values;
  std::set<std::string> flags;
  bool has(const std::string& k) const { return values.count(k) || flags.count(k); }
  std::string str(const std::string& k, const std::string& def) const {
    auto it = values.find(k);
    return it == values.end() ? def : it->second;
  }
  int64_t i64(const std::string& k, int64_t def) const {
    auto it = values.find(k);
    if (it == values.end()) return def;
    try {
      size_t pos = 0;
      long long v = std::stoll(it->second, &pos);
      if (pos == it->second.size()) return v;
    } catch (...) {
    }
    throw petal::Error("--" + k + " expects an integer, got '" + it->second + "'");
  }
  double f64(const std::string& k, double def) const {
    auto it = values.find(k);
    if (it == values.end()) return def;
    try {
      size_t pos = 0;
      double v = std::stod(it->second, &pos);
      if (pos == it->second.size()) return v;
    } catch (...) {
    }
    throw petal::Error("--" + k + " expects a number, got '" + it->second + "'");
  }
};

Args parse(int argc, char** argv, const std::set<std::string>& valued, const std::set<std::string>& flags) {
  Args a;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    PETAL_CHECK(arg.rfind("--", 0) == 0, "unexpected argument '", arg, "' (options start with --; see --help)");
    std::string key = arg.substr(2), value;
    const auto eq = key.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    if (flags.count(key)) {
      PETAL_CHECK(!inline_value, "--", key, " takes no value");
      a.flags.insert(key);
    } else if (valued.count(key)) {
      if (!inline_value) {
        PETAL_CHECK(i + 1 < argc, "--", key, " needs a value");
        value = argv[++i];
      }
      a.values[key] = value;
    } else {
      PETAL_FAIL("unknown option --", key, " (see --help)");
    }
  }
  return a;
}

int cmd_train(const Args& a) {
  vit_flowers::TrainConfig c;
  const bool synthetic = !a.has("data");
  if (synthetic) {
    // A ViT-Tiny-wide, 4-block model on 32-pixel generated images (64 patches of 4x4):
    // 750 images x 10 epochs take ~80 CPU-seconds, and reach ~95% validation accuracy.
    c.model = "vit_tiny";
    c.img_size = 32;
    c.patch_size = 4;
    c.width = 192;
    c.depth = 4;
    c.heads = 3;
    c.synthetic_per_class = 150;
    c.epochs = 10;
    c.batch_size = 32;
    c.optimizer = "adamw";
    c.lr = 0.001;
    c.weight_decay = 0.05;
    c.warmup_epochs = 1;
    c.label_smoothing = 0.1;
    c.clip_grad = 1.0;
    c.min_crop_scale = 0.35;
  }
  c.data_dir = a.str("data", "");
  c.synthetic_per_class = a.i64("synthetic", c.synthetic_per_class);
  c.synthetic_size = a.i64("synthetic-size", c.synthetic_size);
  c.synthetic_format = a.str("synthetic-format", c.synthetic_format);
  c.model = a.str("model", c.model);
  c.img_size = a.i64("img-size", c.img_size);
  c.patch_size = a.i64("patch-size", c.patch_size);
  c.width = a.i64("width", c.width);
  c.depth = a.i64("depth", c.depth);
  c.heads = a.i64("heads", c.heads);
  if (a.has("model") && synthetic) {
    // An explicitly named preset keeps its own dimensions unless also overridden.
    if (!a.has("width")) c.width = 0;
    if (!a.has("depth")) c.depth = 0;
    if (!a.has("heads")) c.heads = 0;
  }
  c.drop_path = a.f64("drop-path", c.drop_path);
  c.epochs = a.i64("epochs", c.epochs);
  c.batch_size = a.i64("batch-size", c.batch_size);
  c.optimizer = a.str("optimizer", c.optimizer);
  c.lr = a.f64("lr", c.lr);
  c.lrf = a.f64("lrf", c.lrf);
  c.momentum = a.f64("momentum", c.momentum);
  c.weight_decay = a.f64("weight-decay", c.weight_decay);
  c.warmup_epochs = a.i64("warmup-epochs", c.warmup_epochs);
  c.label_smoothing = a.f64("label-smoothing", c.label_smoothing);
  c.clip_grad = a.f64("clip-grad", c.clip_grad);
  c.min_crop_scale = a.f64("min-crop-scale", c.min_crop_scale);
  c.val_ratio = a.f64("val-ratio", c.val_ratio);
  c.weights = a.str("weights", "");
  c.freeze_layers = a.flags.count("freeze-layers") != 0;
  c.device = a.str("device", c.device);
  c.amp = a.str("amp", c.amp);
  c.workers = static_cast<int>(a.i64("workers", c.workers));
  c.max_image_pixels = a.i64("max-image-pixels", c.max_image_pixels);
  c.out_dir = a.str("out", c.out_dir);
  c.resume = a.str("resume", "");
  c.seed = static_cast<uint64_t>(a.i64("seed", 0));
  c.progress = a.flags.count("quiet") == 0;
  c.log_every = a.i64("log-every", c.log_every);
  c.work_flow = a.str("work-flow", c.work_flow);
  c.plots = a.flags.count("no-plots") == 0;
  c.cache_mb = a.i64("cache-mb", c.cache_mb);
  c.cache_short_side = a.i64("cache-short-side", c.cache_short_side);
  c.distributed = a.flags.count("distributed") != 0;
  if (c.distributed) petal::distributed::init();
  const bool main_rank = petal::distributed::is_main_process();
  if (main_rank)
    std::cout << "vit_flowers train: " << (synthetic ? "synthetic flowers (no --data)" : "dataset " + c.data_dir) << ", device "
            << c.device << ", output " << c.out_dir << "\n";
  vit_flowers::install_interrupt_handler();  // Ctrl-C: finish the step, save, exit 130
  vit_flowers::TrainResult r = vit_flowers::train(c, std::cout);
  if (r.interrupted) return vit_flowers::kInterruptedExitCode;
  if (r.history.empty() && main_rank) std::cout << "nothing to do: the checkpoint already covers " << c.epochs << " epochs\n";
  return 0;
}

int cmd_predict(const Args& a) {
  PETAL_CHECK(a.has("weights") && a.has("image"), "predict needs --weights CKPT and --image IMG (or a folder)");
  const std::string image = a.str("image", "");
  const int64_t max_pixels = a.i64("max-image-pixels", petal::data::kDefaultMaxImagePixels);
  const vit_flowers::Predictor predictor(a.str("weights", ""), a.str("class-indices", ""), a.str("device", "cpu"), max_pixels);
  const int64_t top = a.i64("top", 5);
  if (std::filesystem::is_directory(image)) {
    PETAL_CHECK(!a.has("out"), "predict: --out draws one image; for the folder '", image, "' use --csv OUT.csv");
    const std::string csv = a.str("csv", "predictions.csv");
    const int64_t n = vit_flowers::predict_folder(predictor, image, csv, top, std::cout);
    std::cout << "classified " << n << " images of " << image << ": " << csv << "\n";
    return 0;
  }
  PETAL_CHECK(!a.has("csv"), "predict: --csv is for a folder of images; '", image, "' is one image (use --out OUT.png)");
  const petal::Tensor decoded = petal::data::read_image(image, 3, max_pixels);
  const auto ranked = predictor.classify(decoded, image, top);
  const std::string title = vit_flowers::prediction_title(ranked.front().first, ranked.front().second);
  std::cout << image << ": " << title << "\n";
  for (const auto& [name, p] : ranked) {
    char line[128];
    std::snprintf(line, sizeof(line), "  %-12s %.4f\n", name.c_str(), p);
    std::cout << line;
  }
  if (a.has("out")) {
    const std::string out = a.str("out", "");
    vit_flowers::write_prediction_image(decoded, title, out, vit_flowers::default_font());
    std::cout << "wrote " << out << "\n";
  }
  return 0;
}

int cmd_synth(const Args& a) {
  PETAL_CHECK(a.has("out"), "synth needs --out DIR");
  petal::data::SyntheticFlowersOptions o;
  o.per_class = a.i64("per-class", 100);
  o.size = a.i64("size", 64);
  o.seed = static_cast<uint64_t>(a.i64("seed", 0));
  o.format = a.str("format", "jpg");
  const int64_t n = petal::data::make_synthetic_flowers(a.str("out", ""), o);
  std::cout << "wrote " << n << " images (" << o.size << "x" << o.size << " " << o.format << ") to " << a.str("out", "") << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd.empty() || cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return cmd.empty() ? 2 : 0;
  }
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::cout << kUsage;
      return 0;
    }
  try {
    if (cmd == "train") {
      return cmd_train(parse(argc, argv,
                             {"data", "synthetic", "synthetic-size", "synthetic-format", "model", "img-size", "patch-size", "width", "depth",
                              "heads", "drop-path", "epochs", "batch-size", "optimizer", "lr", "lrf", "momentum",
                              "weight-decay", "warmup-epochs", "label-smoothing", "clip-grad", "min-crop-scale",
                              "val-ratio", "weights", "device", "amp", "workers", "out", "resume", "seed", "max-image-pixels",
                              "log-every", "work-flow", "cache-mb", "cache-short-side"},
                             {"freeze-layers", "quiet", "distributed", "no-plots"}));
    }
    if (cmd == "predict") {
      return cmd_predict(parse(argc, argv, {"weights", "image", "class-indices", "top", "device", "max-image-pixels", "out", "csv"}, {}));
    }
    if (cmd == "synth") return cmd_synth(parse(argc, argv, {"out", "per-class", "size", "seed", "format"}, {}));
    std::cerr << "vit_flowers: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "vit_flowers " << cmd << ": error: " << e.what() << "\n";
    // The other ranks would wait for this one until their timeout: end the job now.
    if (petal::distributed::is_initialized() && petal::distributed::world_size() > 1) petal::distributed::abort(1);
    return 1;
  }
}
