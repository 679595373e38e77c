// Devices a tensor can live on: the CPU, a CUDA GPU, or "sim" (the CUDA kernels run by
// the SIMT simulator on the CPU).
#pragma once
#include <ostream>
#include <string>

namespace petal {

enum class DeviceType : uint8_t { CPU, CUDA, SIM };

/// A device: type plus index (only meaningful for CUDA).
struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  Device() = default;
  Device(DeviceType t, int i = 0) : type(t), index(i) {}
  /// Parses "cpu", "cuda", "cuda:1", "sim"; throws petal::Error otherwise.
  Device(const std::string& spec);  // NOLINT(google-explicit-constructor)
  Device(const char* spec) : Device(std::string(spec)) {}  // NOLINT

  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool is_sim() const { return type == DeviceType::SIM; }
  std::string str() const;
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

const Device kCPU{DeviceType::CPU, 0};

namespace cuda {
/// True when a CUDA GPU and driver are usable by this build.
bool is_available();
/// Number of usable CUDA devices (0 when none).
int device_count();
}  // namespace cuda

/// Precision of float32 matrix multiplies on CUDA, as torch.set_float32_matmul_precision:
/// "highest" (full f32, the default) or "high" / "medium" (TF32 tensor cores allowed). The
/// CPU and sim backends always compute in full f32. PETAL_CUDA_TF32=1 makes "high" the default.
void set_float32_matmul_precision(const std::string& precision);
/// The current float32 matmul precision: "highest", "high" or "medium".
std::string float32_matmul_precision();

/// As torch.use_deterministic_algorithms: when on, kernels that would otherwise add
/// floating-point values with atomics in an unfixed order (the bf16/f16 flash attention dQ on
/// cuda/sim) use a fixed-order reduction instead, so results are bit-reproducible run to run.
/// Off by default (PETAL_DETERMINISTIC=1 turns it on). An op's backward uses the mode that was
/// in effect when its forward ran.
void use_deterministic_algorithms(bool on);
bool are_deterministic_algorithms_enabled();

namespace sim {
/// True when this build contains the SIMT simulator backend.
bool is_available();
}  // namespace sim

}  // namespace petal
