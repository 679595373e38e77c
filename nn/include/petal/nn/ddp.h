// nn::DistributedDataParallel: data-parallel training over petal::distributed. Wraps a
// module (registered as "module", like torch), broadcasts its parameters and buffers from
// rank 0 at construction, and during each backward pass all-reduces (averages) the
// gradients in buckets of ~bucket_cap_mb, filled in reverse registration order (the order
// backward produces them). A bucket is launched asynchronously as soon as all its gradients
// are ready, so communication overlaps the rest of backward; buckets are launched strictly in
// bucket order so every rank issues the same sequence of collectives. When backward returns,
// every gradient holds the average over ranks.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <petal/nn/module.h>

namespace petal::nn {

struct DDPOptions {
  double bucket_cap_mb = 25.0;          ///< bucket size limit in MiB (a larger parameter gets a bucket of its own)
  bool broadcast_buffers = true;        ///< also broadcast buffers from rank 0 at construction
  /// false: a parameter that got no gradient in a synchronised backward is an error naming it
  /// (after the collectives completed, so no rank hangs); true: it counts as zero.
  bool find_unused_parameters = false;
};

class DistributedDataParallel : public Module {
 public:
  /// Needs petal::distributed::init() first; all ranks must wrap the same architecture.
  explicit DistributedDataParallel(std::shared_ptr<Module> module, DDPOptions options = {});
  ~DistributedDataParallel() override;

  /// The wrapped module's forward; arms gradient synchronisation for the next backward
  /// (unless inside no_sync() or with grad mode off).
  Tensor forward(const Tensor& x) override;
  /// The wrapped module (save its state_dict for checkpoints: no "module." prefix).
  std::shared_ptr<Module> module() const { return module_; }

  /// While alive, forward/backward only accumulate gradients locally (gradient
  /// accumulation); the first synchronised backward afterwards reduces the accumulated sums.
  class NoSync {
   public:
    explicit NoSync(DistributedDataParallel& ddp);
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool prev_;
  };
  /// Usage: `{ auto guard = ddp->no_sync(); loss(ddp->forward(x)).backward(); }`.
  [[nodiscard]] std::unique_ptr<NoSync> no_sync() { return std::make_unique<NoSync>(*this); }

  /// Parameter names of each bucket, in launch order.
  std::vector<std::vector<std::string>> bucket_parameter_names() const;
  /// Parameters that received no gradient in the last synchronised backward.
  std::vector<std::string> unused_parameters() const;

  struct Reducer;

 private:
  std::shared_ptr<Module> module_;
  DDPOptions options_;
  std::shared_ptr<Reducer> reducer_;
  std::vector<std::pair<Tensor, int64_t>> hooks_;
};

}  // namespace petal::nn
