// CPU memory: 64-byte aligned host allocations (cache-line and AVX-512 friendly).
// Blocks of at least kCacheMinBytes are kept when freed and handed out again for the same
// (page-rounded) size: a training step allocates the same activation and gradient sizes every
// step, and a fresh large allocation is fresh pages from the kernel (mmap), each zeroed on its
// first touch (~7,000 page faults per ViT-Ti step before). At most kCacheMaxBytes idle bytes are
// kept (PETAL_CPU_CACHE_MB overrides, 0 turns the cache off); builds with AddressSanitizer or
// ThreadSanitizer never cache (every free must reach the sanitizer). Each block carries a
// 64-byte header with its capacity in front of the pointer handed out.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include <petal/error.h>

#include "kernels/cpu/cpu_backend.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PETAL_CPU_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define PETAL_CPU_SANITIZED 1
#endif
#endif
#ifndef PETAL_CPU_SANITIZED
#define PETAL_CPU_SANITIZED 0
#endif

namespace petal::kernels {

namespace {

constexpr size_t kHeaderBytes = 64;  // keeps the 64-byte alignment of what follows
constexpr size_t kCacheMinBytes = size_t{64} << 10;
constexpr size_t kDefaultCacheMaxBytes = size_t{1} << 30;
constexpr uint64_t kMagic = 0x7065'7461'6c63'7075ull;

struct Header {
  size_t capacity;  // bytes after the header
  uint64_t magic;
};

size_t cache_max_bytes() {
  static const size_t max_bytes = [] {
    if (PETAL_CPU_SANITIZED) return size_t{0};
    const char* env = std::getenv("PETAL_CPU_CACHE_MB");
    if (env == nullptr || *env == '\0') return kDefaultCacheMaxBytes;
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(env, &end, 10);
    return end != nullptr && *end == '\0' ? static_cast<size_t>(mb) << 20 : kDefaultCacheMaxBytes;
  }();
  return max_bytes;
}

// Idle blocks by capacity. Never destroyed (a static tensor may be freed after any static
// destructor has run); the process exit returns the memory.
class BlockCache {
 public:
  void* take(size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = idle_.find(capacity);
    if (it == idle_.end()) return nullptr;
    void* base = it->second;
    idle_.erase(it);
    idle_bytes_ -= capacity;
    return base;
  }
  bool put(void* base, size_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (idle_bytes_ + capacity > cache_max_bytes()) return false;
    idle_.emplace(capacity, base);
    idle_bytes_ += capacity;
    return true;
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> idle_;
  size_t idle_bytes_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();
  return *cache;
}

}  // namespace

void* CpuBackend::allocate(size_t nbytes) {
  PETAL_CHECK(nbytes <= SIZE_MAX / 2, "cpu: out of memory allocating ", nbytes, " bytes");
  size_t capacity = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
  const bool cacheable = capacity >= kCacheMinBytes && cache_max_bytes() > 0;
  if (cacheable) {
    capacity = (capacity + 4095) / 4096 * 4096;
    if (void* base = block_cache().take(capacity)) return static_cast<char*>(base) + kHeaderBytes;
  }
  void* base = std::aligned_alloc(64, capacity + kHeaderBytes);
  PETAL_CHECK(base != nullptr, "cpu: out of memory allocating ", nbytes, " bytes");
  const Header h{capacity, kMagic};
  std::memcpy(base, &h, sizeof(h));
  return static_cast<char*>(base) + kHeaderBytes;
}

void CpuBackend::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  void* base = static_cast<char*>(ptr) - kHeaderBytes;
  Header h;
  std::memcpy(&h, base, sizeof(h));
  if (h.magic != kMagic) std::abort();  // not a cpu-backend block: a bug, never free it (deallocate runs in destructors)
  if (h.capacity >= kCacheMinBytes && cache_max_bytes() > 0 && block_cache().put(base, h.capacity)) return;
  std::free(base);
}

void CpuBackend::copy_from_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }

Backend* cpu_backend() {
  static CpuBackend backend;
  return &backend;
}

}  // namespace petal::kernels
