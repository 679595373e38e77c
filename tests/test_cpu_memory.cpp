// The cpu backend's allocations: 64-byte aligned at every size; a freed large block is handed
// out again for the same size (kernels/cpu/memory.cpp keeps idle blocks: no fresh pages per
// training step), small blocks and other sizes get their own memory, and reused memory holds
// whatever was written before (callers never rely on zeroed memory: tests poison outputs).
#include <cstdint>
#include <cstdlib>

// Sanitized builds never cache (as kernels/cpu/memory.cpp).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PETAL_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define PETAL_TEST_SANITIZED 1
#endif
#endif
#ifndef PETAL_TEST_SANITIZED
#define PETAL_TEST_SANITIZED 0
#endif

#include "kernels/backend.h"
#include "testing.h"

using namespace petal;

TEST_CASE("cpu allocations are aligned and large freed blocks are reused", "[memory]") {
  kernels::Backend& be = kernels::backend_for(kCPU);
  for (size_t n : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{65}, size_t{4097}, size_t{1} << 16,
                   (size_t{1} << 20) + 3}) {
    void* p = be.allocate(n);
    REQUIRE(p != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
    if (n > 0) static_cast<unsigned char*>(p)[n - 1] = 0xab;  // the whole range is writable
    be.deallocate(p);
  }
  if (!PETAL_TEST_SANITIZED && std::getenv("PETAL_CPU_CACHE_MB") == nullptr) {
    const size_t big = (size_t{3} << 20) + 100;  // 3 MiB: cached when freed
    void* a = be.allocate(big);
    be.deallocate(a);
    void* b = be.allocate(big);  // the same page-rounded size: the idle block comes back
    CHECK(b == a);
    void* c = be.allocate(big);  // none idle: a new block
    CHECK(c != b);
    be.deallocate(b);
    be.deallocate(c);
    // Through tensors: a freed activation's storage serves the next one of its size.
    const void* first = nullptr;
    {
      Tensor t = empty({1024, 1024}, TensorOptions(DType::f32));
      first = t.data_ptr();
    }
    Tensor u = empty({1024, 1024}, TensorOptions(DType::f32));
    CHECK(u.data_ptr() == first);
  }
}
