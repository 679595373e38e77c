// The dynamic autograd tape. Each differentiable op that sees an input requiring grad
// records a Node holding its backward rule (a closure over the saved tensors) and edges
// to the producers of its inputs. backward() runs the graph in reverse topological order
// without recursion, accumulates into leaves, and frees saved tensors unless retain_graph.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <petal/tensor.h>

namespace petal {

/// Disables graph recording in its scope (like torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

/// True unless inside a NoGradGuard.
bool grad_enabled();
void set_grad_enabled(bool enabled);

namespace autograd {

/// A backward rule: given the gradient of the op's output, returns one gradient per
/// input (an undefined Tensor for inputs that need none).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

class Node {
 public:
  virtual ~Node() = default;
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  virtual std::string name() const = 0;
  /// Drops saved tensors; a later apply() throws.
  virtual void release() {}
  /// Producers of each input (nullptr where the input needs no gradient).
  std::vector<std::shared_ptr<Node>> next;
  /// Non-leaf outputs of this node that called retain_grad(): backward adds the gradient
  /// arriving here into their .grad.
  std::vector<std::weak_ptr<TensorImpl>> retained;
};

/// Node for an op: its name, its backward closure.
class FunctionNode : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  std::string name() const override { return name_; }
  void release() override { fn_ = nullptr; released_ = true; }

 private:
  std::string name_;
  BackwardFn fn_;
  bool released_ = false;
};

/// Called with a leaf's .grad right after a backward pass has added into it.
using GradReadyHook = std::function<void(const Tensor& grad)>;

/// Node that adds an incoming gradient into a leaf's .grad, then runs the leaf's hooks.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::weak_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  std::string name() const override { return "AccumulateGrad"; }
  std::vector<std::pair<int64_t, GradReadyHook>> hooks;

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

/// Registers hook on a leaf that requires grad (e.g. DistributedDataParallel's bucket
/// all-reduce); returns an id for remove_grad_ready_hook.
int64_t add_grad_ready_hook(const Tensor& leaf, GradReadyHook hook);
/// Removes a hook added by add_grad_ready_hook (no-op when absent).
void remove_grad_ready_hook(const Tensor& leaf, int64_t id);
/// Queues fn to run once the backward pass in progress on this thread has finished its
/// graph (like torch's Engine::queue_callback); throws outside a backward pass.
void queue_callback(std::function<void()> fn);

/// True when any input requires grad and grad mode is on.
bool needs_grad(const std::vector<Tensor>& inputs);

/// Attaches a backward rule to output, with edges to inputs. No-op unless needs_grad(inputs).
/// This is also the custom-op API. The rule must return inputs.size() gradients (undefined
/// ones where an input needs none), each shaped like its input or broadcastable down to it
/// (then summed to the input's shape, as PyTorch does), on the input's device; otherwise
/// the backward pass throws petal::Error naming op_name, the input and both shapes.
void record(const char* op_name, Tensor& output, const std::vector<Tensor>& inputs, BackwardFn fn);

/// Runs backward from roots with the given gradients.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);

}  // namespace autograd
}  // namespace petal
