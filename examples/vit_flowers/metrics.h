// metrics.csv in the run directory: one row per training epoch, rewritten (temporary +
// rename, every write checked) after each epoch, like timm's summary.csv:
//   epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_s
// epoch counts from 1 (as the log's "[epoch 1/10]"); lr is the rate the epoch started with;
// seconds is the epoch's wall time (train and val); images_per_s the training pass's
// throughput. A value an epoch does not have (no val pass after it in the --work-flow) is
// left empty. On --resume the rows of the earlier run up to the checkpoint's epoch are kept.
#pragma once
#include <string>
#include <vector>

#include "trainer.h"

namespace vit_flowers {

/// The CSV text of these rows (with the header line).
std::string metrics_csv(const std::vector<EpochStats>& rows);
/// Writes metrics_csv(rows) to path atomically.
void write_metrics_csv(const std::string& path, const std::vector<EpochStats>& rows);
/// Reads a metrics.csv written by write_metrics_csv; a missing file gives no rows. Throws
/// petal::Error naming the file, line and column of anything else it cannot read.
std::vector<EpochStats> read_metrics_csv(const std::string& path);

}  // namespace vit_flowers
