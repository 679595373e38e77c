// Pinned (page-locked) host memory: the cache of pinned blocks behind Storage(n, Pinned),
// Tensor::pin_memory / is_pinned, and the statistics. Blocks come from the accelerator
// backend's allocate_pinned_host (cudaHostAlloc on cuda; on sim, host memory the simulator
// treats as pinned). Pinning is slow (it maps the pages for the device), so a freed block goes
// back to a cache and serves the next request of up to its size: a DataLoader with
// pin_memory cycles through a few blocks, recycled as each batch's tensors die.
//
// A block reaches the cache only when its Storage dies, and an asynchronous copy keeps the
// Storage alive until the copy has completed (Backend::copy_from_host_async), so no block is
// reused while a DMA may still read it. Cached blocks are poisoned for AddressSanitizer (a
// read of a released block is reported) and, when the simulator owns them, filled with 0xff
// bytes (a read shows as NaNs in a test).
#include <petal/autograd.h>
#include <petal/tensor.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include "kernels/backend.h"

#if defined(__SANITIZE_ADDRESS__)
#define PETAL_PINNED_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PETAL_PINNED_ASAN 1
#endif
#endif
#ifdef PETAL_PINNED_ASAN
#include <sanitizer/asan_interface.h>
#define PETAL_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define PETAL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define PETAL_POISON(p, n) ((void)(p), (void)(n))
#define PETAL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace petal {

namespace {

constexpr size_t kGranule = 4096;                    // pinning is per page
constexpr size_t kCacheLimit = size_t(1) << 30;      // unused bytes kept for reuse

std::atomic<bool> g_disabled_for_testing{false};

/// The backend that pins host memory: the first GPU when cuda is usable, else the simulator.
kernels::Backend* pinning_backend() {
  static kernels::Backend* const backend = []() -> kernels::Backend* {
    if (cuda::is_available()) return kernels::cuda_backend(0);
    return kernels::sim_backend();
  }();
  return g_disabled_for_testing.load() ? nullptr : backend;
}

class PinnedCache {
 public:
  void* allocate(size_t nbytes, kernels::Backend*& owner) {
    const size_t capacity = (std::max<size_t>(nbytes, 1) + kGranule - 1) / kGranule * kGranule;
    kernels::Backend* backend = pinning_backend();
    PETAL_CHECK(backend != nullptr, "pin_memory: no accelerator to pin host memory for (neither a usable cuda "
                                    "device nor the simulator); check petal::pinned_memory_available() first");
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = idle_.lower_bound(capacity);
      if (it != idle_.end() && it->first <= 2 * capacity) {  // at most half of a reused block idles
        Block b = it->second;
        idle_.erase(it);
        idle_bytes_ -= b.capacity;
        busy_.emplace(b.data, b);
        busy_bytes_ += b.capacity;
        ++reuses_;
        owner = b.owner;
        PETAL_UNPOISON(b.data, b.capacity);
        return b.data;
      }
    }
    void* p = nullptr;
    try {
      p = backend->allocate_pinned_host(capacity);
    } catch (const Error&) {
      empty();  // give the cached blocks back and try once more
      p = backend->allocate_pinned_host(capacity);
    }
    PETAL_CHECK(p != nullptr, "pin_memory: the ", backend->name(), " backend cannot pin host memory");
    std::lock_guard<std::mutex> lock(mutex_);
    busy_.emplace(p, Block{p, capacity, backend});
    busy_bytes_ += capacity;
    ++allocations_;
    owner = backend;
    return p;
  }

  void release(void* p) {
    Block b;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = busy_.find(p);
      if (it == busy_.end()) return;  // not ours (cannot happen)
      b = it->second;
      busy_.erase(it);
      busy_bytes_ -= b.capacity;
      if (idle_bytes_ + b.capacity <= kCacheLimit) {
        if (b.owner == kernels::sim_backend()) std::memset(b.data, 0xff, b.capacity);
        PETAL_POISON(b.data, b.capacity);
        idle_.emplace(b.capacity, b);
        idle_bytes_ += b.capacity;
        return;
      }
    }
    free_block(b);
  }

  void empty() {
    std::multimap<size_t, Block> idle;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      idle.swap(idle_);
      idle_bytes_ = 0;
    }
    for (auto& [capacity, b] : idle) {
      PETAL_UNPOISON(b.data, b.capacity);
      free_block(b);
    }
  }

  PinnedMemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    PinnedMemoryStats s;
    s.allocations = allocations_;
    s.reuses = reuses_;
    s.in_use_bytes = busy_bytes_;
    s.cached_bytes = idle_bytes_;
    return s;
  }

 private:
  struct Block {
    void* data = nullptr;
    size_t capacity = 0;
    kernels::Backend* owner = nullptr;
  };
  static void free_block(const Block& b) {
    try {
      b.owner->deallocate_pinned_host(b.data);
    } catch (...) {  // from a destructor: the block is lost, nothing else
    }
  }

  std::mutex mutex_;
  std::multimap<size_t, Block> idle_;       // capacity -> unused block
  std::unordered_map<void*, Block> busy_;   // data -> block of a live storage
  size_t idle_bytes_ = 0, busy_bytes_ = 0;
  int64_t allocations_ = 0, reuses_ = 0;
};

PinnedCache& cache() {
  static PinnedCache* c = new PinnedCache();  // never destroyed: storages may outlive static destruction
  return *c;
}

}  // namespace

Storage::Storage(size_t n, Pinned) : nbytes(n), device(kCPU) { data = cache().allocate(n, pinned_by); }

namespace detail {
/// Storage's destructor for pinned blocks (tensor.cpp).
void release_pinned(void* data) { cache().release(data); }
/// Tests: behave as a build without cuda and sim (nothing can pin) while `off`.
void disable_pinned_memory_for_testing(bool off) { g_disabled_for_testing.store(off); }
}  // namespace detail

bool pinned_memory_available() { return pinning_backend() != nullptr; }
PinnedMemoryStats pinned_memory_stats() { return cache().stats(); }
void empty_pinned_memory_cache() { cache().empty(); }

bool Tensor::is_pinned() const {
  check_defined("is_pinned");
  return impl_->storage->pinned_by != nullptr;
}

Tensor Tensor::pin_memory() const {
  check_defined("pin_memory");
  PETAL_CHECK(device().is_cpu(), "pin_memory: only cpu tensors can be pinned, got a tensor on ", device().str(),
              " of shape ", shape_str(shape()));
  if (is_pinned()) return *this;
  Tensor out = empty(shape(), TensorOptions(dtype(), kCPU).pinned_memory(true));
  {
    NoGradGuard ng;
    out.copy_(*this);
  }
  autograd::record("pin_memory", out, {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

}  // namespace petal
