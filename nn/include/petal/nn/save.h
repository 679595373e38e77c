// One-call saving and loading of a module's weights, as libtorch's torch::save(module, path)
// / torch::load(module, path): the state_dict (parameters and persistent buffers, by dotted
// name) in one safetensors file, written atomically (temporary file, then rename). Files
// from save() open in Hugging Face's safetensors and in PyTorch (safetensors.torch.load_file).
// For resuming training (optimizer, schedule, RNG) use nn/checkpoint.h instead.
#pragma once
#include <memory>
#include <string>

#include <petal/nn/module.h>

namespace petal {

/// Writes module.state_dict() to path (any device and dtype; copied to the CPU tensor by
/// tensor). Throws petal::Error naming the path on failure; an existing file is then left
/// as it was.
void save(const nn::Module& module, const std::string& path);
template <typename M>
void save(const std::shared_ptr<M>& module, const std::string& path) {
  PETAL_CHECK(module != nullptr, "save(", path, "): the module is null");
  save(static_cast<const nn::Module&>(*module), path);
}

/// Reads path into module's parameters and buffers, in place (each stays on its device and
/// keeps its Tensor handle). Everything is checked before anything is copied: an unreadable
/// or malformed file, a NaN or infinite value, and (through load_state_dict) every missing
/// key, unexpected key (strict only), shape and dtype mismatch give one petal::Error that
/// names the file and the tensors; the module is then unchanged.
void load(nn::Module& module, const std::string& path, bool strict = true);
template <typename M>
void load(const std::shared_ptr<M>& module, const std::string& path, bool strict = true) {
  PETAL_CHECK(module != nullptr, "load(", path, "): the module is null");
  load(static_cast<nn::Module&>(*module), path, strict);
}

}  // namespace petal
