// The vit_flowers flow (see trainer.h). The loop is the seed's train_one_epoch/evaluate:
// mean loss and accuracy over all samples seen, the schedule stepped once per epoch (or
// per iteration when a warmup is asked for), a non-finite loss stops the run.
// Distributed (config.distributed): each rank trains on its DistributedSampler shard through
// DistributedDataParallel, pass metrics are summed over the ranks, and only rank 0 logs and
// writes files (class indices, checkpoints; the synthetic data, before a barrier).
#include "trainer.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

using namespace petal;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace vit_flowers {
namespace {

const std::vector<double> kMean = {0.5, 0.5, 0.5}, kStd = {0.5, 0.5, 0.5};

std::string full_preset_name(const std::string& name) {
  if (name == "vit_tiny") return "vit_tiny_patch16_224";
  if (name == "vit_small") return "vit_small_patch16_224";
  if (name == "vit_base") return "vit_base_patch16_224";
  return name;
}

double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

/// Counts argmax(logits) == labels on the host.
int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const auto pred = argmax(logits.detach(), 1).cpu().tolist<int64_t>();
  const auto truth = labels.cpu().tolist<int64_t>();
  int64_t n = 0;
  for (size_t i = 0; i < pred.size(); ++i) n += pred[i] == truth[i];
  return n;
}

/// Progress for a pass over a loader: '\r'-updated on a terminal, ~10 lines otherwise.
class Progress {
 public:
  Progress(std::ostream& log, bool enabled, std::string tag, int64_t total)
      : log_(log), enabled_(enabled), tag_(std::move(tag)), total_(total), tty_(::isatty(STDOUT_FILENO) && &log == &std::cout) {}
  void update(int64_t step, double loss, double acc) {
    if (!enabled_) return;
    const int64_t every = std::max<int64_t>(1, total_ / 10);
    if (!tty_ && step % every != 0 && step != total_) return;
    std::ostringstream line;
    line << tag_ << " " << std::setw(4) << step << "/" << total_ << "  loss: " << std::fixed << std::setprecision(3) << loss
         << ", acc: " << std::setprecision(3) << acc;
    if (tty_) {
      log_ << "\r" << line.str() << std::flush;
      if (step == total_) log_ << "\n";
    } else {
      log_ << line.str() << "\n" << std::flush;
    }
  }

 private:
  std::ostream& log_;
  bool enabled_;
  std::string tag_;
  int64_t total_;
  bool tty_;
};

struct PassStats {
  double loss = 0, acc = 0;
};

PassStats run_pass(nn::Module& model, const data::DataLoader& loader, int64_t epoch, const nn::CrossEntropyLoss& criterion,
                   optim::Optimizer* optimizer, optim::LambdaLR* per_step_schedule, double clip_grad, Device device,
                   Progress& progress, bool amp = false) {
  const bool training = optimizer != nullptr;
  model.train(training);
  std::unique_ptr<NoGradGuard> no_grad;
  if (!training) no_grad = std::make_unique<NoGradGuard>();
  double loss_sum = 0;
  int64_t correct = 0, seen = 0, step = 0;
  auto pass = loader.epoch(epoch);
  while (auto batch = pass.next()) {
    Tensor images = batch->images.to(device), labels = batch->labels.to(device);
    Tensor logits, loss;
    {
      autocast mixed(device, DType::bf16, amp);  // --amp: bf16 GEMMs, f32 master weights (autocast.h)
      logits = model.forward(images);
      loss = criterion(logits, labels);
    }
    const double loss_value = loss.item();
    PETAL_CHECK(std::isfinite(loss_value), "training stopped: non-finite loss ", loss_value, " at epoch ", epoch,
                ", step ", step, " (lower --lr or set --clip-grad)");
    if (training) {
      optimizer->zero_grad();
      loss.backward();
      if (clip_grad > 0) {
        std::vector<Tensor> params;
        for (auto& g : optimizer->param_groups())
          for (auto& p : g.params) params.push_back(p);
        optim::clip_grad_norm(params, clip_grad);
      }
      optimizer->step();
      if (per_step_schedule) per_step_schedule->step();
    }
    const int64_t B = batch->size();
    loss_sum += loss_value * static_cast<double>(B);
    correct += count_correct(logits, batch->labels);
    seen += B;
    ++step;
    progress.update(step, loss_sum / seen, static_cast<double>(correct) / seen);
  }
  if (distributed::is_initialized()) {
    Tensor totals = tensor(std::vector<double>{loss_sum, static_cast<double>(correct), static_cast<double>(seen)}, {3},
                           TensorOptions(DType::f64));
    distributed::all_reduce(totals);
    const auto t = totals.tolist<double>();
    loss_sum = t[0];
    correct = static_cast<int64_t>(t[1]);
    seen = static_cast<int64_t>(t[2]);
  }
  PETAL_CHECK(seen > 0, "vit_flowers: empty pass over the data");
  return {loss_sum / seen, static_cast<double>(correct) / seen};
}

}  // namespace

Device resolve_device(const std::string& name) {
  if (name == "auto") return cuda::is_available() ? Device("cuda") : kCPU;
  return Device(name);
}

namespace {

std::string fmt(double v, int precision = 4) {
  std::ostringstream os;
  os << std::setprecision(precision) << v;
  return os.str();
}

/// A number from a checkpoint's metadata entry, or an error naming the file and entry.
double checkpoint_number(const std::string& file, const std::string& key, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  PETAL_CHECK(!text.empty() && end == text.c_str() + text.size() && errno != ERANGE && std::isfinite(v),
              "vit_flowers: checkpoint '", file, "': entry '", key, "' = '", text, "' is not a finite number");
  return v;
}

/// The class names stored in a checkpoint's "classes" entry (a JSON list of strings).
std::vector<std::string> checkpoint_classes(const std::string& file, const std::string& text) {
  try {
    return json::parse(text).get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    PETAL_FAIL("vit_flowers: checkpoint '", file, "': entry 'classes' is not a JSON list of class names: ", e.what());
  }
}

/// The shortest decimal text that reads back as exactly v (0.003, not 0.0030000000000000001).
std::string exact(double v) {
  for (int precision = 1; precision < 17; ++precision) {
    const std::string text = fmt(v, precision);
    if (std::strtod(text.c_str(), nullptr) == v) return text;
  }
  return fmt(v, 17);
}

/// Run settings stored with each checkpoint so --resume can tell what changed.
std::map<std::string, std::string> run_settings(const TrainConfig& c) {
  return {{"train.lr", exact(c.lr)},        {"train.lrf", exact(c.lrf)},
          {"train.batch_size", std::to_string(c.batch_size)}, {"train.seed", std::to_string(c.seed)},
          {"train.epochs", std::to_string(c.epochs)},        {"train.optimizer", c.optimizer},
          {"train.warmup_epochs", std::to_string(c.warmup_epochs)}, {"train.weight_decay", exact(c.weight_decay)}};
}

}  // namespace

// ---------------------------------------------------------------- config and JSON

nn::ViTConfig model_config(const TrainConfig& config, int64_t num_classes) {
  nn::ViTConfig c = nn::ViTConfig::preset(full_preset_name(config.model), num_classes);
  c.img_size = config.img_size;
  if (config.patch_size > 0) c.patch_size = config.patch_size;
  if (config.width > 0) c.width = config.width;
  if (config.depth > 0) c.depth = config.depth;
  if (config.heads > 0) c.heads = config.heads;
  c.drop_path_rate = config.drop_path;
  PETAL_CHECK(c.img_size % c.patch_size == 0, "vit_flowers: --img-size ", c.img_size, " is not a multiple of the patch size ",
              c.patch_size);
  PETAL_CHECK(c.width % c.heads == 0, "vit_flowers: width ", c.width, " is not divisible by ", c.heads, " heads");
  return c;
}

std::string config_to_json(const nn::ViTConfig& c) {
  json j = {{"img_size", c.img_size},
            {"patch_size", c.patch_size},
            {"in_chans", c.in_chans},
            {"width", c.width},
            {"depth", c.depth},
            {"heads", c.heads},
            {"mlp_ratio", c.mlp_ratio},
            {"num_classes", c.num_classes},
            {"activation", c.activation},
            {"operation_order", c.operation_order},
            {"class_token_first", c.class_token_first},
            {"learned_pos_embed", c.learned_pos_embed},
            {"qkv_bias", c.qkv_bias},
            {"patch_norm", c.patch_norm},
            {"final_norm", c.final_norm},
            {"pool", c.pool},
            {"norm_eps", c.norm_eps}};
  return j.dump();
}

nn::ViTConfig config_from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    PETAL_FAIL("vit_flowers: ", where, " is not valid JSON: ", e.what());
  }
  nn::ViTConfig c;
  try {
    c.img_size = j.at("img_size");
    c.patch_size = j.at("patch_size");
    c.in_chans = j.at("in_chans");
    c.width = j.at("width");
    c.depth = j.at("depth");
    c.heads = j.at("heads");
    c.mlp_ratio = j.at("mlp_ratio");
    c.num_classes = j.at("num_classes");
    c.activation = j.at("activation");
    c.operation_order = j.at("operation_order").get<std::vector<std::string>>();
    c.class_token_first = j.at("class_token_first");
    c.learned_pos_embed = j.at("learned_pos_embed");
    c.qkv_bias = j.at("qkv_bias");
    c.patch_norm = j.at("patch_norm");
    c.final_norm = j.at("final_norm");
    c.pool = j.at("pool");
    c.norm_eps = j.at("norm_eps");
  } catch (const std::exception& e) {
    PETAL_FAIL("vit_flowers: ", where, " is incomplete or has a wrong type: ", e.what());
  }
  return c;
}

void write_class_indices(const std::string& path, const std::vector<std::string>& classes) {
  json j = json::object();
  for (size_t i = 0; i < classes.size(); ++i) j[std::to_string(i)] = classes[i];
  write_file_atomic(path, j.dump(4) + "\n");  // checked writes, temporary + rename
}

std::vector<std::string> read_class_indices(const std::string& path) {
  std::ifstream in(path);
  PETAL_CHECK(in.good(), "vit_flowers: cannot open class index file '", path, "'");
  json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    PETAL_FAIL("vit_flowers: '", path, "' is not valid JSON: ", e.what());
  }
  PETAL_CHECK(j.is_object() && !j.empty(), "vit_flowers: '", path, "' must map \"0\", \"1\", ... to class names");
  std::vector<std::string> classes(j.size());
  for (size_t i = 0; i < classes.size(); ++i) {
    auto it = j.find(std::to_string(i));
    PETAL_CHECK(it != j.end() && it->is_string(), "vit_flowers: '", path, "' has no class name for index ", i);
    classes[i] = it->get<std::string>();
  }
  return classes;
}

// ---------------------------------------------------------------- train

namespace {

/// Refuses a --resume whose checkpoint was trained on other classes (even renamed), another
/// model or another optimizer, and warns about settings that change the resumed run's
/// numbers. Only the header's metadata is read; load_checkpoint validates the rest.
void check_resume_fits(const std::string& ck, const TrainConfig& config, const nn::ViTConfig& mc,
                       const std::vector<std::string>& classes, std::map<std::string, std::string>& extra,
                       std::ostream& log) {
  std::map<std::string, std::string> saved_extra;
  for (const auto& [k, v] : load_safetensors_metadata(ck))
    if (k.rfind("extra.", 0) == 0) saved_extra[k.substr(6)] = v;
  auto classes_it = saved_extra.find("classes");
  if (classes_it != saved_extra.end()) {
    const auto saved_classes = checkpoint_classes(ck, classes_it->second);
    PETAL_CHECK(saved_classes == classes, "vit_flowers: cannot --resume '", ck, "': it was trained on classes ",
                json(saved_classes).dump(), ", this dataset has ", json(classes).dump());
  }
  auto cfg_it = saved_extra.find("model_config");
  if (cfg_it != saved_extra.end()) {
    const nn::ViTConfig saved_mc = config_from_json(cfg_it->second, "checkpoint '" + ck + "' entry 'model_config'");
    PETAL_CHECK(config_to_json(saved_mc) == config_to_json(mc), "vit_flowers: cannot --resume '", ck,
                "': it holds another model\n  checkpoint: ", config_to_json(saved_mc), "\n  this run:   ",
                config_to_json(mc));
  }
  const auto now = run_settings(config);
  for (const auto& [key, value] : now) {
    auto it = saved_extra.find(key);
    if (it == saved_extra.end() || it->second == value) continue;
    const bool ignored = key == "train.lr" || key == "train.weight_decay";
    if (ignored) extra[key] = it->second;  // what the resumed optimizer really uses
    if (key == "train.optimizer")
      PETAL_FAIL("vit_flowers: cannot --resume '", ck, "' with --optimizer ", value, ": it was trained with ",
                 it->second);
    log << "warning: --resume '" << ck << "': " << key.substr(6) << " was " << it->second << ", now " << value
        << (key == "train.epochs" || key == "train.lrf" || key == "train.warmup_epochs"
                ? " (the learning-rate schedule changes)"
                : key == "train.seed" || key == "train.batch_size" ? " (the data order changes: not the run that was saved)"
                                                                : " (ignored: the optimizer continues with the checkpoint's value)")
        << "\n";
  }
}

}  // namespace

TrainResult train(const TrainConfig& config, std::ostream& log_main) {
  const double t_start = now_seconds();
  PETAL_CHECK(!config.distributed || distributed::is_initialized(),
              "vit_flowers: --distributed needs petal::distributed::init() (launch with mpirun)");
  const bool main_rank = distributed::is_main_process();
  std::ostream null_log(nullptr);  // ranks other than 0 stay silent
  std::ostream& log = main_rank ? log_main : null_log;
  Device device = resolve_device(config.device);
  if (config.distributed && device.is_cuda()) device = Device(DeviceType::CUDA, distributed::local_rank());
  PETAL_CHECK(config.amp == "off" || config.amp == "bf16" || config.amp == "auto",
              "vit_flowers: --amp must be off, bf16 or auto, got '", config.amp, "'");
  const bool amp = config.amp == "bf16" || (config.amp == "auto" && device.is_cuda());
  PETAL_CHECK(config.epochs > 0 && config.batch_size > 0, "vit_flowers: --epochs and --batch-size must be positive");
  data::ImageFolderOptions folder_options;
  folder_options.max_image_pixels = config.max_image_pixels;
  if (!config.data_dir.empty()) data::ImageFolder check(config.data_dir, nullptr, folder_options);  // fail before creating --out
  fs::create_directories(config.out_dir);
  if (main_rank)
    for (const std::string& stale : remove_stale_temporaries(config.out_dir))
      log << "removed " << stale << " (an unfinished write of a process that no longer runs)\n";
  manual_seed(config.seed);

  // ---- data
  std::string root = config.data_dir;
  if (root.empty()) root = (fs::path(config.out_dir) / "synthetic_flowers").string();
  if (config.data_dir.empty() && main_rank) {
    data::SyntheticFlowersOptions so;
    so.per_class = config.synthetic_per_class;
    so.size = config.synthetic_size > 0 ? config.synthetic_size : config.img_size * 5 / 4;
    so.seed = config.seed;
    so.format = config.synthetic_format;
    const double t0 = now_seconds();
    fs::remove_all(root);
    const int64_t n = data::make_synthetic_flowers(root, so);
    log << "no --data given: generated " << n << " synthetic flower images (" << so.per_class << " per class, " << so.size
        << "x" << so.size << " " << so.format << ") in " << root << " (" << fmt(now_seconds() - t0, 2) << " s)\n";
  }
  if (config.distributed) distributed::barrier();  // the other ranks read what rank 0 generated
  data::ImageFolder folder(root, nullptr, folder_options);
  for (const std::string& w : folder.warnings()) log << "warning: " << w << "\n";
  TrainResult result;
  result.classes = folder.classes();
  const auto counts = folder.class_counts();
  log << "dataset " << root << ": " << folder.size() << " images, " << folder.classes().size() << " classes (";
  for (size_t c = 0; c < counts.size(); ++c) log << (c ? ", " : "") << folder.classes()[c] << " " << counts[c];
  log << ")\n";
  data::Split split = data::split_samples(folder.samples(), config.val_ratio, config.seed);
  PETAL_CHECK(!split.train.empty() && !split.val.empty(), "vit_flowers: the split of '", root, "' left ", split.train.size(),
              " training and ", split.val.size(), " validation images; need at least one of each");
  result.train_images = static_cast<int64_t>(split.train.size());
  result.val_images = static_cast<int64_t>(split.val.size());
  log << split.train.size() << " images for training, " << split.val.size() << " for validation\n";
  result.class_indices = (fs::path(config.out_dir) / "class_indices.json").string();
  if (main_rank) write_class_indices(result.class_indices, folder.classes());

  auto train_tf = std::make_shared<data::Compose>(std::vector<data::TransformPtr>{
      std::make_shared<data::RandomResizedCrop>(config.img_size, std::make_pair(config.min_crop_scale, 1.0)),
      std::make_shared<data::RandomHorizontalFlip>(), std::make_shared<data::ToTensor>(),
      std::make_shared<data::Normalize>(kMean, kStd)});
  auto val_tf = data::val_transform(config.img_size, kMean, kStd);
  log << "train transform: " << train_tf->repr() << "\nval transform:   " << val_tf->repr() << "\n";
  data::DataLoaderOptions lo;
  lo.batch_size = config.batch_size;
  lo.shuffle = true;
  lo.num_workers = config.workers;
  lo.seed = config.seed;
  if (config.distributed) {
    lo.shuffle = false;
    lo.sampler = std::make_shared<data::DistributedSampler>(static_cast<int64_t>(split.train.size()), distributed::world_size(),
                                                            distributed::rank(), true, config.seed);
  }
  data::DataLoader train_loader(std::make_shared<data::ImageDataset>(split.train, train_tf, config.max_image_pixels), lo);
  lo.shuffle = false;
  if (config.distributed)
    lo.sampler = std::make_shared<data::DistributedSampler>(static_cast<int64_t>(split.val.size()), distributed::world_size(),
                                                            distributed::rank(), false, config.seed);
  data::DataLoader val_loader(std::make_shared<data::ImageDataset>(split.val, val_tf, config.max_image_pixels), lo);

  // ---- model
  const nn::ViTConfig mc = model_config(config, static_cast<int64_t>(folder.classes().size()));
  nn::ViT model(mc);
  if (!config.weights.empty()) {
    nn::PretrainedOptions po;
    po.min_loaded_fraction = config.min_weights_matched;
    nn::PretrainedReport report = nn::load_pretrained(model, config.weights, po);
    log << "pretrained weights " << config.weights << ":\n" << report.summary() << "\n";
  }
  if (config.freeze_layers) model.freeze_all_but_head();
  model.to(device);
  log << "model " << full_preset_name(config.model) << ": img " << mc.img_size << ", patch " << mc.patch_size << ", width "
      << mc.width << ", depth " << mc.depth << ", heads " << mc.heads << ", " << model.num_patches() << " patches, "
      << model.num_parameters() << " parameters (" << model.num_parameters(true) << " trainable) on " << device.str()
      << (amp ? ", bf16 autocast" : "") << "\n";

  // ---- optimiser and schedule
  std::vector<std::pair<std::string, Tensor>> trainable;
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) trainable.emplace_back(name, p);
  PETAL_CHECK(!trainable.empty(), "vit_flowers: no trainable parameters");
  std::unique_ptr<optim::Optimizer> optimizer;
  if (config.optimizer == "sgd") {
    optim::SGDOptions so;
    so.lr = config.lr;
    so.momentum = config.momentum;
    so.weight_decay = config.weight_decay;
    std::vector<Tensor> params;
    for (auto& np : trainable) params.push_back(np.second);
    optimizer = std::make_unique<optim::SGD>(params, so);
  } else if (config.optimizer == "adamw") {
    optim::AdamWOptions ao;
    ao.lr = config.lr;
    ao.weight_decay = config.weight_decay;
    optimizer = std::make_unique<optim::AdamW>(
        optim::weight_decay_groups(trainable, config.weight_decay, model.no_weight_decay()), ao);
  } else {
    PETAL_FAIL("vit_flowers: unknown --optimizer '", config.optimizer, "' (sgd or adamw)");
  }
  const int64_t nb = train_loader.num_batches();
  // The warmup must end before the last epoch; without one the seed's per-epoch cosine runs.
  const int64_t warmup_epochs = std::min(config.warmup_epochs, config.epochs - 1);
  const bool per_step = warmup_epochs > 0;
  optim::LambdaLR schedule(*optimizer, per_step ? optim::warmup_cosine_lf(warmup_epochs * nb, config.epochs * nb,
                                                                           config.lrf, 0.01)
                                                : optim::cosine_lf(config.epochs, config.lrf));
  log << "optimizer " << config.optimizer << " lr " << config.lr << " weight_decay " << config.weight_decay
      << (config.optimizer == "sgd" ? " momentum " + fmt(config.momentum) : std::string()) << ", cosine schedule lrf "
      << config.lrf << (per_step ? ", warmup " + std::to_string(warmup_epochs) + " epochs" : std::string())
      << ", label smoothing " << config.label_smoothing << ", batch " << config.batch_size << ", " << config.workers
      << " loader threads\n";

  // ---- resume
  int64_t start_epoch = 0;
  std::map<std::string, std::string> extra = {{"model_config", config_to_json(mc)},
                                              {"classes", json(folder.classes()).dump()},
                                              {"mean", json(kMean).dump()},
                                              {"std", json(kStd).dump()}};
  for (const auto& kv : run_settings(config)) extra[kv.first] = kv.second;
  if (!config.resume.empty()) {
    const std::string& ck = config.resume;
    check_resume_fits(ck, config, mc, folder.classes(), extra, log);
    nn::CheckpointInfo info = nn::load_checkpoint(ck, model, optimizer.get(), &schedule);
    start_epoch = info.epoch;
    if (info.extra.count("best_val_acc"))
      result.best_val_acc = checkpoint_number(ck, "extra.best_val_acc", info.extra.at("best_val_acc"));
    if (info.extra.count("best_epoch")) {
      const double e = checkpoint_number(ck, "extra.best_epoch", info.extra.at("best_epoch"));
      PETAL_CHECK(e == std::floor(e) && e >= -1 && e < static_cast<double>(start_epoch) + 1, "vit_flowers: checkpoint '",
                  ck, "': entry 'extra.best_epoch' = ", info.extra.at("best_epoch"), " is not an epoch before ", start_epoch);
      result.best_epoch = static_cast<int64_t>(e);
    }
    // After an epoch every trained parameter has optimizer state (AdamW's moments, SGD's
    // momentum buffer); a checkpoint that lacks some would resume with them reset.
    if (start_epoch > 0 && (config.optimizer == "adamw" || config.momentum != 0.0)) {
      const optim::OptimizerState st = optimizer->state_dict();
      const std::vector<std::string> needed = config.optimizer == "adamw" ? std::vector<std::string>{"exp_avg", "exp_avg_sq"}
                                                                           : std::vector<std::string>{"momentum_buffer"};
      std::vector<std::string> missing;
      for (size_t i = 0; i < trainable.size(); ++i)
        for (const auto& n : needed)
          if (!st.tensors.count("state." + std::to_string(i) + "." + n))
            missing.push_back("optim.state." + std::to_string(i) + "." + n + " (" + trainable[i].first + ")");
      if (!missing.empty()) {
        std::string msg = "vit_flowers: checkpoint '" + ck + "' lacks optimizer state after " +
                          std::to_string(start_epoch) + " epochs:";
        for (size_t i = 0; i < missing.size() && i < 10; ++i) msg += "\n  " + missing[i];
        if (missing.size() > 10) msg += "\n  ... and " + std::to_string(missing.size() - 10) + " more";
        PETAL_FAIL(msg);
      }
    }
    log << "resumed from " << config.resume << " after epoch " << start_epoch << " (best val acc "
        << fmt(result.best_val_acc) << ")\n";
  }

  // After --resume: rank 0's weights are the ones every rank starts from.
  std::shared_ptr<nn::DistributedDataParallel> ddp;
  if (config.distributed) {
    ddp = std::make_shared<nn::DistributedDataParallel>(std::shared_ptr<nn::Module>(&model, [](nn::Module*) {}));
    log << "distributed: " << distributed::world_size() << " processes (" << distributed::backend_name() << "), batch "
        << config.batch_size << " per process\n";
  }
  nn::Module& trained = ddp ? static_cast<nn::Module&>(*ddp) : model;
  const nn::CrossEntropyLoss criterion(config.label_smoothing);
  result.best_checkpoint = (fs::path(config.out_dir) / "model-best.safetensors").string();
  result.last_checkpoint = (fs::path(config.out_dir) / "checkpoint-last.safetensors").string();
  for (int64_t epoch = start_epoch; epoch < config.epochs; ++epoch) {
    const double t0 = now_seconds();
    EpochStats st;
    st.epoch = epoch;
    st.lr = optimizer->param_groups()[0].lr();
    Progress train_progress(log, config.progress, "[train epoch " + std::to_string(epoch) + "]", nb);
    PassStats tr = run_pass(trained, train_loader, epoch, criterion, optimizer.get(), per_step ? &schedule : nullptr,
                            config.clip_grad, device, train_progress, amp);
    if (!per_step) schedule.step();
    Progress val_progress(log, config.progress, "[valid epoch " + std::to_string(epoch) + "]", val_loader.num_batches());
    PassStats va = run_pass(trained, val_loader, 0, criterion, nullptr, nullptr, 0.0, device, val_progress, amp);
    st.train_loss = tr.loss;
    st.train_acc = tr.acc;
    st.val_loss = va.loss;
    st.val_acc = va.acc;
    st.seconds = now_seconds() - t0;
    result.history.push_back(st);

    extra["val_acc"] = fmt(va.acc, 17);
    const bool best = va.acc > result.best_val_acc || result.best_epoch < 0;
    if (best) {
      result.best_val_acc = va.acc;
      result.best_epoch = epoch;
    }
    extra["best_val_acc"] = fmt(result.best_val_acc, 17);
    extra["best_epoch"] = std::to_string(result.best_epoch);
    if (best && main_rank) nn::save_checkpoint(result.best_checkpoint, model, nullptr, nullptr, epoch + 1, extra);
    if (main_rank) nn::save_checkpoint(result.last_checkpoint, model, optimizer.get(), &schedule, epoch + 1, extra);
    const double lr_end = optimizer->param_groups()[0].lr();
    const std::string lr_text = per_step ? fmt(st.lr, 3) + ".." + fmt(lr_end, 3) : fmt(st.lr);
    log << "[epoch " << epoch + 1 << "/" << config.epochs << "] lr " << lr_text << "  train loss " << fmt(tr.loss)
        << " acc " << fmt(tr.acc) << "  |  val loss " << fmt(va.loss) << " acc " << fmt(va.acc) << "  |  "
        << fmt(st.seconds, 3) << " s" << (best ? "  (best, saved)" : "") << "\n"
        << std::flush;
  }
  if (result.best_epoch >= 0 && !result.history.empty()) {
    log << "done in " << fmt(now_seconds() - t_start, 3) << " s: best val acc " << fmt(result.best_val_acc) << " (epoch "
        << result.best_epoch + 1 << ", chance " << fmt(1.0 / static_cast<double>(result.classes.size()), 3) << ")\n"
        << "checkpoints: " << result.best_checkpoint << " (best), " << result.last_checkpoint << " (last, for --resume)\n"
        << "class indices: " << result.class_indices << "\n";
  }
  return result;
}

// ---------------------------------------------------------------- predict

std::vector<std::pair<std::string, double>> predict(const std::string& checkpoint, const std::string& image,
                                                    const std::string& class_indices, int64_t top_k,
                                                    const std::string& device_name, int64_t max_image_pixels) {
  const Device device = resolve_device(device_name);
  nn::TrainingCheckpoint ck = nn::read_checkpoint(checkpoint);
  auto cfg_it = ck.extra.find("model_config");
  PETAL_CHECK(cfg_it != ck.extra.end(), "vit_flowers predict: '", checkpoint,
              "' has no model_config entry (not written by vit_flowers train)");
  const nn::ViTConfig mc = config_from_json(cfg_it->second, "checkpoint '" + checkpoint + "' entry 'model_config'");
  std::vector<std::string> classes;
  if (!class_indices.empty()) {
    classes = read_class_indices(class_indices);
  } else if (ck.extra.count("classes")) {
    classes = checkpoint_classes(checkpoint, ck.extra.at("classes"));
  }
  PETAL_CHECK(static_cast<int64_t>(classes.size()) == mc.num_classes, "vit_flowers predict: ", classes.size(),
              " class names (from '", class_indices.empty() ? checkpoint : class_indices, "') for a model with ",
              mc.num_classes, " classes (checkpoint '", checkpoint, "')");
  nn::ViT model(mc);
  nn::StateDict sd;
  for (const auto& [name, t] : ck.model) sd.insert(name, t);
  try {
    model.load_state_dict(sd);
  } catch (const Error& e) {
    PETAL_FAIL("vit_flowers predict: checkpoint '", checkpoint, "' does not fit its own model_config: ", e.what());
  }
  model.to(device);
  model.eval();

  Tensor x = (*data::val_transform(mc.img_size, kMean, kStd))(data::read_image(image, 3, max_image_pixels));
  NoGradGuard no_grad;
  Tensor logits = model.forward(x.unsqueeze(0).to(device)).cpu();
  for (double v : logits.tolist<double>())
    PETAL_CHECK(std::isfinite(v), "vit_flowers predict: the model of '", checkpoint, "' gives non-finite logits (", v,
                ") for '", image, "'");
  Tensor probs = softmax(logits, 1);
  const auto p = probs.tolist<double>();
  std::vector<std::pair<std::string, double>> ranked;
  for (size_t c = 0; c < p.size(); ++c) ranked.emplace_back(classes[c], p[c]);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (top_k > 0 && static_cast<size_t>(top_k) < ranked.size()) ranked.resize(static_cast<size_t>(top_k));
  return ranked;
}

}  // namespace vit_flowers
