// Devices to test on, with the cpu once per CPU ISA variant (kernels/cpu/isa.h): "cpu/baseline",
// "cpu/avx512" (where this CPU has it), "sim", "cuda". Use as
//   const petal::testing::DeviceVariant variant(GENERATE(from_range(petal::testing::device_variants())));
//   const Device d(variant.dev);
// The variant selects its ISA for its lifetime (other devices keep the default one).
#pragma once
#include <string>
#include <vector>

#include "testing.h"

namespace petal::testing {

inline std::vector<std::string> device_variants() {
  std::vector<std::string> out;
  for (const std::string& dev : test_devices()) {
    if (dev != "cpu") {
      out.push_back(dev);
      continue;
    }
    for (const std::string& isa : test_cpu_isas()) out.push_back("cpu/" + isa);
  }
  return out;
}

struct DeviceVariant {
  explicit DeviceVariant(const std::string& v)
      : name(v),
        dev(v.substr(0, v.find('/'))),
        isa(v.find('/') == std::string::npos ? test_cpu_isas().back() : v.substr(v.find('/') + 1)) {}
  std::string name, dev, isa;
  ScopedCpuIsa guard{isa};
};

}  // namespace petal::testing
