// The list of CUDA kernels against the simulator: every `__global__` kernel defined in
// kernels/cuda/*.cu must be launched when the cross-backend table runs on the device
// "sim", so no CUDA kernel lands without being executed and checked on a machine
// without a GPU. The simulator build records the kernels it launched
// (petal::kernels::sim_impl::launched_kernel_names in kernels/cuda/backend.cu); the
// kernel names come from the sources themselves (PETAL_SOURCE_DIR).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "test_cross_backend_cases.h"

using namespace petal;

// Defined only when petal is built with the simulator; weak, so this test links (and
// skips) without it.
namespace petal::kernels::sim_impl {
std::vector<std::string> launched_kernel_names() __attribute__((weak));
}

namespace {

std::set<std::string> kernels_in_sources() {
  std::set<std::string> names;
  const std::filesystem::path dir = std::filesystem::path(PETAL_SOURCE_DIR) / "kernels" / "cuda";
  const std::regex global_fn(R"(__global__\s+void\s+([A-Za-z_]\w*)\s*\()");
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".cu" && entry.path().extension() != ".cuh") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    for (auto it = std::sregex_iterator(s.begin(), s.end(), global_fn); it != std::sregex_iterator(); ++it)
      names.insert((*it)[1].str());
  }
  return names;
}

// Work that the table does not reach on its own: shapes that pick the other schedules.
void exercise_special_paths() {
  const Device sim("sim");
  // Softmax rows too long to stage in shared memory.
  Tensor x = petal::testing::random_input({1, 9000}, 3);
  petal::testing::check_close(softmax(x.to(sim, DType::f32), -1), softmax(x, -1), 2e-6, "long softmax row");
  // Casts from a contiguous source (vectorized) and a strided one.
  Tensor y = x.to(sim, DType::f32);
  petal::testing::check_close(y.to(DType::bf16), x.to(DType::bf16), 0.0, "contiguous cast");
  petal::testing::check_close(y.slice(1, 0, 9000, 3).to(DType::f64), x.slice(1, 0, 9000, 3).to(DType::f32), 0.0,
                              "strided cast");
  // Random fills and a plain fill.
  manual_seed(5);
  Tensor r = rand({33}, TensorOptions(DType::f32, sim));
  manual_seed(5);
  petal::testing::check_close(r, rand({33}), 0.0, "rand");
  petal::testing::check_close(full({7}, 2.0, TensorOptions(DType::f32, sim)), full({7}, 2.0), 0.0, "full");
}

}  // namespace

TEST_CASE("every CUDA kernel is executed by the simulator tests", "[cross_backend][sim]") {
  if (!sim::is_available() || &kernels::sim_impl::launched_kernel_names == nullptr) {
    WARN("skipped: petal was built without the SIMT simulator");
    std::exit(4);
  }
  const std::set<std::string> defined = kernels_in_sources();
  REQUIRE(defined.size() >= 10);  // the parser found the kernels

  for (const auto& family : cross_backend::all_families())
    cross_backend::run_family(family.second, "sim", {DType::f32});
  exercise_special_paths();

  const std::vector<std::string> launched_list = kernels::sim_impl::launched_kernel_names();
  const std::set<std::string> launched(launched_list.begin(), launched_list.end());
  std::ostringstream missing;
  for (const std::string& k : defined)
    if (!launched.count(k)) missing << " " << k;
  INFO("kernels in kernels/cuda: " << defined.size() << ", launched on sim: " << launched.size());
  INFO("never launched:" << missing.str());
  CHECK(missing.str().empty());
  // And nothing was launched that the source scan does not know (the scan is not stale).
  for (const std::string& k : launched) {
    INFO("launched kernel " << k);
    CHECK(defined.count(k) == 1);
  }
}
