// --work-flow, the seed's (mmcv) Runner semantics: a list of (mode, passes), e.g.
// "train:1,val:1" (the default) or "train:2,val:1", repeated until --epochs training passes
// are done; epochs count training passes only, a "val" stage evaluates the model as it is.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vit_flowers {

struct WorkflowStage {
  enum Mode { train, val } mode = train;
  int64_t passes = 1;
};

/// Parses "train:1,val:1" ("train" alone means train:1). Throws petal::Error naming the
/// stage and what is wrong: an unknown mode, a count that is not a positive integer, an
/// empty list, or one without a train stage (it would never end).
std::vector<WorkflowStage> parse_workflow(const std::string& text);

/// The canonical text of a workflow ("train:1,val:1").
std::string workflow_str(const std::vector<WorkflowStage>& w);

}  // namespace vit_flowers
