// save(module, path) / load(module, path): a module's state_dict as one safetensors file.
#include <petal/nn/save.h>
#include <petal/serialize.h>

namespace petal {

namespace {
constexpr const char* kFormatKey = "petal.format";
constexpr const char* kModuleKey = "petal.module";
}  // namespace

void save(const nn::Module& module, const std::string& path) {
  TensorMap tensors;
  for (const auto& [name, t] : module.state_dict()) {
    PETAL_CHECK(t.defined(), "save(", path, "): state_dict entry '", name, "' of ", module.type_name(),
                " is an undefined tensor");
    tensors.emplace(name, t);
  }
  save_safetensors(path, tensors, {{kFormatKey, "state_dict"}, {kModuleKey, module.type_name()}});
}

void load(nn::Module& module, const std::string& path, bool strict) {
  SafetensorsContents file = load_safetensors_contents(path);  // errors name the file and the key
  check_finite(file.tensors, path);
  nn::StateDict dict;
  for (const auto& [name, t] : file.tensors) dict.insert(name, t);
  try {
    module.load_state_dict(dict, strict);
  } catch (const Error& e) {
    auto it = file.metadata.find(kModuleKey);
    const std::string from = it == file.metadata.end() ? std::string() : " (saved from a " + it->second + ")";
    PETAL_FAIL("load(", path, ")", from, ": ", e.what());
  }
}

}  // namespace petal
