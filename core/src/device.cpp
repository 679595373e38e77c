// Device parsing and printing, and the registry that maps a device to its backend.
#include <petal/device.h>
#include <petal/error.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "kernels/backend.h"

namespace petal {

Device::Device(const std::string& spec) {
  if (spec == "cpu") {
    type = DeviceType::CPU;
  } else if (spec == "sim") {
    type = DeviceType::SIM;
  } else if (spec == "cuda") {
    type = DeviceType::CUDA;
  } else if (spec.rfind("cuda:", 0) == 0 && spec.size() > 5) {
    for (size_t i = 5; i < spec.size(); ++i)
      PETAL_CHECK(std::isdigit(static_cast<unsigned char>(spec[i])), "invalid device string '", spec,
                  "': expected cpu, sim, cuda or cuda:N");
    type = DeviceType::CUDA;
    index = std::stoi(spec.substr(5));
  } else {
    PETAL_FAIL("invalid device string '", spec, "': expected cpu, sim, cuda or cuda:N");
  }
}

std::string Device::str() const {
  switch (type) {
    case DeviceType::CPU: return "cpu";
    case DeviceType::SIM: return "sim";
    case DeviceType::CUDA: return "cuda:" + std::to_string(index);
  }
  return "?";
}

namespace sim {
bool is_available() { return kernels::sim_backend() != nullptr; }
}  // namespace sim

namespace {
std::mutex& precision_mutex() {
  static std::mutex m;
  return m;
}
std::string& precision_value() {
  static std::string value = [] {
    const char* env = std::getenv("PETAL_CUDA_TF32");
    return std::string(env != nullptr && *env != '\0' && std::strcmp(env, "0") != 0 ? "high" : "highest");
  }();
  return value;
}
}  // namespace

void set_float32_matmul_precision(const std::string& precision) {
  PETAL_CHECK(precision == "highest" || precision == "high" || precision == "medium",
              "set_float32_matmul_precision: expected \"highest\", \"high\" or \"medium\", got \"", precision, "\"");
  {
    std::lock_guard<std::mutex> lock(precision_mutex());
    precision_value() = precision;
  }
  kernels::cuda_apply_matmul_precision(precision != "highest");
}

std::string float32_matmul_precision() {
  std::lock_guard<std::mutex> lock(precision_mutex());
  return precision_value();
}

namespace {
std::atomic<bool>& deterministic_flag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("PETAL_DETERMINISTIC");
    return env != nullptr && *env != '\0' && std::strcmp(env, "0") != 0;
  }()};
  return flag;
}
}  // namespace

void use_deterministic_algorithms(bool on) { deterministic_flag().store(on); }

bool are_deterministic_algorithms_enabled() { return deterministic_flag().load(); }

namespace kernels {

Backend& backend_for(const Device& device) {
  Backend* b = nullptr;
  switch (device.type) {
    case DeviceType::CPU: b = cpu_backend(); break;
    case DeviceType::SIM:
      b = sim_backend();
      PETAL_CHECK(b != nullptr, "device 'sim' is not available: this petal was built without the SIMT simulator (needs the CUDA headers at build time)");
      break;
    case DeviceType::CUDA:
      b = cuda_backend(device.index);
      PETAL_CHECK(b != nullptr, "device '", device.str(), "' is not available: ",
                  petal::cuda::device_count() == 0 ? "no usable CUDA GPU/driver found (petal::cuda::is_available() is false)"
                                                   : "no such CUDA device index");
      break;
  }
  return *b;
}

}  // namespace kernels
}  // namespace petal
