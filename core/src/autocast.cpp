// autocast: the per-op precision table, the thread-local state per device type, and the
// cast cache of parameters (see the header). A cached cast gets its own autograd node
// with no saved tensors, so the one cast serves every forward and backward of the scope
// (a FunctionNode would be released by the first backward); its backward converts the
// gradient back to the parameter's dtype and device.
#include <petal/autocast.h>

#include <petal/autograd.h>

#include <cstring>
#include <map>
#include <memory>
#include <utility>

namespace petal {

namespace {

struct OpPolicy {
  const char* op;
  CastPolicy policy;
};

// The one table. Op names are the names the ops give themselves in core/ (and nn's linear).
constexpr OpPolicy kAutocastTable[] = {
    // GEMM-like: lower precision in, f32 accumulation in the kernels.
    {"matmul", CastPolicy::LowerPrecision},
    {"linear", CastPolicy::LowerPrecision},
    {"patch_embed", CastPolicy::LowerPrecision},
    {"scaled_dot_product_attention", CastPolicy::LowerPrecision},
    // Normalizations, softmax, losses, reductions: f32.
    {"layer_norm", CastPolicy::Float32},
    {"softmax", CastPolicy::Float32},
    {"log_softmax", CastPolicy::Float32},
    {"cross_entropy", CastPolicy::Float32},
    {"sum", CastPolicy::Float32},
    {"mean", CastPolicy::Float32},
    {"var", CastPolicy::Float32},
};

constexpr int kDeviceTypes = 3;  // CPU, CUDA, SIM

struct DeviceState {
  bool enabled = false;
  DType dtype = DType::bf16;
  bool cache_enabled = true;
};

struct CacheEntry {
  std::weak_ptr<TensorImpl> source;
  std::weak_ptr<Storage> storage;
  Shape shape, strides;
  int64_t offset = 0;
  bool with_grad = false;  // made with grad mode on (has a node)
  Tensor cast;
};

struct ThreadState {
  DeviceState devices[kDeviceTypes];
  int guards = 0;          // autocast guards alive on this thread
  int disabled_depth = 0;  // AutocastDisabledGuard nesting
  std::map<std::pair<const TensorImpl*, DType>, CacheEntry> cache;
};

ThreadState& state() {
  thread_local ThreadState s;
  return s;
}

DeviceState& device_state(DeviceType type) { return state().devices[static_cast<int>(type)]; }

// Backward of a cached cast: the gradient back in the source's dtype and device.
class CachedCastNode final : public autograd::Node {
 public:
  CachedCastNode(DType dtype, Device device) : dtype_(dtype), device_(device) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override {
    return {grad_output.to(device_, dtype_)};
  }
  std::string name() const override { return "autocast_cast"; }
  // release(): nothing saved, so the node stays usable by later backward passes.

 private:
  DType dtype_;
  Device device_;
};

Tensor make_cast(const Tensor& t, DType target, bool record) {
  Tensor out;
  {
    NoGradGuard ng;
    out = t.detach().to(target);
  }
  if (record) {
    auto node = std::make_shared<CachedCastNode>(t.dtype(), t.device());
    auto& impl = t.impl();
    if (!impl->grad_accumulator) impl->grad_accumulator = std::make_shared<autograd::AccumulateGrad>(impl);
    node->next.push_back(impl->grad_accumulator);
    out.impl()->grad_fn = node;
    out.impl()->requires_grad = true;
  }
  return out;
}

Tensor cached_cast(const Tensor& t, DType target, bool cache_enabled) {
  if (!cache_enabled || !t.is_leaf() || !t.requires_grad()) return t.to(target);
  const bool with_grad = grad_enabled();
  auto& cache = state().cache;
  const auto key = std::make_pair(static_cast<const TensorImpl*>(t.impl().get()), target);
  auto it = cache.find(key);
  if (it != cache.end()) {
    const CacheEntry& e = it->second;
    const bool same = e.source.lock() == t.impl() && e.storage.lock() == t.impl()->storage && e.shape == t.shape() &&
                      e.strides == t.strides() && e.offset == t.storage_offset();
    if (same && (e.with_grad || !with_grad)) return e.cast;
  }
  CacheEntry e;
  e.source = t.impl();
  e.storage = t.impl()->storage;
  e.shape = t.shape();
  e.strides = t.strides();
  e.offset = t.storage_offset();
  e.with_grad = with_grad;
  e.cast = make_cast(t, target, with_grad);
  Tensor out = e.cast;
  cache[key] = std::move(e);
  return out;
}

}  // namespace

autocast::autocast(Device device, DType dtype, bool enabled, bool cache_enabled) : type_(device.type) {
  PETAL_CHECK(dtype == DType::bf16 || dtype == DType::f16, "autocast: dtype must be bfloat16 or float16, got ",
              dtype_name(dtype));
  DeviceState& s = device_state(type_);
  prev_enabled_ = s.enabled;
  prev_dtype_ = s.dtype;
  prev_cache_enabled_ = s.cache_enabled;
  s.enabled = enabled;
  s.dtype = dtype;
  s.cache_enabled = cache_enabled;
  ++state().guards;
}

autocast::~autocast() {
  DeviceState& s = device_state(type_);
  s.enabled = prev_enabled_;
  s.dtype = prev_dtype_;
  s.cache_enabled = prev_cache_enabled_;
  if (--state().guards == 0) state().cache.clear();
}

bool is_autocast_enabled(DeviceType type) { return device_state(type).enabled; }
DType get_autocast_dtype(DeviceType type) { return device_state(type).dtype; }

CastPolicy autocast_policy(const char* op) {
  for (const OpPolicy& p : kAutocastTable)
    if (std::strcmp(p.op, op) == 0) return p.policy;
  return CastPolicy::None;
}

bool autocast_active(DeviceType type, DType* dtype) {
  const ThreadState& ts = state();
  if (ts.guards == 0 || ts.disabled_depth > 0) return false;
  const DeviceState& ds = device_state(type);
  if (!ds.enabled) return false;
  if (dtype != nullptr) *dtype = ds.dtype;
  return true;
}

void clear_autocast_cache() { state().cache.clear(); }
size_t autocast_cache_size() { return state().cache.size(); }

std::vector<Tensor> autocast_inputs(const char* op, std::initializer_list<Tensor> inputs) {
  std::vector<Tensor> out(inputs);
  ThreadState& ts = state();
  if (ts.guards == 0 || ts.disabled_depth > 0) return out;
  const Tensor* first = nullptr;
  for (const Tensor& t : out)
    if (t.defined()) {
      first = &t;
      break;
    }
  if (first == nullptr) return out;
  const DeviceType type = first->device().type;
  const DeviceState& ds = device_state(type);
  if (!ds.enabled) return out;
  const CastPolicy policy = autocast_policy(op);
  if (policy == CastPolicy::None) return out;
  const DType target = policy == CastPolicy::LowerPrecision ? ds.dtype : DType::f32;
  for (Tensor& t : out) {
    if (!t.defined() || t.device().type != type || t.dtype() == target) continue;
    const DType dt = t.dtype();
    const bool eligible = policy == CastPolicy::LowerPrecision ? (dt == DType::f32 || dt == DType::bf16 || dt == DType::f16)
                                                               : (dt == DType::bf16 || dt == DType::f16);
    if (eligible) t = cached_cast(t, target, ds.cache_enabled);
  }
  return out;
}

AutocastDisabledGuard::AutocastDisabledGuard() { ++state().disabled_depth; }
AutocastDisabledGuard::~AutocastDisabledGuard() { --state().disabled_depth; }

namespace detail {

void autocast_forget_storage(const Storage* storage) {
  auto& cache = state().cache;
  if (cache.empty()) return;
  for (auto it = cache.begin(); it != cache.end();) {
    auto s = it->second.storage.lock();
    if (!s || s.get() == storage)
      it = cache.erase(it);
    else
      ++it;
  }
}

}  // namespace detail

}  // namespace petal
