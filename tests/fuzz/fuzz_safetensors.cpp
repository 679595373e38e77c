// libFuzzer target: petal's safetensors reader on arbitrary bytes. It must either throw a
// petal::Error or return tensors that exactly tile the data section (checked by writing them
// back: the same tensors must serialize and parse again to the same names and shapes).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <petal/error.h>
#include <petal/serialize.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  petal::SafetensorsContents contents;
  try {
    contents = petal::safetensors_from_bytes(bytes, "fuzz input");
  } catch (const petal::Error&) {
    return 0;
  }
  const std::string again = petal::safetensors_to_bytes(contents.tensors, contents.metadata);
  petal::SafetensorsContents back = petal::safetensors_from_bytes(again, "round trip");
  if (back.tensors.size() != contents.tensors.size() || back.metadata != contents.metadata) std::abort();
  for (const auto& [name, t] : contents.tensors) {
    auto it = back.tensors.find(name);
    if (it == back.tensors.end() || it->second.shape() != t.shape() || it->second.dtype() != t.dtype()) std::abort();
  }
  return 0;
}
