// DistributedDataParallel (see ddp.h). The Reducer holds the buckets: each is one flat
// buffer (one dtype, one device) holding the gradients of consecutive parameters in reverse
// registration order. A grad-ready hook on every trainable parameter (autograd's
// AccumulateGrad) counts down its bucket; when a bucket is complete and every earlier bucket
// has been launched, its gradients are copied into the flat buffer and an asynchronous
// average is started. A callback queued at the first hook of a backward pass runs when the
// pass has finished: it launches the buckets that are still incomplete (their missing
// gradients as zeros, so all ranks issue the same collectives), waits for all of them, and
// copies the averages back into the parameters' gradients.
#include <petal/autograd.h>
#include <petal/distributed.h>
#include <petal/nn/ddp.h>
#include <petal/ops.h>

#include <sstream>

namespace petal::nn {

struct DistributedDataParallel::Reducer {
  struct Bucket {
    std::vector<size_t> params;   // indices into Reducer::params
    std::vector<int64_t> offsets; // element offset of each param in flat
    int64_t numel = 0;
    DType dtype = DType::f32;
    Device device;
    Tensor flat;
    distributed::Work work;
    int pending = 0;
    bool launched = false;
  };

  std::vector<std::string> names;
  std::vector<Tensor> params;
  std::vector<size_t> bucket_of;
  std::vector<Bucket> buckets;
  std::vector<bool> ready;
  bool find_unused = false;
  bool no_sync = false;
  bool armed = false;           // the next backward synchronises
  bool callback_queued = false;
  size_t next_launch = 0;
  std::vector<std::string> unused;

  void reset() {
    for (auto& b : buckets) {
      b.pending = static_cast<int>(b.params.size());
      b.launched = false;
    }
    std::fill(ready.begin(), ready.end(), false);
    next_launch = 0;
    callback_queued = false;
  }

  void on_grad_ready(size_t i) {
    if (!armed) return;
    PETAL_CHECK(!ready[i], "DistributedDataParallel: parameter '", names[i],
                "' received a gradient twice in one synchronised iteration (a second backward after one forward); "
                "run forward again, or accumulate inside no_sync()");
    ready[i] = true;
    if (!callback_queued) {
      callback_queued = true;
      autograd::queue_callback([this] { finish_backward(); });
    }
    --buckets[bucket_of[i]].pending;
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) launch(next_launch++);
  }

  void launch(size_t b) {
    Bucket& bk = buckets[b];
    NoGradGuard ng;
    if (!bk.flat.defined()) bk.flat = empty({bk.numel}, TensorOptions(bk.dtype, bk.device));
    for (size_t k = 0; k < bk.params.size(); ++k) {
      const Tensor& p = params[bk.params[k]];
      Tensor slot = bk.flat.narrow(0, bk.offsets[k], p.numel());
      Tensor g = p.grad();
      if (g.defined())
        slot.copy_(g.reshape({p.numel()}));
      else
        slot.zero_();
    }
    bk.work = distributed::all_reduce_async(bk.flat, distributed::ReduceOp::avg);
    bk.launched = true;
  }

  void finish_backward() {
    armed = false;
    unused.clear();
    for (size_t i = 0; i < params.size(); ++i)
      if (!ready[i]) unused.push_back(names[i]);
    while (next_launch < buckets.size()) launch(next_launch++);
    std::exception_ptr error;
    for (auto& bk : buckets) {
      try {
        bk.work.wait();
      } catch (...) {
        if (!error) error = std::current_exception();
      }
    }
    reset();
    if (error) std::rethrow_exception(error);
    NoGradGuard ng;
    for (auto& bk : buckets) {
      for (size_t k = 0; k < bk.params.size(); ++k) {
        Tensor p = params[bk.params[k]];
        Tensor avg = bk.flat.narrow(0, bk.offsets[k], p.numel()).view(p.shape());
        Tensor g = p.grad();
        if (g.defined()) {
          g.copy_(avg);
        } else {
          p.set_grad(avg.clone());
        }
      }
    }
    if (!unused.empty() && !find_unused) {
      std::ostringstream os;
      os << "DistributedDataParallel: " << unused.size()
         << " parameter(s) received no gradient in this backward pass (not used to compute the loss):";
      for (size_t i = 0; i < unused.size() && i < 10; ++i) os << " " << unused[i];
      if (unused.size() > 10) os << " ...";
      os << "; construct with DDPOptions::find_unused_parameters = true to treat their gradients as zero, "
            "or freeze them (requires_grad_(false)) before wrapping";
      PETAL_FAIL(os.str());
    }
  }
};

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<Module> module, DDPOptions options)
    : Module("DistributedDataParallel"), options_(options) {
  PETAL_CHECK(module != nullptr, "DistributedDataParallel: null module");
  PETAL_CHECK(distributed::is_initialized(),
              "DistributedDataParallel: the process group is not initialised; call petal::distributed::init() first");
  PETAL_CHECK(options.bucket_cap_mb > 0, "DistributedDataParallel: bucket_cap_mb must be positive, got ", options.bucket_cap_mb);
  module_ = register_module("module", module);
  reducer_ = std::make_shared<Reducer>();
  Reducer& r = *reducer_;
  r.find_unused = options.find_unused_parameters;

  // Same starting point everywhere (the agreement check also catches different architectures).
  for (auto& [name, p] : module_->named_parameters()) distributed::broadcast(p, 0);
  if (options.broadcast_buffers)
    for (auto& [name, b] : module_->named_buffers()) distributed::broadcast(b, 0);

  for (auto& [name, p] : module_->named_parameters())
    if (p.requires_grad()) {
      r.names.push_back(name);
      r.params.push_back(p);
    }
  const double cap_bytes = options.bucket_cap_mb * 1024.0 * 1024.0;
  r.bucket_of.assign(r.params.size(), 0);
  for (size_t j = r.params.size(); j-- > 0;) {
    const Tensor& p = r.params[j];
    const double bytes = static_cast<double>(p.numel()) * static_cast<double>(p.element_size());
    bool fresh = r.buckets.empty();
    if (!fresh) {
      const auto& last = r.buckets.back();
      fresh = last.dtype != p.dtype() || last.device != p.device() ||
              static_cast<double>(last.numel) * static_cast<double>(dtype_size(last.dtype)) + bytes > cap_bytes;
    }
    if (fresh) {
      r.buckets.emplace_back();
      r.buckets.back().dtype = p.dtype();
      r.buckets.back().device = p.device();
    }
    auto& bk = r.buckets.back();
    r.bucket_of[j] = r.buckets.size() - 1;
    bk.params.push_back(j);
    bk.offsets.push_back(bk.numel);
    bk.numel += p.numel();
  }
  r.ready.assign(r.params.size(), false);
  r.reset();

  std::weak_ptr<Reducer> weak = reducer_;
  for (size_t i = 0; i < r.params.size(); ++i) {
    const int64_t id = autograd::add_grad_ready_hook(r.params[i], [weak, i](const Tensor&) {
      if (auto rr = weak.lock()) rr->on_grad_ready(i);
    });
    hooks_.emplace_back(r.params[i], id);
  }
}

DistributedDataParallel::~DistributedDataParallel() {
  for (auto& [p, id] : hooks_) autograd::remove_grad_ready_hook(p, id);
}

Tensor DistributedDataParallel::forward(const Tensor& x) {
  Reducer& r = *reducer_;
  // Device moves after wrapping would leave the buckets on the old device.
  for (const auto& bk : r.buckets)
    PETAL_CHECK(r.params[bk.params[0]].device() == bk.device && r.params[bk.params[0]].dtype() == bk.dtype,
                "DistributedDataParallel: parameters moved to another device or dtype after wrapping; "
                "move the module before constructing DistributedDataParallel");
  r.armed = grad_enabled() && !r.no_sync;
  return module_->forward(x);
}

DistributedDataParallel::NoSync::NoSync(DistributedDataParallel& ddp) : ddp_(ddp), prev_(ddp.reducer_->no_sync) {
  ddp_.reducer_->no_sync = true;
}
DistributedDataParallel::NoSync::~NoSync() { ddp_.reducer_->no_sync = prev_; }

std::vector<std::vector<std::string>> DistributedDataParallel::bucket_parameter_names() const {
  std::vector<std::vector<std::string>> out;
  for (const auto& bk : reducer_->buckets) {
    out.emplace_back();
    for (size_t i : bk.params) out.back().push_back(reducer_->names[i]);
  }
  return out;
}

std::vector<std::string> DistributedDataParallel::unused_parameters() const { return reducer_->unused; }

}  // namespace petal::nn
