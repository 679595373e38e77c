// The CUDA backend is a plugin (kernels/plugin/cuda_plugin.cpp): with the plugin unloadable
// (ctest cuda:missing_plugin_is_a_clear_error sets PETAL_CUDA_PLUGIN to a path that does not
// exist), the cpu and sim devices work, no CUDA device is reported, and using one is an error
// that names the plugin and why it could not be loaded. Hidden tag: it only makes sense with
// that environment, so the ordinary run skips it. Also: the float32 matmul precision setting.
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

TEST_CASE("set_float32_matmul_precision takes torch's names and refuses others", "[device]") {
  const std::string saved = float32_matmul_precision();
  for (const char* p : {"high", "medium", "highest"}) {
    set_float32_matmul_precision(p);
    CHECK(float32_matmul_precision() == p);
  }
  CHECK_THROWS_WITH(set_float32_matmul_precision("tf32"),
                    Catch::Contains("set_float32_matmul_precision") && Catch::Contains("\"tf32\""));
  CHECK(float32_matmul_precision() == "highest");
  // The CPU and sim backends compute float32 matmuls in full precision whatever the setting.
  set_float32_matmul_precision("high");
  Tensor a = randn({5, 7}), b = randn({7, 3});
  Tensor c = matmul(a, b);
  Tensor ref = matmul(a.to(DType::f64), b.to(DType::f64));
  petal::testing::check_close(c, ref, 1e-5, "f32 matmul with precision high");
  set_float32_matmul_precision(saved);
}
