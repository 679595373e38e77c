// The CUDA backend is a plugin (kernels/plugin/cuda_plugin.cpp): with the plugin unloadable
// (ctest cuda:missing_plugin_is_a_clear_error sets PETAL_CUDA_PLUGIN to a path that does not
// exist), the cpu and sim devices work, no CUDA device is reported, and using one is an error
// that names the plugin and why it could not be loaded. Hidden tag: it only makes sense with
// that environment, so the ordinary run skips it.
#include "testing.h"

using namespace petal;

TEST_CASE("without the CUDA plugin, cpu and sim work and cuda is a clear error", "[.plugin]") {
  const char* path = std::getenv("PETAL_CUDA_PLUGIN");
  REQUIRE(path != nullptr);
  CHECK_FALSE(cuda::is_available());
  CHECK(cuda::device_count() == 0);
  Tensor a = randn({3, 5});
  Tensor b = matmul(a, a.t());
  CHECK(b.shape() == Shape{3, 3});
  if (sim::is_available()) {
    Tensor s = matmul(a.to(Device("sim")), a.t().to(Device("sim")));
    petal::testing::check_close(s, b, 1e-6, "sim matmul");
  }
  try {
    (void)zeros({2}, TensorOptions(DType::f32, Device("cuda:0")));
    FAIL("a cuda tensor was created without the plugin");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("cuda:0") != std::string::npos);
    CHECK(msg.find("plugin could not be loaded") != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
  }
}
