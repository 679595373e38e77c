// The simulator's side of the CUDA backend's runtime layer (kernels/cuda/runtime.h): device
// memory is host memory, every operation is synchronous (a launch returns when its grid has
// finished), and GEMMs, which the real backend hands to cuBLASLt, run on the CPU backend.
// The one exception is the copy stream of asynchronous host-to-device copies: a copy is
// queued and runs only when the compute stream next does something after having waited for
// it (or at rt_synchronize), the latest moment a GPU could run it, so a missing wait reads
// stale device memory and a source released before its copy ran is read after its release.
// Allocations are exact-size heap blocks so that ASan reports out-of-bounds accesses of
// simulated kernels to global memory, and are poisoned (0xff bytes) as initcheck would flag.
#include <atomic>
#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include <petal/error.h>

#include "kernels/backend.h"
#include "kernels/cuda/runtime.h"
#include "kernels/sim/sim.h"

namespace petal::sim::detail {
void count_lt_epilogue();  // the emulated epilogues' counter (below)
}  // namespace petal::sim::detail

namespace petal::kernels::sim_impl {

namespace {
constexpr std::align_val_t kAlignment{256};  // cudaMalloc's guarantee
}

void* rt_malloc(size_t nbytes) {
  void* p = nullptr;
  try {
    p = ::operator new(nbytes == 0 ? 1 : nbytes, kAlignment);
  } catch (const std::bad_alloc&) {
    PETAL_FAIL("sim: out of memory allocating ", nbytes, " bytes of device memory");
  }
  // cudaMalloc does not clear memory: poison it (0xff bytes, NaN for floats) so that a kernel
  // reading what nothing wrote fails its test instead of reading zeros.
  std::memset(p, 0xff, nbytes);
  return p;
}

void rt_free(void* p) {
  if (p != nullptr) ::operator delete(p, kAlignment);
}

void rt_memcpy_h2d(void* dst, const void* src, size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

void rt_memcpy_d2h(void* dst, const void* src, size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

void rt_memcpy_d2d(void* dst, const void* src, size_t n) {
  if (n != 0 && dst != src) std::memmove(dst, src, n);
}

void rt_memset(void* dst, int value, size_t n) {
  if (n != 0) std::memset(dst, value, n);
}

// ------------------------------------------------------------------ the copy stream

namespace {

struct QueuedCopy {
  void* dst = nullptr;
  const void* src = nullptr;
  size_t n = 0;
  std::shared_ptr<const void> keep_alive;
  bool waited = false;  // the compute stream waits for this copy's event
};

struct CopyStream {
  std::mutex mutex;
  std::deque<QueuedCopy> queue;  // in issue order (a stream runs its work in order)
  std::atomic<size_t> queued{0};  // queue.size(), read without the lock by the fast path
  bool skip_wait = false;        // planted bug (tests)
};

CopyStream& copy_stream() {
  static CopyStream* s = new CopyStream();  // never destroyed: copies may be queued at exit
  return *s;
}

/// Runs the first `count` queued copies, in order, and releases what they held (outside the
/// lock: releasing a source may free pinned memory).
void run_copies(CopyStream& s, std::unique_lock<std::mutex>& lock, size_t count) {
  std::vector<std::shared_ptr<const void>> released;
  released.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    QueuedCopy& c = s.queue.front();
    std::memcpy(c.dst, c.src, c.n);
    released.push_back(std::move(c.keep_alive));
    s.queue.pop_front();
  }
  s.queued.store(s.queue.size(), std::memory_order_release);
  lock.unlock();
  released.clear();
}

void enqueue(void* dst, const void* src, size_t n, std::shared_ptr<const void> keep_alive) {
  CopyStream& s = copy_stream();
  std::lock_guard<std::mutex> lock(s.mutex);
  // The compute stream's earlier work has finished (kernels are synchronous here), so the
  // copy stream's wait for it is implicit; the compute stream's wait for this copy is not.
  s.queue.push_back(QueuedCopy{dst, src, n, std::move(keep_alive), !s.skip_wait});
  s.queued.store(s.queue.size(), std::memory_order_release);
}

}  // namespace

void rt_sim_run_waited_copies() {
  CopyStream& s = copy_stream();
  if (s.queued.load(std::memory_order_acquire) == 0) return;  // every backend call passes here
  std::unique_lock<std::mutex> lock(s.mutex);
  size_t last = 0;  // copies up to the last waited one: the stream runs them in order
  for (size_t i = 0; i < s.queue.size(); ++i)
    if (s.queue[i].waited) last = i + 1;
  if (last == 0) return;
  run_copies(s, lock, last);
}

void set_skip_copy_wait_for_testing(bool skip) {
  CopyStream& s = copy_stream();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.skip_wait = skip;
}

void rt_synchronize() {  // launches are synchronous; the copy stream finishes its queue
  CopyStream& s = copy_stream();
  std::unique_lock<std::mutex> lock(s.mutex);
  if (!s.queue.empty()) run_copies(s, lock, s.queue.size());
}

void* rt_host_alloc(size_t n) {
  try {
    return ::operator new(n == 0 ? 1 : n, kAlignment);
  } catch (const std::bad_alloc&) {
    PETAL_FAIL("sim: out of memory allocating ", n, " bytes of pinned host memory");
  }
}

void rt_host_free(void* p) {
  if (p != nullptr) ::operator delete(p, kAlignment);
}

void rt_memcpy_h2d_async(void* dst, const void* src, size_t n, std::shared_ptr<const void> keep_alive) {
  if (n == 0) return;
  enqueue(dst, src, n, std::move(keep_alive));
}

void* rt_malloc_h2d_async(const void* src, size_t n, std::shared_ptr<const void> keep_alive) {
  void* p = rt_malloc(n);  // poisoned until the copy runs
  if (n != 0) enqueue(p, src, n, std::move(keep_alive));
  return p;
}

void rt_gemm(const GemmArgs& args) {
  Backend* cpu = cpu_backend();
  PETAL_CHECK(cpu != nullptr, "sim: gemm needs the CPU backend, which is unavailable");
  cpu->gemm(args);
}

bool rt_lt_epilogues() { return sim::lt_epilogues() != sim::LtEpilogues::Off; }

// No cuBLASLt here: fused linears run the plain GEMM and the kernels of linear.cu. Under the
// test hook sim::set_lt_epilogues(Emulate), DGELU / DGELU_BGRAD run on the CPU backend: the
// GEMM into a temporary, dgelu(tanh) against aux into C, the bias gradient as C's column sums.
bool rt_gemm_epilogue(const GemmArgs& g, GemmEpilogue epilogue, void* bias, void* aux, int64_t aux_ld) {
  if (sim::lt_epilogues() != sim::LtEpilogues::Emulate) return false;
  if (epilogue != GemmEpilogue::DGelu && epilogue != GemmEpilogue::DGeluBGrad) return false;
  const bool lt_dtype = g.dtype == DType::f32 || g.dtype == DType::bf16 || g.dtype == DType::f16;
  if (!lt_dtype || g.batch != 1 || g.m <= 0 || g.n <= 0 || g.k <= 0) return false;
  PETAL_CHECK(aux != nullptr && aux_ld >= g.n && aux_ld % 8 == 0, "sim: DGELU epilogue needs aux with ld >= ", g.n,
              " and divisible by 8, got ld ", aux_ld);
  PETAL_CHECK(epilogue != GemmEpilogue::DGeluBGrad || bias != nullptr, "sim: DGELU_BGRAD needs a bias gradient vector");
  Backend* cpu = cpu_backend();
  PETAL_CHECK(cpu != nullptr, "sim: gemm needs the CPU backend, which is unavailable");
  const size_t es = dtype_size(g.dtype);
  void* product = rt_malloc(static_cast<size_t>(g.m * g.n) * es);
  try {
    GemmArgs t = g;
    t.c = product;
    t.ldc = g.n;
    t.beta = 0.0;
    cpu->gemm(t);
    auto view2 = [&](void* data, int64_t ld) {
      View v;
      v.data = data;
      v.dtype = g.dtype;
      v.ndim = 2;
      v.shape[0] = g.m;
      v.shape[1] = g.n;
      v.strides[0] = ld;
      v.strides[1] = 1;
      return v;
    };
    const View d = view2(g.c, g.ldc), ab = view2(product, g.n), pre = view2(aux, aux_ld);
    cpu->unary_backward(UnaryOp::GeluTanh, d, ab, pre, pre, 0.0, 0.0);
    if (epilogue == GemmEpilogue::DGeluBGrad) {
      View out;  // [n]
      out.data = bias;
      out.dtype = g.dtype;
      out.ndim = 1;
      out.shape[0] = g.n;
      out.strides[0] = 1;
      View in;  // D seen as [n, m]: columns kept, rows reduced
      in.data = g.c;
      in.dtype = g.dtype;
      in.ndim = 2;
      in.shape[0] = g.n;
      in.shape[1] = g.m;
      in.strides[0] = 1;
      in.strides[1] = g.ldc;
      cpu->reduce(ReduceOp::Sum, out, in, 1);
    }
  } catch (...) {
    rt_free(product);
    throw;
  }
  rt_free(product);
  sim::detail::count_lt_epilogue();
  return true;
}

}  // namespace petal::kernels::sim_impl

namespace petal::sim {

namespace {
std::atomic<LtEpilogues>& lt_epilogues_mode() {
  static std::atomic<LtEpilogues> mode{LtEpilogues::Off};
  return mode;
}
std::atomic<uint64_t>& lt_epilogues_count() {
  static std::atomic<uint64_t> count{0};
  return count;
}
}  // namespace

void set_lt_epilogues(LtEpilogues mode) { lt_epilogues_mode().store(mode); }
LtEpilogues lt_epilogues() { return lt_epilogues_mode().load(); }
uint64_t lt_epilogues_emulated() { return lt_epilogues_count().load(); }
void detail::count_lt_epilogue() { lt_epilogues_count().fetch_add(1); }

}  // namespace petal::sim
