// Training checkpoints as one safetensors file (layout in checkpoint.h). Scalars travel in
// the header's string metadata: integers in decimal, doubles with 17 significant digits
// (strtod reads them back to the same bits). load_checkpoint checks the model's keys,
// shapes and dtypes itself before touching anything, loads the optimizer (which validates
// before committing), then the schedule, rolling the optimizer back if the schedule's
// state does not fit, and only then copies the weights and restores the generator.
// read_checkpoint refuses what would resume into a silently different run: a negative
// epoch, non-finite tensors, and optimizer state missing for some parameters.
#include <petal/nn/checkpoint.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

namespace petal::nn {

namespace {

const char* const kMarkerKey = "petal.checkpoint";
const char* const kFormatVersion = "1";

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

const std::string& meta_at(const std::string& path, const SafetensorsMetadata& m, const std::string& key) {
  auto it = m.find(key);
  PETAL_CHECK(it != m.end(), "checkpoint '", path, "': missing metadata entry '", key, "'");
  return it->second;
}

double parse_double(const std::string& path, const std::string& key, const std::string& s) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  PETAL_CHECK(!s.empty() && end == s.c_str() + s.size() && errno != ERANGE, "checkpoint '", path, "': entry '", key,
              "' = '", s, "' is not a number");
  return v;
}

uint64_t parse_u64(const std::string& path, const std::string& key, const std::string& s) {
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  PETAL_CHECK(!s.empty() && s[0] != '-' && end == s.c_str() + s.size() && errno != ERANGE, "checkpoint '", path,
              "': entry '", key, "' = '", s, "' is not a non-negative integer");
  return static_cast<uint64_t>(v);
}

int64_t parse_i64(const std::string& path, const std::string& key, const std::string& s) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  PETAL_CHECK(!s.empty() && end == s.c_str() + s.size() && errno != ERANGE, "checkpoint '", path, "': entry '", key,
              "' = '", s, "' is not an integer");
  return static_cast<int64_t>(v);
}

// Every parameter with optimizer state must hold the same state tensors (AdamW's exp_avg and
// exp_avg_sq, SGD's momentum_buffer) and, when any has one, a step count: a checkpoint with
// one of them deleted would otherwise resume with a silently re-initialized moment.
void check_optimizer_state_complete(const std::string& path, const TrainingCheckpoint& c) {
  if (!c.has_optimizer) return;
  std::map<std::string, std::set<std::string>> per_param;  // "state.<i>" -> its entries
  std::set<std::string> tensor_names;
  bool any_step = false;
  auto split = [](const std::string& key, std::string& param, std::string& entry) {
    if (!starts_with(key, "state.")) return false;
    const auto dot = key.find('.', 6);
    if (dot == std::string::npos) return false;
    param = key.substr(0, dot);
    entry = key.substr(dot + 1);
    return true;
  };
  std::string param, entry;
  for (const auto& kv : c.optimizer.tensors)
    if (split(kv.first, param, entry)) {
      per_param[param].insert(entry);
      tensor_names.insert(entry);
    }
  for (const auto& kv : c.optimizer.scalars)
    if (split(kv.first, param, entry) && entry == "step") {
      per_param[param].insert(entry);
      any_step = true;
    }
  std::vector<std::string> problems;
  for (const auto& [p, entries] : per_param) {
    for (const auto& t : tensor_names)
      if (!entries.count(t)) problems.push_back("missing tensor 'optim." + p + "." + t + "'");
    if (any_step && !entries.count("step")) problems.push_back("missing entry 'optim." + p + ".step'");
  }
  if (!problems.empty()) {
    std::string msg = "checkpoint '" + path + "': incomplete optimizer state:";
    for (size_t i = 0; i < problems.size() && i < 20; ++i) msg += "\n  " + problems[i];
    if (problems.size() > 20) msg += "\n  ... and " + std::to_string(problems.size() - 20) + " more";
    PETAL_FAIL(msg);
  }
}

}  // namespace

void write_checkpoint(const std::string& path, const TrainingCheckpoint& c) {
  TensorMap tensors;
  SafetensorsMetadata meta;
  meta[kMarkerKey] = kFormatVersion;
  meta["epoch"] = std::to_string(c.epoch);
  meta["rng.seed"] = std::to_string(c.rng.seed);
  meta["rng.offset"] = std::to_string(c.rng.offset);
  for (const auto& [k, t] : c.model) tensors["model." + k] = t;
  meta["optim.present"] = c.has_optimizer ? "1" : "0";
  if (c.has_optimizer) {
    for (const auto& [k, t] : c.optimizer.tensors) tensors["optim." + k] = t;
    for (const auto& [k, v] : c.optimizer.scalars) meta["optim." + k] = format_double(v);
  }
  meta["schedule.present"] = c.has_schedule ? "1" : "0";
  if (c.has_schedule)
    for (const auto& [k, v] : c.schedule) meta["schedule." + k] = format_double(v);
  for (const auto& [k, v] : c.extra) meta["extra." + k] = v;
  save_safetensors(path, tensors, meta);
}

TrainingCheckpoint read_checkpoint(const std::string& path) {
  SafetensorsContents file = load_safetensors_contents(path);
  const SafetensorsMetadata& m = file.metadata;
  PETAL_CHECK(m.count(kMarkerKey), "checkpoint '", path, "': not a petal training checkpoint (no '", kMarkerKey,
              "' metadata entry; a plain weights file loads with load_safetensors)");
  PETAL_CHECK(m.at(kMarkerKey) == kFormatVersion, "checkpoint '", path, "': format version ", m.at(kMarkerKey),
              " is not supported (this build reads version ", kFormatVersion, ")");
  TrainingCheckpoint c;
  c.epoch = parse_i64(path, "epoch", meta_at(path, m, "epoch"));
  PETAL_CHECK(c.epoch >= 0, "checkpoint '", path, "': entry 'epoch' = ", c.epoch,
              " is negative (the number of epochs completed is 0 or more)");
  c.rng.seed = parse_u64(path, "rng.seed", meta_at(path, m, "rng.seed"));
  c.rng.offset = parse_u64(path, "rng.offset", meta_at(path, m, "rng.offset"));
  c.has_optimizer = meta_at(path, m, "optim.present") == "1";
  c.has_schedule = meta_at(path, m, "schedule.present") == "1";
  for (auto& [k, t] : file.tensors) {
    if (starts_with(k, "model.")) {
      c.model[k.substr(6)] = t;
    } else if (starts_with(k, "optim.")) {
      PETAL_CHECK(c.has_optimizer, "checkpoint '", path, "': optimizer tensor '", k, "' but no optimizer state");
      c.optimizer.tensors[k.substr(6)] = t;
    } else {
      PETAL_FAIL("checkpoint '", path, "': unexpected tensor '", k, "' (expected 'model.' or 'optim.' keys)");
    }
  }
  for (const auto& [k, v] : m) {
    if (starts_with(k, "optim.") && k != "optim.present") {
      c.optimizer.scalars[k.substr(6)] = parse_double(path, k, v);
    } else if (starts_with(k, "schedule.") && k != "schedule.present") {
      c.schedule[k.substr(9)] = parse_double(path, k, v);
    } else if (starts_with(k, "extra.")) {
      c.extra[k.substr(6)] = v;
    }
  }
  check_finite(file.tensors, "checkpoint '" + path + "'");
  check_optimizer_state_complete(path, c);
  return c;
}

void save_checkpoint(const std::string& path, const Module& model, const optim::Optimizer* optimizer,
                     const optim::LambdaLR* schedule, int64_t epoch, const std::map<std::string, std::string>& extra) {
  TrainingCheckpoint c;
  for (const auto& [k, t] : model.state_dict()) c.model[k] = t;
  if (optimizer) {
    c.has_optimizer = true;
    c.optimizer = optimizer->state_dict();
  }
  if (schedule) {
    c.has_schedule = true;
    c.schedule = schedule->state_dict();
  }
  c.epoch = epoch;
  c.rng = default_generator();
  c.extra = extra;
  write_checkpoint(path, c);
}

CheckpointInfo load_checkpoint(const std::string& path, Module& model, optim::Optimizer* optimizer,
                               optim::LambdaLR* schedule, bool restore_rng) {
  TrainingCheckpoint c = read_checkpoint(path);

  // The model: every key, shape and dtype, checked before anything changes.
  StateDict own = model.state_dict();
  std::vector<std::string> problems;
  for (const auto& [name, t] : own) {
    auto it = c.model.find(name);
    if (it == c.model.end()) {
      problems.push_back("missing key 'model." + name + "'");
    } else if (it->second.shape() != t.shape() || it->second.dtype() != t.dtype()) {
      problems.push_back("'model." + name + "': checkpoint " + dtype_name(it->second.dtype()) +
                         shape_str(it->second.shape()) + " vs model " + dtype_name(t.dtype()) + shape_str(t.shape()));
    }
  }
  for (const auto& [name, t] : c.model)
    if (!own.contains(name)) problems.push_back("unexpected key 'model." + name + "'");
  if (optimizer && !c.has_optimizer) problems.push_back("no optimizer state (saved without an optimizer)");
  if (schedule && !c.has_schedule) problems.push_back("no schedule state (saved without a schedule)");
  if (!problems.empty()) {
    std::string msg = "load_checkpoint('" + path + "'): the checkpoint does not match the " + model.type_name() + ":";
    for (const auto& p : problems) msg += "\n  " + p;
    PETAL_FAIL(msg);
  }

  // The optimizer validates before committing; the schedule too, so a failing schedule only
  // needs the optimizer rolled back.
  if (optimizer) {
    optim::OptimizerState previous = optimizer->state_dict();
    try {
      optimizer->load_state_dict(c.optimizer);
      if (schedule) schedule->load_state_dict(c.schedule);
    } catch (const Error& e) {
      optimizer->load_state_dict(previous);
      PETAL_FAIL("load_checkpoint('", path, "'): ", e.what());
    }
  } else if (schedule) {
    try {
      schedule->load_state_dict(c.schedule);
    } catch (const Error& e) {
      PETAL_FAIL("load_checkpoint('", path, "'): ", e.what());
    }
  }

  StateDict weights;
  for (const auto& [k, t] : c.model) weights.insert(k, t);
  model.load_state_dict(weights, /*strict=*/true);
  if (restore_rng) default_generator() = c.rng;

  CheckpointInfo info;
  info.epoch = c.epoch;
  info.rng = c.rng;
  info.extra = std::move(c.extra);
  return info;
}

}  // namespace petal::nn
