// nn::Module bookkeeping: registration, dotted-name traversal, modes, in-place device and
// dtype moves (storage swapped behind the same TensorImpl so every handle stays valid),
// and state_dict / load_state_dict with one error listing every mismatch.
#include <petal/nn/module.h>

#include <petal/autograd.h>

#include <algorithm>
#include <functional>
#include <sstream>

namespace petal::nn {

// ---------------------------------------------------------------- StateDict

void StateDict::insert(const std::string& name, const Tensor& t) {
  PETAL_CHECK(!contains(name), "StateDict::insert: duplicate key '", name, "'");
  index_.emplace(name, items_.size());
  items_.emplace_back(name, t);
}

void StateDict::set(const std::string& name, const Tensor& t) {
  auto it = index_.find(name);
  if (it == index_.end()) {
    insert(name, t);
  } else {
    items_[it->second].second = t;
  }
}

const Tensor& StateDict::at(const std::string& name) const {
  auto it = index_.find(name);
  PETAL_CHECK(it != index_.end(), "StateDict: no key '", name, "'");
  return items_[it->second].second;
}

const Tensor* StateDict::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

bool StateDict::erase(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return false;
  items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < items_.size(); ++i) index_.emplace(items_[i].first, i);
  return true;
}

std::vector<std::string> StateDict::keys() const {
  std::vector<std::string> k;
  k.reserve(items_.size());
  for (const auto& it : items_) k.push_back(it.first);
  return k;
}

// ---------------------------------------------------------------- registration

Tensor Module::forward(const Tensor&) {
  PETAL_FAIL(type_name_, "::forward: this module has no single-input forward");
}

void Module::check_new_name(const std::string& name) const {
  PETAL_CHECK(!name.empty() && name.find('.') == std::string::npos, type_name_,
              ": invalid member name '", name, "' (must be non-empty and contain no '.')");
  auto same = [&](const auto& e) { return e.first == name; };
  bool taken = std::any_of(parameters_.begin(), parameters_.end(), same) ||
               std::any_of(children_.begin(), children_.end(), same) ||
               std::any_of(buffers_.begin(), buffers_.end(), [&](const BufferEntry& b) { return b.name == name; });
  PETAL_CHECK(!taken, type_name_, ": a member named '", name, "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name);
  PETAL_CHECK(t.defined(), type_name_, ": register_parameter('", name, "') got an undefined tensor");
  PETAL_CHECK(t.is_leaf(), type_name_, ": register_parameter('", name, "') needs a leaf tensor (detach it first)");
  if (t.is_floating_point()) t.requires_grad_(requires_grad);
  parameters_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name);
  PETAL_CHECK(t.defined(), type_name_, ": register_buffer('", name, "') got an undefined tensor");
  buffers_.push_back(BufferEntry{name, t, persistent});
  return t;
}

void Module::register_module_impl(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  PETAL_CHECK(module != nullptr, type_name_, ": register_module('", name, "') got a null module");
  children_.emplace_back(name, std::move(module));
}

Tensor Module::replace_parameter(const std::string& name, Tensor t, bool requires_grad) {
  for (auto& p : parameters_) {
    if (p.first != name) continue;
    PETAL_CHECK(t.defined() && t.is_leaf(), type_name_, ": replace_parameter('", name, "') needs a defined leaf tensor");
    if (t.is_floating_point()) t.requires_grad_(requires_grad);
    p.second = t;
    return t;
  }
  PETAL_FAIL(type_name_, ": replace_parameter: no parameter named '", name, "'");
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> module) {
  PETAL_CHECK(module != nullptr, type_name_, ": replace_module('", name, "') got a null module");
  for (auto& c : children_) {
    if (c.first != name) continue;
    c.second = std::move(module);
    return;
  }
  PETAL_FAIL(type_name_, ": replace_module: no submodule named '", name, "'");
}

// ---------------------------------------------------------------- traversal

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out(parameters_.begin(), parameters_.end());
  if (!recurse) return out;
  for (const auto& c : children_)
    for (auto& p : c.second->named_parameters(true)) out.emplace_back(c.first + "." + p.first, p.second);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters(recurse)) out.push_back(p.second);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& b : buffers_) out.emplace_back(b.name, b.tensor);
  if (!recurse) return out;
  for (const auto& c : children_)
    for (auto& b : c.second->named_buffers(true)) out.emplace_back(c.first + "." + b.first, b.second);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& b : named_buffers(recurse)) out.push_back(b.second);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  std::function<void(const std::string&, const std::shared_ptr<Module>&)> walk =
      [&](const std::string& prefix, const std::shared_ptr<Module>& m) {
        out.emplace_back(prefix, m);
        for (const auto& c : m->children_) walk(prefix.empty() ? c.first : prefix + "." + c.first, c.second);
      };
  // A module that is not owned by a shared_ptr (a local) is returned through a
  // non-owning handle.
  std::shared_ptr<Module> self = weak_from_this().lock();
  if (!self) self = std::shared_ptr<Module>(std::shared_ptr<Module>(), this);
  out.emplace_back("", self);
  for (const auto& c : children_) walk(c.first, c.second);
  return out;
}

std::shared_ptr<Module> Module::get_submodule(const std::string& dotted_name) const {
  std::shared_ptr<Module> cur;
  const Module* m = this;
  std::stringstream ss(dotted_name);
  std::string part;
  while (std::getline(ss, part, '.')) {
    auto it = std::find_if(m->children_.begin(), m->children_.end(), [&](const auto& c) { return c.first == part; });
    PETAL_CHECK(it != m->children_.end(), type_name_, ": no submodule '", dotted_name, "' (missing '", part, "')");
    cur = it->second;
    m = cur.get();
  }
  PETAL_CHECK(cur != nullptr, type_name_, ": get_submodule: empty name");
  return cur;
}

Tensor Module::get_tensor(const std::string& dotted_name) const {
  for (auto& p : named_parameters()) if (p.first == dotted_name) return p.second;
  for (auto& b : named_buffers()) if (b.first == dotted_name) return b.second;
  PETAL_FAIL(type_name_, ": no parameter or buffer named '", dotted_name, "'");
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (auto& p : parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// ---------------------------------------------------------------- modes and placement

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

namespace {
// Points handle's TensorImpl at replacement's storage and geometry; the handle (and every
// copy of it) now sees the new data. Autograd metadata (requires_grad, accumulator) stays.
void swap_storage(const Tensor& handle, const Tensor& replacement) {
  auto& dst = *handle.impl();
  const auto& src = *replacement.impl();
  dst.storage = src.storage;
  dst.shape = src.shape;
  dst.strides = src.strides;
  dst.offset = src.offset;
  dst.dtype = src.dtype;
}

void move_tensor(const Tensor& t, Device device, DType dtype) {
  NoGradGuard ng;
  if (t.device() != device || t.dtype() != dtype) swap_storage(t, t.detach().to(device, dtype).contiguous());
  auto& impl = *t.impl();
  if (impl.grad) {
    Tensor g(impl.grad);
    if (g.device() != device || g.dtype() != dtype) impl.grad = g.to(device, dtype).contiguous().impl();
  }
}
}  // namespace

void Module::to(Device device) {
  for (auto& p : named_parameters()) move_tensor(p.second, device, p.second.dtype());
  for (auto& b : named_buffers()) move_tensor(b.second, device, b.second.dtype());
}

void Module::to(DType dtype) {
  PETAL_CHECK(is_floating(dtype), type_name_, ".to: target dtype must be floating point, got ", dtype_name(dtype));
  for (auto& p : named_parameters())
    if (p.second.is_floating_point()) move_tensor(p.second, p.second.device(), dtype);
  for (auto& b : named_buffers())
    if (b.second.is_floating_point()) move_tensor(b.second, b.second.device(), dtype);
}

void Module::requires_grad_(bool requires) {
  for (auto& p : parameters())
    if (p.is_floating_point()) p.requires_grad_(requires);
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard ng;
  for (auto& p : parameters()) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (set_to_none) {
      p.zero_grad();
    } else {
      g.zero_();
    }
  }
}

// ---------------------------------------------------------------- state

void Module::collect_state(const std::string& prefix, StateDict& out) const {
  for (const auto& p : parameters_) out.insert(prefix + p.first, p.second.detach());
  for (const auto& b : buffers_)
    if (b.persistent) out.insert(prefix + b.name, b.tensor.detach());
  for (const auto& c : children_) c.second->collect_state(prefix + c.first + ".", out);
}

StateDict Module::state_dict() const {
  StateDict out;
  collect_state("", out);
  return out;
}

void Module::load_state_dict(const StateDict& dict, bool strict) {
  StateDict own = state_dict();
  std::vector<std::string> missing, unexpected, shape_errors, dtype_errors;
  for (const auto& [name, t] : own) {
    const Tensor* src = dict.find(name);
    if (!src) {
      missing.push_back(name);
      continue;
    }
    if (!src->defined()) {
      shape_errors.push_back(name + ": undefined tensor in the dict");
      continue;
    }
    if (src->shape() != t.shape())
      shape_errors.push_back(name + ": checkpoint shape " + shape_str(src->shape()) + " vs model shape " +
                             shape_str(t.shape()));
    if (src->dtype() != t.dtype())
      dtype_errors.push_back(name + ": checkpoint dtype " + dtype_name(src->dtype()) + " vs model dtype " +
                             dtype_name(t.dtype()));
  }
  for (const auto& [name, t] : dict)
    if (!own.contains(name)) unexpected.push_back(name);

  bool bad = !shape_errors.empty() || !dtype_errors.empty() || (strict && (!missing.empty() || !unexpected.empty()));
  if (bad) {
    std::ostringstream os;
    os << "Error(s) in loading state_dict for " << type_name_ << ":";
    auto list = [&](const char* title, const std::vector<std::string>& v) {
      if (v.empty()) return;
      os << "\n  " << title << " (" << v.size() << "):";
      for (const auto& s : v) os << "\n    " << s;
    };
    if (strict) {
      list("missing keys", missing);
      list("unexpected keys", unexpected);
    }
    list("size mismatches", shape_errors);
    list("dtype mismatches", dtype_errors);
    throw Error(os.str());
  }
  NoGradGuard ng;
  for (const auto& [name, t] : own) {
    const Tensor* src = dict.find(name);
    if (!src) continue;
    Tensor dst = t;  // detached view of the parameter's storage
    dst.copy_(*src);
  }
}

// ---------------------------------------------------------------- Sequential

Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

Sequential& Sequential::push_back(std::shared_ptr<Module> module) {
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& m : modules_) y = m->forward(y);
  return y;
}

}  // namespace petal::nn
