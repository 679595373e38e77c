// The vit_flowers flow (see trainer.h). The loop is the seed's train_one_epoch/evaluate:
// mean loss and accuracy over all samples seen, the schedule stepped once per epoch (or
// per iteration when a warmup is asked for), a non-finite loss stops the run.
// Distributed (config.distributed): each rank trains on its DistributedSampler shard through
// DistributedDataParallel, pass metrics are summed over the ranks, and only rank 0 logs and
// writes files (class indices, checkpoints; the synthetic data, before a barrier).
#include "trainer.h"

#include "interrupt.h"
#include "metrics.h"
#include "plot.h"
#include "progress.h"
#include "workflow.h"

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
#include <tuple>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <petal/data/cache.h>

namespace petal::kernels::cpu {
bool onednn_bf16_fast();  // libpetal (kernels/cpu/gemm_onednn.h): bf16 GEMMs on native bf16 instructions
}

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

/// Running sums of a pass, kept on the training device so that no step waits for it: the
/// loss times the batch size and the number of correct predictions, both f64 (exact counts).
/// read() copies them to the host (one synchronization), every --log-every steps and at the
/// end of the pass. `base` holds what an interrupted pass had reached (--resume).
struct DeviceTotals {
  Tensor loss_sum, correct;
  double base_loss = 0, base_correct = 0;
  DeviceTotals(Device device, double loss0, double correct0)
      : loss_sum(zeros({}, TensorOptions(DType::f64, device))), correct(zeros({}, TensorOptions(DType::f64, device))),
        base_loss(loss0), base_correct(correct0) {}
  void add(const Tensor& loss, const Tensor& logits, const Tensor& labels, int64_t batch) {
    loss_sum.add_(loss.detach().to(DType::f64), static_cast<double>(batch));
    correct.add_(sum(eq(argmax(logits.detach(), 1), labels).to(DType::f64)));
  }
  std::pair<double, double> read() const {
    const auto v = stack({loss_sum, correct}).to(kCPU).tolist<double>();  // one copy to the host
    return {base_loss + v[0], base_correct + v[1]};
  }
};

struct PassStats {
  double loss = 0, acc = 0, loss_sum = 0, correct = 0;
  int64_t seen = 0, steps = 0;
  double seconds = 0;
  bool interrupted = false;  ///< stopped by Ctrl-C after `steps` steps
};

/// Where an interrupted training pass stopped (from a checkpoint), to continue it exactly.
struct PassResume {
  int64_t steps = 0, seen = 0;
  double loss_sum = 0, correct = 0, seconds = 0;
};

PassStats run_pass(nn::Module& model, const data::DataLoader& loader, int64_t epoch, const nn::CrossEntropyLoss& criterion,
                   optim::Optimizer* optimizer, optim::LambdaLR* per_step_schedule, double clip_grad, Device device,
                   Progress& progress, int64_t log_every, bool amp, const PassResume& from = {}) {
  const bool training = optimizer != nullptr;
  model.train(training);
  std::unique_ptr<NoGradGuard> no_grad;
  if (!training) no_grad = std::make_unique<NoGradGuard>();
  const double t0 = now_seconds();
  DeviceTotals totals(device, from.loss_sum, from.correct);
  int64_t seen = from.seen, step = 0, read_at = from.steps;
  double loss_read = -1, acc_read = -1;
  std::vector<Tensor> params;
  if (training && clip_grad > 0)
    for (auto& g : optimizer->param_groups())
      for (auto& p : g.params) params.push_back(p);
  auto pass = loader.epoch(epoch);
  const int64_t total = loader.num_batches();
  // Reads the device totals (a host synchronization) and stops on a non-finite loss.
  double loss_sum = from.loss_sum, correct = from.correct;
  auto read = [&] {
    std::tie(loss_sum, correct) = totals.read();
    PETAL_CHECK(std::isfinite(loss_sum), "training stopped: non-finite loss at epoch ", epoch + 1, ", between steps ",
                read_at, " and ", step, " (lower --lr or set --clip-grad)");
    read_at = step;
    loss_read = seen > 0 ? loss_sum / static_cast<double>(seen) : 0.0;
    acc_read = seen > 0 ? correct / static_cast<double>(seen) : 0.0;
  };
  bool interrupted = false;
  while (auto batch = pass.next()) {
    ++step;
    if (step <= from.steps) continue;  // the interrupted run's steps, already in `from`
    // Asynchronous from the loader's pinned batches (pin_memory), synchronous otherwise.
    Tensor images = batch->images.to(device, true), labels = batch->labels.to(device, true);
    Tensor logits, loss;
    {
      autocast mixed(device, DType::bf16, amp);  // --amp: bf16 GEMMs, f32 master weights (autocast.h)
      logits = model.forward(images);
      loss = criterion(logits, labels);
    }
    if (training) {
      optimizer->zero_grad();
      loss.backward();
      if (clip_grad > 0) optim::clip_grad_norm_(params, clip_grad);  // the total norm stays on the device
      optimizer->step();
      if (per_step_schedule) per_step_schedule->step();
    }
    const int64_t B = batch->size();
    totals.add(loss, logits, labels, B);
    seen += B;
    // Ctrl-C: stop after this step (a training pass is continued by --resume; an
    // evaluation pass is redone).
    if (interrupt_requested() && step < total) interrupted = true;
    if (step == total || interrupted) break;  // the last read is the one below
    const bool fresh = step % log_every == 0;
    if (fresh) read();
    progress.update(step, seen - from.seen, loss_read, acc_read, fresh);
  }
  if (read_at != step || step == 0) read();  // the pass's totals: one synchronization
  if (step > from.steps) progress.update(step, seen - from.seen, loss_read, acc_read, true);
  progress.finish();
  PassStats out;
  if (distributed::is_initialized()) {
    Tensor t = tensor(std::vector<double>{loss_sum, correct, static_cast<double>(seen)}, {3}, TensorOptions(DType::f64));
    distributed::all_reduce(t);
    const auto v = t.tolist<double>();
    loss_sum = v[0];
    correct = v[1];
    seen = static_cast<int64_t>(v[2]);
  }
  PETAL_CHECK(seen > 0, "vit_flowers: empty pass over the data");
  out.loss_sum = loss_sum;
  out.correct = correct;
  out.seen = seen;
  out.steps = step;
  out.loss = loss_sum / static_cast<double>(seen);
  out.acc = correct / static_cast<double>(seen);
  out.seconds = from.seconds + (now_seconds() - t0);
  out.interrupted = interrupted;
  return out;
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
  // --amp auto: bf16 on cuda, and on cpu where oneDNN runs bf16 GEMMs on AVX512-BF16/AMX
  // (2.4x the f32 step there, docs/mixed_precision.md); off on sim and other CPUs.
  const bool amp = config.amp == "bf16" ||
                   (config.amp == "auto" && (device.is_cuda() || (device.is_cpu() && kernels::cpu::onednn_bf16_fast())));
  PETAL_CHECK(config.epochs > 0 && config.batch_size > 0, "vit_flowers: --epochs and --batch-size must be positive");
  PETAL_CHECK(config.log_every >= 0, "vit_flowers: --log-every must be >= 0 (0: automatic), got ", config.log_every);
  const std::vector<WorkflowStage> stages = parse_workflow(config.work_flow);
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
  // On cuda/sim the workers write batches into pinned memory and run_pass's non_blocking copies
  // go on the device's copy stream, overlapping the previous step's kernels (devices.md).
  lo.pin_memory = !device.is_cpu();
  if (config.distributed) {
    lo.shuffle = false;
    lo.sampler = std::make_shared<data::DistributedSampler>(static_cast<int64_t>(split.train.size()), distributed::world_size(),
                                                            distributed::rank(), true, config.seed);
  }
  // The decoded-image cache (--cache-mb), shared out between the two splits by their sizes.
  PETAL_CHECK(config.cache_mb >= 0 && config.cache_short_side >= 0, "vit_flowers: --cache-mb and --cache-short-side must be >= 0");
  const int64_t cache_bytes = config.cache_mb * 1024 * 1024;
  const double train_share = static_cast<double>(split.train.size()) / static_cast<double>(split.train.size() + split.val.size());
  auto train_set = std::make_shared<data::CachedImageDataset>(split.train, train_tf,
                                                              static_cast<int64_t>(static_cast<double>(cache_bytes) * train_share),
                                                              config.cache_short_side, config.max_image_pixels);
  auto val_set = std::make_shared<data::CachedImageDataset>(
      split.val, val_tf, cache_bytes - static_cast<int64_t>(static_cast<double>(cache_bytes) * train_share),
      config.cache_short_side, config.max_image_pixels);
  if (config.cache_mb > 0)
    log << "image cache: up to " << config.cache_mb << " MiB of decoded images"
        << (config.cache_short_side > 0 ? ", shorter side at most " + std::to_string(config.cache_short_side) + " px"
                                        : std::string(", at their decoded size"))
        << " (--cache-mb 0: off)\n";
  data::DataLoader train_loader(train_set, lo);
  lo.shuffle = false;
  if (config.distributed)
    lo.sampler = std::make_shared<data::DistributedSampler>(static_cast<int64_t>(split.val.size()), distributed::world_size(),
                                                            distributed::rank(), false, config.seed);
  data::DataLoader val_loader(val_set, lo);

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
  int64_t start_epoch = 0, resume_stage = 0, resume_stage_pass = 0;
  PassResume pass_resume;
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
    // Where in the workflow the checkpoint stopped, and an interrupted pass's progress.
    auto number = [&](const std::string& key) { return checkpoint_number(ck, "extra." + key, info.extra.at(key)); };
    if (info.extra.count("workflow.stage") && info.extra.count("workflow.pass")) {
      const std::string saved = info.extra.count("workflow") ? info.extra.at("workflow") : "";
      if (saved == workflow_str(stages)) {
        resume_stage = static_cast<int64_t>(number("workflow.stage"));
        resume_stage_pass = static_cast<int64_t>(number("workflow.pass"));
        PETAL_CHECK(resume_stage >= 0 && static_cast<size_t>(resume_stage) < stages.size() && resume_stage_pass >= 0 &&
                        resume_stage_pass < stages[static_cast<size_t>(resume_stage)].passes,
                    "vit_flowers: checkpoint '", ck, "': workflow position ", resume_stage, ":", resume_stage_pass,
                    " is not in its workflow ", saved);
      } else {
        log << "warning: --resume '" << ck << "': work-flow was " << saved << ", now " << workflow_str(stages)
            << " (starting the new one from its first stage)\n";
      }
    }
    if (info.extra.count("interrupted.steps")) {
      pass_resume.steps = static_cast<int64_t>(number("interrupted.steps"));
      pass_resume.seen = static_cast<int64_t>(number("interrupted.seen"));
      pass_resume.loss_sum = number("interrupted.loss_sum");
      pass_resume.correct = number("interrupted.correct");
      pass_resume.seconds = number("interrupted.seconds");
      PETAL_CHECK(pass_resume.steps > 0 && pass_resume.steps < nb && pass_resume.seen > 0, "vit_flowers: checkpoint '", ck,
                  "': it was interrupted after step ", pass_resume.steps, " of an epoch of ", nb,
                  " batches (another --batch-size or dataset?)");
      log << "continuing epoch " << start_epoch + 1 << " after step " << pass_resume.steps << "/" << nb << "\n";
    }
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
  result.metrics_csv = (fs::path(config.out_dir) / "metrics.csv").string();
  result.curves_png = (fs::path(config.out_dir) / "curves.png").string();
  // metrics.csv keeps the rows of the run a --resume continues (up to its checkpoint).
  std::vector<EpochStats> rows;
  if (!config.resume.empty() && main_rank)
    for (const EpochStats& r : read_metrics_csv(result.metrics_csv))
      if (r.epoch < start_epoch) rows.push_back(r);
  const Font* font = config.plots && main_rank ? default_font() : nullptr;
  const bool tty = config.progress_tty >= 0 ? config.progress_tty != 0 : is_terminal(log);
  auto log_every_for = [&](int64_t batches) {
    if (config.log_every > 0) return config.log_every;
    return tty ? int64_t{10} : std::max<int64_t>(1, batches / 10);
  };

  // The workflow position (stage, pass within it) of the next pass to run; a checkpoint
  // stores it, so --resume continues a cycle where it stopped.
  size_t stage_i = static_cast<size_t>(resume_stage) % stages.size();
  int64_t pass_i = resume_stage_pass;
  auto advance = [&] {
    if (++pass_i >= stages[stage_i].passes) {
      pass_i = 0;
      stage_i = (stage_i + 1) % stages.size();
    }
  };
  auto save_last = [&](int64_t epochs_done, const PassStats* partial) {
    if (!main_rank) return;
    std::map<std::string, std::string> e = extra;
    e["workflow"] = workflow_str(stages);
    e["workflow.stage"] = std::to_string(stage_i);
    e["workflow.pass"] = std::to_string(pass_i);
    if (partial != nullptr) {  // an interrupted training pass, continued by --resume
      e["interrupted.steps"] = std::to_string(partial->steps);
      e["interrupted.seen"] = std::to_string(partial->seen);
      e["interrupted.loss_sum"] = fmt(partial->loss_sum, 17);
      e["interrupted.correct"] = fmt(partial->correct, 17);
      e["interrupted.seconds"] = fmt(partial->seconds, 17);
    }
    nn::save_checkpoint(result.last_checkpoint, model, optimizer.get(), &schedule, epochs_done, e);
  };
  auto publish = [&] {  // metrics.csv and curves.png, after every row change
    if (!main_rank) return;
    write_metrics_csv(result.metrics_csv, rows);
    if (config.plots) plot_curves(rows, result.curves_png, font);
  };
  auto interrupted_exit = [&](const std::string& where) {
    result.interrupted = true;
    log << "\ninterrupted " << where << ": saved " << result.last_checkpoint << "\n"
        << "resume with the same options plus: --resume " << result.last_checkpoint << "\n"
        << std::flush;
  };

  int64_t epoch = start_epoch;
  bool row_open = false;  // rows.back() is this cycle's training epoch, still waiting for its val pass
  double row_t0 = 0;
  while (true) {
    if (stage_i == 0 && pass_i == 0 && epoch >= config.epochs) break;  // a whole cycle done, all epochs trained
    const WorkflowStage st = stages[stage_i];
    if (st.mode == WorkflowStage::train) {
      if (epoch >= config.epochs) {  // the seed's Runner: epochs count training passes
        advance();
        continue;
      }
      row_t0 = now_seconds();
      EpochStats row;
      row.epoch = epoch;
      row.lr = optimizer->param_groups()[0].lr();
      Progress progress(log, config.progress, tty, "[train epoch " + std::to_string(epoch + 1) + "]", nb);
      PassResume from;
      if (epoch == start_epoch) from = pass_resume;
      PassStats tr = run_pass(trained, train_loader, epoch, criterion, optimizer.get(), per_step ? &schedule : nullptr,
                              config.clip_grad, device, progress, log_every_for(nb), amp, from);
      if (tr.interrupted) {
        save_last(epoch, &tr);
        interrupted_exit("at step " + std::to_string(tr.steps) + "/" + std::to_string(nb) + " of epoch " +
                         std::to_string(epoch + 1));
        return result;
      }
      if (!per_step) schedule.step();
      row.train_loss = tr.loss;
      row.train_acc = tr.acc;
      row.images_per_s = tr.seconds > 0 ? static_cast<double>(tr.seen) / tr.seconds : 0.0;
      row.seconds = tr.seconds;
      rows.push_back(row);
      result.history.push_back(row);
      ++epoch;
      advance();
      row_open = true;
      if (stages[stage_i].mode != WorkflowStage::val) {  // no val pass follows: the row is complete
        row_open = false;
        save_last(epoch, nullptr);
        publish();
        log << "[epoch " << epoch << "/" << config.epochs << "] lr " << fmt(row.lr) << "  train loss " << fmt(tr.loss)
            << " acc " << fmt(tr.acc) << "  |  " << fmt(row.seconds, 3) << " s, " << fmt(row.images_per_s, 3)
            << " img/s\n"
            << std::flush;
      }
      continue;
    }
    // ---- a val pass: evaluates the model as it is now
    const double v0 = now_seconds();
    Progress progress(log, config.progress, tty, "[valid epoch " + std::to_string(std::max<int64_t>(epoch, 1)) + "]",
                      val_loader.num_batches());
    PassStats va = run_pass(trained, val_loader, 0, criterion, nullptr, nullptr, 0.0, device, progress,
                            log_every_for(val_loader.num_batches()), amp);
    if (va.interrupted) {  // the val pass is redone by --resume, and fills in this row's val columns
      save_last(epoch, nullptr);
      publish();
      interrupted_exit("during validation after epoch " + std::to_string(epoch));
      return result;
    }
    const bool attach = !rows.empty() && rows.back().epoch == epoch - 1 && (row_open || !std::isfinite(rows.back().val_loss));
    EpochStats* row = attach ? &rows.back() : nullptr;
    if (row != nullptr) {
      row->val_loss = va.loss;
      row->val_acc = va.acc;
      row->seconds = row_open ? now_seconds() - row_t0 : row->seconds + (now_seconds() - v0);
      if (!result.history.empty() && result.history.back().epoch == row->epoch) result.history.back() = *row;
    }
    extra["val_acc"] = fmt(va.acc, 17);
    const bool best = va.acc > result.best_val_acc || result.best_epoch < 0;
    if (best) {
      result.best_val_acc = va.acc;
      result.best_epoch = std::max<int64_t>(epoch - 1, 0);
    }
    extra["best_val_acc"] = fmt(result.best_val_acc, 17);
    extra["best_epoch"] = std::to_string(result.best_epoch);
    if (best && main_rank) nn::save_checkpoint(result.best_checkpoint, model, nullptr, nullptr, epoch, extra);
    advance();
    save_last(epoch, nullptr);
    publish();
    if (row_open && row != nullptr) {
      const double lr_end = optimizer->param_groups()[0].lr();
      const std::string lr_text = per_step ? fmt(row->lr, 3) + ".." + fmt(lr_end, 3) : fmt(row->lr);
      log << "[epoch " << epoch << "/" << config.epochs << "] lr " << lr_text << "  train loss " << fmt(row->train_loss)
          << " acc " << fmt(row->train_acc) << "  |  val loss " << fmt(va.loss) << " acc " << fmt(va.acc) << "  |  "
          << fmt(row->seconds, 3) << " s, " << fmt(row->images_per_s, 3) << " img/s" << (best ? "  (best, saved)" : "")
          << "\n";
    } else {
      log << "[val after epoch " << epoch << "/" << config.epochs << "] val loss " << fmt(va.loss) << " acc "
          << fmt(va.acc) << (best ? "  (best, saved)" : "") << "\n";
    }
    log << std::flush;
    row_open = false;
  }
  if (result.best_epoch >= 0 && !result.history.empty()) {
    log << "done in " << fmt(now_seconds() - t_start, 3) << " s: best val acc " << fmt(result.best_val_acc) << " (epoch "
        << result.best_epoch + 1 << ", chance " << fmt(1.0 / static_cast<double>(result.classes.size()), 3) << ")\n"
        << "checkpoints: " << result.best_checkpoint << " (best), " << result.last_checkpoint << " (last, for --resume)\n"
        << "class indices: " << result.class_indices << "\nmetrics: " << result.metrics_csv
        << (config.plots ? ", curves: " + result.curves_png : std::string()) << "\n";
    if (config.cache_mb > 0) {
      const data::ImageCacheStats ts = train_set->cache_stats(), vs = val_set->cache_stats();
      log << "image cache: " << ts.entries + vs.entries << " images, " << fmt(static_cast<double>(ts.bytes + vs.bytes) / 1048576.0, 3)
          << " MiB; " << ts.decodes + vs.decodes << " decodes for " << ts.hits + ts.misses + vs.hits + vs.misses
          << " loads\n";
    }
  }
  return result;
}

// ---------------------------------------------------------------- predict

struct Predictor::Impl {
  std::string checkpoint;
  nn::ViTConfig mc;
  std::vector<std::string> classes;
  Device device = kCPU;
  int64_t max_image_pixels = data::kDefaultMaxImagePixels;
  std::unique_ptr<nn::ViT> model;
};

Predictor::Predictor(const std::string& checkpoint, const std::string& class_indices, const std::string& device_name,
                     int64_t max_image_pixels)
    : impl_(std::make_unique<Impl>()) {
  impl_->checkpoint = checkpoint;
  impl_->device = resolve_device(device_name);
  impl_->max_image_pixels = max_image_pixels;
  nn::TrainingCheckpoint ck = nn::read_checkpoint(checkpoint);
  auto cfg_it = ck.extra.find("model_config");
  PETAL_CHECK(cfg_it != ck.extra.end(), "vit_flowers predict: '", checkpoint,
              "' has no model_config entry (not written by vit_flowers train)");
  const nn::ViTConfig mc = config_from_json(cfg_it->second, "checkpoint '" + checkpoint + "' entry 'model_config'");
  impl_->mc = mc;
  std::vector<std::string>& classes = impl_->classes;
  if (!class_indices.empty()) {
    classes = read_class_indices(class_indices);
  } else if (ck.extra.count("classes")) {
    classes = checkpoint_classes(checkpoint, ck.extra.at("classes"));
  }
  PETAL_CHECK(static_cast<int64_t>(classes.size()) == mc.num_classes, "vit_flowers predict: ", classes.size(),
              " class names (from '", class_indices.empty() ? checkpoint : class_indices, "') for a model with ",
              mc.num_classes, " classes (checkpoint '", checkpoint, "')");
  impl_->model = std::make_unique<nn::ViT>(mc);
  nn::StateDict sd;
  for (const auto& [name, t] : ck.model) sd.insert(name, t);
  try {
    impl_->model->load_state_dict(sd);
  } catch (const Error& e) {
    PETAL_FAIL("vit_flowers predict: checkpoint '", checkpoint, "' does not fit its own model_config: ", e.what());
  }
  impl_->model->to(impl_->device);
  impl_->model->eval();
}

Predictor::~Predictor() = default;

const std::vector<std::string>& Predictor::classes() const { return impl_->classes; }

std::vector<std::pair<std::string, double>> Predictor::classify(const Tensor& decoded, const std::string& image,
                                                                int64_t top_k) const {
  Tensor x = (*data::val_transform(impl_->mc.img_size, kMean, kStd))(decoded);
  NoGradGuard no_grad;
  Tensor logits = impl_->model->forward(x.unsqueeze(0).to(impl_->device)).cpu();
  for (double v : logits.tolist<double>())
    PETAL_CHECK(std::isfinite(v), "vit_flowers predict: the model of '", impl_->checkpoint, "' gives non-finite logits (",
                v, ") for '", image, "'");
  Tensor probs = softmax(logits, 1);
  const auto p = probs.tolist<double>();
  std::vector<std::pair<std::string, double>> ranked;
  for (size_t c = 0; c < p.size(); ++c) ranked.emplace_back(impl_->classes[c], p[c]);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (top_k > 0 && static_cast<size_t>(top_k) < ranked.size()) ranked.resize(static_cast<size_t>(top_k));
  return ranked;
}

std::vector<std::pair<std::string, double>> Predictor::classify_file(const std::string& image, int64_t top_k) const {
  return classify(data::read_image(image, 3, impl_->max_image_pixels), image, top_k);
}

std::vector<std::pair<std::string, double>> predict(const std::string& checkpoint, const std::string& image,
                                                    const std::string& class_indices, int64_t top_k,
                                                    const std::string& device_name, int64_t max_image_pixels) {
  return Predictor(checkpoint, class_indices, device_name, max_image_pixels).classify_file(image, top_k);
}

}  // namespace vit_flowers
