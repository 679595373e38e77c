// Training checkpoints: everything needed to resume a run bit-exactly, in one safetensors
// file written atomically (temporary file, then rename):
//   tensors   "model.<name>"   the model's state_dict (parameters and persistent buffers)
//             "optim.<key>"    the optimizer's state tensors (state.<i>.exp_avg, ...)
//   metadata  "petal.checkpoint" = "1" (format marker), "epoch",
//             "rng.seed", "rng.offset"        the global generator (petal::default_generator())
//             "optim.<key>"                   optimizer scalars (param_groups.<g>.lr, state.<i>.step, ...)
//             "schedule.<key>"                the LR schedule's state (last_epoch, base_lr.<g>)
//             "extra.<key>"                   caller-defined strings (best accuracy, config, ...)
// Doubles are written with 17 significant digits, so they read back bit-exactly.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <petal/nn/module.h>
#include <petal/optim/optimizer.h>
#include <petal/optim/schedule.h>
#include <petal/random.h>
#include <petal/serialize.h>

namespace petal::nn {

/// The contents of a checkpoint file as plain data.
struct TrainingCheckpoint {
  TensorMap model;                                ///< state_dict by name (no prefix)
  bool has_optimizer = false;
  optim::OptimizerState optimizer;
  bool has_schedule = false;
  std::map<std::string, double> schedule;         ///< LambdaLR::state_dict()
  int64_t epoch = 0;                              ///< epochs completed (the caller's convention)
  Generator rng;                                  ///< the global generator's state
  std::map<std::string, std::string> extra;
};

/// Writes a checkpoint file atomically (see the file comment for the layout).
void write_checkpoint(const std::string& path, const TrainingCheckpoint& checkpoint);

/// Reads a checkpoint file; throws petal::Error naming the file and the entry if it is not
/// one: a missing or malformed entry, a negative epoch, a NaN or infinite tensor, or
/// optimizer state that is incomplete (a parameter lacking a tensor or a step the others have).
TrainingCheckpoint read_checkpoint(const std::string& path);

/// Saves model (state_dict), optimizer and schedule (either may be null), epoch, the global
/// generator and extra strings to path, atomically.
void save_checkpoint(const std::string& path, const Module& model, const optim::Optimizer* optimizer,
                     const optim::LambdaLR* schedule, int64_t epoch, const std::map<std::string, std::string>& extra = {});

/// What load_checkpoint restored besides the objects passed to it.
struct CheckpointInfo {
  int64_t epoch = 0;
  Generator rng;
  std::map<std::string, std::string> extra;
};

/// Restores a checkpoint: the model's weights (strict: every missing or unexpected key is
/// named in the error), the optimizer's and the schedule's state when given (an error if
/// the file holds none), and the global generator (unless restore_rng is false). Nothing is
/// modified when any part fails to match.
CheckpointInfo load_checkpoint(const std::string& path, Module& model, optim::Optimizer* optimizer,
                               optim::LambdaLR* schedule, bool restore_rng = true);

}  // namespace petal::nn
