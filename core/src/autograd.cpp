// The backward engine. Graph walk is iterative (explicit stacks), so arbitrarily long
// chains do not touch the C++ call stack. Gradients flowing into one node are summed
// before it runs; nodes run once all their consumers have delivered (dependency counts).
// Leaves' grad-ready hooks run inside AccumulateGrad; callbacks queued during a pass run
// after its last node (DistributedDataParallel waits for its all-reduces there).
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include <unordered_map>
#include <unordered_set>

#include "internal.h"

namespace petal {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool e) { g_grad_enabled = e; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

namespace autograd {

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  PETAL_CHECK(!released_, "backward: trying to backward through the graph a second time (node ", name_,
              "): its saved tensors were freed after the first backward; pass retain_graph=true to the first backward");
  return fn_(grad_output);
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad_output) {
  auto leaf = leaf_.lock();
  if (!leaf) return {};
  NoGradGuard ng;
  Tensor g = grad_output;
  if (g.shape() != leaf->shape) g = sum_to(g, leaf->shape);
  if (!leaf->grad) {
    // Own a fresh contiguous buffer so later in-place accumulation never aliases.
    Tensor c = empty(leaf->shape, TensorOptions(leaf->dtype, leaf->storage->device));
    c.copy_(g);
    leaf->grad = c.impl();
  } else {
    Tensor acc(leaf->grad);
    acc.add_(g);
  }
  if (!hooks.empty()) {
    const Tensor grad(leaf->grad);
    for (auto& h : hooks) h.second(grad);
  }
  return {};
}

namespace {
// Callbacks of the backward pass running on this thread (nullptr outside one).
thread_local std::vector<std::function<void()>>* g_backward_callbacks = nullptr;
int64_t g_next_hook_id = 1;
}  // namespace

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

static std::shared_ptr<Node> edge_for(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  auto& impl = t.impl();
  if (impl->grad_fn) return impl->grad_fn;
  if (!impl->grad_accumulator) impl->grad_accumulator = std::make_shared<AccumulateGrad>(impl);
  return impl->grad_accumulator;
}

int64_t add_grad_ready_hook(const Tensor& leaf, GradReadyHook hook) {
  PETAL_CHECK(leaf.defined() && leaf.requires_grad() && leaf.is_leaf(),
              "add_grad_ready_hook: needs a leaf tensor that requires grad");
  auto acc = std::static_pointer_cast<AccumulateGrad>(edge_for(leaf));
  const int64_t id = g_next_hook_id++;
  acc->hooks.emplace_back(id, std::move(hook));
  return id;
}

void remove_grad_ready_hook(const Tensor& leaf, int64_t id) {
  if (!leaf.defined() || !leaf.impl()->grad_accumulator) return;
  auto& hooks = std::static_pointer_cast<AccumulateGrad>(leaf.impl()->grad_accumulator)->hooks;
  for (auto it = hooks.begin(); it != hooks.end(); ++it)
    if (it->first == id) {
      hooks.erase(it);
      return;
    }
}

void queue_callback(std::function<void()> fn) {
  PETAL_CHECK(g_backward_callbacks != nullptr, "autograd::queue_callback: only valid during a backward pass");
  g_backward_callbacks->push_back(std::move(fn));
}

namespace {
// What a rule's gradient for one input must match.
struct InputMeta {
  bool needed = false;  // the input requires grad (it has an edge)
  Shape shape;
  Device device;
};

// True when `small` broadcasts to `big` (so a gradient of shape big sums down to small).
bool expandable_to(const Shape& small, const Shape& big) {
  if (small.size() > big.size()) return false;
  const size_t lead = big.size() - small.size();
  for (size_t i = 0; i < small.size(); ++i)
    if (small[i] != 1 && small[i] != big[lead + i]) return false;
  return true;
}

// Checks the gradients a backward rule returned (their number, shapes and devices) and sums
// broadcast gradients down to their input's shape, as PyTorch's validate_outputs does.
void validate_gradients(const std::string& op, const std::vector<InputMeta>& meta, std::vector<Tensor>& grads) {
  PETAL_CHECK(grads.size() == meta.size(), "autograd: the backward of '", op, "' returned ", grads.size(),
              " gradient", grads.size() == 1 ? "" : "s", " for ", meta.size(), " input", meta.size() == 1 ? "" : "s",
              " (one per input is needed; an undefined Tensor where an input needs none)");
  for (size_t i = 0; i < grads.size(); ++i) {
    Tensor& g = grads[i];
    if (!g.defined() || !meta[i].needed) continue;
    PETAL_CHECK(g.device() == meta[i].device, "autograd: the backward of '", op, "' returned a gradient on ",
                g.device().str(), " for input ", i, " on ", meta[i].device.str());
    if (g.shape() == meta[i].shape) continue;
    PETAL_CHECK(expandable_to(meta[i].shape, g.shape()), "autograd: the backward of '", op,
                "' returned a gradient of shape ", shape_str(g.shape()), " for input ", i, " of shape ",
                shape_str(meta[i].shape), " (expected that shape or one it broadcasts to)");
    g = sum_to(g, meta[i].shape);
  }
}
}  // namespace

void record(const char* op_name, Tensor& output, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (!needs_grad(inputs)) return;
  std::vector<InputMeta> meta(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad())
      meta[i] = InputMeta{true, inputs[i].shape(), inputs[i].device()};
  // A rule sees its gradient in its output's dtype: in mixed-precision graphs (autocast) a
  // bf16 output can feed an f32 consumer whose backward hands back an f32 gradient.
  const DType out_dtype = output.dtype();
  auto node = std::make_shared<FunctionNode>(op_name, [fn = std::move(fn), out_dtype, meta = std::move(meta),
                                                       op = std::string(op_name)](const Tensor& g) {
    const bool convert = g.defined() && g.dtype() != out_dtype && is_floating(g.dtype()) && is_floating(out_dtype);
    std::vector<Tensor> grads = fn(convert ? g.to(out_dtype) : g);
    validate_gradients(op, meta, grads);
    return grads;
  });
  node->next.reserve(inputs.size());
  for (const auto& t : inputs) node->next.push_back(edge_for(t));
  output.impl()->grad_fn = node;
  output.impl()->requires_grad = true;
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  NoGradGuard ng;  // backward rules build no graph (no double backward)
  AutocastDisabledGuard no_autocast;  // rules run in the dtypes their forward recorded
  std::vector<std::function<void()>> callbacks;
  struct CallbackScope {
    std::vector<std::function<void()>>* prev;
    explicit CallbackScope(std::vector<std::function<void()>>* mine) : prev(g_backward_callbacks) { g_backward_callbacks = mine; }
    ~CallbackScope() { g_backward_callbacks = prev; }
  } callback_scope(&callbacks);
  // 1. Collect reachable nodes and count the consumers of each.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  std::vector<std::shared_ptr<Node>> root_nodes;
  for (const auto& r : roots) {
    auto n = edge_for(r);
    root_nodes.push_back(n);
    if (n && seen.insert(n.get()).second) stack.push_back(n.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& nx : n->next) {
      if (!nx) continue;
      deps[nx.get()]++;
      if (seen.insert(nx.get()).second) stack.push_back(nx.get());
    }
  }
  // 2. Seed the roots and process ready nodes.
  std::unordered_map<Node*, Tensor> pending;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;  // keeps nodes alive while queued
  auto deliver = [&](const std::shared_ptr<Node>& n, const Tensor& g) {
    if (!n || !g.defined()) return;
    auto it = pending.find(n.get());
    if (it == pending.end()) {
      pending.emplace(n.get(), g);
      keep.emplace(n.get(), n);
    } else {
      it->second = add(it->second, g);
    }
  };
  std::vector<Node*> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    if (!root_nodes[i]) continue;
    deliver(root_nodes[i], grads[i]);
  }
  for (auto& n : root_nodes)
    if (n && deps[n.get()] == 0) ready.push_back(n.get());
  std::unordered_set<Node*> done;
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    if (!done.insert(n).second) continue;
    auto it = pending.find(n);
    Tensor g;
    if (it != pending.end()) {
      g = it->second;
      pending.erase(it);
    }
    std::vector<Tensor> in_grads;
    if (g.defined()) {
      // Non-leaf outputs that asked for retain_grad() get the gradient arriving here.
      for (auto& w : n->retained) {
        auto impl = w.lock();
        if (!impl) continue;
        if (!impl->grad) {
          Tensor c = empty(impl->shape, TensorOptions(impl->dtype, impl->storage->device));
          c.copy_(g);
          impl->grad = c.impl();
        } else {
          Tensor acc(impl->grad);
          acc.add_(g);
        }
      }
      in_grads = n->apply(g);
    }
    if (!retain_graph) n->release();
    for (size_t i = 0; i < n->next.size(); ++i) {
      auto& nx = n->next[i];
      if (!nx) continue;
      if (i < in_grads.size()) deliver(nx, in_grads[i]);
      if (--deps[nx.get()] == 0) ready.push_back(nx.get());
    }
    keep.erase(n);
  }
  // 3. Callbacks queued during the pass (they may queue more).
  for (size_t i = 0; i < callbacks.size(); ++i) {
    auto fn = std::move(callbacks[i]);
    fn();
  }
}

}  // namespace autograd
}  // namespace petal
