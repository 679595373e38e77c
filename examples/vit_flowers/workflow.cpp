// --work-flow parsing (see workflow.h).
#include "workflow.h"

#include <cerrno>
#include <cstdlib>

#include <petal/error.h>

namespace vit_flowers {

std::vector<WorkflowStage> parse_workflow(const std::string& text) {
  std::vector<WorkflowStage> stages;
  bool has_train = false;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(begin, end - begin);
    PETAL_CHECK(!item.empty(), "vit_flowers: --work-flow '", text, "': empty stage at position ", begin,
                " (expected e.g. train:1,val:1)");
    const size_t colon = item.find(':');
    const std::string mode = item.substr(0, colon);
    WorkflowStage s;
    if (mode == "train") {
      s.mode = WorkflowStage::train;
      has_train = true;
    } else if (mode == "val") {
      s.mode = WorkflowStage::val;
    } else {
      PETAL_FAIL("vit_flowers: --work-flow '", text, "': unknown mode '", mode, "' in stage '", item, "' (train or val)");
    }
    if (colon != std::string::npos) {
      const std::string count = item.substr(colon + 1);
      errno = 0;
      char* stop = nullptr;
      const long long n = std::strtoll(count.c_str(), &stop, 10);
      PETAL_CHECK(!count.empty() && stop == count.c_str() + count.size() && errno != ERANGE && n > 0 && n <= 1000000,
                  "vit_flowers: --work-flow '", text, "': stage '", item, "' needs a positive pass count, got '", count,
                  "'");
      s.passes = n;
    }
    stages.push_back(s);
    begin = end + 1;
  }
  PETAL_CHECK(has_train, "vit_flowers: --work-flow '", text, "' has no train stage: epochs count training passes");
  return stages;
}

std::string workflow_str(const std::vector<WorkflowStage>& w) {
  std::string s;
  for (const auto& st : w)
    s += (s.empty() ? "" : ",") + std::string(st.mode == WorkflowStage::train ? "train" : "val") + ":" +
         std::to_string(st.passes);
  return s;
}

}  // namespace vit_flowers
