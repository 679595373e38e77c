// nn::Module: the base of every layer. A module owns named parameters (trainable leaf
// tensors), named buffers (non-trainable state such as fixed position embeddings) and
// named submodules; names compose with dots (`blocks.3.attn.qkv.weight`) in registration
// order, own entries before submodules' (as torch.nn.Module does). Modules are held by
// std::shared_ptr. A Tensor is a handle, so the handles a module returns (and the ones an
// optimizer keeps) stay valid across to(device)/to(dtype): those swap the storage behind
// the same handle instead of creating new tensors.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <petal/tensor.h>

namespace petal::nn {

/// An insertion-ordered map from dotted names to tensors (a module's state_dict).
class StateDict {
 public:
  using Item = std::pair<std::string, Tensor>;

  /// Adds name -> t; throws petal::Error on a duplicate name.
  void insert(const std::string& name, const Tensor& t);
  /// Adds or replaces name -> t (a replaced entry keeps its position).
  void set(const std::string& name, const Tensor& t);
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// The tensor stored under name; throws petal::Error naming the key when absent.
  const Tensor& at(const std::string& name) const;
  /// nullptr when absent.
  const Tensor* find(const std::string& name) const;
  /// Removes name if present; returns whether it was.
  bool erase(const std::string& name);
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  std::vector<std::string> keys() const;
  std::vector<Item>::const_iterator begin() const { return items_.begin(); }
  std::vector<Item>::const_iterator end() const { return items_.end(); }
  const std::vector<Item>& items() const { return items_; }

 private:
  std::vector<Item> items_;
  std::unordered_map<std::string, size_t> index_;
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  explicit Module(std::string type_name = "Module") : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Single-input forward; modules that have one override it (the base throws).
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  /// The class name ("Linear", "ViT", ...), used in error messages.
  const std::string& type_name() const { return type_name_; }

  // ---- traversal (registration order; own entries first, then submodules recursively)
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  /// This module (under "") and every descendant, depth first. For a module not held by a
  /// shared_ptr, the entry for itself is a non-owning handle.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules();
  /// The parameter or buffer under a dotted name; throws petal::Error when absent.
  Tensor get_tensor(const std::string& dotted_name) const;
  /// The submodule under a dotted name ("blocks.3.attn"); throws when absent.
  std::shared_ptr<Module> get_submodule(const std::string& dotted_name) const;
  /// Number of parameter elements (only those requiring grad when trainable_only).
  int64_t num_parameters(bool trainable_only = false) const;

  // ---- modes and placement
  /// Training mode (dropout/drop-path active) for this module and all descendants.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  /// Moves every parameter, buffer and accumulated gradient to device, in place: the
  /// Tensor handles stay the same (storage swapped), so optimizers built earlier keep
  /// working (their state tensors follow lazily at the next step()).
  void to(Device device);
  /// Converts floating-point parameters and buffers (and their grads) to dtype, in place.
  void to(DType dtype);
  /// Sets requires_grad on every parameter (false freezes the module).
  void requires_grad_(bool requires = true);
  /// Drops the accumulated gradient of every parameter (set_to_none) or zeroes it.
  void zero_grad(bool set_to_none = true);

  // ---- state
  /// Parameters and persistent buffers by dotted name, sharing storage (detached).
  StateDict state_dict() const;
  /// Copies values from dict into the parameters/buffers (any device; no dtype conversion).
  /// Checks first, copies after: every missing key, unexpected key (strict only), shape
  /// mismatch (both shapes) and dtype mismatch is listed in one petal::Error.
  void load_state_dict(const StateDict& dict, bool strict = true);

 protected:
  /// Registers a trainable parameter (t gets requires_grad unless requires_grad=false);
  /// returns the handle to keep in a member.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  /// Registers a buffer; non-persistent buffers are left out of state_dict().
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  /// Registers a submodule under name and returns it.
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    register_module_impl(name, module);
    return module;
  }
  /// Replaces a registered parameter's value with a new tensor (same name), e.g. when a
  /// head is re-created; returns the new handle.
  Tensor replace_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  /// Replaces a registered submodule.
  void replace_module(const std::string& name, std::shared_ptr<Module> module);

 private:
  void register_module_impl(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  void collect_state(const std::string& prefix, StateDict& out) const;

  struct BufferEntry {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<BufferEntry> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

/// Runs its children in order ("0", "1", ...).
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);
  /// Appends a module under the next index; returns *this for chaining.
  Sequential& push_back(std::shared_ptr<Module> module);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return modules_.size(); }
  std::shared_ptr<Module> operator[](size_t i) const { return modules_.at(i); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace petal::nn
